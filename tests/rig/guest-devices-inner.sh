#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 12's rig test
# of the guest devices, one VMM run each: OVMF -> GRUB -> Linux from the
# test ISO, the rig's config disk telling the guest what to do.
#  pvpanic: [dev.*] qemu-pvpanic with enable_isa; the guest sees the ACPI
#  device QEMU0001, Linux's pvpanic-mmio driver binds it, the guest panics
#  (sysrq c) and the VMM's log reports the panic.
# One line per check: "DEV-RESULT <device> <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec).
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
    cat <<EOF
[main]
name = "devices"
cpus = 2
bootrom = "$F/OVMF_CODE.fd"
memory = 512

[block_dev.iso]
type = "file"
path = "$F/test.iso"

[dev.block0]
driver = "pci-virtio-block"
block_dev = "iso"
pci-path = "0.4.0"

[block_dev.rigcfg]
type = "file"
path = "$1"

[dev.block1]
driver = "pci-virtio-block"
block_dev = "rigcfg"
pci-path = "0.5.0"
EOF
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

for d in ${DEV_TESTS:-pvpanic}; do
    ${d}_run
done
exit $rc
