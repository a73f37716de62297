#!/usr/bin/env bash
# Builds a Debian 12 (bookworm) cloud-style disk image from Debian's packages
# with mmdebstrap, for rackboot to deploy onto QEMU VMs (tests and lab).
#
#   tests/images/debian12.sh OUT.qcow2      build (as root; zstd-compressed
#                                            qcow2 v3); OUT may also end
#                                            in .raw/.img (sparse raw) or
#                                            .img.gz/.raw.gz (gzip of the raw)
#   tests/images/debian12.sh --cache-key    print the cache key only
#
# The image: 2 GiB, GPT: p1 BIOS boot (1 MiB), p2 FAT32 ESP "EFI" (100 MiB),
# p3 ext4 "rootfs" (the rest, last on the disk so cloud-init's growpart can
# grow it). GRUB boots it from legacy BIOS (grub-pc core in p1) and from UEFI
# with Secure Boot (Debian's signed shim as \EFI\BOOT\BOOTX64.EFI, signed
# GRUB beside it), kernel console on tty0 and ttyS0 (115200). No passwords,
# no SSH host keys, empty machine-id: cloud-init (NoCloud: a seed in
# /var/lib/cloud/seed/nocloud/ or a volume labelled cidata) makes each
# deployed machine its own. See tests/images/README.md.
#
# Cache: the key is "<release>-<sha256 of this file>"; the image depends on
# nothing else but Debian's archive on the day it was built. Keep OUT under a
# directory named by the key and build only when it is missing:
#   key=$(tests/images/debian12.sh --cache-key)
#   [ -e "$CACHE/$key/debian12.qcow2" ] || tests/images/debian12.sh "$CACHE/$key/debian12.qcow2"
#
# Environment: DEBIMG_APT_CACHE (downloaded .debs kept between builds,
# default /var/cache/rackboot-debimg/apt), DEBIMG_MIRROR (default
# http://deb.debian.org/debian), DEBIMG_SECURITY_MIRROR (default
# http://deb.debian.org/debian-security).
set -euo pipefail

RELEASE=bookworm
SIZE=2G
script=$(readlink -f "$0")
KEY="$RELEASE-$(sha256sum "$script" | cut -d' ' -f1)"

if [ "${1:-}" = "--cache-key" ]; then
  echo "$KEY"
  exit 0
fi
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1:0:1}" = "-" ]; then
  echo "usage: $0 OUT.qcow2|OUT.raw|OUT.img|OUT.img.gz   (or: $0 --cache-key)" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: must run as root (loop devices, mounts, chroot)" >&2
  exit 1
fi
OUT=$1
case "$OUT" in
  *.qcow2) FORMAT=qcow2 ;;
  *.raw | *.img) FORMAT=raw ;;
  *.raw.gz | *.img.gz) FORMAT=gz ;;
  *) echo "$0: OUT must end in .qcow2, .raw, .img, .raw.gz or .img.gz: $OUT" >&2; exit 2 ;;
esac
MIRROR=${DEBIMG_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIMG_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
APT_CACHE=${DEBIMG_APT_CACHE:-/var/cache/rackboot-debimg/apt}

# Mounts are made in a mount namespace of our own: a process that another
# user starts meanwhile in a new namespace (`ip netns exec`, say) would
# otherwise keep a copy of the root mount, and unmounting it here would
# leave the file system open (not clean) while the image is converted.
# The namespace also drops every mount if this script dies.
if [ -z "${DEBIMG_PRIVATE_MOUNTS:-}" ]; then
  DEBIMG_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private "$script" "$@"
fi
start=$SECONDS
say() { echo "debian12.sh [$((SECONDS - start)) s]: $*"; }
say "cache key $KEY"

# ---- host tools (Debian packages), installed when missing ----------------
declare -A needs=(
  [mmdebstrap]=mmdebstrap
  [qemu-img]=qemu-utils
  [mkfs.vfat]=dosfstools
  [mcopy]=mtools
  [sgdisk]=gdisk
  [mkfs.ext4]=e2fsprogs
  [partx]=util-linux
  [losetup]=mount
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("${needs[$cmd]}")
done
if [ "$FORMAT" = gz ] && ! command -v pigz >/dev/null && ! command -v gzip >/dev/null; then missing+=(gzip); fi
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  # No package may start a service on this machine.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ---- work area, and cleanup of everything this script mounts or attaches --
mkdir -p "$(dirname "$OUT")" "$APT_CACHE"
outdir=$(cd "$(dirname "$OUT")" && pwd)
OUT=$outdir/$(basename "$OUT")
work=$(mktemp -d "$outdir/.debian12.XXXXXX")
chmod 755 "$work"   # apt's _apt user downloads into the target
raw=$work/disk.raw
mnt=$work/root
loop=""
mounts=()   # unmounted in reverse order
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}" 2>/dev/null || true
  done
  [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mount_at() { mount "$@"; mounts+=("${!#}"); }
unmount_all() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}"; done
  mounts=()
}

# ---- disk: GPT with BIOS boot, ESP, root last -----------------------------
truncate -s "$SIZE" "$raw"
sgdisk -a 2048 \
  -n 1:2048:+1M -t 1:ef02 -c 1:bios \
  -n 2:0:+100M -t 2:ef00 -c 2:esp \
  -n 3:0:0 -t 3:8300 -c 3:rootfs \
  "$raw" >/dev/null
loop=$(losetup -f --show -P "$raw")
# Some kernels (this lab's) do not scan loop partitions on attach: ask.
for _ in $(seq 10); do [ -b "${loop}p3" ] && break; sleep 0.1; done
[ -b "${loop}p3" ] || partx -a "$loop"
[ -b "${loop}p3" ] || { echo "$0: no partition devices for $loop" >&2; exit 1; }
mkfs.vfat -F 32 -n EFI "${loop}p2" >/dev/null
# orphan_file and metadata_csum_seed are off: GRUB 2.06 cannot read them.
mkfs.ext4 -q -L rootfs -O ^orphan_file,^metadata_csum_seed "${loop}p3"
root_uuid=$(blkid -s UUID -o value "${loop}p3")
esp_uuid=$(blkid -s UUID -o value "${loop}p2")
mkdir -p "$mnt"
mount_at -o noatime "${loop}p3" "$mnt"
say "disk ready: $loop (root UUID $root_uuid)"

# ---- Debian ---------------------------------------------------------------
packages=(
  linux-image-amd64 initramfs-tools zstd
  systemd-sysv udev dbus libpam-systemd
  openssh-server sudo
  cloud-init cloud-guest-utils fdisk
  ifupdown isc-dhcp-client vlan iproute2 netbase
  curl ca-certificates
  procps less dosfstools e2fsprogs
  grub-cloud-amd64
)
# shellcheck disable=SC2016 # "$1" in hooks is the target, expanded by mmdebstrap
mmdebstrap \
  --mode=root --variant=minbase --components=main \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
  --setup-hook="sync-in $APT_CACHE /var/cache/apt/archives/" \
  --customize-hook="sync-out /var/cache/apt/archives $APT_CACHE" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
  "$RELEASE" "$mnt" \
  "deb $MIRROR $RELEASE main" \
  "deb $MIRROR $RELEASE-updates main" \
  "deb $SECURITY $RELEASE-security main" \
  2>&1 | while IFS= read -r line; do echo "  [$((SECONDS - start)) s] $line"; done
rm -rf "$APT_CACHE/partial" "$APT_CACHE/lock"
say "mmdebstrap done"

# ---- configuration --------------------------------------------------------
cat > "$mnt/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$root_uuid	/	ext4	rw,discard,errors=remount-ro	0	1
UUID=$esp_uuid	/boot/efi	vfat	umask=0077,nofail	0	2
EOF
echo localhost > "$mnt/etc/hostname"
cat > "$mnt/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
# Locale: C.UTF-8 (built into libc, nothing to generate). Without this,
# cloud-init's locale module asks for en_US.UTF-8, for which no locale is
# generated, and update-locale fails the cloud-config stage.
echo 'LANG=C.UTF-8' > "$mnt/etc/default/locale"
cat > "$mnt/etc/cloud/cloud.cfg.d/01_rackboot.cfg" <<'EOF'
# rackboot test image (tests/images/debian12.sh)
locale: C.UTF-8
# OpenSSH 9 does not use DSA host keys: no first-boot time spent on one.
ssh_genkeytypes: [ed25519, ecdsa, rsa]
EOF
# GRUB: grub-cloud-amd64's /etc/default/grub already sends the console to
# tty0 and ttyS0 at 115200 and GRUB itself to the serial port; wait 1 s.
mkdir -p "$mnt/etc/default/grub.d"
cat > "$mnt/etc/default/grub.d/50-rackboot.cfg" <<'EOF'
GRUB_TIMEOUT=1
GRUB_DISABLE_OS_PROBER=true
EOF
# Host keys are made at first boot by cloud-init; should cloud-init find no
# datasource (it then disables itself), sshd still gets keys.
mkdir -p "$mnt/etc/systemd/system/ssh.service.d"
cat > "$mnt/etc/systemd/system/ssh.service.d/10-host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=-/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
# Boot loaders, as Debian's cloud images install them (grub-cloud-amd64; its
# trigger re-runs grub-install for both on GRUB and shim upgrades in the
# deployed system once /etc/grub.d/enable_cloud exists).
# A /dev of its own: the disk's nodes, and the by-uuid links that udev would
# make (grub-mkconfig writes root=UUID=... only when that link exists; this
# machine has no udev). Nothing is created in the host's /dev.
mount_at -t tmpfs -o mode=755 devtmpfs "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom "$loop" "$loop"p[123] "$mnt/dev/"
mkdir -p "$mnt/dev/disk/by-uuid"
ln -s "../../$(basename "$loop")p3" "$mnt/dev/disk/by-uuid/$root_uuid"
ln -s "../../$(basename "$loop")p2" "$mnt/dev/disk/by-uuid/$esp_uuid"
mount_at -t proc proc "$mnt/proc"
mount_at -t sysfs sysfs "$mnt/sys"
mkdir -p "$mnt/boot/efi"
touch "$mnt/etc/grub.d/enable_cloud"
# BIOS: boot.img into the MBR, core.img into p1, modules in /boot/grub.
chroot "$mnt" grub-install --target=i386-pc "$loop" 2>&1 | sed 's/^/  grub-install (BIOS): /'
chroot "$mnt" update-grub 2>&1 | sed 's/^/  update-grub: /'
# UEFI + Secure Boot: the layout `grub-install --target=x86_64-efi
# --uefi-secure-boot --force-extra-removable --no-nvram` makes, written with
# mtools (grub-install needs the ESP mounted, and the kernel of the build
# machine may have no vfat: this lab's has not). Firmware without a boot
# entry starts the removable path \EFI\BOOT\BOOTX64.EFI = shim, which starts
# grubx64.efi from its own folder; that signed GRUB's prefix is /EFI/debian
# on its own partition: /EFI/debian/grub.cfg finds the root file system and
# reads the /boot/grub/grub.cfg that update-grub wrote (the one BIOS reads).
# No fbx64.efi in \EFI\BOOT: shim would run it to create a boot entry and
# reset the machine (one more boot), which a deployed image does not need.
esp=$work/esp
mkdir -p "$esp/EFI/BOOT" "$esp/EFI/debian"
shim=$mnt/usr/lib/shim/shimx64.efi.signed
mok=$mnt/usr/lib/shim/mmx64.efi.signed
grubefi=$mnt/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
for d in BOOT debian; do
  cp "$grubefi" "$esp/EFI/$d/grubx64.efi"
  cp "$mok" "$esp/EFI/$d/mmx64.efi"
done
cp "$shim" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$shim" "$esp/EFI/debian/shimx64.efi"
# shellcheck disable=SC2016 # $root and $prefix are GRUB's variables
printf '%s\n' "search.fs_uuid $root_uuid root" \
  "set prefix=(\$root)'/boot/grub'" \
  'configfile $prefix/grub.cfg' > "$esp/EFI/debian/grub.cfg"
# (mtools asks a partition device for its geometry, and says it got none.)
MTOOLS_SKIP_CHECK=1 mcopy -s -i "${loop}p2" "$esp/EFI" ::/ 2>&1 | { grep -v 'Could not get geometry' || true; }
say "boot loaders installed"

# ---- make it generic: nothing of this build is unique to a machine --------
rm -f "$mnt"/etc/ssh/ssh_host_*
: > "$mnt/etc/machine-id"
rm -f "$mnt/var/lib/dbus/machine-id" "$mnt/var/lib/systemd/random-seed"
rm -rf "$mnt"/var/lib/cloud/* "$mnt"/var/log/*.log "$mnt"/var/cache/debconf/*-old "$mnt"/var/lib/dpkg/*-old
rm -f "$mnt/etc/resolv.conf"
if grep -q '^root:[^*!]' "$mnt/etc/shadow"; then
  echo "$0: root has a password in the image" >&2
  exit 1
fi
grep -q "root=UUID=$root_uuid" "$mnt/boot/grub/grub.cfg" \
  || { echo "$0: /boot/grub/grub.cfg does not name root=UUID=$root_uuid" >&2; exit 1; }
fstrim "$mnt" >/dev/null
unmount_all
# The root file system must be clean (no journal to replay) and sound.
fsck_out=$(e2fsck -f -n "${loop}p3" 2>&1) || { echo "$fsck_out" >&2; echo "$0: the root file system is not clean" >&2; exit 1; }
losetup -d "$loop"; loop=""
say "root file system done ($(du -h --apparent-size "$raw" | cut -f1) virtual, $(du -h "$raw" | cut -f1) allocated)"

# ---- output ---------------------------------------------------------------
tmp_out="$work/out"
case "$FORMAT" in
  # qcow2 v3, clusters compressed with zstd: 266 MiB instead of 845 MiB,
  # as fast to write and to read back as uncompressed here (zlib: 5x slower
  # to write). Needs QEMU >= 5.1 to read; Debian 12 has 7.2.
  qcow2) qemu-img convert -f raw -O qcow2 -c -o compat=1.1,compression_type=zstd "$raw" "$tmp_out" ;;
  raw) mv "$raw" "$tmp_out" ;;
  gz) if command -v pigz >/dev/null; then pigz -1 -c "$raw" > "$tmp_out"; else gzip -1 -c "$raw" > "$tmp_out"; fi ;;
esac
mv "$tmp_out" "$OUT"
say "wrote $OUT ($FORMAT, $(du -h --apparent-size "$OUT" | cut -f1) apparent, $(du -h "$OUT" | cut -f1) allocated)"
echo "cache key: $KEY"
