#!/usr/bin/env bash
# Catalog benchmark: starts auth and catalog in release mode on ports 13100/13102 (clear of the
# 130xx other benchmarks use) on a RabbitMQ vhost of their own, fills the catalog with COUNT
# articles (default 100000) through its API (catalog/examples/seed.rs), then drives the public
# reads with wrk, printing requests per second and p50/p99 latency for:
#   - GET /articles/{id}
#   - GET /articles, the first page of 50 in name order
#   - GET /articles/search/<word matching 1/16 of the catalog>, the first page of 50
#   - GET /articles/search/model-<n>., matching one article
#   - GET /articles/search/<text matching none>
# DURATION (default 10s) and CONNECTIONS (default 16) tune wrk; everything stops at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
COUNT=${COUNT:-100000}
MONGO=${MONGO_URL:-mongodb://127.0.0.1:27017}
AUTH=http://127.0.0.1:13100
CATALOG=http://127.0.0.1:13102
MANAGEMENT=http://guest:guest@127.0.0.1:15672/api

bash scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p auth -p catalog --bins --example seed

stamp=$(date +%s)
vhost="bench_catalog_$stamp"
curl -sf -X PUT "$MANAGEMENT/vhosts/$vhost" >/dev/null
curl -sf -X PUT "$MANAGEMENT/permissions/$vhost/guest" \
  -d '{"configure":".*","write":".*","read":".*"}' >/dev/null
# Each service connects as its own user (the development passwords of scripts/deps.sh).
RABBIT_VHOST=$vhost RABBIT_IMPERSONATOR=guest ALLOW_DEV_SECRETS=1 bash deploy/rabbitmq-users.sh
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work";
      curl -sf -X DELETE "$MANAGEMENT/vhosts/'"$vhost"'" >/dev/null' EXIT
export JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=warn MONGO_URL="$MONGO"
export RABBIT_URL="amqp://127.0.0.1:5672/$vhost" AUTH_SERVICE_URL=$AUTH
MONGO_DB="bench_auth_$stamp" PORT=13100 target/release/auth >"$work/auth.log" 2>&1 & pids+=($!)
MONGO_DB="bench_catalog_$stamp" PORT=13102 target/release/catalog >"$work/catalog.log" 2>&1 & pids+=($!)
for url in $AUTH $CATALOG; do
  for _ in $(seq 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
done

started=$(date +%s)
target/release/examples/seed "$CATALOG" "$AUTH" "$MONGO" "bench_auth_$stamp" "$COUNT" >/dev/null
echo "seeded $COUNT articles through POST /articles in $(($(date +%s) - started)) s"
one="model-$((COUNT / 3))." # the period ends the model number: model-42 is not model-420
id=$(curl -sf "$CATALOG/articles/search/$one" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["_id"])')

summarise() {
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       / requests in / {count=$1}
       END {printf "%s | %s | %s | %s | %s\n", rps, p50, p99, count, (bad == "" ? 0 : bad)}'
}
run() { # label path
  echo "| $1 | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$CATALOG$2" | summarise) |"
}
rows=()
rows+=("$(run "GET /articles/{id}" "/articles/$id")")
rows+=("$(run "GET /articles, first page of 50" "/articles")")
rows+=("$(run "GET /articles/search/lamp, 1/16 of the catalog matches, first page of 50" "/articles/search/lamp")")
rows+=("$(run "GET /articles/search/$one, one match" "/articles/search/$one")")
rows+=("$(run "GET /articles/search/sofa%20zzz, no match" "/articles/search/sofa%20zzz")")

echo
echo "catalog benchmark on $(nproc) cores, $COUNT articles, wrk ${DURATION} x ${CONNECTIONS} connections, FerretDB on the same machine"
echo
echo "| scenario | requests/s | p50 | p99 | requests | non-2xx |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
