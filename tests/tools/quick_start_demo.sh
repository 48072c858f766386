#!/usr/bin/env bash
# quick_start_demo: scripts/demo (the quick start's `scripts/run`, once
# built) for a second, on a config of its own instance, in a folder of its
# own; its files must hold events. Usage: quick_start_demo.sh DEMO BINARY CONFIG
set -euo pipefail
demo=$1 bin=$2 config=$3
instance=rr-quick-start-test
dir=$(mktemp -d)
cleanup() { rm -rf "$dir" "/dev/shm/$instance" "/dev/shm/$instance.perf"; }
trap cleanup EXIT
rm -f "/dev/shm/$instance" "/dev/shm/$instance.perf"
cd "$dir"
"$demo" "$bin" "$config" 1 "$instance" 50000
lines=$(cat var/log/*.ndjson | wc -l)
echo "quick_start_demo: $lines lines written under var/log/"
[ "$lines" -gt 0 ]
