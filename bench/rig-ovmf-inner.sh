#!/bin/sh
# Inside the rig (bench/rig-ovmf.sh): milliseconds from exec to the UEFI
# shell prompt for Debian's OVMF, our VMM and QEMU 7.2 (same guest RAM, 1
# vCPU, no disk or NIC), N rounds; ours first in half of them, which
# half drawn at random.
# QEMU: -nodefaults, kvmvapic off (ours has none), vmport and SMM off (ours
# has neither); what no QEMU 7.2 option removes from its pc machine is
# listed by bench/rig-ovmf.sh. Prints "BENCH-OVMF round=R pos=P vmm=V ms=MS"
# (ms=fail when the shell prompt did not come). Software CPU: ratios only.
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
QEMU_ARGS="-machine pc,accel=kvm,vmport=off,smm=off -cpu host -smp 1 -m 512 -nodefaults -no-user-config
    -display none -vga none -global apic-common.vapic=off -bios $F/OVMF.fd -serial unix:ttya,server=on,wait=on"
echo "BENCH-OVMF-CMD ours: $VMM config.toml ([main] cpus = 1, memory = 512, bootrom = OVMF.fd; nothing else)"
echo "BENCH-OVMF-CMD qemu: qemu-system-x86_64" $QEMU_ARGS

run() { # KIND ROUND POS
    d=$1-$2
    mkdir -p $d
    if [ $1 = ours ]; then
        printf '[main]\nname = "bench"\ncpus = 1\nbootrom = "%s"\nmemory = 512\n' "$F/OVMF.fd" > $d/config.toml
        t0=$(now_ms)
        (cd $d && exec "$VMM" config.toml > vmm.log 2>&1) &
    else
        t0=$(now_ms)
        # shellcheck disable=SC2086 # the arguments are words
        (cd $d && exec qemu-system-x86_64 $QEMU_ARGS > qemu.log 2>&1) &
    fi
    pid=$!
    ms=$(to_shell $d)
    kill -9 $pid
    wait $pid 2> /dev/null
    echo "BENCH-OVMF round=$2 pos=$3 vmm=$1 ms=$ms"
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
    if [ $first = ours ]; then
        run ours $i 1; run qemu $i 2
    else
        run qemu $i 1; run ours $i 2
    fi
done
exit 0
