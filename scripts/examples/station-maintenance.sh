#!/usr/bin/env bash
# Put every EVSE of one station into maintenance, or take them all out of it (one login).
#
#   SMARTCHARGE_ADMIN_EMAIL=ops@example.com SMARTCHARGE_ADMIN_PASSWORD=... \
#       scripts/examples/station-maintenance.sh st-001 on
#
# Extra arguments go to `smartcharge admin` (e.g. --url, --cafile, --data-dir).
# SMARTCHARGE overrides the command, e.g. SMARTCHARGE="python -m gateway.cli".
set -euo pipefail

if [[ $# -lt 2 || ! $2 =~ ^(on|off)$ ]]; then
    echo "usage: $0 STATION on|off [smartcharge admin options]" >&2
    exit 2
fi
station=$1 state=$2
shift 2
read -r -a smartcharge <<< "${SMARTCHARGE:-smartcharge}"

evses=$("${smartcharge[@]}" admin status --json "$@" | python3 -c '
import json, sys
station = sys.argv[1]
fleet = json.load(sys.stdin)
print(" ".join(e["id"] for s in fleet["stations"] if s["id"] == station for e in s["evses"]))
' "$station")

if [[ -z $evses ]]; then
    echo "$0: no station $station (or it has no EVSEs)" >&2
    exit 1
fi
# shellcheck disable=SC2086  # one word per EVSE id
"${smartcharge[@]}" admin maintenance $evses "$state" "$@"
