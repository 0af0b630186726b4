#!/usr/bin/env bash
# How many EVSEs are in each status, and the power being drawn: one line, for logs or cron.
#
#   scripts/examples/status-summary.sh
#   2024-05-01 12:00:00 Available=14 Charging=5 Unavailable=1 power=61.2kW
#
# Extra arguments go to `smartcharge admin status`.
set -euo pipefail
read -r -a smartcharge <<< "${SMARTCHARGE:-smartcharge}"

"${smartcharge[@]}" admin status --json "$@" | python3 -c '
import collections, json, sys, time
evses = [e for s in json.load(sys.stdin)["stations"] for e in s["evses"]]
counts = collections.Counter(e["status"] for e in evses)
power_kw = sum(e["power_w"] for e in evses) / 1000
parts = [f"{status}={n}" for status, n in sorted(counts.items())]
print(time.strftime("%Y-%m-%d %H:%M:%S"), *parts, f"power={power_kw:.1f}kW")
'
