#!/bin/sh
# Runs inside the rig's L1 (busybox sh), or directly on a host whose KVM runs
# real guests: Debian's OVMF and SeaBIOS under build/propolis-standalone.
# Prints "FW-RESULT <name> pass|fail" per scenario; exits non-zero if any
# failed. $RIG_VMM is the VMM, $RIG_FILES holds OVMF.fd and bios-256k.bin,
# ttyexpect is on PATH.
. rig-lib.sh
VMM=${RIG_VMM:-/rig/vmm}
IDLE=idle:${RIG_IDLE:-120} # console silence that counts as a stalled guest
FILES=${RIG_FILES:-/rig/files}
failed=0

result() {
    echo "FW-RESULT $1 $2"
    [ "$2" = pass ] || failed=1
}

# config NAME CPUS BOOTROM MEMORY EXTRA
config() {
    mkdir -p "$1" && cat > "$1/config.toml" <<CFG
[main]
name = "$1"
cpus = $2
bootrom = "$3"
memory = $4
bootrom_version = "rig-fw-test"
exit_on_halt = 7
$5
CFG
}

start_vmm() {
    (cd "$1" && exec "$VMM" config.toml > vmm.log 2>&1) &
    VMM_PID=$!
}

# wait_exit PID SECONDS: sets $code to the exit status (137 if it had to be
# killed). Not in a $(...) subshell: only this shell can wait for its child.
wait_exit() {
    (sleep "$2"; kill -9 "$1" 2>/dev/null) &
    watchdog=$!
    wait "$1"
    code=$?
    kill "$watchdog" 2>/dev/null
}

# OVMF to the UEFI shell; shell commands; reset reboots; reset -s powers off.
ovmf() {
    name=ovmf-$1cpu
    config "$name" "$1" "$FILES/OVMF.fd" 3328 ""
    start=$(date +%s)
    start_vmm "$name"
    if ttyexpect "$name/ttya" $IDLE timeout:300 "expect:startup.nsh" "send:\e" "expect:Shell>" \
        > "$name/console-boot.log" 2>&1; then
        echo "FW-TIME $name shell_seconds=$(( $(date +%s) - start ))"
    else
        guest_stuck "$name: no UEFI shell" $VMM_PID "$name/vmm.log" "$name/console-boot.log"
        result "$name-shell" fail; return
    fi
    result "$name-shell" pass
    ttyexpect "$name/ttya" $IDLE timeout:120 "send:pci\r" "expect:Shell>" "send:memmap\r" \
        "expect:Shell>" "send:smbiosview -t 0\r" "expect:Shell>" "send:smbiosview -t 4\r" \
        "expect:Shell>" > "$name/console-cmds.log" 2>&1 || result "$name-commands" fail
    log="$name/console-cmds.log"
    grep -q "Vendor 8086 Device 1237" "$log" && grep -q "Vendor 8086 Device 7000" "$log" &&
        grep -q "Vendor 8086 Device 7113" "$log" && result "$name-pci" pass || result "$name-pci" fail
    # RAM above 4 GiB appears in the memory map.
    grep -q "00000001000000" "$log" && result "$name-memmap-highmem" pass || result "$name-memmap-highmem" fail
    grep -q "rig-fw-test" "$log" && result "$name-smbios" pass || result "$name-smbios" fail
    # reset: the VM restarts in place and comes back to the shell.
    ttyexpect "$name/ttya" $IDLE timeout:300 "send:reset\r" "expect:startup.nsh" "send:\e" \
        "expect:Shell>" > "$name/console-reset.log" 2>&1 && grep -q "guest reset" "$name/vmm.log" &&
        result "$name-reset" pass || result "$name-reset" fail
    ttyexpect "$name/ttya" $IDLE timeout:60 "send:reset -s\r" "eof" > "$name/console-off.log" 2>&1
    wait_exit $VMM_PID 60
    [ "$code" = 7 ] && result "$name-poweroff-exit-code" pass || result "$name-poweroff-exit-code ($code)" fail
    echo "--- $name vmm.log"; tail -20 "$name/vmm.log"
}

# With exit_on_reboot the reset command ends the process with that code.
ovmf_exit_on_reboot() {
    name=ovmf-reboot
    config "$name" 1 "$FILES/OVMF.fd" 256 "exit_on_reboot = 5"
    start_vmm "$name"
    ttyexpect "$name/ttya" $IDLE timeout:300 "expect:startup.nsh" "send:\e" "expect:Shell>" \
        "send:reset\r" "eof" > "$name/console.log" 2>&1
    wait_exit $VMM_PID 60
    [ "$code" = 5 ] && result "$name-exit-code" pass || result "$name-exit-code ($code)" fail
}

seabios() {
    name=seabios
    config "$name" 2 "$FILES/bios-256k.bin" 256 ""
    start_vmm "$name"
    ttyexpect "$name/ttya" $IDLE timeout:120 "expect:SeaBIOS (version" "expect:No bootable device" \
        > "$name/console.log" 2>&1 && result seabios-banner pass || {
        vmm_dump $VMM_PID "$name/vmm.log"; cat "$name/console.log"; result seabios-banner fail; }
    kill -TERM $VMM_PID
    wait_exit $VMM_PID 30
    [ "$code" = 7 ] && result seabios-sigterm-exit-code pass || result "seabios-sigterm-exit-code ($code)" fail
}

ovmf 1
ovmf 4
ovmf_exit_on_reboot
seabios
exit $failed
