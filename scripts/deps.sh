#!/usr/bin/env bash
# Makes RabbitMQ (5672, management on 15672), Redis (6379) and a MongoDB-compatible server (27017,
# or the port of a loopback MONGO_URL) listen on 127.0.0.1 when they do not already. Idempotent: a
# server that already answers is left alone, and an already reachable MONGO_URL is used as is.
# Debian packages for RabbitMQ and Redis; for MongoDB (not packaged for Debian), FerretDB built
# from its Go module over a private PostgreSQL cluster from Debian's package (data in
# $DEPS_DIR/postgres, or ~postgres/deps-<port> when the postgres user cannot reach $DEPS_DIR;
# 127.0.0.1:$POSTGRES_PORT, default 5433). FERRETDB_HANDLER=sqlite starts
# FerretDB over SQLite files in $DEPS_DIR/ferretdb/data instead. The handler is chosen when
# FerretDB starts: a FerretDB already listening keeps its own.
# With WITH_HAPROXY=1 it also installs HAProxy (not started: scripts/balancer.sh runs it).
# With RABBIT_CLUSTER=1 it also starts a three-node RabbitMQ cluster beside the single node (which
# the tests keep using): nodes deps-rabbit-1..3@<host> of Debian's rabbitmq-server, AMQP on
# 5673-5675, management on 15673-15675, distribution on 25673-25675, data and logs in
# $DEPS_DIR/rabbitmq-cluster/node-<i> (or ~rabbitmq/deps-cluster/node-<i> when the rabbitmq user
# cannot reach $DEPS_DIR), joined with `rabbitmqctl join_cluster`; it prints the RABBIT_URL list
# of the three nodes on stdout and keeps it in $DEPS_DIR/rabbitmq-cluster.url. A node that is
# down is started again and rejoins.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS_DIR="${DEPS_DIR:-$ROOT/.deps}"
FERRETDB_VERSION="v1.24.2"
FERRETDB_HANDLER="${FERRETDB_HANDLER:-postgresql}"
POSTGRES_PORT="${POSTGRES_PORT:-5433}"
mkdir -p "$DEPS_DIR/log"

log() { printf '[deps] %s\n' "$*" >&2; }

listening() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name host port seconds
  local name=$1 host=$2 port=$3 seconds=$4
  for _ in $(seq "$seconds"); do
    listening "$host" "$port" && { log "$name is up on $host:$port"; return 0; }
    sleep 1
  done
  log "$name did not come up on $host:$port within ${seconds}s; logs in $DEPS_DIR/log"
  return 1
}

# Starts a server in its own session with no descriptor of ours: a daemon that inherited our
# stdout would keep whoever reads it (CI, a pipe) waiting until the daemon exits.
daemon() { # log-file command args...
  python3 - "$@" <<'PY'
import subprocess, sys
log = open(sys.argv[1], "ab")
subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                 cwd="/", start_new_session=True, close_fds=True)
PY
}

apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  log "installing ${missing[*]}"
  # Keep the packages from starting their services: we start them ourselves, the same way
  # on every machine, whether or not it has an init system.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

start_redis() {
  listening 127.0.0.1 6379 && { log "redis already listening"; return 0; }
  apt_install redis-server
  mkdir -p "$DEPS_DIR/redis"
  daemon "$DEPS_DIR/log/redis.log" redis-server --bind 127.0.0.1 --port 6379 \
    --dir "$DEPS_DIR/redis" --save "" --appendonly no
  wait_for redis 127.0.0.1 6379 30
}

start_rabbitmq() {
  if listening 127.0.0.1 5672 && listening 127.0.0.1 15672; then
    log "rabbitmq already listening"; return 0
  fi
  apt_install rabbitmq-server
  # The management plugin gives tests a fast HTTP API for per-test vhosts and for closing
  # connections from the broker side.
  rabbitmq-plugins --offline enable rabbitmq_management >/dev/null
  # Tests list and close connections through the management API, which only sees a connection
  # after a statistics tick (5 s by default).
  local conf=/etc/rabbitmq/rabbitmq.conf
  grep -qs '^collect_statistics_interval' "$conf" || echo 'collect_statistics_interval = 500' >> "$conf"
  # Only this machine may reach it: its users have development passwords, guest is an admin.
  grep -qs '^listeners.tcp.default' "$conf" || echo 'listeners.tcp.default = 127.0.0.1:5672' >> "$conf"
  grep -qs '^management.tcp.ip' "$conf" || echo 'management.tcp.ip = 127.0.0.1' >> "$conf"
  if ! listening 127.0.0.1 5672; then
    daemon "$DEPS_DIR/log/rabbitmq.log" rabbitmq-server
  fi
  wait_for rabbitmq 127.0.0.1 5672 120
  wait_for rabbitmq-management 127.0.0.1 15672 60
}

# The rabbitmq user of Debian's package runs the cluster's nodes, like its main node, and shares
# its Erlang cookie (~rabbitmq/.erlang.cookie) with them and with rabbitmqctl.
RABBIT_CLUSTER_NODES=3
as_rabbitmq=()
[ "$(id -u)" = 0 ] && as_rabbitmq=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups --)

cluster_node() { # index: its node name
  echo "deps-rabbit-$1@$(hostname -s)"
}

cluster_ctl() { # index rabbitmqctl-arguments...
  local node; node=$(cluster_node "$1"); shift
  (cd / && "${as_rabbitmq[@]}" env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl \
    -n "$node" "$@")
}

start_rabbitmq_node() { # index data-folder
  local i=$1 dir=$2
  local amqp=$((5672 + i)) management=$((15672 + i)) dist=$((25672 + i))
  mkdir -p "$dir/log"
  [ "$(id -u)" = 0 ] && chown -R rabbitmq:rabbitmq "$dir"
  # A configuration file of its own replaces /etc/rabbitmq/rabbitmq.conf for this node.
  # pause_minority: a node cut off from the other two stops serving rather than diverge.
  cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = $amqp
management.tcp.port = $management
collect_statistics_interval = 500
cluster_partition_handling = pause_minority
CONF
  daemon "$DEPS_DIR/log/rabbitmq-cluster-$i.log" "${as_rabbitmq[@]}" env HOME=/var/lib/rabbitmq \
    RABBITMQ_NODENAME="$(cluster_node "$i")" RABBITMQ_NODE_PORT="$amqp" \
    RABBITMQ_DIST_PORT="$dist" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$dir/data" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/rabbitmq.pid" /usr/lib/rabbitmq/bin/rabbitmq-server
}

start_rabbitmq_cluster() {
  local base="$DEPS_DIR/rabbitmq-cluster" i urls=()
  if [ "$(id -u)" = 0 ] && ! "${as_rabbitmq[@]}" test -x "$DEPS_DIR"; then
    base=/var/lib/rabbitmq/deps-cluster
  fi
  # Every node first: a clustered node that restarts waits for the others before it listens.
  for i in $(seq "$RABBIT_CLUSTER_NODES"); do
    if listening 127.0.0.1 $((5672 + i)); then
      log "rabbitmq cluster node $i already listening on $((5672 + i))"
    else
      start_rabbitmq_node "$i" "$base/node-$i"
    fi
  done
  for i in $(seq "$RABBIT_CLUSTER_NODES"); do
    wait_for "rabbitmq cluster node $i" 127.0.0.1 $((5672 + i)) 120
  done
  local first; first=$(cluster_node 1)
  RABBITMQCTL="${as_rabbitmq[*]} env HOME=/var/lib/rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl -n $first" \
    RABBIT_IMPERSONATOR=guest ALLOW_DEV_SECRETS=1 bash "$ROOT/deploy/rabbitmq-users.sh"
  for i in $(seq 2 "$RABBIT_CLUSTER_NODES"); do
    if cluster_ctl "$i" cluster_status --formatter json \
      | python3 -c 'import json,sys; sys.exit(sys.argv[1] not in json.load(sys.stdin)["disk_nodes"])' "$first"
    then
      continue
    fi
    log "joining $(cluster_node "$i") to $first"
    cluster_ctl "$i" stop_app >/dev/null
    cluster_ctl "$i" join_cluster "$first" >/dev/null
    cluster_ctl "$i" start_app >/dev/null
  done
  cluster_ctl 1 cluster_status --formatter json | python3 -c '
import json, sys
status = json.load(sys.stdin)
print("[deps] rabbitmq cluster: running " + ", ".join(sorted(status["running_nodes"]))
      + " of " + ", ".join(sorted(status["disk_nodes"])), file=sys.stderr)'
  for i in $(seq "$RABBIT_CLUSTER_NODES"); do
    # No credentials: each service adds its own user (RABBIT_URL in the README).
    urls+=("amqp://127.0.0.1:$((5672 + i))/%2f")
  done
  (IFS=,; echo "${urls[*]}") | tee "$DEPS_DIR/rabbitmq-cluster.url"
}

mongo_host_port() { # prints "host port" of MONGO_URL's first host
  local url=${MONGO_URL:-mongodb://localhost:27017}
  local rest=${url#*://}; rest=${rest#*@}; rest=${rest%%/*}; rest=${rest%%,*}; rest=${rest%%\?*}
  local host=${rest%%:*} port=27017
  [[ $rest == *:* ]] && port=${rest##*:}
  [ "$host" = localhost ] && host=127.0.0.1
  echo "$host $port"
}

# The FerretDB binary, built once into $DEPS_DIR/bin. Built even when a server already answers:
# the outage tests start private FerretDB servers from it.
build_ferretdb() {
  local bin="$DEPS_DIR/bin/ferretdb"
  if [ ! -x "$bin" ]; then
    log "building FerretDB $FERRETDB_VERSION from its Go module (a few minutes, once)"
    # `go install pkg@version` also asks the proxy for the module's version list (a deprecation
    # check), which the proxy refuses for FerretDB; downloading the exact version does not. It is
    # then built as its own main module with the version.txt its release tooling would write.
    local src build="$DEPS_DIR/ferretdb-build"
    src=$(cd / && go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$build" && cp -r "$src" "$build" && chmod -R u+w "$build"
    echo "$FERRETDB_VERSION" > "$build/build/version/version.txt"
    (cd "$build" && go build -o "$bin" ./cmd/ferretdb)
  fi
}

# PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user the package
# creates (setpriv, from util-linux, execs in place, so the server stays the daemon's process).
as_postgres=()
[ "$(id -u)" = 0 ] && as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# A cluster of our own (not Debian's `main` one), so that it runs the same way with or without an
# init system and never touches a PostgreSQL the machine already has.
start_postgres() {
  apt_install postgresql
  local bin data="$DEPS_DIR/postgres"
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  # The postgres user must reach its data folder. A checkout under a private home (/root is mode
  # 700) cannot hold it, so the cluster then lives in the postgres user's own home instead.
  if [ "$(id -u)" = 0 ] && ! "${as_postgres[@]}" test -x "$DEPS_DIR"; then
    data="/var/lib/postgresql/deps-$POSTGRES_PORT"
  fi
  if ! listening 127.0.0.1 "$POSTGRES_PORT"; then
    if [ ! -s "$data/PG_VERSION" ]; then
      log "creating a PostgreSQL cluster in $data"
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
      "${as_postgres[@]}" test -w "$data" || {
        log "the postgres user cannot reach $data: make its parent folders searchable (chmod o+x) or set DEPS_DIR"
        return 1
      }
      # Trust on loopback: a local test store; C locale and UTF8, as FerretDB requires.
      (cd / && "${as_postgres[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C >"$DEPS_DIR/log/postgres-initdb.log")
    fi
    # TCP on 127.0.0.1 only, no Unix socket (it would collide with the system's clusters).
    # synchronous_commit=off: a crash may forget the last commits of this test store, never
    # corrupt it, and commits stop waiting for the disk.
    daemon "$DEPS_DIR/log/postgres.log" "${as_postgres[@]}" "$bin/postgres" -D "$data" \
      -p "$POSTGRES_PORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
      -c synchronous_commit=off
    wait_for postgresql 127.0.0.1 "$POSTGRES_PORT" 60
  else
    log "postgresql already listening on 127.0.0.1:$POSTGRES_PORT"
  fi
  # FerretDB keeps each MongoDB database as a schema of this one PostgreSQL database.
  local psql=("$bin/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -XqtA)
  # Listening is not answering: after an unclean stop, the cluster first replays its log
  # ("the database system is starting up").
  local tries=0
  until "${psql[@]}" -c "SELECT 1" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -le 120 ] || { log "postgresql never accepted queries; see $DEPS_DIR/log/postgres.log"; return 1; }
    sleep 0.5
  done
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE ferretdb"
  fi
}

start_mongo() {
  build_ferretdb
  read -r host port < <(mongo_host_port)
  listening "$host" "$port" && { log "MongoDB-compatible server already answers at $host:$port"; return 0; }
  if [ "$host" != 127.0.0.1 ]; then
    log "MONGO_URL=$MONGO_URL is not reachable"; return 1
  fi
  local backend
  case "$FERRETDB_HANDLER" in
    postgresql)
      start_postgres
      backend=(--handler=postgresql
        "--postgresql-url=postgres://postgres@127.0.0.1:$POSTGRES_PORT/ferretdb") ;;
    sqlite)
      mkdir -p "$DEPS_DIR/ferretdb/data"
      backend=(--handler=sqlite "--sqlite-url=file:$DEPS_DIR/ferretdb/data/") ;;
    *) log "FERRETDB_HANDLER must be postgresql or sqlite, not '$FERRETDB_HANDLER'"; return 1 ;;
  esac
  mkdir -p "$DEPS_DIR/ferretdb/state"
  # No debug HTTP listener: every FerretDB would want its default port 8088.
  daemon "$DEPS_DIR/log/ferretdb.log" "$DEPS_DIR/bin/ferretdb" "${backend[@]}" \
    --listen-addr="127.0.0.1:$port" --debug-addr=- --telemetry=disable \
    --state-dir="$DEPS_DIR/ferretdb/state" --log-level=warn
  wait_for ferretdb 127.0.0.1 "$port" 60
}

start_redis
start_rabbitmq
# The user of every service, with the development passwords the services default to (this broker
# listens on 127.0.0.1 only), and guest allowed to publish as them (the tests do).
RABBIT_IMPERSONATOR=guest ALLOW_DEV_SECRETS=1 bash "$ROOT/deploy/rabbitmq-users.sh"
if [ "${RABBIT_CLUSTER:-}" = 1 ]; then
  start_rabbitmq_cluster
fi
start_mongo
if [ "${WITH_HAPROXY:-}" = 1 ]; then
  apt_install haproxy
fi
