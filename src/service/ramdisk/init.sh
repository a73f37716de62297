#!/bin/busybox sh
# rackboot deploy ramdisk: brings up the network by DHCP, reports the
# machine's inventory, and in deploy mode writes the image to the OS disk in
# 4 MiB ranges (progress after each), checks its SHA-256, and reports done
# (or failed, with the reason). rackboot then switches the boot device to
# disk and power-cycles the machine through its BMC.
# Kernel arguments: rackboot.mode (deploy|inspect|firstboot),
# rackboot.callback, rackboot.image, rackboot.size, rackboot.sha256,
# rackboot.disk, rackboot.format (raw | gz: streamed through gunzip, the
# checksum taken over the compressed bytes as served, progress from the
# disk's written-sector counter), rackboot.firstboot (1: after writing the image, leave the
# callback URL in sector 1 of the disk, where the lab's test image — this
# same ramdisk booted by syslinux in mode "firstboot" — finds it and posts
# `booted`).
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "rackboot-ramdisk: starting"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk e1000; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
MODE=inspect CB= IMG= SIZE=0 SUM= DISK= FIRSTBOOT=0 FORMAT=raw
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    rackboot.mode=*) MODE=${arg#*=} ;;
    rackboot.callback=*) CB=${arg#*=} ;;
    rackboot.image=*) IMG=${arg#*=} ;;
    rackboot.size=*) SIZE=${arg#*=} ;;
    rackboot.sha256=*) SUM=${arg#*=} ;;
    rackboot.disk=*) DISK=${arg#*=} ;;
    rackboot.firstboot=*) FIRSTBOOT=${arg#*=} ;;
    rackboot.format=*) FORMAT=${arg#*=} ;;
  esac
done
halt_here() { echo "rackboot-ramdisk: $1"; while true; do sleep 3600; done; }
# busybox 1.35's `wget -T` segfaults: bound every transfer with `timeout`.
post() { timeout 30 wget -q -O /dev/null --post-data "$2" "$CB/$1" || echo "rackboot-ramdisk: could not report $1"; }
fail() { echo "rackboot-ramdisk: failed: $1"; post failed "message=$1"; halt_here "stopped"; }
if [ "$MODE" = firstboot ]; then
  CB=$(dd if="/dev/$DISK" bs=512 skip=1 count=1 2>/dev/null | tr -d '\000' | sed -n 's/^rackboot-firstboot //p')
  [ -n "$CB" ] || halt_here "first boot: no callback URL in sector 1 of /dev/$DISK"
fi
[ -n "$CB" ] || halt_here "no rackboot.callback on the kernel command line"

# The network: every interface tries DHCP until one gets an address.
sleep 1
up=
for try in 1 2 3 4 5; do
  for n in /sys/class/net/*; do
    i=${n##*/}; [ "$i" = lo ] && continue
    ip link set "$i" up
    if udhcpc -i "$i" -s /udhcpc.sh -q -n -t 4 -T 2 >/dev/null 2>&1; then up=$i; break 2; fi
  done
done
[ -n "$up" ] || halt_here "no DHCP answer on any interface"
echo "rackboot-ramdisk: network up on $up"

clean() { tr -d '"\\\n\r' < "$1" 2>/dev/null; }
inventory() {
  printf '{"system":{"vendor":"%s","product":"%s","serial":"%s"},' \
    "$(clean /sys/class/dmi/id/sys_vendor)" "$(clean /sys/class/dmi/id/product_name)" "$(clean /sys/class/dmi/id/product_serial)"
  printf '"cpu":{"count":%s},' "$(grep -c ^processor /proc/cpuinfo)"
  printf '"memory":{"total_kib":%s},' "$(awk '/^MemTotal/{print $2}' /proc/meminfo)"
  printf '"disks":['
  sep=
  for b in /sys/block/*; do
    d=${b##*/}
    case "$d" in loop*|ram*|sr*|fd*) continue ;; esac
    printf '%s{"name":"%s","size_bytes":%s}' "$sep" "$d" "$(( $(cat $b/size) * 512 ))"; sep=,
  done
  printf '],"nics":['
  sep=
  for n in /sys/class/net/*; do
    i=${n##*/}; [ "$i" = lo ] && continue
    printf '%s{"name":"%s","mac":"%s"}' "$sep" "$i" "$(cat $n/address)"; sep=,
  done
  printf ']}'
}
if [ "$MODE" = firstboot ]; then
  post booted ""
  halt_here "booted from disk; rackboot was told"
fi
post inventory "$(inventory)"
[ "$MODE" = deploy ] || { post done ""; halt_here "inventory sent"; }

[ -n "$DISK" ] && [ -b "/dev/$DISK" ] || fail "no disk /dev/$DISK on this machine"
[ -n "$IMG" ] || fail "no image URL"
CHUNK=4194304
if [ "$FORMAT" = gz ]; then
  # One stream: download | (checksum of what came) | gunzip | disk.
  mkfifo /tmp/served
  sha256sum < /tmp/served > /tmp/served.sum &
  summer=$!
  before=$(awk '{print $7}' "/sys/block/$DISK/stat")
  ( timeout 3600 wget -q -O - "$IMG" | tee /tmp/served | gunzip -c | dd of="/dev/$DISK" bs=$CHUNK 2>/dev/null; echo $? > /tmp/written ) &
  writer=$!
  while kill -0 $writer 2>/dev/null; do
    sleep 1
    done_bytes=$(( ($(awk '{print $7}' "/sys/block/$DISK/stat") - before) * 512 ))
    [ "$SIZE" -gt 0 ] && post progress "bytes=$done_bytes&total=$SIZE"
  done
  wait $summer
  [ "$(cat /tmp/written)" = 0 ] || fail "could not download, gunzip or write the image"
  if [ -n "$SUM" ]; then
    got=$(cut -d' ' -f1 /tmp/served.sum)
    [ "$got" = "$SUM" ] || fail "sha256 mismatch: the image served has $got"
  fi
  SUM=
  [ "$SIZE" -gt 0 ] && post progress "bytes=$SIZE&total=$SIZE"
elif [ "$SIZE" -gt 0 ] 2>/dev/null; then
  i=0; off=0
  while [ "$off" -lt "$SIZE" ]; do
    end=$(( off + CHUNK - 1 )); [ "$end" -ge "$SIZE" ] && end=$(( SIZE - 1 ))
    timeout 300 wget -q -O /tmp/chunk "$IMG?offset=$off&length=$(( end - off + 1 ))" || fail "could not download the image at byte $off"
    [ "$(wc -c < /tmp/chunk)" -eq $(( end - off + 1 )) ] || fail "short read from the image server at byte $off"
    dd if=/tmp/chunk of="/dev/$DISK" bs=$CHUNK seek=$i conv=notrunc 2>/dev/null || fail "could not write /dev/$DISK"
    off=$(( end + 1 )); i=$(( i + 1 ))
    post progress "bytes=$off&total=$SIZE"
  done
  rm -f /tmp/chunk
else
  timeout 3600 wget -q -O - "$IMG" | dd of="/dev/$DISK" bs=$CHUNK 2>/dev/null || fail "could not download or write the image"
  SIZE=$(wget -q -O - "$IMG" | wc -c)
fi
sync
if [ -n "$SUM" ]; then
  got=$(head -c "$SIZE" "/dev/$DISK" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$SUM" ] || fail "sha256 mismatch: the disk holds $got"
fi
if [ "$FIRSTBOOT" = 1 ]; then
  printf 'rackboot-firstboot %s\n' "$CB" | dd of="/dev/$DISK" bs=512 seek=1 conv=notrunc 2>/dev/null
  sync
fi
post done ""
halt_here "image written; waiting for rackboot to power-cycle this machine"
