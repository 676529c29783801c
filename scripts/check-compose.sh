#!/usr/bin/env bash
# Checks docker-compose.yml without a Docker engine: the Compose schema (docker-compose from
# Debian's package validates it offline), and that every build target it names is a stage of the
# Dockerfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
docker-compose -f docker-compose.yml config -q

targets=$(docker-compose -f docker-compose.yml config | python3 -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"].values()
print("\n".join(sorted({s["build"]["target"] for s in services if "build" in s})))')
stages=$(awk 'toupper($1) == "FROM" && toupper($3) == "AS" {print $4}' Dockerfile | sort -u)
missing=$(comm -23 <(echo "$targets") <(echo "$stages"))
if [ -n "$missing" ]; then
  echo "docker-compose.yml builds targets the Dockerfile lacks: $missing" >&2
  exit 1
fi
echo "docker-compose.yml: schema valid, build targets $(echo $targets) all in the Dockerfile"
