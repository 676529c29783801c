#!/usr/bin/env bash
# Image benchmark: starts auth and image in release mode on ports 13000/13001, then drives image
# with wrk and prints requests per second and p50/p99 latency per scenario:
#   - download of a cached 320 px variant (GET /images/{id}/jpeg?Size=320, warmed first)
#   - first-time resize of a 12-megapixel JPEG (each request a new image, GET ?Size=320)
#   - upload of a 2 MB JPEG (POST /images/create)
# DURATION (default 10s) and CONNECTIONS (default 16) tune wrk; everything stops at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
# More new images than a run can resize, so that every request of the run is a first one.
FIRST_RESIZES=${FIRST_RESIZES:-160}
AUTH=http://127.0.0.1:13000
IMAGE=http://127.0.0.1:13001

bash scripts/deps.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p auth -p image-service -p bench

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=warn
MONGO_DB="bench_$(date +%s)" PORT=13000 target/release/auth >"$work/auth.log" 2>&1 & pids+=($!)
PORT=13001 AUTH_SERVICE_URL=$AUTH target/release/image >"$work/image.log" 2>&1 & pids+=($!)
for url in $AUTH $IMAGE; do
  for _ in $(seq 100); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
token=$(curl -sf $AUTH/users/signup -d '{"name":"Bench","login":"bench_user","password":"benchmark password"}' | json token)
upload() { curl -sf "$IMAGE/images/create" -H "Authorization: Bearer $token" --data-binary "@$1" | json id; }

upload_bytes=$(target/release/bench 1600 1200 80 "$work/upload.json")
photo_bytes=$(target/release/bench 4000 3000 20 "$work/photo.json")

# wrk's summary reduced to: requests/s, p50, p99.
summarise() {
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       / requests in / {count=$1}
       END {printf "%s | %s | %s | %s | %s\n", rps, p50, p99, count, (bad == "" ? 0 : bad)}'
}

rows=()
id=$(upload "$work/upload.json")
curl -sf -o /dev/null "$IMAGE/images/$id/jpeg?Size=320"
rows+=("cached 320 px variant, GET /images/{id}/jpeg?Size=320 | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$IMAGE/images/$id/jpeg?Size=320" | summarise)")

for _ in $(seq "$FIRST_RESIZES"); do echo "/images/$(upload "$work/photo.json")/jpeg?Size=320"; done >"$work/paths"
rows+=("first resize of a 12 MP JPEG ($((photo_bytes / 1024)) KiB) to 320 px, each request a new image | $(wrk -t1 -c4 -d"$DURATION" --latency -s bench/each-once.lua "$IMAGE" -- "$work/paths" | summarise)")

rows+=("upload of a $((upload_bytes / 1024)) KiB JPEG (1600x1200), POST /images/create | $(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post.lua "$IMAGE/images/create" -- "$work/upload.json" "$token" | summarise)")

echo
echo "image benchmark on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), wrk ${DURATION} x ${CONNECTIONS} connections"
echo
echo "| scenario | requests/s | p50 | p99 | requests | non-2xx |"
echo "|---|---|---|---|---|---|"
printf '| %s |\n' "${rows[@]}"
