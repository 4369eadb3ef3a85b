#!/bin/sh
# /init of the rig's L1 machine (busybox).  Loads kvm-amd, runs /rig/script
# with its output on ttyS1, prints markers on ttyS0 that tests/rig/rig.py reads:
#   RIG-L1-READY ...        /dev/kvm is usable
#   RIG-L1-ERROR step=...   a setup step failed (no retry: fix the input)
#   RIG-L1-EXIT rc=N        the script's exit status
export PATH=/rig/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /root /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o size=90% shm /dev/shm
mount -t tmpfs -o size=90% tmp /tmp
# No transparent huge pages in L1: three durability runs hung with L1's
# kernel stuck (khugepaged and a VMM thread blocked for minutes, TLB-flush
# soft lockups) on this software CPU; nothing in the rig tests huge pages.
echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
echo "RIG-L1-BOOT cpus=$(grep -c ^processor /proc/cpuinfo)"

finish() {
    echo "RIG-L1-EXIT rc=$1"
    if [ -d /rig/out ] && [ -b /dev/vda ]; then
        if ! tar -cf /dev/vda -C /rig/out .; then
            echo "RIG-L1-ERROR step=out: could not write /rig/out to the output disk"
        fi
    fi
    sync
    poweroff -f
    sleep 5
    echo o > /proc/sysrq-trigger
}
fail() {
    echo "RIG-L1-ERROR step=$1: $2"
    sync
    poweroff -f
}

while read -r m args; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/rig/$m" $args || echo "RIG-L1-WARN insmod $m failed"
done < /etc/rig/modules
[ -c /dev/kvm ] || fail kvm "no /dev/kvm after loading kvm-amd (does the outer CPU have svm?): $(dmesg | grep -i -E 'kvm|svm' | tail -3 | tr '\n' ' ')"

[ -e /rig/script ] || fail script "/rig/script missing"
chmod +x /rig/script /rig/bin/* 2>/dev/null
mkdir -p /rig/out /rig/work
echo "RIG-L1-READY kvm=ok cpus=$(grep -c ^processor /proc/cpuinfo) mem_kib=$(awk '/MemTotal/{print $2}' /proc/meminfo)"

export RIG_DIR=/rig RIG_FILES=/rig/files RIG_OUT=/rig/out RIG_VMM=/rig/vmm
[ -f /rig/env ] && . /rig/env
stty -F /dev/ttyS1 115200 raw -echo 2>/dev/null
cd /rig/work
if [ "$(head -c 4 /rig/script | od -An -c | tr -d ' ')" = '177ELF' ]; then
    /rig/script </dev/null >/dev/ttyS1 2>&1
else
    sh /rig/script </dev/null >/dev/ttyS1 2>&1
fi
finish $?
