#!/bin/bash
# ipmi_sim's chassis_control program for one lab VM: power is the QEMU
# process (started detached: ipmi_sim reads this program's output to EOF),
# the boot device a file that picks QEMU's boot order at power-on.
# Settings come from vm.env beside this file.
D=$(dirname "$0")
. "$D/vm.env"
PIDF=$D/vm.pid
alive() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }
start() {
  alive && return
  order=c
  [ "$(cat "$D/boot" 2>/dev/null)" = pxe ] && order=n
  setsid qemu-system-x86_64 -accel tcg -m 256 -nographic -nodefaults \
    -serial "file:$D/serial.log" -pidfile "$PIDF" -daemonize \
    -boot "order=$order" \
    -drive "file=$DISK,format=raw,if=virtio" \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=$MAC" \
    </dev/null >>"$D/qemu.out" 2>&1
}
stop() {
  if alive; then kill "$(cat "$PIDF")"; for i in $(seq 50); do alive || break; sleep 0.1; done; fi
  rm -f "$PIDF"
}
op=$1; shift
if [ "$op" = get ]; then
  for p in "$@"; do case $p in
    power) alive && echo "power:1" || echo "power:0";;
    boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo default)";;
  esac; done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do p=$1; v=$2; shift 2; case $p in
    power) if [ "$v" = 1 ]; then start; else stop; fi;;
    reset) stop; start;;
    boot) echo "$v" > "$D/boot";;
    shutdown) stop;;
  esac; echo "$(date +%T) $p $v" >> "$D/ops.log"; done
fi
exit 0
