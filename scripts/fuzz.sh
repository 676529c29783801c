#!/usr/bin/env bash
# Fuzzes the REST API of every service from its own OpenAPI document (served at /openapi.json)
# with schemathesis: it generates valid and invalid requests for every operation, sends them to
# the running service, and fails on any 5xx, any status the document does not list for the
# operation, and any response whose body, content type or headers do not match the document.
#
# It starts the five services (debug build, fresh databases, ports 23000-23004), seeds a little
# data with bench's `shop setup` and one image upload, and runs schemathesis against each service
# three times: with an admin's token (which every protected operation takes) and random ids; with
# the ids of the seeded article, image and order and a token of their owner, so that the 200s are
# checked too; and without any token. Auth goes last among the admin runs, since its stateful
# phase revokes and disables the users it finds; signout is fuzzed with a token of its own, since
# it revokes the token it is called with. Last, headless Chromium (Debian's, installed when
# missing) opens each service's Swagger UI at /docs and must find every operation of the document
# rendered. scripts/test.sh runs it after the tests. FUZZ_EXAMPLES (default 60) sets the examples per operation and phase;
# FUZZ_SEED makes a run repeatable. Reports go to $FUZZ_REPORTS (default .deps/fuzz).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${FUZZ_EXAMPLES:-60}
REPORTS=${FUZZ_REPORTS:-.deps/fuzz}
export AUTH=http://127.0.0.1:23000 IMAGE=http://127.0.0.1:23001 CATALOG=http://127.0.0.1:23002
export CART=http://127.0.0.1:23003 ORDERS=http://127.0.0.1:23004

bash scripts/deps.sh
venv=.deps/venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi
cargo build -q -p auth -p image-service -p catalog -p cart -p orders -p bench

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
run_id="fuzz_$(date +%s)"
export JWT_SECRET=fuzzing-secret-of-at-least-32-bytes-long RUST_LOG=warn AUTH_SERVICE_URL=$AUTH
export ALLOW_DEV_SECRETS=1 AUTH_DB="${run_id}_auth"
port=23000
for service in auth image catalog cart orders; do
  MONGO_DB="${run_id}_$service" PORT=$port "target/debug/$service" >"$work/$service.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done
for url in $AUTH $IMAGE $CATALOG $CART $ORDERS; do
  for _ in $(seq 150); do curl -sf "$url/health" >/dev/null && break; sleep 0.2; done
  curl -sf "$url/health" >/dev/null || { echo "$url never became healthy"; tail "$work"/*.log; exit 1; }
done
eval "$(target/debug/shop setup 20)"
target/debug/bench 64 48 8 "$work/upload.json" >/dev/null
IMAGE_ID=$(curl -sf "$IMAGE/images/create" -H "Authorization: Bearer $SHOPPER_TOKEN" \
  --data-binary "@$work/upload.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

mkdir -p "$REPORTS"
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
failed=()
fuzz() { # name url [schemathesis options...]; FUZZ_PARAMETERS: TOML pairs binding parameters
  local name=$1 url=$2 config=$work/$1.toml
  shift 2
  echo "== $name"
  printf '[parameters]\n%s\n' "${FUZZ_PARAMETERS:-}" >"$config"
  if ! "$venv/bin/schemathesis" --config-file "$config" run "$url/openapi.json" --checks "$checks" \
    --max-examples "$EXAMPLES" --workers 1 --no-color --suppress-health-check all \
    --generation-database :memory: \
    ${FUZZ_SEED:+--seed "$FUZZ_SEED"} --report junit --report-dir "$REPORTS" \
    --report-junit-path "$REPORTS/$name.xml" "$@"; then
    failed+=("$name")
  fi
}
bearer() { echo "Authorization: Bearer $1"; }
for service in image catalog cart orders; do
  url_var=${service^^}
  fuzz "$service" "${!url_var}" -H "$(bearer "$ADMIN_TOKEN")"
done
FUZZ_PARAMETERS="\"path.id\" = \"$IMAGE_ID\"" \
  fuzz image-seeded "$IMAGE" -H "$(bearer "$SHOPPER_TOKEN")"
FUZZ_PARAMETERS="\"path.id\" = \"$ARTICLE_ID\"" \
  fuzz catalog-seeded "$CATALOG" -H "$(bearer "$ADMIN_TOKEN")"
FUZZ_PARAMETERS="\"path.articleId\" = \"$ARTICLE_ID\"" \
  fuzz cart-seeded "$CART" -H "$(bearer "$SHOPPER_TOKEN")"
FUZZ_PARAMETERS="\"path.orderId\" = \"$ORDER_ID\"" \
  fuzz orders-seeded "$ORDERS" -H "$(bearer "$READER_TOKEN")"
fuzz auth "$AUTH" -H "$(bearer "$ADMIN_TOKEN")" --exclude-path /users/signout
for service in auth image catalog cart orders; do
  url_var=${service^^}
  fuzz "$service-anonymous" "${!url_var}"
done
signout_token=$(curl -sf "$AUTH/users/signup" -H 'Content-Type: application/json' \
  -d '{"name":"Leaving","login":"fuzz-signout","password":"fuzzing password"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
fuzz auth-signout "$AUTH" --include-path /users/signout -H "$(bearer "$signout_token")"

# Swagger UI as a person sees it: every operation of the document rendered on /docs.
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
for service in auth image catalog cart orders; do
  url_var=${service^^}
  url=${!url_var}
  documented=$(curl -sf "$url/openapi.json" | python3 -c '
import json, sys
paths = json.load(sys.stdin)["paths"].values()
print(sum(1 for item in paths for method in item if method in ("get", "post", "put", "delete")))')
  rendered=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=10000 \
    --dump-dom "$url/docs/" 2>/dev/null | grep -o 'class="opblock opblock-' | wc -l)
  echo "== $service: Swagger UI renders $rendered of $documented operations"
  [ "$rendered" -eq "$documented" ] || failed+=("$service Swagger UI")
done

grep -h -i -E "panicked|internal error" "$work"/*.log && failed+=("service logs")
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]} (reports in $REPORTS)"
  exit 1
fi
echo "fuzzing passed: every service answered as its OpenAPI document says"
