#!/usr/bin/env bash
# Runs the README's line that makes the first admin, with the real mongosh (from npm, installed
# into .deps/node-tools), against the test store. It starts auth alone (debug build, a fresh
# database), signs up `alice`, runs the line exactly as the README gives it but for the database
# name (this run's instead of `auth`), and checks that auth then answers alice as an admin, and
# lets her list the users. The line is read from the README, so the two cannot drift.
# scripts/test.sh runs it after the fuzzing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MONGOSH_VERSION=2.12.0
PORT=23010
bash scripts/deps.sh
tools=.deps/node-tools
mongosh=$tools/node_modules/.bin/mongosh
if ! "$mongosh" --version 2>/dev/null | grep -qx "$MONGOSH_VERSION"; then
  npm install --prefix "$tools" --no-audit --no-fund --silent "mongosh@$MONGOSH_VERSION"
fi
cargo build -q -p auth

line=$(grep -m1 '^mongosh mongodb://localhost:27017 --eval ' README.md) || {
  echo "the README has no 'mongosh mongodb://localhost:27017 --eval' line"
  exit 1
}
database="admin_line_$(date +%s)_auth"
line=${line/getSiblingDB(\"auth\")/getSiblingDB(\"$database\")}
line=${line/#mongosh/$mongosh --quiet}

log=$(mktemp)
MONGO_DB=$database PORT=$PORT ALLOW_DEV_SECRETS=1 RUST_LOG=warn \
  JWT_SECRET=admin-line-secret-of-at-least-32-bytes target/debug/auth >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
url=http://127.0.0.1:$PORT
for _ in $(seq 150); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
curl -sf "$url/health" >/dev/null || { echo "auth never became healthy"; cat "$log"; exit 1; }

token=$(curl -sf "$url/users/signup" -H 'Content-Type: application/json' \
  -d '{"name":"Alice","login":"alice","password":"alice password"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "running: $line"
eval "$line"
current=$(curl -sf "$url/users/current" -H "Authorization: Bearer $token" -H 'Cache-Control: no-cache')
echo "alice now: $current"
python3 -c 'import json,sys; assert "admin" in json.loads(sys.argv[1])["permissions"]' "$current" || {
  echo "the README's mongosh line did not make alice an admin"
  exit 1
}
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/users/all" -H "Authorization: Bearer $token")
[ "$status" = 200 ] || { echo "alice, made admin, got $status from /users/all"; exit 1; }
echo "the README's mongosh line makes an admin"
