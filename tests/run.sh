#!/usr/bin/env bash
# The whole test suite, as README's quick start and CI run it:
# installs the system packages the tests use (when missing, as root),
# checks formatting and lints, builds once, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package the tests need it from
declare -A needs=(
  [curl]=curl                       # tests/curl.rs: a real HTTP client on the socket
  [systemd-analyze]=systemd         # tests/daemon_lifecycle.rs: unit file verification
  [ipmi_sim]=openipmi               # tests/ipmi_*.rs: a real BMC (OpenIPMI's simulator)
  [ipmitool]=ipmitool               # tests/ipmi_*.rs: cross-checks what the BMC did
  [qemu-system-x86_64]=qemu-system-x86  # tests/ipmi_power.rs: a BMC that powers a real VM
  [sshd]=openssh-server             # tests/nodes*.rs: real SSH hosts (started by the tests only)
  [ip]=iproute2                     # tests/nodes_seed.rs: network namespaces
  [atftp]=atftp                     # tests/tftp.rs: a TFTP client with windowsize
  [tftp]=tftp-hpa                   # tests/tftp.rs: a plain RFC 1350 client
  [busybox]=busybox-static          # tests/pxe_dhcp.rs: udhcpc, a real DHCP client
  [dhclient]=isc-dhcp-client        # tests/pxe_dhcp.rs: ISC's DHCP client
  [dnsmasq]=dnsmasq-base            # tests/pxe_dhcp.rs: the ordinary DHCP server beside ProxyDHCP (no service)
  [syslinux]=syslinux               # tests/lab.rs: the lab's bootable test image
  [mcopy]=mtools                    # tests/lab.rs: files into its FAT partition
  [mkfs.vfat]=dosfstools            # tests/lab.rs: that partition
  [qemu-img]=qemu-utils             # tests/images.rs: qcow2 images, the reference converter
  [xz]=xz-utils                     # tests/images.rs: xz images
  [zstd]=zstd                       # tests/images.rs: zstd images
  [python3]=python3                 # tests/images.rs: an HTTP server for URL images
  [xorriso]=xorriso                 # tests/vmedia_iso.rs, redfish_sushy.rs: the virtual-media ISO
  [libvirtd]=libvirt-daemon-system  # tests/redfish_sushy.rs: libvirtd + virtlogd under sushy-tools (started by the test)
  [ssh]=openssh-client              # tests/debian.rs: logs in to the deployed Debian with the key given
  [promtool]=prometheus             # tests/operations.rs: Prometheus' own parser checks /metrics (no service)
  [mmdebstrap]=mmdebstrap           # tests/package.rs: the fresh Debian 12 root the .deb is installed into
  [man]=man-db                      # tests/package.rs: the installed man pages render
  [file]=file                       # tests/package.rs: the packaged agent is static
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${needs[$cmd]}")
done
# QEMU's network-boot ROMs (iPXE) for tests/pxe_dhcp.rs, checked by file.
[ -e /usr/lib/ipxe/qemu/pxe-e1000.rom ] || missing+=(ipxe-qemu)
# Debian's iPXE binaries (ipxe.efi, undionly.kpxe) and UEFI firmware for QEMU.
[ -e /usr/lib/ipxe/ipxe.efi ] || missing+=(ipxe)
[ -e /usr/share/OVMF/OVMF_CODE.fd ] || missing+=(ovmf)
[ -e /usr/lib/syslinux/mbr/mbr.bin ] || missing+=(syslinux-common)
# GRUB's UEFI netboot image and modules (grub-mknetdir) for tests/pxe_dhcp.rs.
[ -e /usr/lib/grub/x86_64-efi/normal.mod ] || missing+=(grub-efi-amd64-bin)
# The virtual-media ISO's BIOS loader (tests/vmedia_iso.rs).
[ -e /usr/lib/ISOLINUX/isolinux.bin ] || missing+=(isolinux)
# sushy-tools' libvirt driver needs Debian's libvirt binding, importable
# from Debian's python3 only; its venv needs python3-venv.
/usr/bin/python3 -c 'import libvirt' 2>/dev/null || missing+=(python3-libvirt)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "tests/run.sh: installing ${missing[*]}"
  # Packages must not start services (an sshd on a real interface, say):
  # the tests start what they need on loopback or in their own namespaces.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
fi

# The lab tests build the deploy ramdisk from Debian's kernel package:
# apt needs its package lists for that.
if [ "$(id -u)" -eq 0 ] && ! apt-cache depends linux-image-amd64 2>/dev/null | grep -q 'Depends: linux-image-'; then
  apt-get update -qq
fi

# pyghmi: a second, independent BMC implementation (tests/ipmi_pyghmi.rs).
if ! python3 -c 'import pyghmi' 2>/dev/null; then
  echo "tests/run.sh: installing pyghmi"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'pyghmi==1.6.19'
fi

# sushy-tools (the Redfish emulator Ironic's CI uses) for tests/redfish_sushy.rs
# and redfishtool (the reference client of benches/redfish.rs), in a venv
# on Debian's python3 that sees python3-libvirt; created once, then reused.
venv=/var/cache/rackboot-tests/redfish-venv
if [ "$(id -u)" -eq 0 ] && ! { "$venv/bin/python3" -c 'import sushy_tools, libvirt' 2>/dev/null && [ -x "$venv/bin/redfishtool" ]; }; then
  echo "tests/run.sh: creating $venv (sushy-tools, redfishtool)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'sushy-tools==2.2.0' 'redfishtool==1.1.8'
fi

# Fuzzing (after the tests): cargo-fuzz on the nightly toolchain installed
# on these machines.
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "tests/run.sh: the nightly toolchain is missing (rustup toolchain install nightly): the fuzz targets need it" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

# cargo-deb builds the .deb tests/package.rs installs (packaging/build-deb.sh).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-deb"
  cargo install cargo-deb --locked --quiet --version 3.8.0
fi

# cargo-deny: licences, sources and duplicate versions (deny.toml has the
# written exceptions), and the RustSec advisories.
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20.2$'; then
  echo "tests/run.sh: installing cargo-deny"
  cargo install cargo-deny --locked --quiet --version 0.20.2
fi

cargo fmt --all -- --check
cargo deny --locked check bans licenses sources
# The advisory database is fetched from github.com at every run. Where
# github.com cannot be reached, the run says so loudly and goes on (every
# other check still gates); any advisory found fails the run.
if ! advisories=$(cargo deny --locked check advisories 2>&1); then
  if grep -q 'failed to fetch advisory database' <<<"$advisories"; then
    echo "tests/run.sh: WARNING: RustSec advisories NOT checked: the advisory database cannot be fetched from github.com here" >&2
  else
    echo "$advisories" >&2
    exit 1
  fi
else
  tail -n 1 <<<"$advisories"
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked
# The deploy ramdisk's agent, statically linked (the lab tests build ramdisks).
cargo rustc --release --locked -p rackboot-agent --bin rackboot-agent -- -C target-feature=+crt-static
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Every fuzz target for RB_FUZZ_SECONDS (60) on the committed corpora; a
# crash fails the run (its input is left in fuzz/artifacts/). The fuzz
# build is kept in target/fuzz.
bash fuzz/run.sh "${RB_FUZZ_SECONDS:-60}" 2>&1 | tee -a "$log"
fuzz_status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (each fuzz target counts as a test).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^fuzz [a-z_]+: .* no crash/ { p += 1 } /^fuzz [a-z_]+: CRASH/ { f += 1 } /^fuzz: BUILD FAILED/ { f += 1 }
     END { printf "rackboot: %d passed, %d failed\n", p, f }' "$log"
[ "$status" -eq 0 ] || exit "$status"
exit "$fuzz_status"
