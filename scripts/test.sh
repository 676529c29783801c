#!/usr/bin/env bash
# The test command the README names: brings up RabbitMQ, Redis and the MongoDB-compatible server
# when they are not already listening (and installs HAProxy, which the tests that run two instances
# of every service put in front of them), validates docker-compose.yml, then checks formatting and
# lints, runs every test of the workspace against those real servers, and fuzzes every service's
# REST API from its OpenAPI document (scripts/fuzz.sh) and runs the README's mongosh line that makes
# the first admin (scripts/check-admin-line.sh). Extra arguments go to `cargo test` (e.g.
# `-p auth`), and then those two are left out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WITH_HAPROXY=1 bash scripts/deps.sh
bash scripts/check-compose.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Every test has its own database and vhost, and most of their time is spent waiting on servers,
# so more threads than cores pay off. The services' tests declare classic queues: quorum queues,
# created and deleted with every test's vhost, made them about a fifth slower, and a single node
# replicates nothing. The rabbit crate's own tests declare quorum queues whatever this says, and
# RABBIT_QUEUE_TYPE=quorum scripts/test.sh runs everything on them.
RABBIT_QUEUE_TYPE="${RABBIT_QUEUE_TYPE:-classic}" RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}" \
  cargo test --workspace "$@"
if [ $# -eq 0 ]; then
  bash scripts/fuzz.sh
  bash scripts/check-admin-line.sh
fi
