#!/usr/bin/env bash
# Checks docker-compose.yml and its docker-compose.scale.yml override without a Docker engine: the
# Compose schema (docker-compose from Debian's package validates it offline), that the Dockerfile
# builds every service they name, that any number of each service can run (no published port, no
# fixed container name), that the balancer's HAProxy configuration is valid and balances
# every service on its PORT, and that every service's RABBIT_URL lists exactly the RabbitMQ nodes
# (those of the cluster profile included).
# Then what they expose (scripts/check-compose-exposure.py, on the configurations rendered with and
# without the cluster profile and the scale override, and with BIND_ADDRESS=0.0.0.0): no port of
# MongoDB, Redis or RabbitMQ on anything but 127.0.0.1, no secret anyone knows, every secret
# wired from .env; and that compose refuses to start without the secrets, naming
# scripts/secrets.sh. The secrets are a throwaway .env that scripts/secrets.sh writes into a
# temporary file: a real .env is neither needed nor read, nor is the caller's environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash scripts/secrets.sh "$work/.env" >/dev/null
# docker-compose with the throwaway .env and nothing of the caller's environment (an exported
# JWT_SECRET or BIND_ADDRESS would change what is rendered); extra VAR=value before the arguments.
compose() {
  local vars=()
  while [[ ${1:-} == *=* ]]; do vars+=("$1"); shift; done
  env -i PATH="$PATH" HOME="$HOME" "${vars[@]}" docker-compose --env-file "$work/.env" "$@"
}
compose -f docker-compose.yml config >"$work/default.yml"
compose -f docker-compose.yml -f docker-compose.scale.yml config >"$work/scale.yml"
compose --profile cluster -f docker-compose.yml config >"$work/cluster.yml"
compose --profile cluster -f docker-compose.yml -f docker-compose.scale.yml config \
  >"$work/cluster-scale.yml"
compose BIND_ADDRESS=0.0.0.0 -f docker-compose.yml config >"$work/bind-override.yml"
haproxy -c -q -f deploy/haproxy-compose.cfg

services=$(python3 -c '
import re, sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
balancer = open("deploy/haproxy-compose.cfg").read()
built = {name: s for name, s in services.items() if "build" in s}
# The broker nodes, not the one-shot that makes their users (rabbitmq-users).
nodes = {s.get("hostname", name) for name, s in services.items()
         if s.get("image", "").startswith("rabbitmq:") and "entrypoint" not in s}
for name, s in built.items():
    for key in ("ports", "container_name"):
        if key in s:
            sys.exit(f"{name} has {key}: a second instance of it could not start")
    if s.get("deploy", {}).get("replicas", 1) < 2:
        sys.exit(f"docker-compose.scale.yml runs one {name} only")
    listed = {url.split("@")[-1].split("/")[0].split(":")[0]
              for url in s["environment"]["RABBIT_URL"].split(",")}
    if listed != nodes:
        sys.exit(f"{name}: RABBIT_URL names {sorted(listed)}, the RabbitMQ nodes are {sorted(nodes)}")
    port = s["environment"]["PORT"]
    if not re.search(rf"server-template \S+ \d+ {name}:{port}\b", balancer):
        sys.exit(f"deploy/haproxy-compose.cfg does not balance {name} on port {port}")
print(" ".join(sorted(s["build"]["args"]["SERVICE"] for s in built.values())))' <"$work/cluster-scale.yml")
for service in $services; do
  if ! grep -q "target/release/$service\b" Dockerfile; then
    echo "docker-compose.yml builds $service, which the Dockerfile does not build" >&2
    exit 1
  fi
done

python3 scripts/check-compose-exposure.py "$work/.env" "$work/default.yml" "$work/scale.yml" \
  "$work/cluster.yml" "$work/cluster-scale.yml" --bind-override "$work/bind-override.yml"
# Without the secrets compose stops, and says what to run.
: >"$work/empty.env"
if refusal=$(env -i PATH="$PATH" HOME="$HOME" docker-compose --env-file "$work/empty.env" \
  -f docker-compose.yml config -q 2>&1); then
  echo "docker-compose.yml renders without the secrets of scripts/secrets.sh" >&2
  exit 1
elif ! grep -q "run bash scripts/secrets.sh" <<<"$refusal"; then
  echo "docker-compose.yml without secrets fails without naming scripts/secrets.sh:" >&2
  echo "$refusal" >&2
  exit 1
fi

echo "docker-compose.yml and docker-compose.scale.yml: schema valid; the Dockerfile builds $services;"
echo "each runs as several instances behind the balancer (deploy/haproxy-compose.cfg valid);"
echo "every RABBIT_URL lists the RabbitMQ nodes, those of the cluster profile included;"
echo "MongoDB, Redis and RabbitMQ on 127.0.0.1 only, 3000-3004 too unless BIND_ADDRESS says otherwise;"
echo "no secret anyone knows, every one from .env (scripts/secrets.sh), none with a default"
