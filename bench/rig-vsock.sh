#!/bin/bash
# The vsock benchmark, in the nested rig's L1 (which has vhost-vsock): our
# pci-virtio-socket (in our process, port mappings to L1 TCP servers)
# against QEMU's vhost-vsock-pci (the kernel's vsock, L1 servers on
# AF_VSOCK), the same Linux test guest (OVMF, test ISO, 2 vCPUs, 512 MiB)
# and the same guest commands: the guest sends VSOCK_MIB MiB to CID 2 port
# 5000 and reads VSOCK_MIB MiB from port 5001. Runs alternate ours, QEMU.
# L1 times each transfer (from accept to the peer's close), checks its md5
# against the guest's, and counts the VMM's CPU time over the transfer
# (every thread; for QEMU also its vhost worker kernel threads).
# L1's CPU is software-emulated (QEMU TCG): compare the ratios only.
#
#   bench/rig-vsock.sh      env: BUILD (build), VSOCK_RUNS (2), VSOCK_MIB (64),
#                           VSOCK_VMMS ("ours qemu")
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VMM=$BUILD/propolis-standalone
. tests/rig/rig-lib.sh
rig_test_setup
tests/rig/rig.sh mkcfg "$work/shell-cfg.img" shell
cat > "$work/rig-vsock-inner.sh" <<'EOF'
#!/bin/sh
F=${RIG_FILES:-/rig/files}
. rig-lib.sh
MIB=${VSOCK_MIB:-64}
WORK=$PWD
ip link set lo up # L1's init leaves loopback down; our mappings go to 127.0.0.1
dd if=/dev/urandom of=$WORK/down.bin bs=1M count=$MIB 2>/dev/null
down_sum=$(md5sum < $WORK/down.bin | cut -d' ' -f1)
echo "rig-vsock: L1 kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs (software-emulated); $MIB MiB each way"
ls -l /dev/vhost-vsock
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
# cpu_ticks PID: user+system ticks of the process and of vhost-PID threads.
cpu_ticks() {
    t=$(awk '{print $14 + $15}' /proc/$1/stat)
    for s in /proc/[0-9]*/stat; do
        read -r _ comm _ < "$s" 2>/dev/null || continue
        [ "$comm" = "(vhost-$1)" ] && t=$((t + $(awk '{print $14 + $15}' "$s")))
    done
    echo $t
}
start() { # vmm round
    dir=$WORK/$1-$2
    mkdir -p $dir && cd $dir || exit 1
    cp $F/shell-cfg.img cfg.img
    if [ $1 = ours ]; then
        {
            rig_vm_config vsockbench 2 OVMF_CODE.fd "$dir/cfg.img"
            cat <<TOML

[dev.vsock0]
driver = "pci-virtio-socket"
guest_cid = 3
port_mappings = [{ port = 5000, addr = "127.0.0.1:5000" }, { port = 5001, addr = "127.0.0.1:5001" }]
pci-path = "0.6.0"
TOML
        } > config.toml
        [ $2 = 1 ] && { echo "== ours: $RIG_VMM config.toml"; cat config.toml; }
        $RIG_VMM config.toml > vmm.log 2>&1 &
        up_addr=listen-tcp:5000 down_addr=listen-tcp:5001
    else
        set -- qemu-system-x86_64 -machine pc,accel=kvm -cpu host -smp 2 -m 512 -nodefaults \
            -display none -vga none -no-reboot -bios $F/OVMF_CODE.fd -L /usr/share/qemu \
            -drive file=$F/test.iso,if=none,id=d0,format=raw,readonly=on \
            -device virtio-blk-pci,drive=d0,addr=4,bootindex=1 \
            -drive file=$dir/cfg.img,if=none,id=d1,format=raw \
            -device virtio-blk-pci,drive=d1,addr=5 \
            -device vhost-vsock-pci,guest-cid=3,addr=6 \
            -chardev socket,id=con,path=ttya,server=on,wait=off -serial chardev:con
        [ $2 = 1 ] && echo "== qemu: $*"
        "$@" > vmm.log 2>&1 &
        up_addr=listen-vsock:5000 down_addr=listen-vsock:5001
    fi
    pid=$!
    wait_socket ttya
}
# step NAME L1-END GUEST-CMD MARKER: one transfer; prints MiB/s and CPU-s/GiB.
step() {
    c0=$(cpu_ticks $pid)
    guest_ttyexpect ttya timeout:600 "send:$3\r" "expect:$4" "expect:#" >> console.raw 2>> tty.err ||
        { echo "rig-vsock: $vmm $1: the guest did not finish: $(cat tty.err)"; return 1; }
    wait $2
    c1=$(cpu_ticks $pid)
    secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' $1.err)
    awk -v n=$vmm -v s=$1 -v t="$secs" -v c=$((c1 - c0)) -v hz=$hz -v mib=$MIB 'BEGIN {
        printf "RESULT %s %s mibps=%.1f cpu_per_gib=%.2f secs=%s cpu=%.2f\n", n, s, mib / t,
               c / hz * 1024 / mib, t, c / hz }' | tee -a $WORK/results
}
run() { # vmm round
    vmm=$1
    start $1 $2
    : > console.raw
    guest_ttyexpect ttya timeout:300 "expect:RIG-SHELL ready" "send:\r" "expect:#" \
        "send:dd if=/dev/urandom of=/tmp/up.bin bs=1M count=$MIB 2>/dev/null; echo UP''-SUM \$(md5sum < /tmp/up.bin)\r" \
        "expect:UP-SUM" "expect:#" >> console.raw 2> tty.err ||
        { echo "rig-vsock: $1 did not reach the guest's shell: $(cat tty.err)"; vmm_stop $pid; return 1; }
    rig-vsock recv $up_addr 2> up.err | md5sum > up.md5 &
    srv=$!
    step up $srv "rig-vsock send vsock:2:5000 /tmp/up.bin; echo SEND''-RC=\$?" SEND-RC= || return 1
    rig-vsock send $down_addr $WORK/down.bin 2> down.err &
    srv=$!
    step down $srv "echo DOWN''-SUM \$(rig-vsock recv vsock:2:5001 | md5sum)" DOWN-SUM || return 1
    tr -d '\r' < console.raw > console.log
    gsum=$(sed -n 's/^UP-SUM \([0-9a-f]\{32\}\) -$/\1/p' console.log)
    [ -n "$gsum" ] && [ "$gsum" = "$(cut -d' ' -f1 up.md5)" ] || echo "rig-vsock: $1: guest->host md5 differs"
    grep -q "^DOWN-SUM $down_sum -" console.log || echo "rig-vsock: $1: host->guest md5 differs"
    echo "rig-vsock: $1 round $2: data verified both ways (md5)"
    vmm_stop $pid
    cd $WORK
}
: > results
r=1
while [ $r -le ${VSOCK_RUNS:-2} ]; do
    for v in ${VSOCK_VMMS:-ours qemu}; do
        run $v $r
    done
    r=$((r + 1))
done
# medians (lower median for even counts) and ratios
for s in up down; do
    for v in ours qemu; do
        for f in mibps cpu_per_gib; do
            m=$(grep "^RESULT $v $s " results | sed -n "s/.* $f=\([0-9.]*\).*/\1/p" | sort -n |
                awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}')
            eval "${v}_${s}_${f}=${m:-0}"
        done
    done
done
echo "median of ${VSOCK_RUNS:-2} runs              ours          qemu vhost-vsock   ours/qemu"
for s in up down; do
    [ $s = up ] && what="guest->host" || what="host->guest"
    eval "o=\$ours_${s}_mibps q=\$qemu_${s}_mibps oc=\$ours_${s}_cpu_per_gib qc=\$qemu_${s}_cpu_per_gib"
    awk -v w="$what" -v o=$o -v q=$q -v oc=$oc -v qc=$qc 'BEGIN {
        printf "%s MiB/s          %10.1f    %10.1f      %.2f\n", w, o, q, q ? o / q : 0
        printf "%s CPU-s/GiB      %10.2f    %10.2f      %.2f\n", w, oc, qc, qc ? oc / qc : 0 }'
done
EOF
tests/rig/rig.sh exec --vmm "$VMM" --script "$work/rig-vsock-inner.sh" \
    --bin "$BUILD/ttyexpect" --bin "$B/rig-vsock" --bin /usr/bin/qemu-system-x86_64 \
    --file "$B/guest/test.iso" --file "$work/shell-cfg.img" --file /usr/share/OVMF/OVMF_CODE.fd \
    --file /usr/share/seabios/bios-256k.bin:/usr/share/seabios/bios-256k.bin \
    --file /usr/share/qemu/kvmvapic.bin:/usr/share/qemu/kvmvapic.bin \
    --file /usr/share/qemu/linuxboot_dma.bin:/usr/share/qemu/linuxboot_dma.bin \
    --env "VSOCK_RUNS=${VSOCK_RUNS:-2}" --env "VSOCK_MIB=${VSOCK_MIB:-64}" \
    --env "VSOCK_VMMS=${VSOCK_VMMS:-ours qemu}" --timeout "${RIG_VSOCK_TIMEOUT:-2400}" > "$work/out.txt" 2>&1 || true
sed -n 's/^\[run *[0-9.]*\] //p' "$work/out.txt"
grep -E '^rig: (result|FAILED)' "$work/out.txt" || true
echo "rig-vsock: measured under the rig's software-emulated L1 CPU (QEMU TCG): compare the ratios only"
