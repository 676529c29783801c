#!/usr/bin/env bash
# Recovery under faults: SHOPPERS (default 16) shoppers check out for DURATION seconds (default
# 300) while a fault hits every EVERY seconds (default 8), in turn: kill -9 of cart, orders,
# catalog or auth (restarted a second later), a broker restart (rabbitmqctl stop_app/start_app)
# and a store restart (FerretDB killed and started again). Then it waits for the system to settle
# (bench's `shop faults`: every checked-out cart has one order, none is PLACED, the stock is its
# start less what VALIDATED orders hold) and prints how long that took after the last fault, what
# was lost or duplicated, and how many messages were re-sent per order (from the services' logs).
# It fails (exit 1) when a checkout was lost or duplicated, a message was dead-lettered (a question
# that expired unanswered is counted apart, by design), a request was answered 5xx other than 503,
# or the system never settled. CI runs its short form: DURATION=90 SHOPPERS=8.
# Release builds, fresh databases on the servers `scripts/deps.sh` starts, one instance of each
# service on 13000-13004; everything it started stops at the end (the broker and the store are
# left running). ARTICLES (default 1000) articles are seeded.
#
# A shopper watches its new order until it is decided, for up to WATCH_SECS (default 10), before
# buying again, as a person looks at the order page; WATCH_SECS=0 buys again at once, a load that
# outruns orders and catalog on this machine whatever the faults (then "settled" measures the
# backlog the load left, not recovery).
#
# BROKER=cluster runs the services on the local three-node RabbitMQ cluster
# (RABBIT_CLUSTER=1 scripts/deps.sh, quorum queues) and the only fault is a stopped node: node 1,
# 2, 3 in turn, each stopped for EVERY seconds and then started for EVERY seconds. It prints the
# checkouts answered while a node was down against those answered with every node up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHOPPERS=${SHOPPERS:-16}
DURATION=${DURATION:-300}
EVERY=${EVERY:-8}
ARTICLES=${ARTICLES:-1000}
BROKER=${BROKER:-single}
export WATCH_SECS=${WATCH_SECS:-10}
export AUTH=http://127.0.0.1:13000 CATALOG=http://127.0.0.1:13002
export CART=http://127.0.0.1:13003 ORDERS=http://127.0.0.1:13004

management=http://127.0.0.1:15672
if [ "$BROKER" = cluster ]; then
  management=http://127.0.0.1:15673
  RABBIT_CLUSTER=1 bash scripts/deps.sh
  RABBIT_URL=$(cat "${DEPS_DIR:-.deps}/rabbitmq-cluster.url")
  export RABBIT_URL RABBIT_QUEUE_TYPE=quorum
else
  bash scripts/deps.sh
fi
cargo build --release -q -p auth -p image-service -p catalog -p cart -p orders -p bench

work=$(mktemp -d)
declare -A pids ports=([auth]=13000 [image]=13001 [catalog]=13002 [cart]=13003 [orders]=13004)
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; echo "logs kept in $work"' EXIT
run_id="faults_$(date +%s)"
# info: the re-send and duplicate lines counted below are logged at info.
export JWT_SECRET=benchmark-secret-of-at-least-32-bytes RUST_LOG=info AUTH_SERVICE_URL=$AUTH
export AUTH_DB="${run_id}_auth"

start() { # service
  MONGO_DB="${run_id}_$1" PORT=${ports[$1]} "target/release/$1" >>"$work/$1.log" 2>&1 &
  pids[$1]=$!
}
healthy() { # url
  for _ in $(seq 150); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.2; done
  echo "$1 never became healthy"; tail "$work"/*.log; exit 1
}
for service in auth image catalog cart orders; do start "$service"; done
for service in auth image catalog cart orders; do healthy "http://127.0.0.1:${ports[$service]}"; done

echo "seeding $ARTICLES articles..."
eval "$(target/release/shop setup "$ARTICLES")"
export ARTICLE_ID

kill_service() { # service
  kill -9 "${pids[$1]}" 2>/dev/null || true
  wait "${pids[$1]}" 2>/dev/null || true
  sleep 1
  start "$1"
}
restart_broker() {
  rabbitmqctl stop_app >/dev/null && rabbitmqctl start_app >/dev/null
}
cluster_node() { # index: rabbitmqctl's arguments for it
  echo "-n deps-rabbit-$1@$(hostname -s)"
}
stop_node() { # index
  # shellcheck disable=SC2046
  rabbitmqctl $(cluster_node "$1") stop_app >/dev/null
}
start_node() { # index
  # shellcheck disable=SC2046
  rabbitmqctl $(cluster_node "$1") start_app >/dev/null
}
restart_store() {
  pkill -9 -f "${DEPS_DIR:-$PWD/.deps}/bin/ferretdb" || true
  sleep 1
  bash scripts/deps.sh >/dev/null 2>&1
}

# Messages in the dead-letter queues of vhost "/", per queue (the runs share it: the report is the
# difference between the end and now).
dead_letters() {
  curl -sf -u guest:guest "$management/api/queues/%2F?columns=name,messages" | python3 -c '
import json, sys
for queue in json.load(sys.stdin):
    if queue["name"].endswith(".dlq"):
        print(queue["name"], queue.get("messages") or 0)'
}
dead_letters >"$work/dead-before"

echo "checking out with $SHOPPERS shoppers for ${DURATION}s, a fault every ${EVERY}s..."
export CHECKOUT_TIMES="$work/checkout-times"
target/release/shop faults "$SHOPPERS" "$DURATION" >"$work/result" &
shop=$!
if [ "$BROKER" = cluster ]; then
  faults=(node-1 node-2 node-3)
else
  faults=(cart orders broker catalog store auth)
fi
deadline=$((SECONDS + DURATION))
count=0
: >"$work/node-down"
while [ $((SECONDS + EVERY)) -le "$deadline" ]; do
  sleep "$EVERY"
  fault=${faults[$((count % ${#faults[@]}))]}
  case $fault in
    node-*)
      # Down for EVERY seconds (or until the load ends), then up for the next EVERY.
      down_at=$(date +%s)
      stop_node "${fault#node-}"
      sleep "$(( EVERY < deadline - SECONDS ? EVERY : (deadline - SECONDS > 0 ? deadline - SECONDS : 0) ))"
      start_node "${fault#node-}"
      echo "$down_at $(date +%s)" >>"$work/node-down"
      ;;
    broker) restart_broker ;;
    store) restart_store ;;
    *) kill_service "$fault" ;;
  esac
  last_fault=$(date +%s)
  count=$((count + 1))
  echo "  fault $count: $fault" >&2
done
wait "$shop"
cat "$work/result"
eval "$(cat "$work/result")"

# Re-sends: cart's place_order outbox, orders' re-drive of stuck orders and re-announcements.
resent_place_order=$(grep -c "place_order re-sent" "$work/cart.log" || true)
# First sends the checkout could not make while the broker was down: not re-sends.
sent_late=$(grep -c "place_order sent late" "$work/cart.log" || true)
redriven=$(grep -c "re-publishing order_placed" "$work/orders.log" || true)
reannounced=$(grep -c "status never announced" "$work/orders.log" || true)
resent=$((resent_place_order + redriven + reannounced))
echo
echo "faults: $count (one every ${EVERY}s for ${DURATION}s: ${faults[*]})"
echo "checkouts answered closed: $CHECKOUTS, failed requests (retried): $FAILED_REQUESTS"
echo "orders: $ORDERS ($VALIDATED validated, $INVALID invalid, $PLACED placed); lost: $LOST, duplicated: $DUPLICATED"
echo "stock: started $START_STOCK, now $STOCK, validated units $VALIDATED_UNITS"
if [ "$SETTLED_AT" -gt 0 ]; then
  echo "settled $((SETTLED_AT - last_fault)) s after the last fault"
else
  echo "did not settle within 600 s of the end of the load"
fi
if [ "$BROKER" = cluster ]; then
  python3 - "$work/checkout-times" "$work/node-down" <<'PY'
import sys
times = [int(line) for line in open(sys.argv[1])]
windows = [tuple(map(int, line.split())) for line in open(sys.argv[2])]
down = sum(1 for t in times if any(a <= t < b for a, b in windows))
down_secs = sum(b - a for a, b in windows)
up_secs = (max(times) - min(times) + 1 - down_secs) if times else 0
print(f"checkouts while a node was down: {down} in {down_secs} s"
      f" ({60 * down / max(down_secs, 1):.0f}/min); with every node up: {len(times) - down}"
      f" in {up_secs} s ({60 * (len(times) - down) / max(up_secs, 1):.0f}/min)")
PY
fi
# The management API's counts lag by a few seconds.
sleep 6
dead_letters >"$work/dead-after"
python3 - "$work/dead-before" "$work/dead-after" "$management" >"$work/dead-letters" <<'PY'
import base64, json, sys, urllib.request
def counts(path):
    return {name: int(n) for name, n in (line.split() for line in open(path))}
before, after = counts(sys.argv[1]), counts(sys.argv[2])
def newest(queue, total, new):
    """The reasons of the queue's `new` newest messages (peeked: they go back to the queue)."""
    request = urllib.request.Request(
        f"{sys.argv[3]}/api/queues/%2F/{queue}/get", method="POST",
        data=json.dumps({"count": total, "ackmode": "ack_requeue_true", "encoding": "auto"}).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    messages = json.load(urllib.request.urlopen(request))[-new:]
    return [(m["properties"].get("headers") or {}).get("x-first-death-reason", "?") for m in messages]
# A message that expired was a question whose answer is only useful for a while (a checkout's
# article-data, a cart line's article-valid): by design. Anything else is a real dead letter.
for name, n in sorted(after.items()):
    new = n - before.get(name, 0)
    if new > 0:
        for reason in newest(name, n, new):
            print(f"{name} 1 {'expired-question' if reason == 'expired' else 'dead-letter'} {reason}")
PY
dead=$(awk '$3 == "dead-letter" {n += $2} END {print n + 0}' "$work/dead-letters")
expired=$(awk '$3 == "expired-question" {n += $2} END {print n + 0}' "$work/dead-letters")
echo "dead letters: $dead; expired questions: $expired; 5xx other than 503: $SERVER_ERRORS"
[ "$dead" -eq 0 ] || sort "$work/dead-letters" | uniq -c
echo "first sends made late (broker down at checkout): $sent_late place_order"
failed=0
[ "$LOST" -eq 0 ] && [ "$DUPLICATED" -eq 0 ] && [ "$SETTLED_AT" -gt 0 ] || failed=1
[ "$dead" -eq 0 ] && [ "$SERVER_ERRORS" -eq 0 ] || failed=1
echo "re-sent: $resent_place_order place_order, $redriven order_placed, $reannounced status announcements;" \
  "$(python3 -c "print(f'{$resent / max($ORDERS, 1):.2f}')") per order"
[ "$failed" -eq 0 ] || { echo "FAILED: something was lost, duplicated, dead-lettered, answered 5xx or never settled"; exit 1; }
