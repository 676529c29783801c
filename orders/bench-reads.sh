#!/usr/bin/env bash
# GET /orders and GET /orders/{id} under load, at a few orders and at OTHERS (default 100,000)
# orders stored: starts auth and orders in release mode on AUTH_PORT/ORDERS_PORT (default
# 14000/14004, fresh databases), signs a user up, seeds MINE (default 5) orders of that user, runs
# wrk (CONNECTIONS, default 32, for DURATION, default 10s) on both routes, seeds OTHERS orders of
# 1,000 other users and runs wrk again; prints one table and stops what it started.
# ORDERS_BIN runs another orders binary (e.g. one built before a change) against the same setup;
# PROJECTION_TTL_SECS (default 60) is passed to orders. wrk waits up to 10 s for an answer (its
# default, 2 s, would drop the slowest answers of a slow build from the percentiles) and corrects
# for coordinated omission: a stall of the service counts for every request it held back.
#   bash orders/bench-reads.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
MINE=${MINE:-5}
OTHERS=${OTHERS:-100000}
AUTH_PORT=${AUTH_PORT:-14000}
ORDERS_PORT=${ORDERS_PORT:-14004}
AUTH=http://127.0.0.1:$AUTH_PORT ORDERS=http://127.0.0.1:$ORDERS_PORT

bash scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p auth -p orders --bins --example seed_orders
ORDERS_BIN=${ORDERS_BIN:-target/release/orders}

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
run_id="bench_reads_$(date +%s)"
export JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=warn AUTH_SERVICE_URL=$AUTH
export MONGO_URL=${MONGO_URL:-mongodb://127.0.0.1:27017} REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
MONGO_DB="${run_id}_auth" PORT=$AUTH_PORT target/release/auth >"$work/auth.log" 2>&1 &
pids+=($!)
export MONGO_DB="${run_id}_orders"
PORT=$ORDERS_PORT "$ORDERS_BIN" >"$work/orders.log" 2>&1 &
pids+=($!)
for url in $AUTH $ORDERS; do
  for _ in $(seq 150); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
  curl -sf "$url/health" >/dev/null || { echo "$url never became healthy"; tail "$work"/*.log; exit 1; }
done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
token=$(curl -sf "$AUTH/users/signup" -H 'Content-Type: application/json' \
  -d '{"name": "reader", "login": "reader01", "password": "bench-password-1"}' | json '["token"]')
user_id=$(curl -sf "$AUTH/users/current" -H "Authorization: Bearer $token" | json '["id"]')

summarise() { # wrk's summary as: requests/s | p50 | p99 | requests | non-2xx | timeouts
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       / requests in / {count=$1} /Socket errors/ {late=$NF}
       END {printf "%s | %s | %s | %s | %s | %s\n", rps, p50, p99, count, (bad == "" ? 0 : bad),
            (late == "" ? 0 : late)}'
}
rows=()
measure() { # description of what is stored
  local list order_id
  list=$(curl -sf "$ORDERS/orders" -H "Authorization: Bearer $token")
  order_id=$(echo "$list" | json '[0]["id"]')
  curl -sf "$ORDERS/orders/$order_id" -H "Authorization: Bearer $token" >/dev/null
  for path in /orders "/orders/$order_id"; do
    echo "  GET $path, $1" >&2
    rows+=("GET ${path/$order_id/{id\}}, $1 | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency \
      -H "Authorization: Bearer $token" "$ORDERS$path" | summarise)")
  done
}

target/release/examples/seed_orders "$user_id" "$MINE" 0
measure "$MINE orders stored"
target/release/examples/seed_orders "$user_id" 0 "$OTHERS"
measure "$((MINE + OTHERS)) orders stored ($MINE of the user)"

echo
echo "orders reads: $ORDERS_BIN, on $(nproc) cores; wrk ${DURATION} x ${CONNECTIONS} connections;"
echo "auth, RabbitMQ, Redis and FerretDB on the same machine; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| scenario | requests/s | p50 | p99 | requests | non-2xx | timeouts |"
echo "|---|---|---|---|---|---|---|"
printf '| %s |\n' "${rows[@]}"
