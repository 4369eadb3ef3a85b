#!/bin/sh
# The rig's reference scenario, run inside L1 by `rig.sh reference|check`:
# the VMM (/rig/vmm, QEMU here) boots OVMF -> GRUB -> Linux from the test ISO
# on virtio-blk, with a second virtio disk (the config disk) and an NVMe disk,
# 4 vCPUs; the guest writes a pattern to the NVMe disk; we check its report.
# Env: RIG_VMM, RIG_FILES; REF_FIRMWARE=ovmf|seabios, REF_SMP, REF_MEM.
F=$RIG_FILES
SMP=${REF_SMP:-4}
fail() { echo "reference: FAIL: $*"; exit 1; }

# config disk: the guest writes 64 KiB of a pattern at 1 MiB on the NVMe disk
{ printf 'RIGCFG1\n'; printf 'write serial:rignvme 1048576 65536 RIGPATTERN\nend\n'; } > /tmp/cfg.img
truncate -s 1M /tmp/cfg.img
truncate -s 16M /tmp/nvme.img
case ${REF_FIRMWARE:-ovmf} in
    ovmf) FW="-bios $F/OVMF.fd" ;;
    seabios) FW="" ;;
esac

echo "reference: starting the guest ($SMP vCPUs, ${REF_FIRMWARE:-ovmf})"
mkfifo /tmp/mon.in /tmp/mon.out
start=$(date +%s)
{
    $RIG_VMM -machine pc,accel=kvm -cpu host -smp $SMP -m ${REF_MEM:-512} \
        -nodefaults -display none -vga none -no-reboot $FW \
        -L /usr/share/qemu -L /usr/share/seabios \
        -drive file=$F/test.iso,if=none,id=d0,format=raw,readonly=on \
        -device virtio-blk-pci,drive=d0,addr=4,bootindex=1 \
        -drive file=/tmp/cfg.img,if=none,id=d1,format=raw \
        -device virtio-blk-pci,drive=d1,addr=5,serial=rigcfg \
        -drive file=/tmp/nvme.img,if=none,id=d2,format=raw \
        -device nvme,drive=d2,addr=6,serial=rignvme \
        -monitor pipe:/tmp/mon -serial stdio 2>&1
    rc=$?
    echo # the guest's last line may lack its newline
    echo "VMM-EXIT $rc"
} | tee /tmp/guest.log | sed 's/^/[guest] /' &

# Wait for the VMM; past the deadline, or once the guest has printed
# nothing for REF_IDLE s, show where the guest's vCPUs are.
deadline=${REF_DEADLINE:-200} idle=${REF_IDLE:-100}
last_size=0 last_change=$start
while ! grep -q '^VMM-EXIT' /tmp/guest.log 2>/dev/null; do
    now=$(date +%s) size=$(wc -c < /tmp/guest.log 2>/dev/null || echo 0)
    [ "$size" != "$last_size" ] && { last_size=$size last_change=$now; }
    if [ $((now - start)) -ge $deadline ] || [ $((now - last_change)) -ge $idle ]; then
        echo "reference: guest not done after $((now - start)) s, silent for $((now - last_change)) s; its state:"
        cat /proc/loadavg
        printf 'info status\ninfo registers -a\n' > /tmp/mon.in
        sleep 3
        timeout 3 cat /tmp/mon.out | tr -d '\r' | grep -E 'status|CPU#|^RIP|HLT=|^CR0' > /tmp/regs.txt
        sed 's/^/[monitor] /' /tmp/regs.txt
        echo quit > /tmp/mon.in
        sleep 2
        # A vCPU with paging on and cr3 outside the guest's RAM holds a state no
        # guest can reach: the nested hypervisor under QEMU lost it (the same
        # fault as tests/rig/README.md describes under our VMM).
        . rig-lib.sh
        qemu_state_corrupt /tmp/regs.txt $(( ${REF_MEM:-512} * 1048576 )) &&
            echo "RIG-FAULT nested-vcpu-state-corrupt: a vCPU of the guest has cr3 outside guest RAM"
        fail "guest did not finish (last line: $(grep -v '^$' /tmp/guest.log | tail -1))"
    fi
    sleep 1
done
wait
end=$(date +%s)
echo "reference: guest ran $((end - start)) s"

g() { grep "^RIG-REPORT $1" /tmp/guest.log | tr -d '\r'; }
grep -q "^VMM-EXIT 0" /tmp/guest.log || fail "VMM exited with $(grep VMM-EXIT /tmp/guest.log)"
g done | grep -q . || fail "guest did not report done"
g "cpus=$SMP vendor=AuthenticAMD" | grep -q . || fail "cpus: $(g cpus=)"
mem=$(g mem_kib= | sed 's/.*mem_kib=//')
[ "${mem:-0}" -gt 300000 ] || fail "memory: $mem KiB"
g "pci 0000:00:04.0 1af4:1001 class=0x010000" | grep -q . || fail "no virtio-blk at 00:04.0"
g "pci 0000:00:05.0 1af4:1001 class=0x010000" | grep -q . || fail "no virtio-blk at 00:05.0"
g "pci 0000:00:06.0 1b36:0010 class=0x010802" | grep -q . || fail "no NVMe at 00:06.0"
isosize=$(wc -c < $F/test.iso)
isosum=$(head -c 1048576 $F/test.iso | md5sum | cut -d' ' -f1)
g "blk vda size=$isosize ro=1 serial= sumlen=1048576 sum=$isosum" | grep -q . || fail "vda: $(g 'blk vda')"
g "blk vdb size=1048576 ro=0 serial=rigcfg .* config=1" | grep -q . || fail "vdb: $(g 'blk vdb')"
zsum=$(head -c 1048576 /dev/zero | md5sum | cut -d' ' -f1)
g "blk nvme0n1 size=16777216 ro=0 serial=rignvme sumlen=1048576 sum=$zsum" | grep -q . || fail "nvme: $(g 'blk nvme')"
psum=$(yes RIGPATTERN | tr -d '\n' | head -c 65536 | md5sum | cut -d' ' -f1)
g "action 1 write nvme0n1 ok offset=1048576 len=65536 sum=$psum" | grep -q . || fail "write: $(g action)"
dsum=$(dd if=/tmp/nvme.img bs=65536 skip=16 count=1 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$dsum" = "$psum" ] || fail "pattern not on the NVMe image after the guest's write"
echo "reference: PASS in $((end - start)) s"
