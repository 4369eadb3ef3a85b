#!/bin/sh
# Inside the rig (bench/rig-ovmf.sh), our VMM and QEMU 7.2 with Debian's
# OVMF, 1 vCPU, 512 MiB, N rounds, ours first in half of them (which half
# drawn at random):
#   shell   milliseconds from exec to the UEFI shell prompt (no disk or NIC)
#   linux   milliseconds from exec to the rig guest's /init marker
#           ("RIG-REPORT boot"): OVMF -> GRUB -> Linux from test.iso on a
#           virtio-blk disk at 00:04.0 (QEMU: with an iothread and io_uring)
# QEMU: -nodefaults, kvmvapic off (ours has none), vmport and SMM off (ours
# has neither); what no QEMU 7.2 option removes from its pc machine is
# listed by bench/rig-ovmf.sh. Prints "BENCH-OVMF round=R pos=P vmm=V ms=MS"
# (ms=fail when the shell prompt did not come) and "BENCH-OVMF-LINUX
# round=R pos=P vmm=V ms=MS". Software CPU: ratios only.
VMM=${RIG_VMM:-/rig/vmm}
F=${RIG_FILES:-/rig/files}
N=${BENCH_ROUNDS:-10}
# Milliseconds of uptime (10 ms resolution), from /proc/uptime "SSS.CC ...".
now_ms() {
    read -r up _ < /proc/uptime
    cs=${up#*.}
    echo $((${up%.*} * 1000 + ${cs#0} * 10))
}
to_shell() { # DIR: waits for the shell on DIR/ttya, prints ms since $t0
    if ttyexpect "$1/ttya" timeout:600 "expect:startup.nsh" "send:\e" "expect:Shell>" > "$1/console.log" 2>&1; then
        echo $(($(now_ms) - t0))
    else
        echo fail
    fi
}
to_linux() { # DIR: waits for the guest's /init marker on DIR/ttya, prints ms since $t0
    if ttyexpect "$1/ttya" timeout:900 "expect:RIG-REPORT boot" > "$1/console.log" 2>&1; then
        echo $(($(now_ms) - t0))
    else
        echo fail
    fi
}
QEMU_ARGS="-machine pc,accel=kvm,vmport=off,smm=off -cpu host -smp 1 -m 512 -nodefaults -no-user-config
    -display none -vga none -global apic-common.vapic=off -bios $F/OVMF.fd -serial unix:ttya,server=on,wait=on"
QEMU_DISK="-object iothread,id=io0
    -drive file=$F/test.iso,if=none,id=iso,format=raw,readonly=on,cache=writeback,aio=io_uring
    -device virtio-blk-pci,drive=iso,addr=4,bootindex=1,iothread=io0"
echo "BENCH-OVMF-CMD ours shell: $VMM config.toml ([main] cpus = 1, memory = 512, bootrom = OVMF.fd; nothing else)"
echo "BENCH-OVMF-CMD qemu shell: qemu-system-x86_64" $QEMU_ARGS
echo "BENCH-OVMF-CMD ours linux: the same plus [block_dev.iso] type = \"file\", path = test.iso, read_only = true; [dev.block0] driver = \"pci-virtio-block\", block_dev = \"iso\", pci-path = \"0.4.0\""
echo "BENCH-OVMF-CMD qemu linux: qemu-system-x86_64" $QEMU_ARGS $QEMU_DISK

run() { # TEST(shell|linux) KIND ROUND POS
    d=$1-$2-$3
    mkdir -p $d
    if [ $2 = ours ]; then
        printf '[main]\nname = "bench"\ncpus = 1\nbootrom = "%s"\nmemory = 512\n' "$F/OVMF.fd" > $d/config.toml
        if [ $1 = linux ]; then
            printf '[block_dev.iso]\ntype = "file"\npath = "%s"\nread_only = true\n' "$F/test.iso" >> $d/config.toml
            printf '[dev.block0]\ndriver = "pci-virtio-block"\nblock_dev = "iso"\npci-path = "0.4.0"\n' >> $d/config.toml
        fi
        t0=$(now_ms)
        (cd $d && exec "$VMM" config.toml > vmm.log 2>&1) &
    else
        disk=
        [ $1 = linux ] && disk=$QEMU_DISK
        t0=$(now_ms)
        # shellcheck disable=SC2086 # the arguments are words
        (cd $d && exec qemu-system-x86_64 $QEMU_ARGS $disk > qemu.log 2>&1) &
    fi
    pid=$!
    ms=$(to_$1 $d)
    kill -9 $pid
    wait $pid 2> /dev/null
    tag=BENCH-OVMF
    [ $1 = linux ] && tag=BENCH-OVMF-LINUX
    echo "$tag round=$3 pos=$4 vmm=$2 ms=$ms"
    if [ "$ms" = fail ]; then
        tail -5 $d/console.log $d/*.log | sed 's/^/BENCH-OVMF-FAIL /'
    fi
}

# Who goes first in each round: half the rounds each (one more at random
# when N is odd), in a random order.
rand() { echo $(($(od -An -N2 -tu2 /dev/urandom) % $1)); }
firsts=$(i=0; while [ $i -lt "$N" ]; do
    if [ $i -lt $((N / 2)) ]; then f=ours; elif [ $i -lt $((N / 2 * 2)) ]; then f=qemu; else
        f=$( [ "$(rand 2)" = 0 ] && echo ours || echo qemu); fi
    echo "$(rand 65536) $f"
    i=$((i + 1))
done | sort -n | cut -d' ' -f2)
i=0
for first in $firsts; do
    i=$((i + 1))
    for t in shell linux; do
        if [ $first = ours ]; then
            run $t ours $i 1; run $t qemu $i 2
        else
            run $t qemu $i 1; run $t ours $i 2
        fi
    done
done
exit 0
