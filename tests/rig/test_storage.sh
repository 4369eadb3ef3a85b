#!/bin/bash
# Issue 5's real-guest test: OVMF -> GRUB -> Linux from the test ISO on
# pci-virtio-block, plus a virtio config disk and an NVMe disk, under our
# VMM with 1 and 4 vCPUs (rig.sh exec: in the nested rig, or directly on a
# host whose KVM runs real guests).
set -euo pipefail
cd "$(dirname "$0")/../.."
VMM=${VMM:-build/propolis-standalone}
make -s "$VMM" build/ttyexpect
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
B=${RIG_BUILD:-build/rig}
inner=$(mktemp)
trap 'rm -f "$inner"' EXIT
{
    echo '#!/bin/sh'
    echo 'rc=0'
    for cpus in ${STORAGE_CPU_COUNTS:-1 4}; do
        echo "STORAGE_CPUS=$cpus sh \$RIG_FILES/storage-inner.sh || rc=1"
    done
    echo 'exit $rc'
} > "$inner"
exec tests/rig/rig.sh exec --vmm "$VMM" --script "$inner" --bin build/ttyexpect \
    --file "$B/guest/test.iso" --file /usr/share/ovmf/OVMF.fd \
    --file tests/rig/storage-inner.sh --timeout 1500 "$@"
