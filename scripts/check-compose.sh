#!/usr/bin/env bash
# Checks docker-compose.yml without a Docker engine: the Compose schema (docker-compose from
# Debian's package validates it offline), and that the Dockerfile builds every service it names.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
docker-compose -f docker-compose.yml config -q

services=$(docker-compose -f docker-compose.yml config | python3 -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"].values()
print(" ".join(sorted(s["build"]["args"]["SERVICE"] for s in services if "build" in s)))')
for service in $services; do
  if ! grep -q "target/release/$service\b" Dockerfile; then
    echo "docker-compose.yml builds $service, which the Dockerfile does not build" >&2
    exit 1
  fi
done
echo "docker-compose.yml: schema valid; the Dockerfile builds $services"
