#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 12's rig test
# of the guest devices, one VMM run each: OVMF -> GRUB -> Linux from the
# test ISO, the rig's config disk telling the guest what to do.
#  pvpanic: [dev.*] qemu-pvpanic with enable_isa; the guest sees the ACPI
#  device QEMU0001, Linux's pvpanic-mmio driver binds it, the guest panics
#  (sysrq c) and the VMM's log reports the panic.
#  cloudinit: a cloudinit disk from [cloudinit] (user-data a 3 MiB file, so
#  FAT16; meta-data and network-config inline); the guest finds it by its
#  label cidata, mounts it, and its md5 of each file matches L1's.
#  vsock: [dev.*] pci-virtio-socket with guest_cid 3, two port mappings to
#  L1 TCP servers and uds_path. The guest sends VSOCK_MIB (64) MiB to CID 2
#  port 5000 (L1's server sums what arrives), reads VSOCK_MIB MiB from port
#  5001 (L1 sends a file it summed), is refused on unmapped port 5002, and
#  serves its file on vsock port 6000, which L1 reads through the device's
#  UNIX socket ("CONNECT 6000"); md5 at both ends every time.
# One line per check: "DEV-RESULT <device> <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); DEV_TESTS ("pvpanic cloudinit vsock"),
# VSOCK_MIB (64).
F=${RIG_FILES:?}
. rig-lib.sh
rc=0
WORK=$PWD

# run_vmm NAME: writes NAME/config.toml's VMM run; its pid in $vmm.
start_vmm() {
    $RIG_VMM config.toml > vmm.log 2>&1 &
    vmm=$!
}

# base_config CFG_IMG: the test ISO and the config disk, then the caller's
# devices.
base_config() {
    rig_vm_config devices 2 OVMF_CODE.fd "$1"
}

pvpanic_run() {
    result() { echo "DEV-RESULT pvpanic $*"; }
    failed() { result "$@"; rc=1; }
    mkdir -p "$WORK/pvpanic" && cd "$WORK/pvpanic" || return 1
    cp "$F/pvpanic-cfg.img" cfg.img
    { base_config "$PWD/cfg.img"; cat <<EOF

[dev.pvpanic]
driver = "qemu-pvpanic"
enable_isa = true
EOF
    } > config.toml
    start_vmm
    # The panic is the point: plain ttyexpect (guest_ttyexpect fails on it).
    ttyexpect ttya idle:120 timeout:300 "expect:RIG-REPORT action 2" \
        "expect:Kernel panic - not syncing" > console.raw 2> tty.err
    t=$?
    tr -d '\r' < console.raw > console.log
    [ $t = 0 ] && result guest-panicked pass || failed guest-panicked fail "ttyexpect status $t: $(cat tty.err)"
    grep -q '^RIG-REPORT action 1 sh rc=0 out=QEMU0001' console.log && result acpi-device pass ||
        failed acpi-device fail "$(grep 'RIG-REPORT action 1' console.log)"
    grep -q '^RIG-REPORT action 2 sh rc=0 out=.*/drivers/pvpanic-mmio' console.log &&
        result driver-bound pass || failed driver-bound fail "$(grep 'RIG-REPORT action 2' console.log)"
    i=0
    while ! grep -q 'pvpanic: guest panic, event bits 0x01 (panicked)' vmm.log && [ $i -lt 100 ]; do
        i=$((i + 1)); sleep 0.1
    done
    grep -q 'pvpanic: guest panic, event bits 0x01 (panicked)' vmm.log && result vmm-log pass "$(grep -m1 'guest panic' vmm.log)" ||
        failed vmm-log fail
    vmm_stop $vmm
    [ $rc = 0 ] || { echo "== pvpanic: console"; tail -30 console.log; echo "== vmm.log"; tail -30 vmm.log; }
    cd "$WORK" || exit 1
}

vsock_run() {
    result() { echo "DEV-RESULT vsock $*"; }
    failed() { result "$@"; rc=1; }
    mib=${VSOCK_MIB:-64}
    ip link set lo up # L1's init leaves loopback down; the mappings go to 127.0.0.1
    mkdir -p "$WORK/vsock" && cd "$WORK/vsock" || return 1
    cp "$F/shell-cfg.img" cfg.img
    dd if=/dev/urandom of=down.bin bs=1M count=$mib 2>/dev/null
    down_sum=$(md5sum < down.bin | cut -d' ' -f1)
    { base_config "$PWD/cfg.img"; cat <<EOF

[dev.vsock0]
driver = "pci-virtio-socket"
guest_cid = 3
port_mappings = [{ port = 5000, addr = "127.0.0.1:5000" }, { port = 5001, addr = "127.0.0.1:5001" }]
pci-path = "0.6.0"
uds_path = "$PWD/vsock.sock"
EOF
    } > config.toml
    rig-vsock recv listen-tcp:5000 2> up.err | md5sum > up.md5 &
    rig-vsock send listen-tcp:5001 down.bin 2> down.err &
    start_vmm
    tag() { echo "$1''-$2"; } # '' keeps the echoed command from matching
    up="dd if=/dev/urandom of=/tmp/up.bin bs=1M count=$mib 2>/dev/null; echo $(tag UP SUM) \$(md5sum < /tmp/up.bin)"
    send="rig-vsock send vsock:2:5000 /tmp/up.bin; echo $(tag SEND RC)=\$?"
    recv="echo $(tag DOWN SUM) \$(rig-vsock recv vsock:2:5001 | md5sum)"
    unmapped="rig-vsock recv vsock:2:5002 > /dev/null; echo $(tag UNMAPPED RC)=\$?"
    serve="rig-vsock send listen-vsock:6000 /tmp/up.bin & sleep 1; echo $(tag SERVE READY)"
    : > console.raw
    RIG_IDLE=200 guest_ttyexpect ttya timeout:400 "expect:RIG-SHELL ready" "send:\r" "expect:#" \
        "send:$up\r" "expect:UP-SUM" "expect:#" \
        "send:$send\r" "expect:SEND-RC=" "expect:#" \
        "send:$recv\r" "expect:DOWN-SUM" "expect:#" \
        "send:$unmapped\r" "expect:UNMAPPED-RC=" "expect:#" \
        "send:$serve\r" "expect:SERVE-READY" "expect:#" >> console.raw 2> tty.err
    t1=$?
    host_sum=
    [ $t1 = 0 ] && host_sum=$(rig-vsock recv uds:$PWD/vsock.sock:6000 2> uds.err | md5sum | cut -d' ' -f1)
    t2=1
    [ $t1 = 0 ] && guest_ttyexpect ttya timeout:120 "send:wait; echo $(tag SERVE RC)=\$?\r" \
        "expect:SERVE-RC=" "expect:#" "send:poweroff -f\r" eof >> console.raw 2>> tty.err
    [ $t1 = 0 ] && t2=$?
    tr -d '\r' < console.raw > console.log
    [ $t1 = 0 ] && [ $t2 = 0 ] && result guest-steps pass || failed guest-steps fail "ttyexpect $t1 $t2: $(cat tty.err)"
    grep -q "vsock0: virtio-vsock, guest CID 3" vmm.log && result device pass || failed device fail
    gsum=$(sed -n 's/^UP-SUM \([0-9a-f]\{32\}\) -$/\1/p' console.log)
    usum=$(cut -d' ' -f1 up.md5 2>/dev/null)
    grep -q '^SEND-RC=0' console.log && [ -n "$gsum" ] && [ "$gsum" = "$usum" ] &&
        result guest-to-host pass "$mib MiB md5 $usum; $(grep -o 'rig-vsock: sent.*' console.log | head -1)" ||
        failed guest-to-host fail "guest $gsum, L1 got $usum: $(cat up.err)"
    grep -q "^DOWN-SUM $down_sum -" console.log &&
        result host-to-guest pass "$mib MiB md5 $down_sum; $(grep -o 'rig-vsock: received.*' console.log | head -1)" ||
        failed host-to-guest fail "want $down_sum: $(grep '^DOWN-SUM' console.log) $(cat down.err)"
    grep -q '^UNMAPPED-RC=[1-9]' console.log && result unmapped-port-refused pass ||
        failed unmapped-port-refused fail "$(grep '^UNMAPPED-RC' console.log)"
    [ -n "$gsum" ] && [ "$host_sum" = "$gsum" ] && grep -q '^SERVE-RC=0' console.log &&
        result host-initiated pass "$mib MiB md5 $host_sum through the UNIX socket; $(cat uds.err)" ||
        failed host-initiated fail "guest $gsum, L1 got $host_sum: $(cat uds.err)"
    if vmm_wait_gone $vmm 30; then
        wait $vmm 2>/dev/null; st=$?
        [ $st = 0 ] && result vmm-exit pass || failed vmm-exit fail "status $st"
    else
        failed vmm-exit fail "VMM still running"; vmm_stop $vmm
    fi
    [ -e vsock.sock ] && failed socket-removed fail || result socket-removed pass
    [ $rc = 0 ] || { echo "== vsock: console"; tail -40 console.log; echo "== vmm.log"; tail -40 vmm.log; }
    cd "$WORK" || exit 1
}

cloudinit_run() {
    result() { echo "DEV-RESULT cloudinit $*"; }
    failed() { result "$@"; rc=1; }
    mkdir -p "$WORK/cloudinit" && cd "$WORK/cloudinit" || return 1
    cp "$F/cloudinit-cfg.img" cfg.img
    # user-data from a file big enough for FAT16, the others inline.
    dd if=/dev/urandom of=user-data bs=1M count=3 2>/dev/null
    printf 'instance-id: rig-1\nlocal-hostname: rig\n' > meta-data
    printf 'version: 2\nethernets: {}\n' > network-config
    { base_config "$PWD/cfg.img"; cat <<EOF

[block_dev.seed]
type = "cloudinit"

[dev.seed]
driver = "pci-virtio-block"
block_dev = "seed"
pci-path = "0.6.0"

[cloudinit]
user-data-path = "$PWD/user-data"
meta-data = "instance-id: rig-1\nlocal-hostname: rig\n"
network-config = """
version: 2
ethernets: {}
"""
EOF
    } > config.toml
    start_vmm
    guest_ttyexpect ttya timeout:300 "expect:RIG-REPORT done" > console.raw 2> tty.err
    t=$?
    tr -d '\r' < console.raw > console.log
    [ $t = 0 ] && result guest-steps pass || failed guest-steps fail "ttyexpect status $t: $(cat tty.err)"
    grep -q 'cloud-init volume (NoCloud, label cidata), FAT16' vmm.log && result volume pass "$(grep -o 'cloud-init volume.*' vmm.log)" ||
        failed volume fail "$(grep -i cloud vmm.log)"
    grep -q '^RIG-REPORT action 1 sh rc=0 out=mounted' console.log && result found-by-label pass ||
        failed found-by-label fail "$(grep 'RIG-REPORT action 1 ' console.log)"
    n=2
    for f in user-data meta-data network-config; do
        sum=$(md5sum < $f | cut -d' ' -f1)
        grep -q "^RIG-REPORT action $n sh rc=0 out=${sum}__/mnt/$f" console.log &&
            result $f pass "md5 $sum" || failed $f fail "want $sum: $(grep "RIG-REPORT action $n " console.log)"
        n=$((n + 1))
    done
    grep -q "^RIG-REPORT action $n sh rc=0 out=meta-data_network-config_user-data_" console.log &&
        result listing pass || failed listing fail "$(grep "RIG-REPORT action $n " console.log)"
    if vmm_wait_gone $vmm 30; then
        wait $vmm 2>/dev/null; st=$?
        [ $st = 0 ] && result vmm-exit pass || failed vmm-exit fail "status $st"
    else
        failed vmm-exit fail "VMM still running"; vmm_stop $vmm
    fi
    [ $rc = 0 ] || { echo "== cloudinit: console"; tail -30 console.log; echo "== vmm.log"; tail -30 vmm.log; }
    cd "$WORK" || exit 1
}

for d in ${DEV_TESTS:-pvpanic cloudinit vsock}; do
    ${d}_run
done
exit $rc
