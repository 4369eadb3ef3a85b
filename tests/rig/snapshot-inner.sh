#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 13's rig test
# of snapshots (-s, SIGINT) and restores (-r).
#  linux: OVMF -> GRUB -> Linux from the test ISO with a virtio-blk data
#  disk, an NVMe data disk and its NIC on a TAP our VMM creates (L1 gives
#  it an address; the guest pings it). The guest writes SNAP_MIB (64) MiB
#  of a random pattern to each disk, 1 MiB at a time (fsync after each),
#  printing its progress; at "PROG 16" the VMM gets SIGINT and writes its
#  snapshot. A second VMM restores it (-r) and the guest, resumed when the
#  console client connects, finishes writing, reads both disks back (page
#  cache dropped) and pings L1 again; after the VMM exits L1 sums the disk
#  images. Every sum must equal the guest's sum of its pattern.
#  ovmf: OVMF at its UEFI shell, snapshotted and restored; the shell still
#  answers commands.
# One line per check: "SNAP-RESULT <scenario> <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); SNAP_TESTS ("linux ovmf"),
# SNAP_MIB (64).
F=${RIG_FILES:?}
MIB=${SNAP_MIB:-64}
. rig-lib.sh
rc=0
WORK=$PWD

# snapshot_and_exit NAME PID: SIGINT, the VMM's exit; the snapshot's path in
# $tar (empty if none), the seconds it took in $save_s.
snapshot_and_exit() {
    t0=$(date +%s)
    kill -INT "$2"
    vmm_wait_gone "$2" 300 || vmm_stop "$2"
    wait "$2" 2>/dev/null
    save_s=$(($(date +%s) - t0))
    tar=$(ls "$PWD/$1"-*.tar 2>/dev/null | head -1)
}

# tap_up TAP ADDR: L1's end of the TAP the VMM creates (same MAC each time,
# so the guest's ARP entry stays right across a restore).
tap_up() {
    i=0
    while ! ip link show "$1" >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -gt 300 ] && return 1; sleep 0.1
    done
    ip link set "$1" address 02:00:00:00:13:01 || return 1
    ip addr add "$2/24" dev "$1" 2>/dev/null || ip addr show dev "$1" | grep -q "inet $2/" || return 1
    ip link set "$1" up
}

linux_run() {
    result() { echo "SNAP-RESULT linux $*"; }
    failed() { result "$@"; rc=1; bad=1; }
    bad=0
    tap=snap0 l1=10.0.13.1 guest=10.0.13.2
    mkdir -p "$WORK/linux" && cd "$WORK/linux" || return 1
    cp "$F/cfg.img" cfg.img
    truncate -s 96M vblk.img
    truncate -s 80M nvme.img
    {
        rig_vm_config snaplinux 2 OVMF_CODE.fd "$PWD/cfg.img"
        rig_data_disks_config
        cat <<EOF

[dev.net0]
driver = "pci-virtio-viona"
vnic = "$tap"
pci-path = "0.8.0"
EOF
    } > config.toml
    $RIG_VMM -s config.toml > vmm.log 2>&1 &
    vmm=$!
    tap_up $tap $l1 && result tap-up pass || failed tap-up fail
    # Each command prints a tag ('' keeps the echoed command line from
    # matching) and the shell's prompt follows.
    setup="ip link set eth0 up && ip addr add $guest/24 dev eth0 && sleep 1 && ping -c 3 -W 5 $l1 > /tmp/ping.txt; echo PING''-RC=\$?"
    disks="V=; for d in /sys/block/vd*; do [ \$(cat \$d/size) = 196608 ] && V=/dev/\${d##*/}; done; N=/dev/nvme0n1; echo DISKS'' \$V \$N \$(cat /sys/block/nvme0n1/size)"
    pattern="dd if=/dev/urandom of=/tmp/pat bs=1M count=$MIB 2>/dev/null; echo PAT''-SUM \$(md5sum < /tmp/pat)"
    writer="(i=0; while [ \$i -lt $MIB ]; do dd if=/tmp/pat of=\$V bs=1M skip=\$i seek=\$i count=1 conv=notrunc,fsync 2>/dev/null && dd if=/tmp/pat of=\$N bs=1M skip=\$i seek=\$i count=1 conv=notrunc,fsync 2>/dev/null || echo WRITE''-ERR \$i; i=\$((i + 1)); echo PROG'' \$i; sleep 0.2; done; echo WRITE''-DONE) &"
    : > console.raw
    started=$(date +%s)
    RIG_IDLE=200 guest_ttyexpect ttya timeout:400 "expect:RIG-SHELL ready" "fail:BdsDxe" "send:\r" "expect:#" \
        "send:$setup\r" "expect:PING-RC=" "expect:#" \
        "send:$disks\r" "expect:DISKS" "expect:#" \
        "send:$pattern\r" "expect:PAT-SUM" "expect:#" \
        "send:$writer\r" "expect:PROG 16" >> console.raw 2> tty.err
    t1=$?
    echo "SNAP-TIME linux boot_to_prog16_seconds=$(($(date +%s) - started))"
    [ $t1 = 0 ] || { l1_kernel_trouble; vmm_alive $vmm && guest_stuck "linux: the guest did not reach PROG 16" $vmm vmm.log console.raw; }
    tar=
    [ $t1 = 0 ] && snapshot_and_exit snaplinux $vmm
    [ -n "$tar" ] && result snapshot pass "$(basename "$tar") $(($(stat -c %s "$tar") >> 20)) MiB, $(($(stat -c %b "$tar") / 2048)) MiB allocated, $save_s s; $(grep -o 'snapshot: wrote.*' vmm.log)" ||
        failed snapshot fail "$(tail -5 vmm.log)"
    t2=1
    if [ -n "$tar" ]; then
        sleep 2 # the time away
        started=$(date +%s)
        $RIG_VMM -r "$tar" > vmm-restore.log 2>&1 &
        vmm=$!
        tap_up $tap $l1 || failed tap-up-after-restore fail
        printf "\n== restored\n" >> console.raw
        RIG_IDLE=200 guest_ttyexpect ttya timeout:400 "fail:RIG-SHELL ready" "fail:BdsDxe" "expect:WRITE-DONE" "send:\r" "expect:#" \
            "send:sync; echo 3 > /proc/sys/vm/drop_caches; echo RB''-VBLK \$(dd if=\$V bs=1M count=$MIB 2>/dev/null | md5sum); echo RB''-NVME \$(dd if=\$N bs=1M count=$MIB 2>/dev/null | md5sum)\r" \
            "expect:RB-NVME" "expect:#" \
            "send:ping -c 3 -W 5 $l1 > /tmp/ping2.txt; echo PING2''-RC=\$?\r" "expect:PING2-RC=" "expect:#" \
            "send:poweroff -f\r" eof >> console.raw 2>> tty.err
        t2=$?
        echo "SNAP-TIME linux restore_to_poweroff_seconds=$(($(date +%s) - started))"
        [ $t2 = 0 ] || { l1_kernel_trouble; vmm_alive $vmm && guest_stuck "linux: the restored guest did not finish" $vmm vmm-restore.log console.raw; }
        vmm_wait_gone $vmm 30 || vmm_stop $vmm
        wait $vmm 2>/dev/null
    fi
    tr -d '\r' < console.raw > console.log
    [ $t1 = 0 ] && [ $t2 = 0 ] && result guest-steps pass || failed guest-steps fail "ttyexpect status $t1 $t2: $(cat tty.err)"
    grep -q "resuming VM snaplinux from its snapshot" vmm-restore.log 2>/dev/null &&
        result restored pass "$(grep -o 'snapshot: restored.*' vmm-restore.log); $(grep -o "clocks move forward.*" vmm-restore.log)" ||
        failed restored fail "$(tail -5 vmm-restore.log 2>/dev/null)"
    after=$(sed -n '/^== restored/,$p' console.log)
    first=$(echo "$after" | sed -n 's/^PROG \([0-9]*\)$/\1/p' | head -1)
    [ -n "$first" ] && [ "$first" -gt 16 ] && [ "$first" -le 24 ] && result continued pass "first progress line after the restore: PROG $first" ||
        failed continued fail "first progress after the restore: '${first}'"
    grep -q '^PING-RC=0' console.log && result ping-before pass || failed ping-before fail
    grep -q '^PING2-RC=0' console.log && result ping-after-restore pass "$(grep 'packets transmitted' console.log | tail -1)" ||
        failed ping-after-restore fail "$(grep '^PING2' console.log)"
    grep -q 'WRITE-ERR' console.log && failed write-errors fail "$(grep -c '^WRITE-ERR' console.log) chunks"
    psum=$(sed -n 's/^PAT-SUM \([0-9a-f]\{32\}\) -$/\1/p' console.log)
    [ -n "$psum" ] || failed pattern fail "no PAT-SUM"
    for d in VBLK NVME; do
        grep -q "^RB-$d $psum -" console.log && [ -n "$psum" ] && result guest-readback-$d pass "$MIB MiB md5 $psum" ||
            failed guest-readback-$d fail "want $psum, $(grep "^RB-$d" console.log)"
    done
    for img in vblk nvme; do
        s=$(dd if=$img.img bs=1M count=$MIB 2>/dev/null | md5sum | cut -d' ' -f1)
        [ -n "$psum" ] && [ "$s" = "$psum" ] && result l1-image-$img pass "md5 $s" || failed l1-image-$img fail "L1 $s, pattern $psum"
    done
    [ $bad = 0 ] || { echo "== linux: console"; tail -40 console.log; echo "== vmm.log"; tail -20 vmm.log; echo "== vmm-restore.log"; tail -20 vmm-restore.log 2>/dev/null; }
    cd "$WORK" || exit 1
}

ovmf_run() {
    result() { echo "SNAP-RESULT ovmf $*"; }
    failed() { result "$@"; rc=1; bad=1; }
    bad=0
    mkdir -p "$WORK/ovmf" && cd "$WORK/ovmf" || return 1
    cat > config.toml <<EOF
[main]
name = "snapovmf"
cpus = 2
bootrom = "$F/OVMF.fd"
memory = 512
exit_on_halt = 7
EOF
    $RIG_VMM -s config.toml > vmm.log 2>&1 &
    vmm=$!
    started=$(date +%s)
    ttyexpect ttya idle:${RIG_IDLE:-120} timeout:300 "expect:startup.nsh" "send:\e" "expect:Shell>" \
        "send:ver\r" "expect:UEFI v" "expect:Shell>" > console-before.log 2> tty.err
    t1=$?
    echo "SNAP-TIME ovmf shell_seconds=$(($(date +%s) - started))"
    [ $t1 = 0 ] || guest_stuck "ovmf: no UEFI shell" $vmm vmm.log console-before.log
    tar=
    [ $t1 = 0 ] && snapshot_and_exit snapovmf $vmm
    [ -n "$tar" ] && result snapshot pass "$(basename "$tar"), $(($(stat -c %b "$tar") / 2048)) MiB allocated, $save_s s" ||
        failed snapshot fail "$(tail -5 vmm.log)"
    t2=1
    if [ -n "$tar" ]; then
        sleep 2
        $RIG_VMM -r "$tar" > vmm-restore.log 2>&1 &
        vmm=$!
        ttyexpect ttya idle:${RIG_IDLE:-120} timeout:120 "fail:startup.nsh" "send:\r" "expect:Shell>" \
            "send:ver\r" "expect:UEFI v" "expect:Shell>" "send:pci\r" "expect:Shell>" \
            "send:memmap\r" "expect:Shell>" "send:reset -s\r" eof > console-after.log 2>> tty.err
        t2=$?
        [ $t2 = 0 ] || guest_stuck "ovmf: the restored shell did not answer" $vmm vmm-restore.log console-after.log
        vmm_wait_gone $vmm 30 || vmm_stop $vmm
        wait $vmm 2>/dev/null
    fi
    [ $t1 = 0 ] && result shell-before pass || failed shell-before fail "$(cat tty.err)"
    [ $t2 = 0 ] && result shell-after-restore pass "ver, pci, memmap, reset -s answered" ||
        failed shell-after-restore fail "ttyexpect $t2: $(cat tty.err)"
    tr -d '\r' < console-after.log | grep -q 'Host Bridge\|PCI' && result pci-listed pass || failed pci-listed fail
    [ $bad = 0 ] || { echo "== ovmf: console after"; tr -d '\r' < console-after.log 2>/dev/null | tail -30; echo "== vmm-restore.log"; tail -20 vmm-restore.log 2>/dev/null; }
    cd "$WORK" || exit 1
}

for t in ${SNAP_TESTS:-linux ovmf}; do
    ${t}_run
done
exit $rc
