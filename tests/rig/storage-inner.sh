#!/bin/sh
# Runs inside the rig's L1 (or directly on a host whose KVM runs real
# guests): the README quickstart shape under build/propolis-standalone —
# OVMF -> GRUB -> Linux from the test ISO on pci-virtio-block at 0.4.0, a
# second virtio disk (the rig's config disk) and an NVMe disk, backed by
# files. Checks what the guest sees, that its synced writes are in the host
# file byte for byte, that bytes the host wrote read back in the guest, and
# that SIGKILL after the guest's sync loses nothing.
# Env: STORAGE_CPUS (default 1). Prints STORAGE-RESULT lines.
. rig-lib.sh
VMM=${RIG_VMM:-/rig/vmm}
IDLE=${RIG_IDLE:-120} # seconds of console silence that count as a stalled guest
F=${RIG_FILES:-/rig/files}
CPUS=${STORAGE_CPUS:-1}
failed=0
result() {
    echo "STORAGE-RESULT $1 $2"
    [ "$2" = pass ] || failed=1
}
md5() { md5sum | cut -d' ' -f1; }

W=storage-$CPUS
mkdir -p $W && cd $W
# Host-written bytes the guest must read back: 1 MiB of a pattern at 2 MiB.
truncate -s 16M nvme.img
yes HOSTDATA | tr -d '\n' | head -c 1048576 | dd of=nvme.img bs=1048576 seek=2 conv=notrunc 2>/dev/null
hostsum=$(yes HOSTDATA | tr -d '\n' | head -c 1048576 | md5)
{
    printf 'RIGCFG1\n'
    printf 'sum serial:rignvme 2097152 1048576\n'
    printf 'write serial:rignvme 1048576 65536 RIGPATTERN\n'
    printf 'sleep 600\nend\n'
} > cfg.img
truncate -s 1M cfg.img
cat > config.toml <<CFG
[main]
name = "storage-$CPUS"
cpus = $CPUS
bootrom = "$F/OVMF.fd"
memory = 512
exit_on_halt = 7

[block_dev.iso]
type = "file"
path = "$F/test.iso"
read_only = true

[block_dev.rigcfg]
type = "file"
path = "cfg.img"

[block_dev.rignvme]
type = "file"
path = "nvme.img"

[dev.block0]
driver = "pci-virtio-block"
block_dev = "iso"
pci-path = "0.4.0"

[dev.block1]
driver = "pci-virtio-block"
block_dev = "rigcfg"
pci-path = "0.5.0"

[dev.nvme0]
driver = "pci-nvme"
block_dev = "rignvme"
pci-path = "0.6.0"
CFG
"$VMM" config.toml > vmm.log 2>&1 &
pid=$!
start=$(date +%s)
# The guest reports, writes, then sleeps: kill the VMM once the write is in.
RIG_IDLE=$IDLE guest_ttyexpect ttya timeout:400 "expect:RIG-REPORT action 2 write" "expect:\n" > console.log 2>&1
rc=$?
echo "STORAGE-TIME cpus=$CPUS boot_to_write_seconds=$(( $(date +%s) - start ))"
[ $rc = 0 ] || guest_stuck "storage-$CPUS: the guest did not reach its write (ttyexpect status $rc)" $pid vmm.log console.log
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
sed 's/^/[guest] /' console.log | tr -d '\r' | grep -E 'RIG-REPORT|Linux version|error|Error|panic' | head -60
[ $rc = 0 ] && result boot-to-write pass || result boot-to-write fail

g() { tr -d '\r' < console.log | grep "^RIG-REPORT $1"; }
g "cpus=$CPUS vendor=" | grep -q . && result cpus pass || result "cpus ($(g cpus=))" fail
isosize=$(wc -c < $F/test.iso)
isosum=$(head -c 1048576 $F/test.iso | md5)
g "blk vda size=$isosize ro=1 serial=iso sumlen=1048576 sum=$isosum" | grep -q . &&
    result iso-disk pass || result "iso-disk ($(g 'blk vda'))" fail
g "blk vdb size=1048576 ro=0 serial=rigcfg .* config=1" | grep -q . &&
    result config-disk pass || result "config-disk ($(g 'blk vdb'))" fail
g "blk nvme0n1 size=16777216 ro=0 serial=rignvme" | grep -q . &&
    result nvme-disk pass || result "nvme-disk ($(g 'blk nvme'))" fail
g "action 1 sum nvme0n1 .*sum=$hostsum" | grep -q . &&
    result host-bytes-read-in-guest pass || result "host-bytes-read-in-guest ($(g 'action 1'))" fail
psum=$(yes RIGPATTERN | tr -d '\n' | head -c 65536 | md5)
g "action 2 write nvme0n1 ok offset=1048576 len=65536 sum=$psum" | grep -q . &&
    result guest-write pass || result "guest-write ($(g 'action 2'))" fail
dsum=$(dd if=nvme.img bs=65536 skip=16 count=1 2>/dev/null | md5)
[ "$dsum" = "$psum" ] && result synced-write-survives-sigkill pass || result synced-write-survives-sigkill fail
exit $failed
