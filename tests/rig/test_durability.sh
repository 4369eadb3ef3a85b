#!/bin/bash
# Issue 14's kill-anywhere durability test (durability-inner.sh): a Linux
# guest writes numbered 4 KiB records to a virtio-blk and an NVMe disk,
# fsyncing each and reporting it on the console; the VMM is SIGKILLed at a
# random moment, DUR_ROUNDS (20) times; every record the guest reported as
# fsynced must be in the disk image afterwards.
# Runs in the nested rig, or directly on a host whose KVM runs real guests
# (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
tests/rig/rig.sh mkcfg "$work/cfg.img" shell
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/durability-inner.sh \
    --bin "$BUILD/ttyexpect" --file "$B/guest/test.iso" --file "$work/cfg.img" \
    --file /usr/share/seabios/bios-256k.bin --file /usr/share/OVMF/OVMF_CODE.fd \
    --env "DUR_ROUNDS=${DUR_ROUNDS:-20}" --env "DUR_FIRMWARE=${DUR_FIRMWARE:-bios-256k.bin}" \
    --timeout 1500 "$@"
