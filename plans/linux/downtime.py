#!/usr/bin/env python3
"""The merge downtime of a session, from its activity log (`duet log --format json` on stdin).

The applications are down from the moment ExecuteMerge starts stopping them on the Production
Side (the first `service:NAME@production` step of ExecuteMerge starts) until the last
`service:NAME@upgrade` step of ExecuteMerge has started them from the new generation. That is
duet's definition (docs/decisions.md D73, the one `duet report` shades); it does not include the
time the application itself then needs before it answers (the `before: commit` check's tries
show that).
"""

import json
import sys
from datetime import datetime


def when(entry):
    return datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def main():
    try:
        entries = json.load(sys.stdin)
    except json.JSONDecodeError as e:
        sys.exit(f"downtime: the input is not `duet log --format json` output: {e}")
    merge = [e for e in entries if (e.get("parent") or "").startswith("ExecuteMerge")]
    stops = [e for e in merge if "@production" in e["message"] and e["message"].startswith("service:")]
    starts = [e for e in merge if "@upgrade" in e["message"] and e["message"].startswith("service:")]
    first_stop = next((e for e in stops if e["severity"] == "Pending"), None)
    stopped = [e for e in stops if e["severity"] == "Success"]
    started = [e for e in starts if e["severity"] == "Success"]
    if first_stop is None or not started:
        sys.exit("downtime: no merge in this session stopped and started a service (see `duet log`)")
    down = when(first_stop)
    up = when(started[-1])
    stop_done = when(stopped[-1]) if stopped else down

    def ms(a, b):
        return round((b - a).total_seconds() * 1000)

    print(
        f"merge downtime: {ms(down, up)} ms "
        f"(stopping the Production Side's services {ms(down, stop_done)} ms, "
        f"swap and start from the new generation {ms(stop_done, up)} ms; from the activity log)"
    )


if __name__ == "__main__":
    main()
