#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 14's
# kill-anywhere durability test. Each round boots Linux (SeaBIOS, which
# boots far faster than OVMF on the rig's software CPU, -> GRUB -> the test
# ISO; DUR_FIRMWARE=OVMF_CODE.fd for OVMF) with a virtio-blk and an NVMe data disk, the same image
# files every round. The guest writes 4 KiB records, slot ROUND*256+I on
# each disk, each one `dd ... conv=fsync` and then "SYNCED V|N ROUND I" on
# the console. After a random number of reported records (3..42) and a
# random further 0..499 ms the VMM gets SIGKILL. At the end L1 checks every
# record any round reported: its slot must hold exactly that record.
# One line per check: "DUR-RESULT <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); DUR_ROUNDS (20), DUR_FIRMWARE.
F=${RIG_FILES:?}
ROUNDS=${DUR_ROUNDS:-20}
. rig-lib.sh
rc=0
result() { echo "DUR-RESULT $*"; }
failed() { result "$@"; rc=1; }
rand() { echo $(($(od -An -N2 -tu2 /dev/urandom) % $1)); }

cp "$F/cfg.img" cfg.img
truncate -s 64M vblk.img
truncate -s 64M nvme.img
{
    rig_vm_config durability 2 "${DUR_FIRMWARE:-bios-256k.bin}" "$PWD/cfg.img"
    rig_data_disks_config
} > config.toml

# The record for disk D (V or N), round R, index I: 4 KiB, its own text
# padded with spaces. The guest's busybox printf makes the same bytes.
record() { printf '%-4095s\n' "DUR $1 round=$2 rec=$3 slot=$(($2 * 256 + $3))"; }

: > synced.all
round=1
while [ $round -le $ROUNDS ]; do
    target=$(($(rand 40) + 3))
    delay_ms=$(rand 500)
    disks="V=; for d in /sys/block/vd*; do [ \$(cat \$d/size) = 131072 ] && V=/dev/\${d##*/}; done; N=/dev/nvme0n1; echo DISKS'' \$V \$N"
    writer="i=0; while [ \$i -lt 250 ]; do s=\$(($round * 256 + \$i)); for D in V:\$V N:\$N; do dev=\${D#*:}; D=\${D%%:*}; printf '%-4095s\\\\n' \"DUR \$D round=$round rec=\$i slot=\$s\" > /tmp/r && dd if=/tmp/r of=\$dev bs=4096 seek=\$s count=1 conv=notrunc,fsync 2>/dev/null && echo SYNCED'' \$D $round \$i || echo WRITE''-ERR \$D \$i; done; i=\$((i + 1)); done; echo WRITER''-DONE"
    : > console-$round.raw
    $RIG_VMM config.toml > vmm-$round.log 2>&1 &
    vmm=$!
    # The console client stays attached until the kill (its eof step ends it).
    RIG_IDLE=200 guest_ttyexpect ttya timeout:400 "expect:RIG-SHELL ready" "fail:BdsDxe" "send:\r" "expect:#" \
        "send:$disks\r" "expect:DISKS" "expect:#" "send:$writer\r" "fail:WRITER-DONE" "timeout:600" eof \
        > console-$round.raw 2> tty-$round.err &
    tty=$!
    # Until the target record is reported, the ttyexpect ends (a failure)
    # or 400 s pass.
    deadline=$(($(date +%s) + 400))
    while ! tr -d '\r' < console-$round.raw | grep -q "^SYNCED N $round $((target - 1))\$"; do
        kill -0 $tty 2>/dev/null && [ "$(date +%s)" -lt $deadline ] || break
        sleep 0.5
    done
    if tr -d '\r' < console-$round.raw | grep -q "^SYNCED N $round $((target - 1))\$"; then
        usleep $((delay_ms * 1000)) 2>/dev/null || sleep "0.$(printf '%03d' $delay_ms)"
        kill -KILL $vmm 2>/dev/null
        wait $vmm 2>/dev/null
        wait $tty 2>/dev/null
        tr -d '\r' < console-$round.raw > console-$round.log
        # Only whole lines count: the SIGKILL can cut the line the guest is
        # printing ("SYNCED V 5 " without its number), which names no record.
        whole="^SYNCED [VN] $round [0-9][0-9]*\$"
        grep "$whole" console-$round.log > synced-$round
        grep "^SYNCED" console-$round.log | grep -v "$whole" > cut-$round
        n=$(wc -l < synced-$round)
        cat synced-$round >> synced.all
        [ -s cut-$round ] && echo "DUR-NOTE round-$round: $(wc -l < cut-$round) SYNCED line(s) not whole, not counted: $(head -2 cut-$round | tr '\n' '|')"
        grep -q '^WRITE-ERR' console-$round.log && failed round-$round fail "write errors: $(grep '^WRITE-ERR' console-$round.log | head -3 | tr '\n' ' ')"
        result round-$round pass "killed after $target records and $delay_ms ms more; $n records reported fsynced"
    else
        l1_kernel_trouble
        vmm_alive $vmm && guest_stuck "round $round: the guest did not report $target records" $vmm vmm-$round.log console-$round.raw
        failed round-$round fail "ttyexpect: $(cat tty-$round.err 2>/dev/null | tail -2 | tr '\n' ' ')"
        echo "== round $round console"; tr -d '\r' < console-$round.raw | tail -15; echo "== vmm log"; tail -10 vmm-$round.log
        vmm_stop $vmm 2>/dev/null
        wait $vmm 2>/dev/null
        kill $tty 2>/dev/null
        wait $tty 2>/dev/null
    fi
    round=$((round + 1))
done

# Every record reported, byte for byte, in the image files.
checked=0
lost=0
while read -r _ d r i; do
    img=vblk.img
    [ "$d" = N ] && img=nvme.img
    want=$(record "$d" "$r" "$i" | md5sum | cut -d' ' -f1)
    got=$(dd if=$img bs=4096 skip=$((r * 256 + i)) count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    checked=$((checked + 1))
    if [ "$want" != "$got" ]; then
        lost=$((lost + 1))
        [ $lost -le 5 ] && echo "lost: disk $d round $r record $i: $(dd if=$img bs=4096 skip=$((r * 256 + i)) count=1 2>/dev/null | head -c 48 | tr -c ' -~' '.')"
    fi
done < synced.all
rounds_ok=$(cut -d' ' -f3 synced.all | sort -un | grep -c .)
[ $checked -gt 0 ] && [ $lost = 0 ] && [ "$rounds_ok" = "$ROUNDS" ] &&
    result records pass "$checked of $checked fsynced records present after $ROUNDS SIGKILLs ($rounds_ok rounds with records)" ||
    failed records fail "$lost of $checked fsynced records lost; rounds with records: $rounds_ok of $ROUNDS"
[ $rc = 0 ] || { echo "== last vmm log"; tail -20 vmm-$ROUNDS.log; }
exit $rc
