#!/usr/bin/env bash
# Runs HAProxy in the foreground in front of several instances of one or more services:
#
#   scripts/balancer.sh [name:]<listen-port>=<backend>[,<backend>...] ...
#
# where a backend is `host:port` or a bare port on 127.0.0.1. For example, two instances of auth
# and of catalog behind their contract ports:
#
#   scripts/balancer.sh auth:3000=3100,3200 catalog:3002=127.0.0.1:3102,127.0.0.1:3202
#
# Each listen port is balanced round robin over its backends; a backend takes requests only while
# its GET /health answers 200 (503 while its MongoDB or RabbitMQ is down; checked every 2 s, 5 s
# allowed for an answer, out after 3 failures in a row), so a starting or failing instance is
# skipped, and a refused connection is retried on another; when no instance passes its check,
# all of them take requests again (fail open). With BALANCER_STATS_PORT set, the
# HAProxy statistics page (per-backend request counts; `;csv` appended for CSV) is served on
# 127.0.0.1 at that port. Every request is logged to stdout, naming the backend that served it.
#
# The generated configuration is written to $DEPS_DIR/balancer/ (default .deps/balancer/), named
# after the listen ports, then this script becomes the haproxy process (exec): a test or
# scripts/run.sh starts it and stops it by killing that one process. HAProxy comes from Debian's
# `haproxy` package (scripts/deps.sh installs it with WITH_HAPROXY=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS_DIR="${DEPS_DIR:-$ROOT/.deps}"

if [ $# -eq 0 ]; then
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
command -v haproxy >/dev/null || {
  echo "haproxy is not installed: run WITH_HAPROXY=1 bash scripts/deps.sh" >&2
  exit 1
}

# The configuration for the specs given as arguments, on stdout.
haproxy_config() {
  cat <<EOF
global
  log stdout format raw local0 info
  maxconn 4096

defaults
  mode http
  log global
  option httplog
  option dontlognull
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  # A refused connection (an instance just stopped) is retried on another instance.
  retries 2
  option redispatch 1
  option httpchk GET /health
  http-check expect status 200
  # /health pings MongoDB, which can take seconds on a loaded machine: a slow answer is not a
  # failed one (with every instance marked down, every request would get a 503).
  timeout check 5s
  default-server inter 2s fall 3 rise 1
EOF
  if [ -n "${BALANCER_STATS_PORT:-}" ]; then
    cat <<EOF

listen stats
  bind 127.0.0.1:$BALANCER_STATS_PORT
  stats enable
  stats uri /
  stats refresh 5s
EOF
  fi
  local spec name port backends backend i
  for spec in "$@"; do
    port=${spec%%=*}
    backends=${spec#*=}
    name=port$port
    if [[ $port == *:* ]]; then
      name=${port%%:*} port=${port##*:}
    fi
    if ! [[ $port =~ ^[0-9]+$ && -n $backends && $spec == *=* ]]; then
      echo "not a [name:]<listen-port>=<backend>[,<backend>...]: $spec" >&2
      return 2
    fi
    printf '\nfrontend %s\n  bind *:%s\n  default_backend %s\n\nbackend %s\n  balance roundrobin\n' \
      "$name" "$port" "$name" "$name"
    IFS=, read -ra backends <<<"$backends"
    for i in "${!backends[@]}"; do
      [[ ${backends[i]} == *:* ]] || backends[i]=127.0.0.1:${backends[i]}
      printf '  server %s%d %s check\n' "$name" $((i + 1)) "${backends[i]}"
    done
    # Fail open: when every check fails (a MongoDB slow to answer /health), requests still go
    # to the instances, which answer for themselves, rather than all getting HAProxy's 503.
    printf '  option allbackups\n'
    for i in "${!backends[@]}"; do
      printf '  server %s%d-unchecked %s backup\n' "$name" $((i + 1)) "${backends[i]}"
    done
  done
}

mkdir -p "$DEPS_DIR/balancer"
ports=$(for spec in "$@"; do spec=${spec%%=*}; printf '%s-' "${spec##*:}"; done)
config="$DEPS_DIR/balancer/haproxy-${ports%-}.cfg"
haproxy_config "$@" >"$config"
haproxy -c -q -f "$config"
echo "balancer: haproxy with $config" >&2
exec haproxy -db -f "$config"
