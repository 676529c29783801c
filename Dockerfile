# One build for the whole workspace, then one small image per service, chosen by the build
# argument SERVICE (auth, image, catalog, cart or orders). The build stage does not depend on it,
# so `docker compose build` compiles the workspace once for the five images.

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

FROM debian:bookworm-slim AS service
# curl only for the container health checks; the services use rustls and need no OpenSSL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home service
# Declared after the shared layers so that they are built once for all five images.
ARG SERVICE
COPY --from=build /out/${SERVICE} /usr/local/bin/service
USER service
ENV RUST_LOG=info LOG_FORMAT=json
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
CMD ["service"]
