#!/usr/bin/env bash
# README's main command: builds rackboot and runs `rackboot lab up` — a
# network namespace with a bridge, QEMU VMs behind virtual BMCs (ipmi_sim),
# rackboot serving DHCP/TFTP/HTTP on that bridge only, and a provision of
# every VM from power-off to an installed image, with progress and the boot
# timeline. Needs root (it installs the Debian packages it needs, without
# starting their services). `bash examples/lab.sh down` removes the lab.
#
# `bash examples/lab.sh debian` deploys a real Debian 12 instead of the
# small test OS: it builds the image from Debian's packages with mmdebstrap
# (tests/images/debian12.sh: ~3.5 min the first time, then cached by the
# script's hash), starts a lab of one UEFI VM and provisions it with your SSH
# key (or one made for the lab), a host name and a management address
# (~2.5 min more); then `ssh root@10.99.0.77` works from the lab's namespace.
#
# Any other arguments go to `rackboot lab up` (e.g. --nodes 4).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E bash "$0" "$@"
fi
cargo build --release --locked
# The deploy ramdisk's agent, statically linked (the ramdisk has no libc).
cargo rustc --release --locked -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static
rb=target/release/rackboot
if [ "${1:-}" = down ]; then
  exec "$rb" lab down
fi
if [ "${1:-}" != debian ]; then
  exec "$rb" lab up "$@"
fi
shift

dir=/var/lib/rackboot-lab
key=$(bash tests/images/debian12.sh --cache-key)
# The same cache as tests/debian.rs: one build per recipe on this machine.
image=/var/cache/rackboot/debian/$key/debian12.qcow2
if [ ! -e "$image" ]; then
  echo "lab: building the Debian 12 image (mmdebstrap; ~3.5 min the first time)"
  bash tests/images/debian12.sh "$image"
fi
"$rb" lab up --nodes 1 --no-provision --hardware firmware=uefi --boot-timeout 300 "$@"

# The image joins the lab's catalogue; the daemon reloads it (SIGHUP).
sum=$(sha256sum "$image" | cut -d' ' -f1)
cat >> "$dir/rackboot.toml" <<EOF
[[images]]
os_version = "debian-12"
file = "$image"
sha256 = "$sum"
first_boot_callback = true
EOF
sed -i 's/^first_boot_timeout = .*/first_boot_timeout = 1200/' "$dir/rackboot.toml"
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["daemon"])' "$dir/lab.json")
kill -HUP "$pid"
sleep 1

# Your key when you have one, else one made for the lab.
user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
pub=$(ls "$user_home"/.ssh/id_ed25519.pub "$user_home"/.ssh/id_rsa.pub 2>/dev/null | head -1 || true)
if [ -z "$pub" ]; then
  [ -e "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C rackboot-lab -f "$dir/id_ed25519"
  pub=$dir/id_ed25519.pub
fi

cli=("$rb" --state-dir "$dir/state")
node=$("${cli[@]}" --json register-bm-nodes --hostname debian01 --os-version debian-12 --cpu-arch x86_64 \
  --boot-mode uefi --ipmi-network-address 10.99.0.1 --ipmi-port 6230 --ipmi-username admin --ipmi-password password \
  --pxe-network-mac-addr 52:54:00:99:20:00 --mgmt-network-address 10.99.0.77 --mgmt-network-netmask 255.255.255.0 \
  --mgmt-network-gateway 10.99.0.1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_ids"][0])')
echo "lab: provisioning Debian 12 on $node with the key $pub"
"${cli[@]}" provision-bm-nodes "$node" --ssh-keys "$(cat "$pub")" --wait
echo "lab: Debian 12 is up: ip netns exec rackboot-lab ssh -i ${pub%.pub} root@10.99.0.77"
