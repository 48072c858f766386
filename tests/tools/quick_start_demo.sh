#!/usr/bin/env bash
# quick_start_demo: scripts/demo (the quick start's `scripts/run`, once
# built) for a second, on a config of its own instance, in a folder of its
# own; its files must hold events. Usage: quick_start_demo.sh DEMO BINARY CONFIG
set -euo pipefail
demo=$1 bin=$2 config=$3
# This run's own instance and ring (the config's name and the pid), so a
# run beside it is not touched.
instance=rr-quick-start-test-$$
dir=$(mktemp -d)
cleanup() { rm -rf "$dir" "/dev/shm/$instance" "/dev/shm/$instance.perf"; }
trap cleanup EXIT
sed "s/\"rr-quick-start-test\"/\"$instance\"/g" "$config" > "$dir/quick_start.json"
cd "$dir"
"$demo" "$bin" "$dir/quick_start.json" 1 "$instance" 50000
lines=$(cat var/log/*.ndjson | wc -l)
echo "quick_start_demo: $lines lines written under var/log/"
[ "$lines" -gt 0 ]
