#!/usr/bin/env bash
# Print the fleet's status table every N seconds (default 5) until Ctrl-C. No login needed.
#
#   scripts/examples/watch-fleet.sh 10 --url https://127.0.0.1:8443
#
# Extra arguments go to `smartcharge admin status`.
set -euo pipefail

interval=${1:-5}
shift || true
read -r -a smartcharge <<< "${SMARTCHARGE:-smartcharge}"

while true; do
    clear 2>/dev/null || true
    date '+%Y-%m-%d %H:%M:%S'
    "${smartcharge[@]}" admin status "$@" || echo "(status failed; retrying in ${interval} s)"
    sleep "$interval"
done
