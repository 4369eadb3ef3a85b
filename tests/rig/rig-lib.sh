# Helpers for scripts run by rig.sh run/exec (busybox sh in L1, or sh on a
# host whose KVM runs real guests). rig.py puts this file on the script's
# PATH: load it with ". rig-lib.sh". The host-side test scripts load it too
# (". tests/rig/rig-lib.sh") for rig_test_setup. POSIX sh only: busybox sh
# parses every function here.

# rig_test_setup: the start of a host-side real-guest test, in the
# repository's top directory: builds $VMM (build/propolis-standalone) and
# ttyexpect in $BUILD (VMM's directory), builds the rig (cached), sets B
# (the rig's build directory: $RIG_BUILD or build/rig) and work (a new
# directory, removed when the script exits).
rig_test_setup() {
    VMM=${VMM:-build/propolis-standalone}
    BUILD=${BUILD:-$(dirname "$VMM")}
    make -s BUILD="$BUILD" "$VMM" "$BUILD/ttyexpect"
    tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
    # shellcheck disable=SC2034 # for the caller
    B=${RIG_BUILD:-build/rig}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
}

# rig_disk_config BLOCK_DEV IMAGE DEV DRIVER PCI_PATH: a VM config's
# file-backed disk ([block_dev.BLOCK_DEV] and [dev.DEV]), after a blank line.
rig_disk_config() {
    printf '\n[block_dev.%s]\ntype = "file"\npath = "%s"\n\n[dev.%s]\ndriver = "%s"\nblock_dev = "%s"\npci-path = "%s"\n' \
        "$1" "$2" "$3" "$4" "$1" "$5"
}

# rig_vm_config NAME CPUS FIRMWARE CFG_IMG [MAIN_LINE]...: the start of a
# real-guest test's VM config: [main] (512 MiB, bootrom FIRMWARE from
# $RIG_FILES, each MAIN_LINE added), then the test ISO at 0.4.0 and the
# rig's config disk CFG_IMG (rig.sh mkcfg) at 0.5.0. The caller appends its
# own devices.
rig_vm_config() {
    printf '[main]\nname = "%s"\ncpus = %s\nbootrom = "%s"\nmemory = 512\n' "$1" "$2" "$RIG_FILES/$3"
    _cfg_img=$4
    shift 4
    for _line in "$@"; do
        printf '%s\n' "$_line"
    done
    rig_disk_config iso "$RIG_FILES/test.iso" block0 pci-virtio-block 0.4.0
    rig_disk_config rigcfg "$_cfg_img" block1 pci-virtio-block 0.5.0
}

# rig_data_disks_config: the data disks of the storage tests: vblk.img (a
# virtio-blk at 0.6.0) and nvme.img (an NVMe at 0.7.0) in the current
# directory.
rig_data_disks_config() {
    rig_disk_config data_vblk "$PWD/vblk.img" block2 pci-virtio-block 0.6.0
    rig_disk_config data_nvme "$PWD/nvme.img" nvme0 pci-nvme 0.7.0
}

# wait_socket PATH: waits up to 10 s for the UNIX socket PATH (an inner
# QEMU's console) to appear.
wait_socket() {
    _n=0
    while [ ! -S "$1" ] && [ $_n -lt 100 ]; do
        _n=$((_n + 1))
        sleep 0.1
    done
}

# vmm_alive PID: the process exists and is not a zombie.
vmm_alive() {
    [ -d "/proc/$1" ] || return 1
    case $(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) in
        Z | '') return 1 ;;
    esac
    return 0
}

# vmm_wait_gone PID SECS: true if PID is gone within SECS seconds.
vmm_wait_gone() {
    _n=0
    while vmm_alive "$1"; do
        [ $_n -ge $(($2 * 10)) ] && return 1
        sleep 0.1
        _n=$((_n + 1))
    done
    return 0
}

# vmm_stop PID: SIGTERM, then SIGKILL after 5 s; reaps it if it is our child.
# A process still there 10 s after SIGKILL is stuck in the kernel (in the
# rig: L1's KVM): its threads' kernel stacks are printed, with a
# "RIG-FAULT l1-kernel-stuck" line, and vmm_stop fails (never waits on it).
vmm_stop() {
    kill -TERM "$1" 2>/dev/null
    if ! vmm_wait_gone "$1" 5; then
        echo "rig-lib: VMM $1 ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL "$1" 2>/dev/null
        if ! vmm_wait_gone "$1" 10; then
            echo "rig-lib: VMM $1 still there 10 s after SIGKILL: stuck in the kernel"
            for _t in /proc/"$1"/task/*; do
                echo "== thread $(cat "$_t/comm" 2>/dev/null): $(grep '^State' "$_t/status" 2>/dev/null)"
                cat "$_t/stack" 2>/dev/null
            done
            echo "RIG-FAULT l1-kernel-stuck: a VMM thread stays in the kernel after SIGKILL"
            return 1
        fi
    fi
    wait "$1" 2>/dev/null
    return 0
}

# vmm_dump PID LOG: asks our VMM for its state dump (SIGUSR1) and prints it
# from LOG (the VMM's stderr) once its last line, "state dump: end", is there
# (at most 5 s).
vmm_dump() {
    vmm_alive "$1" || { echo "rig-lib: VMM $1 is gone: no state dump"; return 1; }
    _lines=$(wc -l < "$2")
    kill -USR1 "$1" 2>/dev/null
    _n=0
    while ! tail -n +$((_lines + 1)) "$2" | grep -q 'state dump: end' && [ $_n -lt 50 ]; do
        sleep 0.1
        _n=$((_n + 1))
    done
    echo "== the VMM's state dump (SIGUSR1):"
    tail -n +$((_lines + 1)) "$2"
}

# guest_stuck WHAT PID LOG CONSOLE: a guest stopped making progress: say so,
# show its last console lines and the VMM's state dump, stop the VMM; a dump
# with a vCPU state no guest can reach is reported as a rig fault.
guest_stuck() {
    echo "rig-lib: $1"
    echo "== the guest's last console lines ($4):"
    tr -d '\r' < "$4" | grep -v '^[[:space:]]*$' | tail -15
    _dump=$(vmm_dump "$2" "$3")
    echo "$_dump"
    vmm_stop "$2"
    # A vCPU state no guest can reach: the nested hypervisor lost it (as
    # quickstart-inner.sh and reference.sh classify it).
    case $_dump in
        *VCPU-STATE-CORRUPT*)
            echo "RIG-FAULT nested-vcpu-state-corrupt: a vCPU of the guest has cr3 outside guest RAM" ;;
    esac
}

# guest_ttyexpect SOCKET STEP...: ttyexpect for a Linux guest that fails at
# once when the guest falls silent for RIG_IDLE seconds (status 3, default
# 120) or reports a kernel panic, soft lockup or RCU stall (status 4).
guest_ttyexpect() {
    _sock=$1
    shift
    ttyexpect "$_sock" "idle:${RIG_IDLE:-120}" "fail:Kernel panic - not syncing" \
        "fail:BUG: soft lockup" "fail:detected stalls on CPUs" "$@"
}

# qemu_state_corrupt REGS RAM_BYTES: true if QEMU's "info registers -a"
# output (file REGS) shows a vCPU with paging on and cr3 outside the
# guest's RAM_BYTES of RAM: a state no guest can reach, handed to it by the
# nested hypervisor below (our VMM's dump marks it VCPU-STATE-CORRUPT).
qemu_state_corrupt() {
    grep -o 'CR0=[0-9a-f]* CR2=[0-9a-f]* CR3=[0-9a-f]*' "$1" | while read -r _c0 _c2 _c3; do
        _cr0=$((0x${_c0#CR0=})) _cr3=$((0x${_c3#CR3=}))
        [ $(((_cr0 >> 31) & 1)) = 1 ] && [ $_cr3 -ge "$2" ] && echo corrupt
    done | grep -q corrupt
}

# l1_shutdown_trace start|show: in the rig's L1 only (elsewhere: false),
# records KVM's SHUTDOWN exits (a guest's triple fault; AMD exit code 0x7f)
# (from "start" on) with L1's kvm_exit tracepoint: the guest's rip and the event it was
# delivering (intr_info: EXITINTINFO, error_code), which KVM discards when
# it resets the vCPU, before the VMM sees the exit. "show" prints them and
# succeeds when every one has a rig signature:
# - the rip inside L1's own kvm or kvm_amd module, code no guest runs (the
#   nested SVM handed the guest its host's state); or
# - an event being delivered that a sound guest always can: a #PF with
#   error code 0x10 (EXITINTINFO 0x80000b0e: at CPL0 the guest could not
#   fetch the instruction at rip, and then not even reach its #PF handler),
#   or an external interrupt (its IDT entry or stack unreachable). Seen
#   (tests/rig/README.md) on the first instruction after one that L1's KVM
#   intercepted and skipped (an HPET read, a PAUSE, an ioeventfd write),
#   with vhost-net doing the NIC's DMA: the translation the emulated SVM
#   resumed the guest with was broken.
l1_shutdown_trace() {
    _t=/sys/kernel/tracing
    [ -x /rig/vmm ] || return 1
    case $1 in
        start)
            [ -d $_t/events ] || mount -t tracefs nodev $_t 2>/dev/null
            [ -d $_t/events/kvm/kvm_exit ] || { echo "rig-lib: no kvm_exit tracepoint in L1"; return 1; }
            : > $_t/trace # from now on
            echo 'exit_reason == 127' > $_t/events/kvm/kvm_exit/filter
            echo 1 > $_t/events/kvm/kvm_exit/enable
            echo 1 > $_t/tracing_on
            ;;
        show)
            echo "== L1's kvm_exit records of SHUTDOWN exits:"
            grep 'kvm_exit' $_t/trace 2>/dev/null || { echo "(none)"; return 1; }
            _all=0
            grep 'kvm_exit' $_t/trace | sed -n 's/.* rip 0x\([0-9a-f]*\) .* intr_info 0x\([0-9a-f]*\) error_code 0x\([0-9a-f]*\).*/\1 \2 \3/p' > /tmp/rig-shutdowns
            while read -r _rip _ii _ec; do
                _why=
                _ii=$((0x$_ii))
                [ $_ii = $((0x80000b0e)) ] && [ $((0x$_ec)) = 16 ] &&
                    _why="a #PF of an instruction fetch at CPL0 (error code 0x10) was being delivered"
                [ $((_ii & 0x80000700)) = $((0x80000000)) ] &&
                    _why="external interrupt vector $((_ii & 0xff)) was being delivered"
                _r=$((0x$_rip))
                while read -r _m _size _x _y _z _base; do
                    case $_m in kvm | kvm_amd) ;; *) continue ;; esac
                    [ $_r -ge $((_base)) ] && [ $_r -lt $((_base + _size)) ] &&
                        _why="rip inside L1's module $_m"
                done < /proc/modules
                echo "   rip $_rip: ${_why:-no rig signature}"
                [ -n "$_why" ] || _all=1
            done < /tmp/rig-shutdowns
            return $_all
            ;;
    esac
}

# l1_kernel_trouble: L1's kernel log shows a soft lockup, an RCU stall or an
# oops (a CPU of L1 that stops taking interrupts, e.g. stuck in guest mode
# of the emulated SVM; L1's own state corrupted after a world switch).
# A userspace VMM cannot cause these on a sound kernel and CPU: a test whose
# guest stalled meanwhile prints "RIG-FAULT l1-lockup: <first such line>".
# L1 only; false elsewhere.
l1_kernel_trouble() {
    [ -x /rig/vmm ] || return 1
    _line=$(dmesg 2>/dev/null | grep -m1 -E 'soft lockup|detected stalls on CPUs|rcu_.*stall|BUG: |Oops|general protection fault') || return 1
    echo "RIG-FAULT l1-lockup: ${_line#*] }"
}
