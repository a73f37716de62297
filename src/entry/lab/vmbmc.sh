#!/bin/bash
# ipmi_sim's chassis_control program for one lab VM: power is the QEMU
# process (started detached: ipmi_sim reads this program's output to EOF),
# the boot device a file that orders the VM's boot devices at power-on
# (bootindex: the NIC first for pxe, the disk first otherwise).
# The VM's hardware comes from vm.env beside this file: NIC (QEMU device),
# DISK_CTRL (virtio-blk virtio-scsi ahci nvme megasas lsi), FIRMWARE (bios
# uefi secureboot), DISK/SERIAL and optionally DISK2/SERIAL2, SERIALPORT (the
# serial port: `rackboot lab serial-relay`, which ipmi_sim's SOL also
# connects to; serial.log keeps a copy), SYSSERIAL (the SMBIOS system serial,
# also the BMC's FRU serial; empty: none), INBAND=1 and IPMIPORT (an in-band
# KCS interface to the BMC, which listens on IPMIPORT).
D=$(dirname "$0")
. "$D/vm.env"
PIDF=$D/vm.pid
alive() { [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }
disk_args() { # $1 = drive id, $2 = file, $3 = serial, $4 = bootindex ("" = none)
  local id=$1 file=$2 serial=$3 boot=${4:+,bootindex=$4}
  echo "-drive file=$file,format=raw,if=none,id=$id"
  case $DISK_CTRL in
    virtio-blk)  echo "-device virtio-blk-pci,drive=$id,serial=$serial$boot" ;;
    virtio-scsi) echo "-device scsi-hd,drive=$id,bus=c0.0,scsi-id=${id#d},serial=$serial$boot" ;;
    ahci)        echo "-device ide-hd,drive=$id,bus=c0.${id#d},serial=$serial$boot" ;;
    nvme)        echo "-device nvme,drive=$id,serial=$serial$boot" ;;
    megasas|lsi) echo "-device scsi-hd,drive=$id,bus=c0.0,scsi-id=${id#d},serial=$serial$boot" ;;
  esac
}
start() {
  alive && return
  # Both disks are in the boot order (the firmware tries the next when one
  # is not bootable), the NIC before or after them.
  local nicboot=3 diskboot=1
  [ "$(cat "$D/boot" 2>/dev/null)" = pxe ] && { nicboot=1; diskboot=2; }
  local fw=() rom=()
  case $FIRMWARE in
    uefi) fw=(-machine q35 -drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
              -drive "if=pflash,format=raw,file=$D/OVMF_VARS.fd") ;;
    secureboot) fw=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on
              -drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
              -drive "if=pflash,format=raw,file=$D/OVMF_VARS.fd")
              # The firmware's own (signed) virtio-net driver, not iPXE's ROM.
              rom=(,romfile=) ;;
    *) fw=(-machine pc) ;;
  esac
  local ctrl=()
  case $DISK_CTRL in
    virtio-scsi) ctrl=(-device virtio-scsi-pci,id=c0) ;;
    ahci)        ctrl=(-device ich9-ahci,id=c0) ;;
    megasas)     ctrl=(-device megasas,id=c0) ;;
    lsi)         ctrl=(-device lsi53c895a,id=c0) ;;
  esac
  # shellcheck disable=SC2046
  setsid qemu-system-x86_64 -accel tcg -m 1024 -nographic -nodefaults \
    "${fw[@]}" -serial chardev:s0 \
    -chardev "socket,id=s0,host=127.0.0.1,port=$SERIALPORT,reconnect=1,logfile=$D/serial.log,logappend=on" \
    -pidfile "$PIDF" -daemonize ${SYSSERIAL:+-smbios "type=1,serial=$SYSSERIAL"} \
    "${ctrl[@]}" \
    $(disk_args d0 "$DISK" "$SERIAL" $diskboot) \
    $( [ -n "$DISK2" ] && disk_args d1 "$DISK2" "$SERIAL2" $((diskboot + 1))) \
    ${INBAND:+-chardev "socket,id=ipmi0,host=127.0.0.1,port=$IPMIPORT,reconnect=10" \
      -device ipmi-bmc-extern,chardev=ipmi0,id=bmc0 -device isa-ipmi-kcs,bmc=bmc0,irq=5} \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
    -device "$NIC,netdev=n0,mac=$MAC,bootindex=$nicboot${rom[0]}" \
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
