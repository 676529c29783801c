#!/usr/bin/env python3
"""Where the time of one checkout goes, from the services' JSON logs.

Reads logs written with LOG_FORMAT=json and RUST_LOG=warn,common::http=debug,rabbit::consumer=debug
(what `STAGES=1 bash bench/system.sh` sets), one file per service instance named <service>*.log.
Every checkout is followed by its correlation id: the `POST /cart/checkout` request in cart, then
the messages it caused (`place_order` in orders, `order_placed` in catalog and cart,
catalog's answers back in orders). For each step it prints when the step started and ended,
measured from the start of the checkout request, as p50 and p99 over all checkouts, and how long
the step's own work took (the rest of a gap is time on the broker and in queues), and how
many times the step ran per checkout on average.
"""

import json
import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def instant(timestamp):
    """Seconds since the epoch of an RFC 3339 timestamp with up to nanoseconds."""
    match = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-].*)$", timestamp)
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(base + zone).timestamp() + float(fraction or 0)


def spans(line):
    """The correlation id and message kind of the spans a log line was written in."""
    fields = {}
    for span in line.get("spans", []) + [line.get("span", {})]:
        fields.update(span)
    return fields.get("correlation_id"), fields.get("kind")


def read(paths):
    """(service, step, correlation id) -> list of (start, end) of each handling."""
    steps = defaultdict(list)
    for path in paths:
        service = re.sub(r"(-\d+)?\.log$", "", Path(path).name)
        for raw in open(path, encoding="utf-8", errors="replace"):
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            message = line.get("message") or line.get("fields", {}).get("message")
            if message not in ("request answered", "message handled"):
                continue
            correlation_id, kind = spans(line)
            if not correlation_id:
                continue
            end = instant(line["timestamp"])
            start = end - int(line.get("micros", 0)) / 1e6
            step = kind if message == "message handled" else "request"
            steps[(service, step, correlation_id)].append((start, end))
    return steps


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(paths):
    steps = read(paths)
    checkouts = {cid for (service, step, cid) in steps if step == "place_order"}
    # The checkout is cart's request with that correlation id (adds have their own ids).
    origins = {}
    for cid in checkouts:
        requests = steps.get(("cart", "request", cid))
        if requests:
            origins[cid] = min(start for start, _ in requests)
    # A reply keeps its request's kind: orders handles catalog's answers as `order_placed`.
    timeline = [
        ("cart", "request", "cart: POST /cart/checkout"),
        ("catalog", "article-data", "catalog: article-data (checkout asks about the lines)"),
        ("orders", "place_order", "orders: place_order"),
        ("catalog", "order_placed", "catalog: order_placed (reserve, reply)"),
        ("orders", "order_placed", "orders: catalog's answers (VALIDATED after the last)"),
        ("cart", "order_placed", "cart: order_placed (order recorded)"),
    ]
    print(f"{len(origins)} checkouts followed, times in ms from the start of the checkout request\n")
    print("| step | starts p50 | ends p50 | ends p99 | own work p50 | own work p99 | handlings |")
    print("|---|---|---|---|---|---|---|")
    for service, step, label in timeline:
        starts, ends, work, handlings = [], [], [], []
        for cid, origin in origins.items():
            handled = steps.get((service, step, cid))
            if not handled:
                continue
            start = min(s for s, _ in handled)
            end = max(e for _, e in handled)
            starts.append((start - origin) * 1000)
            ends.append((end - origin) * 1000)
            work.append(sum(e - s for s, e in handled) * 1000 / len(handled))
            handlings.append(len(handled))
        if not starts:
            print(f"| {label} | - | - | - | - | - | - |")
            continue
        print(
            f"| {label} | {percentile(starts, 0.5):.0f} | {percentile(ends, 0.5):.0f} | "
            f"{percentile(ends, 0.99):.0f} | {percentile(work, 0.5):.1f} | "
            f"{percentile(work, 0.99):.1f} | {sum(handlings) / len(handlings):.2f} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: stages.py <service>.log ...")
    main(sys.argv[1:])
