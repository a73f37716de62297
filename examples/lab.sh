#!/usr/bin/env bash
# README's main command: builds rackboot and runs `rackboot lab up` — a
# network namespace with a bridge, QEMU VMs behind virtual BMCs (ipmi_sim),
# rackboot serving DHCP/TFTP/HTTP on that bridge only, and a provision of
# every VM from power-off to an installed image, with progress and the boot
# timeline. Needs root (it installs the Debian packages it needs, without
# starting their services). `bash examples/lab.sh down` removes the lab.
# Any other arguments go to `rackboot lab up` (e.g. --nodes 4).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E bash "$0" "$@"
fi
cargo build --release --locked
if [ "${1:-}" = down ]; then
  exec target/release/rackboot lab down
fi
exec target/release/rackboot lab up "$@"
