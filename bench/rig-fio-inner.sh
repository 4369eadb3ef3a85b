#!/bin/sh
# Inside the rig's L1 (bench/rig-fio.sh): fio in the Linux test guest
# (test-fio.iso: SeaBIOS -> GRUB -> Linux) under our VMM and under QEMU at
# its best practice, with the same devices: the ISO and the config disk on
# virtio-blk (00:04.0, 00:05.0), a virtio-blk data disk (00:06.0, serial
# datavblk) and an NVMe data disk (00:07.0). The guest runs one fio job per
# config-disk action and marks each on its console; L1 reads the VMM's CPU
# (/proc/PID/task/*/schedstat) when the first job process starts its I/O
# (fio's exec_prerun) and when the last one ends (exec_postrun).
# Prints RIG-FIO-BOOT, RIG-FIO-RESULT (one per fio job, with fio's terse
# line), RIG-FIO-CMD and RIG-FIO-FAIL lines. Every figure is measured on a
# software CPU: compare ratios only.
# Env: BENCH_ROUNDS (3), FIO_CPUS ("1 2 4"), FIO_RUNTIME (3), FIO_SIZE_MIB (128),
# FIO_JOBS (grep -E pattern of the jobs to run), FIO_PERF (1: perf record
# and perf trace -s of the VMM's threads over each job; RIG-FIO-PERF lines
# give the share of samples per thread and per thread and symbol, each
# thread's system calls, and its time on CPU and timeslices from schedstat),
# FIO_QEMU_STATS (1: QEMU's monitor on a pipe; after each job its
# "info blockstats", RIG-FIO-QSTATS lines: rd_merged counts the guest's
# requests QEMU's virtio-blk merged into a neighbour's host request).
. rig-lib.sh
VMM=${RIG_VMM:-/rig/vmm}
F=${RIG_FILES:-/rig/files}
ROUNDS=${BENCH_ROUNDS:-3}
CPUS=${FIO_CPUS:-1 2 4}
RT=${FIO_RUNTIME:-3}
SIZE=${FIO_SIZE_MIB:-128}
WORK=$PWD
LABEL="software-CPU rig, ratios only"

# Milliseconds of uptime (10 ms resolution), from /proc/uptime "SSS.CC ...".
now_ms() {
    read -r up _ < /proc/uptime
    cs=${up#*.}
    echo $((${up%.*} * 1000 + ${cs#0} * 10))
}
rand() { echo $(($(od -An -N2 -tu2 /dev/urandom) % $1)); }
shuffle() { for w in "$@"; do echo "$(rand 65536) $w"; done | sort -n | cut -d' ' -f2; }

# "ALL IO": nanoseconds on CPU of every thread of $pid, and of those that
# are not vCPU threads (ours: vcpuN; QEMU: "CPU N/KVM").
cpu_sample() {
    all=0 io=0
    for t in /proc/$pid/task/*; do
        read -r ns _ < "$t/schedstat" 2>/dev/null || continue
        read -r comm < "$t/comm" 2>/dev/null
        all=$((all + ns))
        case $comm in vcpu* | CPU\ */KVM) ;; *) io=$((io + ns)) ;; esac
    done
    echo "$all $io"
}

# FIO_PERF: each thread of $pid as "TID NS_ON_CPU TIMESLICES NAME"
# (schedstat) into file $1. No subshells: the dump at a job's end must be
# done before the guest's poweroff ends the VMM.
thread_dump() {
    for t in /proc/$pid/task/*; do
        read -r ns _ slices < "$t/schedstat" 2>/dev/null || continue
        read -r comm < "$t/comm" 2>/dev/null
        echo "${t##*/} $ns $slices $comm"
    done > "$1"
}

# The jobs of a boot with C vCPUs: NAME DEV RW BS BS_BYTES QD NUMJOBS.
jobs_for() {
    for dev in vblk nvme; do
        if [ "$1" = 1 ]; then
            echo "$dev-rr-qd1 $dev randread 4k 4096 1 1"
            echo "$dev-rw-qd1 $dev randwrite 4k 4096 1 1"
            for qd in 4 16 64 128; do echo "$dev-rr-qd$qd $dev randread 4k 4096 $qd 1"; done
            echo "$dev-seq-4k $dev read 4k 4096 8 1"
            echo "$dev-seq-64k $dev read 64k 65536 8 1"
            echo "$dev-seq-1m $dev read 1m 1048576 8 1"
        fi
        echo "$dev-scale $dev randread 4k 4096 16 $1"
    done | awk -v re="${FIO_JOBS:-.}" '$1 ~ re'
}
# One config-disk action per job. In the guest: the data disk by its serial
# (virtio) or name (NVMe); fio's terse line and the markers to the console.
action_for() { # NAME DEV RW BS BS_BYTES QD NUMJOBS
    if [ "$2" = vblk ]; then
        dev='D=/dev/$(grep -l datavblk /sys/block/vd*/serial | cut -d/ -f4);'
    else
        dev='D=/dev/nvme0n1;'
    fi
    printf 'sh %s echo RIG-FIO-JOB %s %s >/dev/console; /usr/bin/fio --name=%s --filename=$D --direct=1 --ioengine=io_uring --rw=%s --bs=%s --iodepth=%s --numjobs=%s --group_reporting --runtime=%s --time_based --randrepeat=0 --norandommap --exec_prerun="echo RIG-FIO-BEGIN %s | tee /dev/console" --exec_postrun="echo RIG-FIO-END %s | tee /dev/console" --output-format=terse </dev/null 2>/dev/console | sed -n "s/^3;/RIG-FIO-TERSE %s 3;/p" >/dev/console\n' \
        "$dev" "$1" "$7" "$1" "$3" "$4" "$6" "$7" "$RT" "$1" "$1" "$1"
}

# FIO_PERF: stops the job's profilers, if running (their errors kept in
# *.err, shown with the report).
stop_profilers() {
    [ -n "${profiler:-}" ] || return 0
    kill -INT "$profiler" "$tracer" 2> /dev/null
    wait "$profiler" "$tracer" 2> /dev/null
    profiler=
}

# QEMU's cumulative per-drive counters since boot, one line per drive
# (cut after the merge counters). The guest may power off meanwhile: then
# nothing is printed.
qemu_blockstats() { # JOB
    timeout 2 sh -c 'echo "info blockstats" > mon.in' || return 0
    timeout 2 cat mon.out | tr -d '\r' | grep -a "rd_merged" |
        sed -e "s/^/RIG-FIO-QSTATS $1: /" -e 's/ idle_time_ns.*//'
}

# Reads the guest's console (stdin) into console.log, notes the boot
# marker's time and the VMM's CPU at each job's first start and last end.
reader() {
    cr=$(printf '\r')
    job= want=0 ends=0 begun=0
    while IFS= read -r line; do
        line=${line%"$cr"}
        echo "$line" >> console.log
        case $line in # progress and trouble, as they happen
            *RIG-REPORT\ boot* | *RIG-REPORT\ action* | *RIG-REPORT\ done* | *fio:* | *rror* | *anic*)
                echo "rig-fio: $kind c$cpus r$round guest: $(echo "$line" | cut -c1-160)" ;;
        esac
        case $line in
            *"RIG-REPORT boot "*) echo "boot - $(($(now_ms) - t0))" >> events ;;
            *"RIG-FIO-JOB "*)
                set -- ${line#*RIG-FIO-JOB }
                job=$1 want=$2 ends=0 begun=0 ;;
            *"RIG-FIO-BEGIN "*)
                if [ $begun = 0 ]; then
                    begun=1
                    echo "begin $job $(now_ms) $(cpu_sample)" >> events
                    if [ -n "${FIO_PERF:-}" ]; then
                        stop_profilers # a job whose end never came
                        thread_dump "threads-begin-$job"
                        perf record -q --no-buildid -F 499 -p "$pid" -o "perf-$job.data" \
                            > perf-$job.err 2>&1 &
                        profiler=$!
                        perf trace -s -p "$pid" -o "trace-$job.txt" > trace-$job.err 2>&1 &
                        tracer=$!
                    fi
                fi ;;
            *"RIG-FIO-END "*)
                ends=$((ends + 1))
                if [ "$ends" = "$want" ]; then
                    # The dump first: after the last job the guest powers off.
                    [ -n "${FIO_PERF:-}" ] && thread_dump "threads-end-$job"
                    echo "end $job $(now_ms) $(cpu_sample)" >> events
                    stop_profilers
                    if [ -n "${FIO_QEMU_STATS:-}" ] && [ "$kind" = qemu ]; then
                        qemu_blockstats "$job" & # the reader must not wait
                    fi
                fi ;;
        esac
    done
    stop_profilers
}

shown=
run_vm() { # KIND CPUS ROUND
    kind=$1 cpus=$2 round=$3
    d=$WORK/$kind-c$cpus-r$round
    mkdir -p "$d" && cd "$d" || exit 1
    jobs_for "$cpus" > jobs
    if ! [ -s jobs ]; then
        echo "RIG-FIO-FAIL vmm=$kind round=$round cpus=$cpus: FIO_JOBS '${FIO_JOBS:-}' names no job here; not booted"
        cd "$WORK" || exit 1
        return
    fi
    { printf 'RIGCFG1\n'; while read -r spec; do action_for $spec; done < jobs; printf 'end\n'; } > cfg.img
    [ "$(wc -c < cfg.img)" -le 65536 ] || { echo "RIG-FIO-FAIL config larger than 64 KiB"; exit 1; }
    truncate -s 1M cfg.img
    queues=$cpus
    [ "$queues" -gt 4 ] && queues=4
    : > events
    : > console.log
    if [ "$kind" = ours ]; then
        cat > config.toml <<CFG
[main]
name = "fio-$cpus"
cpus = $cpus
bootrom = "$F/bios-256k.bin"
memory = 1024

[block_dev.iso]
type = "file"
path = "$F/test-fio.iso"
read_only = true

[block_dev.rigcfg]
type = "file"
path = "$d/cfg.img"

[block_dev.datavblk]
type = "file"
path = "$WORK/vblk.img"

[block_dev.datanvme]
type = "file"
path = "$WORK/nvme.img"

[dev.block0]
driver = "pci-virtio-block"
block_dev = "iso"
pci-path = "0.4.0"

[dev.block1]
driver = "pci-virtio-block"
block_dev = "rigcfg"
pci-path = "0.5.0"

[dev.block2]
driver = "pci-virtio-block"
block_dev = "datavblk"
pci-path = "0.6.0"

[dev.nvme0]
driver = "pci-nvme"
block_dev = "datanvme"
pci-path = "0.7.0"
CFG
        case " $shown " in *" ours-$cpus "*) ;; *)
            shown="$shown ours-$cpus"
            echo "RIG-FIO-CMD ours cpus=$cpus: $VMM config.toml, where config.toml is:"
            sed 's/^/RIG-FIO-CMD ours cpus='"$cpus"':   /' config.toml ;;
        esac
        t0=$(now_ms)
        "$VMM" config.toml > vmm.log 2>&1 &
        pid=$!
    else
        set -- qemu-system-x86_64 -machine pc,accel=kvm,vmport=off,smm=off -cpu host -smp "$cpus" -m 1024 -nodefaults \
            -no-user-config -display none -vga none -global apic-common.vapic=off -name fio,debug-threads=on \
            -bios "$F/bios-256k.bin" -object iothread,id=io0 \
            -drive "file=$F/test-fio.iso,if=none,id=iso,format=raw,readonly=on,cache=writeback,aio=io_uring" \
            -device virtio-blk-pci,drive=iso,addr=4,bootindex=1,iothread=io0,num-queues=$queues,serial=iso \
            -drive "file=$d/cfg.img,if=none,id=cfg,format=raw,cache=writeback,aio=io_uring" \
            -device virtio-blk-pci,drive=cfg,addr=5,iothread=io0,num-queues=$queues,serial=rigcfg \
            -drive "file=$WORK/vblk.img,if=none,id=vblk,format=raw,cache=writeback,aio=io_uring" \
            -device virtio-blk-pci,drive=vblk,addr=6,iothread=io0,num-queues=$queues,serial=datavblk \
            -drive "file=$WORK/nvme.img,if=none,id=nvme,format=raw,cache=writeback,aio=io_uring" \
            -device nvme,drive=nvme,addr=7,serial=datanvme \
            -chardev socket,id=con,path=ttya,server=on,wait=on -serial chardev:con
        if [ -n "${FIO_QEMU_STATS:-}" ]; then
            rm -f mon.in mon.out && mkfifo mon.in mon.out
            set -- "$@" -chardev pipe,id=mon,path=mon -mon chardev=mon,mode=readline
        fi
        case " $shown " in *" qemu-$cpus "*) ;; *)
            shown="$shown qemu-$cpus"
            echo "RIG-FIO-CMD qemu cpus=$cpus: $*" ;;
        esac
        t0=$(now_ms)
        "$@" > vmm.log 2>&1 &
        pid=$!
    fi
    { RIG_IDLE=300 guest_ttyexpect ttya timeout:1800 "expect:RIG-REPORT done" 2> tty.err; echo $? > tty.rc; } | reader
    # The guest powers off after "done": give the VMM 20 s to exit.
    vmm_wait_gone $pid 20 || vmm_stop $pid > /dev/null
    wait $pid 2> /dev/null
    boot=$(awk '$1 == "boot" {print $3; exit}' events)
    echo "RIG-FIO-BOOT vmm=$kind round=$round cpus=$cpus boot_ms=${boot:-fail} [$LABEL]"
    while read -r name dev rw bs bsb qd nj; do
        b=$(awk -v j="$name" '$1 == "begin" && $2 == j {print $3, $4, $5; exit}' events)
        e=$(awk -v j="$name" '$1 == "end" && $2 == j {print $3, $4, $5; exit}' events)
        terse=$(sed -n "s/.*RIG-FIO-TERSE $name //p" console.log | head -1)
        if [ -n "$b" ] && [ -n "$e" ] && [ -n "$terse" ]; then
            set -- $b $e
            echo "RIG-FIO-RESULT vmm=$kind round=$round cpus=$cpus job=$name dev=$dev rw=$rw bs=$bs bs_bytes=$bsb qd=$qd numjobs=$nj wall_ms=$(($4 - $1)) cpu_ns=$(($5 - $2)) io_cpu_ns=$(($6 - $3)) terse=$terse"
        else
            echo "RIG-FIO-FAIL vmm=$kind round=$round cpus=$cpus job=$name: no result (begin '$b', end '$e', terse ${terse:+present})"
        fi
    done < jobs
    for data in perf-*.data; do
        [ -f "$data" ] || continue
        job=${data#perf-}
        job=${job%.data}
        tag="RIG-FIO-PERF vmm=$kind cpus=$cpus round=$round job=$job"
        # Shares of all samples: per thread, then per thread and symbol.
        perf report -i "$data" --stdio --no-children --sort comm -g none --percent-limit 1 2> /dev/null |
            grep -E '^ +[0-9.]+%' | sed "s/^ */$tag thread: /"
        perf report -i "$data" --stdio --no-children --sort comm,sym -g none --percent-limit 0.7 \
            2> /dev/null | grep -E '^ +[0-9.]+%' | head -40 | sed "s/^ */$tag symbol: /"
        perf report -i "$data" --stdio 2> /dev/null | sed -n "s/^# Samples: /$tag samples: /p"
        # Each thread's time on an L1 CPU and timeslices over the job.
        [ -f "threads-end-$job" ] && awk -v tag="$tag" '
            FILENAME == ARGV[1] { ns[$1] = $2; sl[$1] = $3; name[$1] = $4; next }
            {
                n = $4
                for (i = 5; i <= NF; i++) n = n "_" $i
                seen[$1] = 1
                if ($2 - ns[$1] > 0)
                    printf "%s cpu: %s %.1f ms %d timeslices\n", tag, n, ($2 - ns[$1]) / 1e6, $3 - sl[$1]
            }
            END { for (t in ns) if (!(t in seen)) printf "%s cpu: %s gone before the end dump\n", tag, name[t] }
        ' "threads-begin-$job" "threads-end-$job"
        for err in "perf-$job.err" "trace-$job.err"; do
            [ -s "$err" ] && sed "s/^/$tag tool error: /" "$err" | head -5
        done
        # perf trace -s: per thread, "NAME (TID), N events", then one line
        # per syscall: name, calls, errors, total ms, ...
        [ -f "trace-$job.txt" ] && awk -v tag="$tag" '
            / events, / { t = $0; sub(/^ */, "", t); sub(/ \([0-9]+\), .*/, "", t); gsub(/ /, "_", t); thread = t; next }
            NF >= 4 && $2 ~ /^[0-9]+$/ && $1 !~ /^-/ { print tag " syscalls: " thread " " $1 " " $2 " calls " $4 " ms" }
        ' "trace-$job.txt"
    done
    if [ "$(cat tty.rc)" != 0 ] || [ -z "$boot" ]; then
        echo "RIG-FIO-FAIL vmm=$kind round=$round cpus=$cpus: ttyexpect status $(cat tty.rc) ($(tail -2 tty.err | tr '\n' ' '))"
        tail -25 console.log | sed 's/^/RIG-FIO-FAIL   console: /'
        tail -5 vmm.log | sed 's/^/RIG-FIO-FAIL   vmm: /'
    fi
    cd "$WORK" || exit 1
}

# perf trace finds the system-call tracepoints in tracefs.
[ -n "${FIO_PERF:-}" ] && ! [ -d /sys/kernel/tracing/events ] && mount -t tracefs nodev /sys/kernel/tracing
echo "rig-fio: L1 kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, $(qemu-system-x86_64 --version | head -1) [$LABEL]"
# The data disks, fully allocated in L1's tmpfs, shared by every VM in turn.
dd if=/dev/zero of=vblk.img bs=1M count="$SIZE" 2> /dev/null
dd if=/dev/zero of=nvme.img bs=1M count="$SIZE" 2> /dev/null
r=1
while [ $r -le "$ROUNDS" ]; do
    rs=$(now_ms)
    order=
    for c in $(shuffle $CPUS); do
        if [ "$(rand 2)" = 0 ]; then order="$order ours:$c qemu:$c"; else order="$order qemu:$c ours:$c"; fi
    done
    echo "RIG-FIO-ROUND $r order:$order"
    for vm in $order; do
        run_vm "${vm%:*}" "${vm#*:}" $r
    done
    echo "RIG-FIO-ROUND $r took $((($(now_ms) - rs) / 1000)) s"
    r=$((r + 1))
done
exit 0
