#!/bin/bash
# Issue 13's real-guest test of CPUID profiles (cpuid-inner.sh): Linux's
# /proc/cpuinfo (vendor, model name, family/model, flags, cores, siblings,
# APIC ids) under an AMD-vendor and an Intel-vendor profile built in L1 from
# its KVM's supported CPUID (rig-cpuid.c), and without a profile compared
# with QEMU's `-cpu host` on the same L1. Runs in the nested rig, or
# directly on a host whose KVM runs real guests (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
gcc -static -O2 -Wall -Werror -o "$work/rig-cpuid" tests/rig/rig-cpuid.c
# What the guest reports: one /proc/cpuinfo fact per action.
field() { echo "sh awk -F': ' '/^$1/{print \$2; exit}' /proc/cpuinfo"; }
tests/rig/rig.sh mkcfg "$work/cpuinfo-cfg.img" \
    "$(field vendor_id)" \
    "$(field 'model name')" \
    'sh grep -m2 -E "^(cpu family|model)[[:space:]]*:" /proc/cpuinfo | cut -d: -f2 | tr -d " " | tr "\n" /' \
    'sh grep -c ^processor /proc/cpuinfo' \
    "$(field 'cpu cores')" \
    "$(field siblings)" \
    'sh grep ^apicid /proc/cpuinfo | cut -d: -f2 | tr -d " " | tr "\n" ,' \
    "$(field flags) | tr ' ' /"
qemu_files=()
for f in kvmvapic.bin linuxboot_dma.bin; do
    qemu_files+=(--file "/usr/share/qemu/$f:/usr/share/qemu/$f")
done
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/cpuid-inner.sh \
    --bin "$BUILD/ttyexpect" --bin "$work/rig-cpuid" --bin /usr/bin/qemu-system-x86_64 \
    --file "$B/guest/test.iso" --file "$work/cpuinfo-cfg.img" \
    --file /usr/share/OVMF/OVMF_CODE.fd "${qemu_files[@]}" \
    --env "CPUID_TESTS=${CPUID_TESTS:-amd intel host}" --env "CPUID_CPUS=${CPUID_CPUS:-2}" \
    --timeout 1200 "$@"
