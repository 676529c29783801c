#!/usr/bin/env bash
# Runs the system without Docker on a bare Debian machine: brings up RabbitMQ, Redis and the
# MongoDB-compatible server as the tests do, builds the five services in release mode and starts
# them on their contract ports. Ctrl-C stops them cleanly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# service:port, in the order they start (auth first: the others check tokens with it).
SERVICES=(auth:3000 image:3001 catalog:3002 cart:3003 orders:3004)

bash scripts/deps.sh
names=("${SERVICES[@]%%:*}")
# The image service's package is image-service (its binary is image).
packages=("${names[@]/#image/image-service}")
cargo build --release $(printf -- '-p %s ' "${packages[@]}")

pids=()
stop() {
  echo "stopping ${names[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
trap "exit 130" INT TERM

for service in "${SERVICES[@]}"; do
  name=${service%%:*} port=${service##*:}
  PORT=$port "target/release/$name" &
  pids+=($!)
done
for service in "${SERVICES[@]}"; do
  name=${service%%:*} port=${service##*:}
  for _ in $(seq 100); do curl -sf "http://localhost:$port/health" >/dev/null && break; sleep 0.2; done
  if curl -sf "http://localhost:$port/health" >/dev/null; then
    echo "$name listening on http://localhost:$port (health: http://localhost:$port/health)"
  else
    echo "$name on http://localhost:$port is not healthy yet; see its log lines above"
  fi
done
echo "RabbitMQ management: http://localhost:15672 (guest/guest). Press Ctrl-C to stop."
wait -n "${pids[@]}"
