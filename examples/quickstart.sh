#!/usr/bin/env bash
# README's main command: builds rackboot, starts the daemon on embedded
# defaults (no config, state in /var/lib/rackboot as root, else
# $XDG_STATE_HOME/rackboot), makes the first calls through the CLI and curl,
# then keeps the daemon in the foreground until Ctrl-C (SIGINT stops it
# cleanly). No network service is started: PXE stays off until configured.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin=target/release/rackboot
if [ "$(id -u)" -eq 0 ]; then
  state=/var/lib/rackboot
else
  state=${XDG_STATE_HOME:-$HOME/.local/state}/rackboot
fi

"$bin" serve &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon' INT TERM
for _ in $(seq 300); do
  [ -S "$state/api.sock" ] && "$bin" describe-users >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "rackboot serve exited; see its messages above" >&2; exit 1; }
  sleep 0.1
done

echo
echo "== rackboot is running (pid $daemon), state in $state"
echo "== first call: rackboot describe-bm-nodes"
"$bin" describe-bm-nodes
if [ "$("$bin" describe-bm-nodes --json | grep -c '"total_count": 0')" -eq 1 ]; then
  echo "== registering the two example nodes of examples/nodes.json"
  "$bin" register-bm-nodes --file examples/nodes.json
  "$bin" describe-bm-nodes
fi
echo "== the same call with curl, as any HTTP client can make it:"
echo "curl --unix-socket $state/api.sock -d '{\"action\":\"DescribeBMNodes\",\"USER_ID\":\"admin\",\"PASSWORD\":\"<$state/admin.password>\"}' http://localhost/"
curl -sS --unix-socket "$state/api.sock" \
  -d "{\"action\":\"DescribeBMNodes\",\"USER_ID\":\"admin\",\"PASSWORD\":\"$(cat "$state/admin.password")\",\"limit\":1}" \
  http://localhost/
echo
echo "== rackboot keeps running; try '$bin --help' in another shell. Ctrl-C stops it."
wait $daemon
