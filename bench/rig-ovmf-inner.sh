#!/bin/sh
# Inside the rig: seconds from exec to the UEFI shell prompt for Debian's
# OVMF, our VMM and QEMU alternately (same guest RAM, 1 vCPU), N rounds.
VMM=${RIG_VMM:-/rig/vmm}
F=${RIG_FILES:-/rig/files}
N=${BENCH_ROUNDS:-3}
# Milliseconds of uptime (10 ms resolution), from /proc/uptime "SSS.CC ...".
now_ms() {
    read -r up _ < /proc/uptime
    cs=${up#*.}
    echo $(( ${up%.*} * 1000 + ${cs#0} * 10 ))
}

to_shell() { # DIR: waits for the shell on DIR/ttya, prints ms since $t0
    if ttyexpect "$1/ttya" timeout:600 "expect:startup.nsh" "send:\e" "expect:Shell>" > "$1/console.log" 2>&1; then
        echo $(( $(now_ms) - t0 ))
    else
        echo fail
    fi
}

i=0
while [ $i -lt $N ]; do
    i=$((i + 1))
    d=ours-$i; mkdir -p $d
    printf '[main]\nname = "bench"\ncpus = 1\nbootrom = "%s"\nmemory = 512\n' "$F/OVMF.fd" > $d/config.toml
    t0=$(now_ms)
    (cd $d && exec "$VMM" config.toml > vmm.log 2>&1) &
    pid=$!
    ours=$(to_shell $d)
    kill -9 $pid; wait $pid 2>/dev/null
    d=qemu-$i; mkdir -p $d
    t0=$(now_ms)
    (cd $d && exec qemu-system-x86_64 -machine pc,accel=kvm -cpu host -smp 1 -m 512 -nodefaults \
        -display none -vga none -bios "$F/OVMF.fd" -L /usr/share/qemu \
        -serial unix:ttya,server=on,wait=on > qemu.log 2>&1) &
    pid=$!
    qemu=$(to_shell $d)
    kill -9 $pid; wait $pid 2>/dev/null
    echo "BENCH-OVMF round=$i ours_ms=$ours qemu_ms=$qemu"
done
