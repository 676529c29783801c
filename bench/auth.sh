#!/usr/bin/env bash
# Auth benchmark: starts auth in release mode on port 13000 and drives it with wrk, printing
# requests per second and p50/p99 latency for:
#   - GET /users/current with a valid token (what every other service asks on a cache miss)
#   - POST /users/signin (one Argon2id verification each, bounded to two per core)
# DURATION (default 10s) and CONNECTIONS (default 16) tune wrk; everything stops at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
AUTH=http://127.0.0.1:13000

bash scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p auth

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=warn MONGO_DB="bench_$(date +%s)" \
  PORT=13000 target/release/auth >"$work/auth.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "$AUTH/health" >/dev/null && break; sleep 0.2; done

credentials='{"login":"bench_user","password":"benchmark password"}'
token=$(curl -sf $AUTH/users/signup -d '{"name":"Bench","login":"bench_user","password":"benchmark password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
printf '%s' "$credentials" >"$work/signin.json"

summarise() {
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       / requests in / {count=$1}
       END {printf "%s | %s | %s | %s | %s\n", rps, p50, p99, count, (bad == "" ? 0 : bad)}'
}
rows=()
rows+=("GET /users/current, valid token | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" "$AUTH/users/current" | summarise)")
rows+=("POST /users/signin, right password | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$AUTH/users/signin" -- "$work/signin.json" "" | summarise)")

echo
echo "auth benchmark on $(nproc) cores, wrk ${DURATION} x ${CONNECTIONS} connections, FerretDB on the same machine"
echo
echo "| scenario | requests/s | p50 | p99 | requests | non-2xx |"
echo "|---|---|---|---|---|---|"
printf '| %s |\n' "${rows[@]}"
