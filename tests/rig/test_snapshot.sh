#!/bin/bash
# Issue 13's real-guest tests of snapshots (snapshot-inner.sh): a Linux
# guest writing to a virtio-blk and an NVMe disk with its NIC up is
# snapshotted mid-way (SIGINT under -s), restored (-r), finishes with the
# right checksums and still pings; OVMF at its UEFI shell likewise.
# Runs in the nested rig, or directly on a host whose KVM runs real guests
# (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
tests/rig/rig.sh mkcfg "$work/cfg.img" shell
# Directly on a host, the TAP and its addresses stay out of the host's own
# network namespace.
wrap=()
[ "$(tests/rig/rig.sh probe)" = direct ] && wrap=(unshare --net)
exec "${wrap[@]}" tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/snapshot-inner.sh \
    --bin "$BUILD/ttyexpect" --file "$B/guest/test.iso" --file "$work/cfg.img" \
    --file /usr/share/OVMF/OVMF_CODE.fd --file /usr/share/ovmf/OVMF.fd \
    --env "SNAP_TESTS=${SNAP_TESTS:-linux ovmf}" --env "SNAP_MIB=${SNAP_MIB:-64}" \
    --timeout 1200 "$@"
