#!/bin/sh
# /init of the rig's test guest (busybox, on the test ISO).  Prints one
# machine-readable line per fact, "RIG-REPORT <what> ...", runs the actions of
# the config (see tests/rig/README.md), prints "RIG-REPORT done", powers off.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
R() { echo "RIG-REPORT $*"; }
uptime() { local u rest; read -r u rest < /proc/uptime; echo $u; }
R boot kernel=$(uname -r) uptime=$(uptime)

while read -r m; do
    [ -n "$m" ] && { insmod "/lib/modules/rig/$m" 2>/dev/null || R warn insmod=$m; }
done < /etc/rig/modules

# Wait until the set of block devices stops changing (NVMe namespaces and
# virtio disks appear asynchronously), at most 10 s.
settle() {
    local prev= cur= same=0 i=0
    while [ $i -lt 50 ]; do
        cur=$(ls /sys/block /sys/class/net 2>/dev/null | tr '\n' ' ')
        ctrl_wait=0
        for c in /sys/class/nvme/nvme*; do
            [ -e "$c" ] || continue
            ls -d /sys/block/$(basename $c)n* >/dev/null 2>&1 || ctrl_wait=1
        done
        if [ "$cur" = "$prev" ] && [ $ctrl_wait = 0 ]; then
            same=$((same + 1)); [ $same -ge 3 ] && return 0
        else
            same=0
        fi
        prev=$cur; i=$((i + 1)); sleep 0.2
    done
}
settle

SUMLEN=1048576
region_md5() { # dev offset len
    dd if="/dev/$1" bs=65536 iflag=skip_bytes,count_bytes,fullblock skip="$2" count="$3" 2>/dev/null | md5sum | cut -d' ' -f1
}
blkdevs() { ls /sys/block | grep -v -E '^(loop|ram|sr|fd)'; }
dev_serial() {
    cat /sys/block/$1/serial 2>/dev/null || cat /sys/block/$1/device/serial 2>/dev/null
}
resolve_dev() { # name or serial:S
    case $1 in
        serial:*)
            for d in $(blkdevs); do
                [ "$(dev_serial $d | tr -d ' ')" = "${1#serial:}" ] && { echo $d; return 0; }
            done
            return 1 ;;
        *) [ -e /sys/block/$1 ] && echo $1 ;;
    esac
}

# ---- configuration: a disk whose first bytes are "RIGCFG1\n", or
# rig.actions=a,b,c;d,e on the kernel command line (commas become spaces).
CFG=/tmp/cfg
: > $CFG
CFGDEV=
for d in $(blkdevs); do
    if [ "$(dd if=/dev/$d bs=8 count=1 2>/dev/null)" = "RIGCFG1" ]; then
        CFGDEV=$d
        dd if=/dev/$d bs=4096 count=16 2>/dev/null | tr -d '\000' | sed -n '2,$p' | sed '/^end$/,$d' >> $CFG
        break
    fi
done
for w in $(cat /proc/cmdline); do
    case $w in rig.actions=*) echo "${w#rig.actions=}" | tr ';,' '\n ' >> $CFG ;; esac
done
sumlen=$(awk '$1=="sumlen"{print $2}' $CFG | tail -1)
[ -n "$sumlen" ] && SUMLEN=$sumlen

# ---- facts
R cpus=$(grep -c ^processor /proc/cpuinfo) vendor=$(awk -F': ' '/^vendor_id/{print $2; exit}' /proc/cpuinfo)
R mem_kib=$(awk '/MemTotal/{print $2}' /proc/meminfo)
# (shell builtins where possible: every process costs in a nested guest)
for p in /sys/bus/pci/devices/*; do
    [ -e "$p" ] || continue
    read -r ven < $p/vendor; read -r dev < $p/device; read -r cls < $p/class
    drv=
    [ -e $p/driver ] && { drv=$(readlink $p/driver); drv=${drv##*/}; }
    R pci ${p##*/} ${ven#0x}:${dev#0x} class=$cls driver=$drv
done
for d in $(blkdevs); do
    read -r sectors < /sys/block/$d/size; read -r ro < /sys/block/$d/ro
    size=$((sectors * 512))
    len=$SUMLEN; [ $len -gt $size ] && len=$size
    extra=
    [ "$d" = "$CFGDEV" ] && extra=" config=1"
    serial=$(dev_serial $d)
    R blk $d size=$size ro=$ro serial=${serial// /} sumlen=$len sum=$(region_md5 $d 0 $len)$extra
done
ip link set lo up 2>/dev/null
netline() {
    R net $1 mac=$(cat /sys/class/net/$1/address) up=$(cat /sys/class/net/$1/carrier 2>/dev/null || echo 0) addrs=$(ip -o -4 addr show dev $1 | awk '{print $4}' | tr '\n' ',' | sed 's/,$//')
}
for n in $(ls /sys/class/net); do [ $n = lo ] || netline $n; done

# ---- actions
final=poweroff
n=0
while read -r verb a b c e; do
    [ -n "$verb" ] || continue
    case $verb in \#*|sumlen) continue ;; esac
    n=$((n + 1))
    case $verb in
        write) # write DEV OFFSET LEN PATTERN: fill with PATTERN, sync, re-read
            d=$(resolve_dev $a) || { R action $n write $a fail=no-such-device; continue; }
            if yes "$e" | tr -d '\n' | head -c "$c" | dd of=/dev/$d bs=65536 oflag=seek_bytes seek="$b" conv=notrunc,fsync 2>/dev/null \
               && sync && blockdev --flushbufs /dev/$d && echo 3 > /proc/sys/vm/drop_caches; then
                R action $n write $d ok offset=$b len=$c sum=$(region_md5 $d $b $c)
            else
                R action $n write $d fail=io-error
            fi ;;
        sum) # sum DEV OFFSET LEN
            d=$(resolve_dev $a) || { R action $n sum $a fail=no-such-device; continue; }
            R action $n sum $d ok offset=$b len=$c sum=$(region_md5 $d $b $c) ;;
        net) # net IFACE ADDR/PREFIX [GATEWAY]
            ip link set $a up && ip addr add $b dev $a && { [ -z "$c" ] || ip route add default via $c; } \
                && R action $n net $a ok && netline $a || R action $n net $a fail ;;
        dhcp) # dhcp IFACE
            ip link set $a up
            if udhcpc -i $a -n -q -t 5 -s /etc/rig/udhcpc.sh >/dev/null 2>&1; then R action $n dhcp $a ok; netline $a; else R action $n dhcp $a fail; fi ;;
        ping) # ping ADDR [COUNT]
            out=$(ping -c ${b:-3} -W 2 $a 2>&1)
            rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
            [ "${rx:-0}" -gt 0 ] && R action $n ping $a ok received=$rx || R action $n ping $a fail received=${rx:-0} ;;
        vsock-read) # vsock-read PORT [CID]: connect, read to EOF
            if rig-vsock read ${b:-2} $a > /tmp/vs 2>/tmp/vs.err; then
                R action $n vsock-read $a ok bytes=$(wc -c < /tmp/vs) sum=$(md5sum < /tmp/vs | cut -d' ' -f1) text=$(head -c 64 /tmp/vs | tr -c 'A-Za-z0-9._:=-' '_')
            else
                R action $n vsock-read $a fail=$(tr ' ' '_' < /tmp/vs.err)
            fi ;;
        sleep) sleep $a; R action $n sleep ok ;;
        sh) # sh COMMAND...: run a shell command, report its status
            out=$(sh -c "$a $b $c $e" 2>&1); rc=$?
            R action $n sh rc=$rc out=$(echo "$out" | tail -1 | tr -c 'A-Za-z0-9._:=/-' '_') ;;
        poweroff|reboot|halt|shell) final=$verb ;;
        *) R action $n $verb fail=unknown-action ;;
    esac
done < $CFG
R done uptime=$(uptime)
sync
case $final in
    shell) # the quickstart: an interactive shell on the console
        echo "RIG-SHELL ready: a busybox shell on ttyS0; 'poweroff -f' powers the VM off"
        /bin/sh -i < /dev/console > /dev/console 2>&1
        poweroff -f ;;
    reboot) reboot -f ;;
    halt) halt -f ;;
    *) poweroff -f ;;
esac
