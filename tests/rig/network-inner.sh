#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 11's rig test.
# The spec's example config (../shared/spec/propolis-README.md) as written,
# paths and the vnic value changed, plus the rig's config disk; one VMM run
# per data path in NET_PATHS. In each: OVMF -> GRUB -> Linux, the guest
# brings eth0 up, pings L1's end of the TAP our VMM created, moves NET_MIB
# MiB each way over TCP (HTTP: busybox httpd and wget at both ends) with
# md5 at both ends, reboots, and after the reboot pings and moves
# NET_REBOOT_MIB MiB each way again, reloads the virtio_net driver
# (the device reset and brought up by a new driver instance), pings and
# fetches NET_REBOOT_MIB MiB once more; then powers off.
# One line per check: "NET-RESULT <path> <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); NET_PATHS ("vhost userspace"),
# NET_MIB (64), NET_REBOOT_MIB (8).
F=${RIG_FILES:?}
MIB=${NET_MIB:-64}
MIB2=${NET_REBOOT_MIB:-8}
. rig-lib.sh
rc=0
WORK=$PWD

# L1's files to serve, and their sums.
mkdir -p www
dd if=/dev/urandom of=www/down.bin bs=1M count=$MIB 2>/dev/null
dd if=www/down.bin of=www/small.bin bs=1M count=$MIB2 2>/dev/null
down_sum=$(md5sum < www/down.bin | cut -d' ' -f1)
small_sum=$(md5sum < www/small.bin | cut -d' ' -f1)


# net_run PATH TAP PREFIX: one VMM run; PATH is vhost or userspace.
net_run() {
    path=$1 tap=$2 l1=$3.1 guest=$3.2
    result() { echo "NET-RESULT $path $*"; }
    failed() { result "$@"; rc=1; run_failed=1; }
    run_failed=0 stopped=0
    mkdir -p "$WORK/$path" && cd "$WORK/$path" || return 1
    cp $F/cfg.img cfg.img
    vhost_key=
    [ $path = userspace ] && vhost_key='vhost-net = false'
    # The spec's example config; paths and vnic changed. The userspace run
    # adds our key that keeps the userspace data path.
    cat > config.toml <<EOF
[main]
name = "testvm"
cpus = 4
bootrom = "$F/OVMF_CODE.fd"
memory = 1024

[block_dev.alpine_iso]
type = "file"
path = "$F/quickstart.iso"

[dev.block0]
driver = "pci-virtio-block"
block_dev = "alpine_iso"
pci-path = "0.4.0"

[dev.net0]
driver = "pci-virtio-viona"
vnic = "$tap"
pci-path = "0.5.0"
$vhost_key

# Added for the rig only: the test guest reads its start-up instructions
# ("give me a shell") from this disk (tests/rig/README.md), at a free slot.
[block_dev.rigcfg]
type = "file"
path = "cfg.img"

[dev.block1]
driver = "pci-virtio-block"
block_dev = "rigcfg"
pci-path = "0.6.0"
EOF
    started=$(date +%s)
    # A triple fault leaves nothing on the guest's console and KVM resets
    # the vCPU before our VMM sees the exit: L1's trace keeps its rip and
    # the event being delivered.
    l1_shutdown_trace start
    $RIG_VMM config.toml > vmm.log 2>&1 &
    vmm=$!
    i=0
    while ! ip link show $tap >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
    done
    ip addr add $l1/24 dev $tap && ip link set $tap up
    httpd -p $l1:8080 -h $WORK/www
    # The NIC's line comes after the TAP: wait for it too.
    i=0
    while ! grep -q 'dev.net0: virtio-net on TAP' vmm.log; do
        i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1
    done
    grep -q "created TAP $tap" vmm.log && result tap-created pass || failed tap-created fail
    case $path in
        vhost) want='vhost-net data path' ;;
        *) want='userspace data path' ;;
    esac
    grep -q "dev.net0: virtio-net on TAP $tap, .*$want" vmm.log && result data-path pass "$want" ||
        failed data-path fail "want '$want': $(grep 'dev.net0: virtio-net' vmm.log)"

    # The guest's commands; each prints a tag ('' keeps the echoed command
    # line from matching) and the shell's prompt follows.
    setup="ip link set eth0 up && ip addr add $guest/24 dev eth0 && sleep 1 && ping -c 3 -W 5 $l1 > /tmp/ping.txt; echo PING''-RC=\$?"
    # A transfer that stalls ends (busybox timeout) before the console's
    # idle limit, so the guest's counters still get printed.
    fetch() { echo "echo DOWN''-SUM \$(timeout 180 wget -q -O - http://$l1:8080/$1 | md5sum)"; }
    serve() { echo "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/up.bin bs=1M count=$1 2>/dev/null && echo UP''-SUM \$(md5sum < /tmp/www/up.bin) && httpd -p $guest:8080 -h /tmp/www; echo UP''-READY"
    }
    reload="rmmod virtio_net && insmod /lib/modules/rig/virtio_net.ko; echo RELOAD''-RC=\$?; sleep 1; ip link set eth0 up && ip addr add $guest/24 dev eth0 && sleep 1 && ping -c 3 -W 5 $l1 > /tmp/ping.txt; echo RELOAD''-PING-RC=\$?; echo RELOAD''-SUM \$(timeout 180 wget -q -O - http://$l1:8080/small.bin | md5sum)"
    stats="for f in rx_errors rx_length_errors rx_frame_errors rx_dropped rx_packets; do echo NET''-STAT \$f \$(cat /sys/class/net/eth0/statistics/\$f); done; echo NET''-CLOCK \$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); grep -A1 ^Tcp: /proc/net/snmp; cat /proc/net/dev"
    # Boot, first transfers; a BdsDxe after the shell is a guest reset.
    : > console.raw
    RIG_IDLE=200 guest_ttyexpect ttya timeout:300 "expect:RIG-SHELL ready" "fail:BdsDxe" "send:\r" "expect:#" \
        "send:$setup\r" "expect:PING-RC=" "expect:#" \
        "send:$(fetch down.bin)\r" "expect:DOWN-SUM" "expect:#" \
        "send:$(serve $MIB)\r" "expect:UP-READY" "expect:#" >> console.raw 2>tty.err
    t1=$?
    up1=
    [ $t1 = 0 ] && up1=$(wget -q -O - http://$guest:8080/up.bin | md5sum | cut -d' ' -f1)
    # The guest's counters, a reboot, the same again smaller.
    t2=1
    [ $t1 = 0 ] && RIG_IDLE=200 guest_ttyexpect ttya timeout:300 "send:$stats\r" "expect:NET-STAT rx_packets" "expect:#" \
        "send:reboot -f\r" "expect:RIG-SHELL ready" "fail:BdsDxe" "send:\r" "expect:#" \
        "send:$setup\r" "expect:PING-RC=" "expect:#" \
        "send:$(fetch small.bin)\r" "expect:DOWN-SUM" "expect:#" \
        "send:$(serve $MIB2)\r" "expect:UP-READY" "expect:#" >> console.raw 2>>tty.err
    [ $t1 = 0 ] && t2=$?
    up2=
    [ $t2 = 0 ] && up2=$(wget -q -O - http://$guest:8080/up.bin | md5sum | cut -d' ' -f1)
    t3=1
    [ $t2 = 0 ] && guest_ttyexpect ttya timeout:300 "fail:BdsDxe" "send:$reload\r" "expect:RELOAD-SUM" "expect:#" \
        "send:$stats\r" "expect:NET-STAT rx_packets" "expect:#" \
        "send:poweroff -f\r" eof >> console.raw 2>>tty.err
    [ $t2 = 0 ] && t3=$?
    tr -d '\r' < console.raw > console.log
    [ $t1 = 0 ] && [ $t2 = 0 ] && [ $t3 = 0 ] && result guest-steps pass ||
        failed guest-steps fail "ttyexpect status $t1 $t2 $t3: $(cat tty.err)"
    if [ $t1 != 0 ] || [ $t2 != 0 ] || [ $t3 != 0 ]; then
        l1_kernel_trouble
        echo "== L1's side of $tap:"
        grep -A1 ^Tcp: /proc/net/snmp; grep "$tap" /proc/net/dev; ls /sys/class/net/$tap/queues
        vmm_alive $vmm && guest_stuck "$path: the guest did not finish its steps" $vmm vmm.log console.raw
        stopped=1
    fi

    # Before and after the reboot: the lines of each boot, split at the
    # second shell.
    awk '/^RIG-SHELL ready/ {n++} {print > ("boot" n ".log")}' console.log
    for b in 1 2; do
        [ $b = 1 ] && { dsum=$down_sum usum=$up1 mib=$MIB; } || { dsum=$small_sum usum=$up2 mib=$MIB2; }
        f=boot$b.log
        [ -f $f ] || { failed boot$b fail "no shell"; continue; }
        grep -q "^PING-RC=0" $f && result boot$b-ping pass || failed boot$b-ping fail
        grep -q "^DOWN-SUM $dsum -" $f && result boot$b-download pass "$mib MiB md5 $dsum" ||
            failed boot$b-download fail "want $dsum, guest: $(grep '^DOWN-SUM' $f)"
        gsum=$(sed -n 's/^UP-SUM \([0-9a-f]\{32\}\) -$/\1/p' $f)
        [ -n "$usum" ] && [ "$usum" = "$gsum" ] && result boot$b-upload pass "$mib MiB md5 $usum" ||
            failed boot$b-upload fail "guest $gsum, L1 got ${usum:-nothing}"
        # A frame's buffers all used together: a driver that sees fewer
        # than num_buffers counts rx_length_errors (Linux virtio_net).
        echo "NET-INFO $path boot$b guest counters: $(grep '^NET-STAT' $f | cut -d' ' -f2- | tr '\n' ' ')$(grep -m1 '^NET-CLOCK' $f)"
        errs=$(grep '^NET-STAT rx_.*errors' $f | awk '{s += $3} END {print s + 0}')
        grep -q '^NET-STAT rx_packets' $f && [ "$errs" = 0 ] && result boot$b-rx-errors pass ||
            failed boot$b-rx-errors fail "$(grep '^NET-STAT' $f | tr '\n' ' ')"
    done
    # The driver reloaded: its reset and a new bring-up keep the network.
    grep -q "^RELOAD-RC=0" console.log && grep -q "^RELOAD-PING-RC=0" console.log &&
        grep -q "^RELOAD-SUM $small_sum -" console.log && result driver-reload pass "$MIB2 MiB md5 $small_sum" ||
        failed driver-reload fail "$(grep '^RELOAD-' console.log | tr '\n' ' ')"
    grep -q 'guest reset: VM restarted' vmm.log && result reboot pass || failed reboot fail
    if grep -q 'triple fault' vmm.log; then
        failed no-triple-fault fail
        l1_shutdown_trace show &&
            echo "RIG-FAULT nested-shutdown: the guest triple-faulted with a rig signature (above)"
    fi
    if [ "$stopped" = 1 ]; then
        : # stopped above, after the failed step
    elif vmm_wait_gone $vmm 30; then
        wait $vmm 2>/dev/null; st=$?
        [ $st = 0 ] && result vmm-exit pass || failed vmm-exit fail "status $st"
    else
        failed vmm-exit fail "VMM still running"; vmm_stop $vmm
    fi
    echo "NET-TIME $path $(($(date +%s) - started)) s (two boots, $MIB + $MIB2 MiB each way)"
    if [ $run_failed = 1 ]; then
        echo "== $path: console"; cat console.log; cat tty.err
        echo "== $path: vmm.log"; tail -40 vmm.log
    fi
    cd "$WORK" || exit 1
}

# Documentation ranges (RFC 5737), one per run.
set -- 192.0.2 198.51.100 203.0.113
n=1
for p in ${NET_PATHS:-vhost userspace}; do
    net_run $p ntap$n $1
    shift
    n=$((n + 1))
done
exit $rc
