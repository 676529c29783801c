#!/usr/bin/env bash
# The whole system under load: starts the five services in release mode on ports 13000-13004
# (fresh databases), seeds ARTICLES articles (default 100,000), drives each service with wrk and
# the checkout flow with bench's `shop` driver, and prints one table: requests per second and
# p50/p99 latency per scenario. DURATION (default 10s), CONNECTIONS (default 16) and SHOPPERS
# (default 8, concurrent checkouts) tune it; everything stops at the end.
# INSTANCES=n (default 1) runs n instances of every service on 13000-13004 + 100*i behind
# scripts/balancer.sh on 13000-13004, as `INSTANCES=n scripts/run.sh` does on 3000-3004.
# CHECKOUT_ONLY=1 measures only the checkout flow (for `bench/instances.sh`); ONLY=<regex> only
# the scenarios whose description matches (ONLY='GET /cart,' for the cart read). STAGES=1 also logs
# every request and message (JSON, debug) and prints where a checkout's time goes
# (bench/stages.py); the logging costs throughput, so measure with and without it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
ARTICLES=${ARTICLES:-100000}
SHOPPERS=${SHOPPERS:-8}
export AUTH=http://127.0.0.1:13000 IMAGE=http://127.0.0.1:13001 CATALOG=http://127.0.0.1:13002
export CART=http://127.0.0.1:13003 ORDERS=http://127.0.0.1:13004

INSTANCES=${INSTANCES:-1}
WITH_HAPROXY=1 bash scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p auth -p image-service -p catalog -p cart -p orders -p bench

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
run_id="bench_$(date +%s)"
export JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=warn AUTH_SERVICE_URL=$AUTH
if [ "${STAGES:-}" = 1 ]; then
  export LOG_FORMAT=json RUST_LOG=warn,common::http=debug,rabbit::consumer=debug
fi
export AUTH_DB="${run_id}_auth"
port=13000
balanced=()
for service in auth image catalog cart orders; do
  if [ "$INSTANCES" -eq 1 ]; then
    MONGO_DB="${run_id}_$service" PORT=$port "target/release/$service" >"$work/$service.log" 2>&1 &
    pids+=($!)
  else
    ports=()
    for i in $(seq "$INSTANCES"); do
      ports+=($((port + 100 * i)))
      MONGO_DB="${run_id}_$service" PORT=${ports[-1]} "target/release/$service" \
        >"$work/$service-$i.log" 2>&1 &
      pids+=($!)
    done
    balanced+=("$service:$port=$(IFS=,; echo "${ports[*]}")")
  fi
  port=$((port + 1))
done
if [ "$INSTANCES" -gt 1 ]; then
  DEPS_DIR="$work" bash scripts/balancer.sh "${balanced[@]}" >"$work/haproxy.log" 2>&1 &
  pids+=($!)
fi
for url in $AUTH $IMAGE $CATALOG $CART $ORDERS; do
  for _ in $(seq 150); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
  curl -sf "$url/health" >/dev/null || { echo "$url never became healthy"; tail "$work"/*.log; exit 1; }
done

echo "seeding $ARTICLES articles..."
eval "$(target/release/shop setup "$ARTICLES")"
export ARTICLE_ID
# About 1.1 MB of JPEG: a 1.45 MB JSON original, as in the course's measurements.
target/release/bench 1600 1200 32 "$work/upload.json" >/dev/null
image_id=$(curl -sf "$IMAGE/images/create" -H "Authorization: Bearer $SHOPPER_TOKEN" \
  --data-binary "@$work/upload.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for variant in "" "?Size=160" "/jpeg?Size=320"; do curl -sf "$IMAGE/images/$image_id$variant" >/dev/null; done

# wrk's summary reduced to: requests/s | p50 | p99 | requests | non-2xx.
summarise() {
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       / requests in / {count=$1}
       END {printf "%s | %s | %s | %s | %s\n", rps, p50, p99, count, (bad == "" ? 0 : bad)}'
}
load() { # description, then wrk arguments
  local description=$1; shift
  [[ $description =~ ${ONLY:-.} ]] || return 0
  echo "  $description" >&2
  rows+=("$description | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" | summarise)")
}
bearer() { echo "Authorization: Bearer $1"; }

rows=()
if [ "${CHECKOUT_ONLY:-}" != 1 ]; then
  load "auth: GET /users/current" -H "$(bearer "$READER_TOKEN")" "$AUTH/users/current"
  load "image: GET /images/{id} (original, JSON data URL)" "$IMAGE/images/$image_id"
  load "image: GET /images/{id}?Size=160 (JSON)" "$IMAGE/images/$image_id?Size=160"
  load "image: GET /images/{id}/jpeg?Size=320, cached" "$IMAGE/images/$image_id/jpeg?Size=320"
  load "catalog: GET /articles/{id}" "$CATALOG/articles/$ARTICLE_ID"
  load "catalog: GET /articles/search/needle, $ARTICLES articles" "$CATALOG/articles/search/needle"
  load "catalog: GET /articles?limit=50" "$CATALOG/articles?limit=50"
  load "cart: GET /cart, $CART_LINES lines" -H "$(bearer "$SHOPPER_TOKEN")" "$CART/cart"
  load "cart: GET /cart/validate, $CART_LINES lines (one article-data request/reply per line), a shopper per connection" -s bench/tokens.lua "$CART/cart/validate" -- "$SHOPPER_TOKENS"
  load "cart: POST /cart/article and /decrement, alternating" -s bench/cart.lua "$CART" -- "$ARTICLE_ID" "$SHOPPER_TOKEN"
  load "orders: GET /orders, 3 orders" -H "$(bearer "$READER_TOKEN")" "$ORDERS/orders"
  load "orders: GET /orders/{id}" -H "$(bearer "$READER_TOKEN")" "$ORDERS/orders/$ORDER_ID"
fi
if [[ "checkout to VALIDATED" =~ ${ONLY:-.} ]]; then
  echo "  checkout to VALIDATED, $SHOPPERS shoppers" >&2
  seconds=${DURATION%s}
  rows+=("$(target/release/shop checkouts "$SHOPPERS" "$((seconds * 2))")")
fi
if [ "${STAGES:-}" = 1 ]; then
  echo
  python3 bench/stages.py "$work"/*.log
fi

echo
echo "system benchmark, $INSTANCES instance(s) of each service, $ARTICLES articles, on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; wrk ${DURATION} x ${CONNECTIONS} connections;"
echo "RabbitMQ, Redis and FerretDB on the same machine"
echo
echo "| scenario | requests/s | p50 | p99 | requests | non-2xx |"
echo "|---|---|---|---|---|---|"
printf '| %s |\n' "${rows[@]}"
