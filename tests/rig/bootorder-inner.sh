#!/bin/sh
# Inside the rig (or directly): [main].boot_order decides which disk OVMF
# boots. Two bootable copies of the test ISO, one on pci-virtio-block at
# 0.4.0 and one on pci-nvme at 0.6.0; the guest reports the description of
# the UEFI boot option it came from (BootCurrent): OVMF names NVMe options
# after the controller's model ("propolis-nvme"), virtio disks "Misc Device".
# Usage: bootorder-inner.sh FIRST_DEVICE EXPECTED_TEXT
VMM=${RIG_VMM:-/rig/vmm}
F=${RIG_FILES:-/rig/files}
first=$1
want=$2
W=bootorder-$first
mkdir -p $W && cd $W
{
    printf 'RIGCFG1\n'
    printf 'sh cat /proc/cmdline\n'
    printf 'end\n'
} > cfg.img
truncate -s 1M cfg.img
cat > config.toml <<CFG
[main]
name = "bootorder-$first"
cpus = 1
bootrom = "$F/OVMF.fd"
memory = 512
boot_order = ["$first"]

[block_dev.iso]
type = "file"
path = "$F/test.iso"
read_only = true

[block_dev.cfg]
type = "file"
path = "cfg.img"

[block_dev.iso2]
type = "file"
path = "$F/test-marked.iso"
read_only = true

[dev.block0]
driver = "pci-virtio-block"
block_dev = "iso"
pci-path = "0.4.0"

[dev.block1]
driver = "pci-virtio-block"
block_dev = "cfg"
pci-path = "0.5.0"

[dev.nvme0]
driver = "pci-nvme"
block_dev = "iso2"
pci-path = "0.6.0"
CFG
"$VMM" config.toml > vmm.log 2>&1 &
pid=$!
. rig-lib.sh
guest_ttyexpect ttya timeout:400 "expect:RIG-REPORT done" > console.log 2>&1 ||
    guest_stuck "bootorder $first: the guest did not report done" $pid vmm.log console.log
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
line=$(tr -d '\r' < console.log | grep "^RIG-REPORT action 1 sh")
echo "[guest] $line"
case "$line" in
    *"$want"*) echo "BOOTORDER-RESULT $first pass"; exit 0 ;;
    *) echo "BOOTORDER-RESULT $first fail (want $want)"; tail -20 vmm.log; exit 1 ;;
esac
