#!/bin/sh
# The README quickstart inside L1 (or on a host whose KVM runs real guests):
# examples/quickstart.toml with local paths, OVMF -> GRUB -> Linux from the
# test ISO on virtio-blk, 4 vCPUs, to the guest's shell, a few commands
# there (one pings this side of the NIC's TAP, which the VMM creates),
# power-off. Run by tools/quickstart.sh (our VMM, once) and by
# tests/rig/stall-hunt.sh (our VMM and QEMU, interleaved, many rounds).
#
# Env: RIG_VMM, RIG_FILES (rig.sh run); QS_VMMS ("ours", or "ours qemu");
# QS_ROUNDS (1); QS_IDLE: seconds of console silence after which the guest
# counts as stalled (120); QS_TIMEOUT: seconds for a whole run (300);
# QS_QEMU: the inner QEMU (qemu-system-x86_64 on PATH).
#
# A run ends in one line, "QS-RESULT vmm=V round=R result=RESULT secs=S":
#   pass      shell reached, commands ran, VMM exited 0 after the power-off
#   stall     the guest printed nothing for QS_IDLE s (ttyexpect idle)
#   guest-error  the guest printed a kernel panic, soft lockup or RCU stall
#   timeout   the run went past QS_TIMEOUT with the guest still printing
#   vmm-exit  the VMM exited before the guest was done
#   fail      ttyexpect could not connect, a step failed otherwise, or the
#             VMM's exit status was not 0 after the power-off
#   vmm-hang  the guest powered off but the VMM did not exit within 15 s
#   rig-fault a stall whose state dump shows a vCPU in a state no guest can
#             reach (VCPU-STATE-CORRUPT: cr3 outside guest RAM; in the rig,
#             vCPU 0 of a fresh VM was seen holding L1's rip, rsp and cr3),
#             or a VMM that stays in the kernel after SIGKILL (L1's KVM is
#             stuck: the run ends there, RIG-FAULT, exit 125)
# On every result but pass the VMM's view is printed before it is stopped:
# for ours the state dump it logs on SIGUSR1 (every vCPU's registers, mode,
# pending interrupts, LAPIC, last exits; the interrupt controllers; every
# virtio and NVMe queue's indexes); for QEMU its monitor's "info registers
# -a", "info pic" and "info lapic". Exit status: 0 if every run passed;
# with one run (the quickstart), a rig fault prints "RIG-FAULT <signature>"
# and exits 125, which rig.py retries like any rig fault.
F=${RIG_FILES:?}
VMMS=${QS_VMMS:-ours}
ROUNDS=${QS_ROUNDS:-1}
IDLE=${QS_IDLE:-120}
TIMEOUT=${QS_TIMEOUT:-300}
QEMU=${QS_QEMU:-qemu-system-x86_64}
TOP_DIR=$PWD
failures=0

. rig-lib.sh
now() { date +%s; }

# What the VMM saw, asked while the guest is still there.
show_vmm_state() { # vmm pid
    if [ "$1" = ours ]; then
        vmm_dump $2 vmm.log
    else
        echo "== QEMU's view (monitor):"
        printf 'info status\ninfo registers -a\ninfo pic\ninfo lapic\n' > mon.in
        sleep 3
        timeout 3 cat mon.out | tr -d '\r' | grep -v '^(qemu)' | head -400 > qemu-state.txt
        cat qemu-state.txt
        # our VMM's check, on QEMU's registers (its guest has 1 GiB)
        qemu_state_corrupt qemu-state.txt 1073741824 &&
            echo "QEMU: a vCPU [VCPU-STATE-CORRUPT: cr3 outside guest RAM]"
    fi
}

start_vmm() { # vmm: starts it in the background, sets $vmm_pid
    if [ "$1" = ours ]; then
        sed -e "s|@ISO@|$F/quickstart.iso|" -e "s|@CFG@|$PWD/cfg.img|" \
            -e "s|/usr/share/OVMF/OVMF_CODE.fd|$F/OVMF_CODE.fd|" $F/quickstart.toml > config.toml
        [ "$round" = 1 ] && { echo "== config.toml"; cat config.toml; }
        $RIG_VMM config.toml > vmm.log 2>&1 &
        tap=pstap0
    else
        # the same machine: 4 vCPUs, 1 GiB, OVMF_CODE as a read-only bootrom,
        # the ISO and the config disk on virtio-blk at 00:04.0 and 00:06.0,
        # virtio-net on a TAP at 00:05.0
        mkfifo mon.in mon.out
        set -- $QEMU -machine pc,accel=kvm -cpu host -smp 4 -m 1024 -nodefaults -display none \
            -vga none -no-reboot -bios $F/OVMF_CODE.fd -L /usr/share/qemu \
            -drive file=$F/quickstart.iso,if=none,id=d0,format=raw,readonly=on \
            -device virtio-blk-pci,drive=d0,addr=4,bootindex=1 \
            -netdev tap,id=n0,ifname=qstap0,script=no,downscript=no \
            -device virtio-net-pci,netdev=n0,addr=5 \
            -drive file=$PWD/cfg.img,if=none,id=d1,format=raw \
            -device virtio-blk-pci,drive=d1,addr=6 \
            -chardev socket,id=con,path=ttya,server=on,wait=on -serial chardev:con \
            -monitor pipe:mon
        [ "$round" = 1 ] && echo "== $*"
        "$@" > vmm.log 2>&1 &
        tap=qstap0
    fi
    vmm_pid=$!
    # This side of the guest's NIC, once the TAP is there.
    i=0
    while ! ip link show $tap >/dev/null 2>&1 && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    ip addr add 10.0.2.2/24 dev $tap && ip link set $tap up
}

run_one() { # vmm round
    vmmname=$1 round=$2
    dir=$TOP_DIR/run-$vmmname-$round
    rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
    cp $F/cfg.img cfg.img
    : > console.raw
    t0=$(now)
    start_vmm $vmmname
    result= tail_pid=
    # ttyexpect writes to a file (through a pipe its status would be lost);
    # with one run, the file is shown as it grows
    RIG_IDLE=$IDLE guest_ttyexpect ttya timeout:$TIMEOUT "expect:RIG-SHELL ready" \
        "send:\r" "expect:#" \
        "send:uname -a; cat /proc/cmdline; ls /sys/block; grep -c ^processor /proc/cpuinfo\r" \
        "expect:#" \
        "send:ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ping -c 3 -W 10 10.0.2.2; echo PING''-RC=\$?\r" \
        "fail:PING-RC=1" "expect:PING-RC=0" "expect:#" "send:poweroff -f\r" eof > console.raw 2>ttyexpect.err &
    tty_pid=$!
    [ "$ROUNDS" = 1 ] && { tail -f console.raw & tail_pid=$!; }
    # ttyexpect's step timeout restarts at each step: the whole run is bounded here
    while vmm_alive $tty_pid; do
        [ $(( $(now) - t0 )) -ge $TIMEOUT ] && { result=timeout; break; }
        sleep 0.5
    done
    # The VMM's view while the guest is still there, then the VMM is stopped
    # (ttyexpect, if still waiting, sees the console close).
    check_vmm() {
        echo "quickstart: $vmmname: $result after $(( $(now) - t0 )) s"
        vmm_alive $vmm_pid && show_vmm_state $vmmname $vmm_pid > state.txt
        vmm_alive $vmm_pid && { vmm_stop $vmm_pid || l1_stuck=1; }
    }
    [ -n "$result" ] && check_vmm
    wait $tty_pid
    tty_rc=$?
    [ -n "$tail_pid" ] && { sleep 0.5; kill $tail_pid 2>/dev/null; wait $tail_pid 2>/dev/null; }
    if [ -z "$result" ]; then
        case $tty_rc in
            0) result=pass ;;
            3) result=stall ;;
            4) result=guest-error ;;
            *) if grep -q 'cannot connect' ttyexpect.err; then result=fail;
               elif vmm_alive $vmm_pid; then result=fail; else result=vmm-exit; fi ;;
        esac
        if [ $result = pass ]; then
            if vmm_wait_gone $vmm_pid 15; then
                wait $vmm_pid; st=$?
                [ $st = 0 ] || { result=fail; echo "quickstart: VMM exit status $st (expected exit_on_halt = 0)"; }
            else
                result=vmm-hang
            fi
        fi
        [ $result = pass ] || check_vmm
    fi
    tr -d '\r' < console.raw > console.log
    [ -n "$tail_pid" ] || cat console.log
    cat ttyexpect.err
    if [ $result != pass ]; then
        echo "== the guest's last console lines:"
        grep -v '^[[:space:]]*$' console.log | tail -15
        cat state.txt 2>/dev/null
        if grep -q 'VCPU-STATE-CORRUPT' state.txt 2>/dev/null; then
            result=rig-fault
            fault="nested-vcpu-state-corrupt: a vCPU of the guest has cr3 outside guest RAM"
            echo "quickstart: a vCPU holds a state no guest can reach (cr3 outside its RAM): the"
            echo "quickstart: nested hypervisor under the VMM lost the guest's state; a rig fault"
        fi
    fi
    if [ -n "$l1_stuck" ]; then
        result=rig-fault
        fault="l1-kernel-stuck: the VMM stays in the kernel after SIGKILL"
    else
        wait $vmm_pid 2>/dev/null
    fi
    if [ $vmmname = ours ]; then
        echo "== the VMM's log:"
        cat vmm.log
    else
        grep -v '^$' vmm.log | tail -20
    fi
    echo "QS-RESULT vmm=$vmmname round=$round result=$result secs=$(( $(now) - t0 ))"
    [ $result = pass ] || failures=$((failures + 1))
    cd "$TOP_DIR"
    if [ -n "$l1_stuck" ]; then # this L1 cannot run another VM
        echo "RIG-FAULT $fault"
        exit 125
    fi
}

fault= l1_stuck=
r=1
while [ $r -le $ROUNDS ]; do
    # interleaved, and who goes first alternates between rounds
    order=$VMMS
    [ $((r % 2)) = 0 ] && order=$(echo $VMMS | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')
    for v in $order; do run_one $v $r; done
    r=$((r + 1))
done
if [ $ROUNDS = 1 ] && [ "$VMMS" = ours ] && [ -n "$fault" ]; then
    echo "RIG-FAULT $fault"
    exit 125
fi
[ $failures = 0 ]
