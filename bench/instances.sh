#!/usr/bin/env bash
# Checkout to VALIDATED with one and with two instances of every service (behind HAProxy), at 1,000
# and at 100,000 articles: runs bench/system.sh with CHECKOUT_ONLY=1 four times and prints one
# table. SHOPPERS (default 8) buy the same article concurrently for 2 x DURATION (default 30s)
# each run, so every reservation contends for one article's stock ledger.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DURATION=${DURATION:-30s} SHOPPERS=${SHOPPERS:-8} CHECKOUT_ONLY=1

rows=()
for articles in 1000 100000; do
  for instances in 1 2; do
    echo "== $instances instance(s), $articles articles" >&2
    row=$(INSTANCES=$instances ARTICLES=$articles bash bench/system.sh | grep '^| checkout')
    rows+=("| $instances | $articles | ${row#| }")
  done
done
echo
echo "checkout to VALIDATED, $SHOPPERS shoppers for 2 x $DURATION, on $(nproc) cores; RabbitMQ, Redis, FerretDB on the same machine"
echo
echo "| instances | articles | scenario | orders/min | p50 | p99 | orders | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
