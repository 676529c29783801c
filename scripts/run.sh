#!/usr/bin/env bash
# Runs the system without Docker on a bare Debian machine: brings up RabbitMQ, Redis and the
# MongoDB-compatible server as the tests do, builds the five services in release mode and starts
# them on their contract ports. Ctrl-C stops them cleanly.
#
# INSTANCES=<n> (1 to 9, default 1) starts n instances of every service instead, instance i of
# the service whose contract port is p listening on p + 100*i (3100-3104 for the first instance,
# 3200-3204 for the second, ...), and HAProxy (scripts/balancer.sh) on the contract ports
# 3000-3004 in front of them: round robin over the instances whose /health answers 200. Clients
# keep using 3000-3004. Its statistics page (requests per instance) is on
# http://localhost:$BALANCER_STATS_PORT (default 8404) and every request it forwards is logged to
# .deps/log/haproxy.log. Each instance is configured by its environment alone: two instances of a
# service differ only in PORT.
#
# RABBIT_CLUSTER=1 connects the services to a local three-node RabbitMQ cluster instead of the
# single node (scripts/deps.sh starts it; RABBIT_URL becomes the list of its nodes).
#
# Secrets (docs/security.md): the servers scripts/deps.sh starts are this machine's own, with
# development logins (guest for RabbitMQ, no password for MongoDB and Redis), which the services
# accept for local servers. The script sets ALLOW_DEV_SECRETS=1, so that the services start even
# with a secret anyone knows (one you exported, e.g. a JWT_SECRET copied from old docs), and says
# so. Auth signs its tokens with JWT_SECRET if you export one, else with a random one made on the
# first run and kept in .deps/jwt-secret (the services listen on every interface, so a published
# secret would let anyone on the network forge tokens).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# service:port, in the order they start (auth first: the others check tokens with it).
SERVICES=(auth:3000 image:3001 catalog:3002 cart:3003 orders:3004)
INSTANCES=${INSTANCES:-1}
if ! [[ $INSTANCES =~ ^[1-9]$ ]]; then
  echo "INSTANCES must be a number from 1 to 9, not '$INSTANCES'" >&2
  exit 2
fi
BALANCER_STATS_PORT=${BALANCER_STATS_PORT:-8404}

if [ "$INSTANCES" -gt 1 ]; then
  WITH_HAPROXY=1 bash scripts/deps.sh
else
  bash scripts/deps.sh
fi
if [ "${RABBIT_CLUSTER:-}" = 1 ]; then
  RABBIT_URL=$(cat "${DEPS_DIR:-.deps}/rabbitmq-cluster.url")
  export RABBIT_URL
  echo "RabbitMQ cluster: RABBIT_URL=$RABBIT_URL"
fi
export ALLOW_DEV_SECRETS=1
echo "ALLOW_DEV_SECRETS=1: the services start even with development secrets; run them only on a"
echo "machine whose network you trust (docs/security.md)"
if [ -z "${JWT_SECRET:-}" ]; then
  jwt_secret_file=${DEPS_DIR:-.deps}/jwt-secret
  if [ ! -s "$jwt_secret_file" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$jwt_secret_file")
  fi
  JWT_SECRET=$(cat "$jwt_secret_file")
  export JWT_SECRET
  echo "auth signs tokens with the random JWT_SECRET kept in $jwt_secret_file"
fi
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

healthy() { # port
  for _ in $(seq 100); do curl -sf "http://localhost:$1/health" >/dev/null && return 0; sleep 0.2; done
  curl -sf "http://localhost:$1/health" >/dev/null
}

if [ "$INSTANCES" -eq 1 ]; then
  for service in "${SERVICES[@]}"; do
    name=${service%%:*} port=${service##*:}
    PORT=$port "target/release/$name" &
    pids+=($!)
  done
else
  balanced=()
  for service in "${SERVICES[@]}"; do
    name=${service%%:*} port=${service##*:}
    ports=()
    for i in $(seq "$INSTANCES"); do
      ports+=($((port + 100 * i)))
      PORT=${ports[-1]} "target/release/$name" &
      pids+=($!)
    done
    balanced+=("$name:$port=$(IFS=,; echo "${ports[*]}")")
  done
  mkdir -p .deps/log
  BALANCER_STATS_PORT=$BALANCER_STATS_PORT bash scripts/balancer.sh "${balanced[@]}" \
    >>.deps/log/haproxy.log 2>&1 &
  pids+=($!)
  echo "HAProxy on 3000-3004 in front of $INSTANCES instances of each service:"
  for spec in "${balanced[@]}"; do
    echo "  ${spec%%=*} -> ${spec#*=}"
  done
fi
for service in "${SERVICES[@]}"; do
  name=${service%%:*} port=${service##*:}
  if [ "$INSTANCES" -gt 1 ]; then
    for i in $(seq "$INSTANCES"); do
      healthy $((port + 100 * i)) ||
        echo "$name instance $i on port $((port + 100 * i)) is not healthy yet; see its log lines above"
    done
  fi
  if healthy "$port"; then
    echo "$name listening on http://localhost:$port (health: http://localhost:$port/health)"
  else
    echo "$name on http://localhost:$port is not healthy yet; see its log lines above"
  fi
done
if [ "$INSTANCES" -gt 1 ]; then
  echo "HAProxy statistics: http://localhost:$BALANCER_STATS_PORT (log: .deps/log/haproxy.log)"
fi
if [ "${RABBIT_CLUSTER:-}" = 1 ]; then
  echo "RabbitMQ management: http://localhost:15673 ... 15675 (guest/guest). Press Ctrl-C to stop."
else
  echo "RabbitMQ management: http://localhost:15672 (guest/guest). Press Ctrl-C to stop."
fi
wait -n "${pids[@]}"
