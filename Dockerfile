# One build for the whole workspace, then one small image per service (`--target auth`, ...).
# The build stage is shared, so `docker compose build` compiles the workspace once.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds; the binaries are
# copied out of the mounted target directory before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auth -p image-service -p catalog -p cart -p orders \
    && mkdir -p /out \
    && cp target/release/auth target/release/image target/release/catalog \
          target/release/cart target/release/orders /out/

FROM debian:bookworm-slim AS runtime
# curl only for the container health checks; the services use rustls and need no OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home service
USER service
ENV RUST_LOG=info LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1

FROM runtime AS auth
COPY --from=build /out/auth /usr/local/bin/auth
ENV PORT=3000
EXPOSE 3000
CMD ["auth"]

FROM runtime AS image
COPY --from=build /out/image /usr/local/bin/image
ENV PORT=3001
EXPOSE 3001
CMD ["image"]

FROM runtime AS catalog
COPY --from=build /out/catalog /usr/local/bin/catalog
ENV PORT=3002
EXPOSE 3002
CMD ["catalog"]

FROM runtime AS cart
COPY --from=build /out/cart /usr/local/bin/cart
ENV PORT=3003
EXPOSE 3003
CMD ["cart"]

FROM runtime AS orders
COPY --from=build /out/orders /usr/local/bin/orders
ENV PORT=3004
EXPOSE 3004
CMD ["orders"]
