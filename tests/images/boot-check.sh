#!/usr/bin/env bash
# Boots an image made by debian12.sh under QEMU (TCG) with a NoCloud seed and
# checks over SSH what cloud-init did. Manual proof, run as root:
#
#   tests/images/boot-check.sh bios|sb cidata|local IMAGE(.qcow2|.img|.img.gz)
#
#   bios    SeaBIOS (-machine pc)
#   sb      OVMF with Secure Boot enforced (q35, smm, Microsoft keys)
#   cidata  the seed on a vfat volume labelled CIDATA (a second disk)
#   local   the seed written as files into /var/lib/cloud/seed/nocloud/ of
#           the root file system (loop mount), as rackboot's deploy ramdisk does
#
# The VM gets an 8 GiB disk (growpart must grow the root to it), a tap on a
# bridge in a network namespace made here (10.99.7.1/24 on the bridge, the
# VM 10.99.7.50 by network-config v2 matched by MAC; with `local` also a VLAN
# 42 on a NIC named by set-name). Prints the time to the login prompt on the
# serial port, to SSH and to cloud-init done, then the checks, and exits
# non-zero if one failed. Removes its namespace, QEMU and loop device.
set -euo pipefail
MODE=${1:-} SEED=${2:-} IMG=${3:-}
case "$MODE/$SEED" in bios/cidata | bios/local | sb/cidata | sb/local) ;; *)
  echo "usage: $0 bios|sb cidata|local IMAGE" >&2; exit 2 ;; esac
[ -r "$IMG" ] || { echo "$0: no image $IMG" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (netns, tap, loop)" >&2; exit 1; }
for c in qemu-system-x86_64 qemu-img mcopy mkfs.vfat ssh ssh-keygen ip unshare; do
  command -v "$c" >/dev/null || { echo "$0: needs $c" >&2; exit 1; }
done
IMG=$(readlink -f "$IMG")
T=$(mktemp -d /tmp/boot-check.XXXXXX)
NS=bootcheck$$
MAC=52:54:00:99:07:10
VMIP=10.99.7.50
HN=bc-$MODE-$SEED
QPID=""
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill "$QPID"; sleep 1; kill -9 "$QPID" 2>/dev/null || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

# ---- the seed -------------------------------------------------------------
mkdir -p "$T/seed"
ssh-keygen -q -t ed25519 -N '' -C boot-check -f "$T/key"
printf 'instance-id: iid-%s-%s\nlocal-hostname: %s\n' "$HN" "$(date +%s)" "$HN" > "$T/seed/meta-data"
printf '#cloud-config\nhostname: %s\ndisable_root: false\nssh_authorized_keys:\n  - %s\n' \
  "$HN" "$(cat "$T/key.pub")" > "$T/seed/user-data"
if [ "$SEED" = local ]; then
  IFACE=lan0
  printf '%s\n' 'version: 2' 'ethernets:' '  lan0:' '    match:' "      macaddress: \"$MAC\"" \
    '    set-name: lan0' "    addresses: [$VMIP/24]" 'vlans:' '  lan0.42:' '    id: 42' \
    '    link: lan0' '    addresses: [10.99.42.50/24]' > "$T/seed/network-config"
else
  IFACE=""   # the kernel's name, found by MAC
  printf '%s\n' 'version: 2' 'ethernets:' '  nic0:' '    match:' "      macaddress: \"$MAC\"" \
    "    addresses: [$VMIP/24]" > "$T/seed/network-config"
fi

# ---- the disk ---------------------------------------------------------------
disks=()
if [ "$SEED" = cidata ] && [[ "$IMG" == *.qcow2 ]]; then
  qemu-img create -q -f qcow2 -b "$IMG" -F qcow2 "$T/disk.qcow2" 8G
  disks+=(-drive "file=$T/disk.qcow2,if=virtio,format=qcow2")
else
  # shellcheck disable=SC2216 # cp reads /dev/stdin: a sparse copy of the stream
  case "$IMG" in
    *.gz) gzip -dc "$IMG" | cp --sparse=always /dev/stdin "$T/disk.raw" ;;
    *) qemu-img convert -O raw "$IMG" "$T/disk.raw" ;;
  esac
  truncate -s 8G "$T/disk.raw"
  disks+=(-drive "file=$T/disk.raw,if=virtio,format=raw")
fi
if [ "$SEED" = cidata ]; then
  mkfs.vfat -n CIDATA -C "$T/cidata.img" 1024 >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -i "$T/cidata.img" "$T/seed/meta-data" "$T/seed/user-data" "$T/seed/network-config" ::/
  disks+=(-drive "file=$T/cidata.img,if=virtio,format=raw,readonly=on")
else
  # In a private mount namespace: the mount dies with it, whatever happens.
  # shellcheck disable=SC2016 # expanded by the inner bash
  unshare --mount --propagation private bash -c '
    set -e
    L=$(losetup -f --show -P "$1"); trap "losetup -d $L" EXIT
    [ -b "${L}p3" ] || partx -a "$L"
    mkdir -p "$2/root"; mount "${L}p3" "$2/root"
    install -d -m 0755 "$2/root/var/lib/cloud/seed/nocloud"
    install -m 0644 "$2/seed/meta-data" "$2/seed/user-data" "$2/seed/network-config" \
      "$2/root/var/lib/cloud/seed/nocloud/"
    umount "$2/root"' _ "$T/disk.raw" "$T"
fi

fw=(-machine pc)
if [ "$MODE" = sb ]; then
  cp /usr/share/OVMF/OVMF_VARS_4M.ms.fd "$T/vars.fd"
  # shellcheck disable=SC2054 # QEMU's option values have commas
  fw=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on
    -drive if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd,readonly=on
    -drive "if=pflash,format=raw,unit=1,file=$T/vars.fd")
fi

# ---- the network and the VM ---------------------------------------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add name br0 type bridge stp_state 0 forward_delay 0
ip -n "$NS" addr add 10.99.7.1/24 dev br0
ip -n "$NS" link set br0 up
ip netns exec "$NS" ip tuntap add dev tap0 mode tap
ip -n "$NS" link set tap0 master br0 up

echo "boot-check: $MODE/$SEED $IMG (load average $(cut -d' ' -f1-3 /proc/loadavg))"
t0=$(date +%s%N)
el() { echo $(( ($(date +%s%N) - t0) / 100000000 )) | sed -E 's/(.)$/.\1/; s/^\./0./'; }
ip netns exec "$NS" nice -n 10 qemu-system-x86_64 -accel tcg -m 1024 -smp 2 "${fw[@]}" \
  -display none -monitor none -serial "file:$T/serial.log" \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device "virtio-net-pci,netdev=n0,mac=$MAC" \
  "${disks[@]}" &
QPID=$!
SSH=(ip netns exec "$NS" ssh -i "$T/key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o BatchMode=yes -o ConnectTimeout=15 -o ServerAliveInterval=5 -o LogLevel=ERROR)
t_login="" t_ssh="" t_ci="" st=""
deadline=$((SECONDS + 900))
while [ -z "$t_ci" ]; do
  kill -0 "$QPID" 2>/dev/null || { echo "boot-check: QEMU exited"; tail -c 3000 "$T/serial.log"; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "boot-check: no cloud-init result in 900 s"; tail -c 3000 "$T/serial.log"; exit 1; }
  if [ -z "$t_login" ] && grep -aq "login:" "$T/serial.log" 2>/dev/null; then t_login=$(el); fi
  if [ -z "$t_ssh" ]; then
    if ip netns exec "$NS" timeout 3 bash -c "exec 3<>/dev/tcp/$VMIP/22" 2>/dev/null \
      && "${SSH[@]}" "root@$VMIP" true 2>/dev/null; then t_ssh=$(el); fi
  else
    st=$("${SSH[@]}" "root@$VMIP" cloud-init status 2>/dev/null || true)
    case "$st" in *done* | *error*) t_ci=$(el) ;; esac
  fi
  sleep 0.5
done
echo "boot-check: login prompt ${t_login:-(not seen)} s, SSH ${t_ssh} s, cloud-init finished ${t_ci} s after QEMU started"

# ---- checks -------------------------------------------------------------------
pass=0 fail=0
check() { # check NAME EXPECTED-REGEX COMMAND (run as root in the VM)
  local out
  out=$("${SSH[@]}" "root@$VMIP" "$3" 2>&1 || true)
  if grep -Eq -- "$2" <<<"$out"; then pass=$((pass + 1)); echo "ok   $1: $(head -1 <<<"$out")"
  else fail=$((fail + 1)); echo "FAIL $1: wanted /$2/, got:"; echo "${out//$'\n'/$'\n'     }"; fi
}
check "cloud-init done" '^status: done' 'cloud-init status'
check "no cloud-init errors" '"errors": \[\]' 'cat /run/cloud-init/result.json'
check "datasource" "DataSourceNoCloud \[seed=$([ "$SEED" = local ] && echo /var/lib/cloud/seed/nocloud || echo /dev/vd.)\]" \
  'cloud-init status --long | grep -i datasource || grep -h datasource /run/cloud-init/result.json'
check "hostname" "^$HN\$" 'hostname'
check "static address" " $VMIP/24" "ip -4 -o addr show ${IFACE}"
[ "$SEED" = local ] && check "VLAN 42" "vlan protocol 802.1Q id 42" 'ip -d link show lan0.42'
check "root grown to the disk" '^[7-8]\.[0-9]G$' "lsblk -no SIZE \$(findmnt -no SOURCE /) | tr -d ' '"
check "machine-id made at boot" '^33 ' 'wc -c /etc/machine-id'
check "SSH host keys made at boot" 'ssh_host_ed25519_key.pub' 'ls /etc/ssh/'
check "root password locked" '^root L' 'passwd -S root'
if "${SSH[@]}" "debian@$VMIP" id 2>/dev/null | grep -q '^uid=1000(debian)'; then
  pass=$((pass + 1)); echo "ok   the default user debian logs in with the key"
else fail=$((fail + 1)); echo "FAIL the default user debian logs in with the key"; fi
if [ "$MODE" = sb ]; then
  check "Secure Boot enabled" 'Secure boot enabled' 'dmesg | grep -i "secure boot"'
  check "SecureBoot variable" ' 1$' 'od -An -t u1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'
else
  check "booted by BIOS" '^bios$' '[ -d /sys/firmware/efi ] && echo efi || echo bios'
fi
"${SSH[@]}" "root@$VMIP" 'systemctl poweroff' 2>/dev/null || true
for _ in $(seq 120); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.5; done
echo "boot-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
