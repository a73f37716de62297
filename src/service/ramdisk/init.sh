#!/bin/busybox sh
# rackboot deploy ramdisk: /init mounts the kernel's file systems and runs
# rackboot-agent, which does the work (modalias coldplug, the PXE NIC,
# inventory, the image; see agent/src/main.rs). Whatever the agent does,
# this machine then waits: rackboot power-cycles it.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "rackboot-ramdisk: starting the agent"
/bin/rackboot-agent
echo "rackboot-ramdisk: the agent ended ($?); waiting for rackboot to power-cycle this machine"
while true; do sleep 3600; done
