#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 16's crucible
# test. Six test downstairs (crucible-ds) on L1's loopback serve two
# region sets: a virtio-blk disk (512-byte blocks) and an NVMe disk (4 KiB
# blocks, encrypted, over TLS: $RIG_FILES/tls holds the certificates).
# Linux boots three times with generation = "auto" and an unchanged
# config:
#   1. makes a FAT filesystem on each disk, writes files (random data, and
#      on the encrypted disk a text marker) and checksums them; one
#      downstairs of the virtio disk is killed as the files are written
#      and restarted a second later, and the guest waits 12 s before the
#      checksums, so the VMM sees it back in this boot;
#   2. and 3. check the files against those checksums and write more;
#      round 3 ends with the guest's own poweroff, which must end the VMM.
# Then: the three region copies of each disk hold the same blocks, the
# encrypted regions hold no trace of the marker, the generations were 1, 2
# and 3, and the guest saw no I/O error.
# One line per check: "CRU-RESULT <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); CRU_FIRMWARE (bios-256k.bin).
F=${RIG_FILES:?}
. rig-lib.sh
rc=0
result() { echo "CRU-RESULT $*"; }
failed() {
    result "$@"
    rc=1
}
KEY=$(head -c 32 /dev/urandom | base64)
MARKER=CRUCIBLE-PLAINTEXT-MARKER

# ds NAME PORT ARGS...: a downstairs serving ./NAME on 127.0.0.1:PORT.
ds() {
    _name=$1
    _port=$2
    shift 2
    rm -f "$_name.ready"
    crucible-ds --dir "$PWD/$_name" --port "$_port" --ready-file "$_name.ready" "$@" \
        > "ds-$_name.log" 2>&1 &
    eval "pid_$_name=$!"
    _n=0
    while [ ! -f "$_name.ready" ] && [ $_n -lt 100 ]; do
        _n=$((_n + 1))
        sleep 0.1
    done
}
VGEO="--block-size 512 --extent-size 8192 --extent-count 8"
NGEO="--block-size 4096 --extent-size 1024 --extent-count 8 --encrypted"
T=$F/tls
ip link set lo up
for i in 0 1 2; do
    ds v$i 381$i $VGEO
    ds n$i 382$i $NGEO --tls-cert $T/downstairs$i.pem --tls-key $T/downstairs$i.key --tls-root $T/root.pem
done

cp "$F/cfg.img" cfg.img
{
    rig_vm_config crucible 1 "${CRU_FIRMWARE:-bios-256k.bin}" "$PWD/cfg.img"
    printf '\n[block_dev.cv]\ntype = "crucible"\nblock_size = 512\nblocks_per_extent = 8192\n'
    printf 'extent_count = 8\ntargets = ["127.0.0.1:3810", "127.0.0.1:3811", "127.0.0.1:3812"]\n'
    printf 'generation = "auto"\n'
    printf '\n[block_dev.cn]\ntype = "crucible"\nblock_size = 4096\nblocks_per_extent = 1024\n'
    printf 'extent_count = 8\ntargets = ["127.0.0.1:3820", "127.0.0.1:3821", "127.0.0.1:3822"]\n'
    printf 'generation = "auto"\nencryption_key = "%s"\n' "$KEY"
    printf 'cert_pem = "%s"\nkey_pem = "%s"\nroot_cert_pem = "%s"\n' "$T/upstairs.pem" \
        "$T/upstairs.key" "$T/root.pem"
    printf '\n[dev.block2]\ndriver = "pci-virtio-block"\nblock_dev = "cv"\npci-path = "0.6.0"\n'
    printf '\n[dev.nvme0]\ndriver = "pci-nvme"\nblock_dev = "cn"\npci-path = "0.7.0"\n'
} > config.toml

# The crucible virtio disk is the 32 MiB one (65536 sectors).
disks="V=; for d in /sys/block/vd*; do [ \$(cat \$d/size) = 65536 ] && V=/dev/\${d##*/}; done; N=/dev/nvme0n1; echo DISKS'' \$V \$N"
mounts="mkdir -p /mnt/v /mnt/n && mount -t vfat \$V /mnt/v && mount -t vfat \$N /mnt/n && echo MOUNTED''"
sums="echo SUMS'' \$(md5sum < /mnt/v/big | cut -c1-32) \$(md5sum < /mnt/n/big | cut -c1-32) \$(md5sum < /mnt/n/marker | cut -c1-32)"
finish="umount /mnt/v && umount /mnt/n && echo UMOUNTED'' && dmesg | grep -ci 'i/o error' | sed 's/^/IOERRORS /'"

# run ROUND STEP...: boots the VM and drives its shell through STEPs (the
# last unmounts); round_end then stops the VMM with SIGTERM, which makes it
# flush the disks and exit with status 0.
run() {
    _round=$1
    shift
    : > console-$_round.raw
    $RIG_VMM config.toml > vmm-$_round.log 2>&1 &
    vmm=$!
    set -- "$@" "expect:UMOUNTED" "expect:IOERRORS" "expect:#"
    [ -n "${POWEROFF:-}" ] && set -- "$@" "send:poweroff -f\r" "eof"
    RIG_IDLE=200 guest_ttyexpect ttya timeout:400 "expect:RIG-SHELL ready" "fail:BdsDxe" \
        "send:\r" "expect:#" "send:$disks\r" "expect:DISKS /dev/vd" "expect:#" "$@" \
        > console-$_round.raw 2> tty-$_round.err &
    tty=$!
}
# With POWEROFF set the guest powers off (ACPI S5, the FADT's PM block,
# which SeaBIOS moves to 0x600) and the VMM must end by itself.
round_end() {
    _round=$1
    wait $tty
    _trc=$?
    if [ -n "${POWEROFF:-}" ]; then
        if vmm_wait_gone $vmm 60 && grep -q "guest entered S5" vmm-$_round.log; then
            result guest-poweroff-round-$_round pass
        else
            failed guest-poweroff-round-$_round fail "the VMM still ran 60 s after poweroff -f"
            echo "== round $_round: the VMM's power and reset lines, the guest's last words"
            grep -E "S5|sleep type|reset|ACPI|piix4" vmm-$_round.log | head -20
            tr -d '\r' < console-$_round.raw | grep -iE "reboot|power|panic|acpi|Kernel" | head -30
        fi
    fi
    kill -TERM $vmm 2>/dev/null
    vmm_wait_gone $vmm 30 || vmm_stop $vmm
    wait $vmm
    _vrc=$?
    tr -d '\r' < console-$_round.raw > console-$_round.log
    [ $_vrc = 0 ] || failed vmm-exit-round-$_round fail "status $_vrc"
    grep -q "stopped before" vmm-$_round.log && failed final-flush-round-$_round fail \
        "$(grep 'stopped before' vmm-$_round.log)"
    if [ $_trc != 0 ]; then
        failed round-$_round fail "ttyexpect status $_trc: $(tail -2 tty-$_round.err | tr '\n' ' ')"
        echo "== round $_round console"
        tail -20 console-$_round.log
        echo "== vmm log"
        tail -20 vmm-$_round.log
    fi
}

# Round 1: filesystems, files, a downstairs killed while they are written.
run 1 "send:mkdosfs \$V >/dev/null && mkdosfs \$N >/dev/null && $mounts\r" "expect:MOUNTED" "expect:#" \
    "send:echo WRITE''-START; dd if=/dev/urandom of=/mnt/v/big bs=65536 count=160 2>/dev/null; yes $MARKER | head -c 1048576 > /mnt/n/marker; dd if=/dev/urandom of=/mnt/n/big bs=65536 count=64 2>/dev/null; sync; echo WRITE''-DONE\r" \
    "expect:WRITE-DONE" "timeout:400" "send:sleep 12; echo SLE''PT\r" "expect:SLEPT" \
    "send:$sums\r" "expect:SUMS " "expect:#" "send:$finish\r"
deadline=$(($(date +%s) + 400))
while ! grep -q '^WRITE-START' console-1.raw 2>/dev/null; do
    kill -0 $tty 2>/dev/null && [ "$(date +%s)" -lt $deadline ] || break
    sleep 0.2
done
kill -KILL $pid_v1
wait $pid_v1 2>/dev/null
sleep 1
ds v1 3811 $VGEO
round_end 1
sums1=$(grep '^SUMS ' console-1.log | tail -1)
[ -n "$sums1" ] && grep -q "downstairs 127.0.0.1:3811 is back" vmm-1.log &&
    result write-with-downstairs-killed pass "$sums1; $(grep -o '[0-9]* jobs replayed' vmm-1.log)" ||
    failed write-with-downstairs-killed fail "sums '$sums1'; $(grep 'block_dev.cv' vmm-1.log | tail -3 | tr '\n' ' ')"

# Rounds 2 and 3: the same config; the files are intact; more are written.
for r in 2 3; do
    [ $r = 3 ] && POWEROFF=1
    run $r "send:$mounts\r" "expect:MOUNTED" "expect:#" "send:$sums\r" "expect:SUMS " "expect:#" \
        "send:dd if=/dev/urandom of=/mnt/v/r$r bs=65536 count=16 2>/dev/null; sync; echo WROTE''\r" \
        "expect:WROTE" "expect:#" "send:$finish\r"
    round_end $r
    s=$(grep '^SUMS ' console-$r.log | tail -1)
    [ -n "$s" ] && [ "$s" = "$sums1" ] && result files-intact-round-$r pass ||
        failed files-intact-round-$r fail "round 1 '$sums1', round $r '$s'"
done

for r in 1 2 3; do
    for d in cv cn; do
        gl=$(grep "block_dev.$d: active on" vmm-$r.log | grep -o 'generation [0-9]*' | tail -1)
        [ "$gl" = "generation $r" ] && result generation-$d-round-$r pass ||
            failed generation-$d-round-$r fail "'$gl'"
    done
    e=$(grep '^IOERRORS ' console-$r.log | tail -1)
    [ "$e" = "IOERRORS 0" ] && result no-io-errors-round-$r pass ||
        failed no-io-errors-round-$r fail "'$e'"
done

for i in 0 1 2; do
    eval "kill -TERM \$pid_v$i \$pid_n$i"
done
wait
# The three copies agree block for block.
for d in v n; do
    same=1
    for f in $(cd ${d}0 && ls | grep -v meta); do
        a=$(md5sum < ${d}0/$f)
        [ "$a" = "$(md5sum < ${d}1/$f)" ] && [ "$a" = "$(md5sum < ${d}2/$f)" ] || same=0
    done
    [ $same = 1 ] && result copies-agree-$d pass || failed copies-agree-$d fail
done
# No plaintext in the encrypted regions.
hits=$(cat n0/* n1/* n2/* | grep -c "$MARKER" || true)
[ "$hits" = 0 ] && result no-plaintext pass || failed no-plaintext fail "$hits lines with the marker"
exit $rc
