#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): issue 13's rig test
# of CPUID profiles. OVMF -> GRUB -> Linux from the test ISO, CPUID_CPUS (2)
# vCPUs; the config disk (test_cpuid.sh) makes the guest report, one
# action each: 1 vendor_id, 2 model name, 3 "family/model/", 4 processors,
# 5 cpu cores, 6 siblings, 7 APIC ids, 8 flags ("/"-separated), all from
# /proc/cpuinfo. One VMM run each:
#  amd: a profile of every leaf this L1's KVM supports (rig-cpuid amd),
#  vendor "amd", brand "AMD EPYC propolis-rig": Linux shows AuthenticAMD,
#  that model name, CPUID_CPUS cores of one thread, APIC ids 0.., and the
#  same flags as without a profile.
#  intel: an Intel Skylake-SP-like profile (rig-cpuid intel), vendor
#  "intel", brand "Intel(R) Xeon(R) propolis-rig": GenuineIntel, family 6
#  model 85, that model name, the same counts, "hypervisor" among the flags
#  and none of the AMD-only ones the profile leaves out.
#  host: no profile, then QEMU's `-cpu host` on the same machine: vendor,
#  model name, family/model and counts equal; every flag we show, QEMU's
#  -cpu host shows too (the flags only QEMU shows are listed: what we
#  cannot give).
# One line per check: "CPUID-RESULT <run> <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); CPUID_TESTS ("amd intel host"),
# CPUID_CPUS (2).
F=${RIG_FILES:?}
. rig-lib.sh
rc=0
WORK=$PWD
CPUS=${CPUID_CPUS:-2}
QEMU=/rig/bin/qemu-system-x86_64

# The guest's encoding of a report (guest-init.sh): characters outside
# [A-Za-z0-9._:=/-] become "_", the newline too.
enc() { printf '%s\n' "$1" | tr -c 'A-Za-z0-9._:=/-' '_'; }
# act N: action N's output, as reported.
act() { sed -n "s/^RIG-REPORT action $1 sh rc=0 out=//p" console.log | head -1; }
# flags_of N: action N's "/"-separated flags, one per line, sorted.
flags_of() { act "$1" | sed 's/_$//' | tr / '\n' | grep . | sort; }
apic_ids() { i=0; s=; while [ $i -lt $CPUS ]; do s="$s$i,"; i=$((i + 1)); done; echo "$s"; }

# expect RUN CHECK ACTION WANT: the report of ACTION is enc(WANT).
expect() {
    got=$(act "$3")
    want=$(enc "$4")
    if [ "$got" = "$want" ]; then
        echo "CPUID-RESULT $1 $2 pass $got"
    else
        echo "CPUID-RESULT $1 $2 fail got '$got' want '$want'"
        rc=1
    fi
}

counts() { # RUN
    expect "$1" processors 4 "$CPUS"
    expect "$1" cpu-cores 5 "$CPUS"
    expect "$1" siblings 6 "$CPUS"
    expect "$1" apic-ids 7 "$(apic_ids)"
}

base_config() { # [PROFILE]
    profile_line=
    [ -n "$1" ] && profile_line="cpuid_profile = \"$1\""
    rig_vm_config cpuid "$CPUS" OVMF_CODE.fd "$PWD/cfg.img" "$profile_line"
    echo
}

# run_guest RUN: the VMM started (pid $vmm), the guest to its report and
# power-off; console.log. Fails the run's "guest" check otherwise.
run_guest() {
    guest_ttyexpect ttya timeout:400 "expect:RIG-REPORT done" > console.raw 2> tty.err
    t=$?
    tr -d '\r' < console.raw > console.log
    if [ $t = 0 ]; then
        echo "CPUID-RESULT $1 guest pass"
    else
        echo "CPUID-RESULT $1 guest fail ttyexpect status $t: $(cat tty.err)"
        rc=1
    fi
    vmm_wait_gone $vmm 30 || vmm_stop $vmm
}

# ours RUN [PROFILE_FILE PROFILE_NAME]: our VMM in $WORK/RUN.
ours() {
    mkdir -p "$WORK/$1" && cd "$WORK/$1" || exit 1
    cp "$F/cpuinfo-cfg.img" cfg.img
    { base_config "$3"; [ -n "$2" ] && cat "$2"; } > config.toml
    $RIG_VMM config.toml > vmm.log 2>&1 &
    vmm=$!
    run_guest "$1"
}

fail_run() { # RUN
    [ $rc = 0 ] && return
    echo "== $1: console"; tail -40 console.log; echo "== vmm.log"; tail -30 vmm.log
}

amd_run() {
    rig-cpuid amd epyc "AMD EPYC propolis-rig" > "$WORK/amd.toml" ||
        { echo "CPUID-RESULT amd profile fail rig-cpuid"; rc=1; return; }
    ours amd "$WORK/amd.toml" epyc
    expect amd vendor 1 AuthenticAMD
    expect amd model-name 2 "AMD EPYC propolis-rig"
    counts amd
    flags_of 8 > flags
    grep -qx hypervisor flags && echo "CPUID-RESULT amd hypervisor-flag pass" ||
        { echo "CPUID-RESULT amd hypervisor-flag fail"; rc=1; }
    fail_run amd
    cd "$WORK" || exit 1
}

intel_run() {
    rig-cpuid intel xeon "Intel(R) Xeon(R) propolis-rig" > "$WORK/intel.toml" ||
        { echo "CPUID-RESULT intel profile fail rig-cpuid"; rc=1; return; }
    ours intel "$WORK/intel.toml" xeon
    expect intel vendor 1 GenuineIntel
    expect intel model-name 2 "Intel(R) Xeon(R) propolis-rig"
    expect intel family-model 3 "6/85/"
    counts intel
    flags_of 8 > flags
    grep -qx hypervisor flags && echo "CPUID-RESULT intel hypervisor-flag pass" ||
        { echo "CPUID-RESULT intel hypervisor-flag fail"; rc=1; }
    amd_only=$(grep -x -E 'sse4a|svm|topoext|cmp_legacy|extd_apicid|misalignsse|osvw|mmxext|fxsr_opt' flags | tr '\n' ' ')
    [ -z "$amd_only" ] && echo "CPUID-RESULT intel no-amd-flags pass $(wc -l < flags) flags" ||
        { echo "CPUID-RESULT intel no-amd-flags fail $amd_only"; rc=1; }
    fail_run intel
    cd "$WORK" || exit 1
}

host_run() {
    ours host
    for n in 1 2 3 4 5 6 7; do act $n > report.$n; done
    flags_of 8 > flags
    counts host
    cd "$WORK" || exit 1
    # The same machine under QEMU's -cpu host.
    mkdir -p "$WORK/qemu" && cd "$WORK/qemu" || exit 1
    cp "$F/cpuinfo-cfg.img" cfg.img
    $QEMU -machine pc,accel=kvm -cpu host -smp $CPUS,sockets=1,cores=$CPUS,threads=1 -m 512 -nodefaults -display none \
        -vga none -no-reboot -bios $F/OVMF_CODE.fd -L /usr/share/qemu \
        -drive file=$F/test.iso,if=none,id=d0,format=raw,readonly=on \
        -device virtio-blk-pci,drive=d0,addr=4,bootindex=1 \
        -drive file=$PWD/cfg.img,if=none,id=d1,format=raw \
        -device virtio-blk-pci,drive=d1,addr=5 \
        -chardev socket,id=con,path=ttya,server=on,wait=on -serial chardev:con \
        > vmm.log 2>&1 &
    vmm=$!
    wait_socket ttya
    run_guest qemu
    for n in 1 2 3 4 5 6 7; do
        what=$(echo "vendor model-name family-model processors cpu-cores siblings apic-ids" | cut -d' ' -f$n)
        ourv=$(cat "$WORK/host/report.$n")
        if [ "$(act $n)" = "$ourv" ]; then
            echo "CPUID-RESULT host $what pass $ourv (as QEMU -cpu host)"
        else
            echo "CPUID-RESULT host $what fail ours '$ourv', QEMU -cpu host '$(act $n)'"
            rc=1
        fi
    done
    flags_of 8 > flags
    extra=$(grep -vxF -f flags "$WORK/host/flags" | tr '\n' ' ')
    missing=$(grep -vxF -f "$WORK/host/flags" flags | tr '\n' ' ')
    if [ -z "$extra" ] && [ -s flags ]; then
        echo "CPUID-RESULT host flags pass $(wc -l < "$WORK/host/flags") flags; only QEMU -cpu host: ${missing:-none}"
    else
        echo "CPUID-RESULT host flags fail ours only: ${extra:-none}; only QEMU -cpu host: ${missing:-none}"
        rc=1
    fi
    if [ -s "$WORK/amd/flags" ]; then
        d=$({ grep -vxF -f "$WORK/host/flags" "$WORK/amd/flags"; grep -vxF -f "$WORK/amd/flags" "$WORK/host/flags"; } | tr '\n' ' ')
        [ -z "$d" ] && echo "CPUID-RESULT amd flags-as-host pass" ||
            { echo "CPUID-RESULT amd flags-as-host fail differ: $d"; rc=1; }
    fi
    fail_run qemu
    cd "$WORK" || exit 1
}

for t in ${CPUID_TESTS:-amd intel host}; do
    ${t}_run
done
exit $rc
