#!/bin/bash
# Issue 5's real-guest test: OVMF -> GRUB -> Linux from the test ISO on
# pci-virtio-block, plus a virtio config disk and an NVMe disk, under our
# VMM with 1 and 4 vCPUs; and [main].boot_order choosing between two
# bootable disks (rig.sh exec: in the nested rig, or directly on a host whose
# KVM runs real guests).
set -euo pipefail
cd "$(dirname "$0")/../.."
VMM=${VMM:-build/propolis-standalone}
make -s "$VMM" build/ttyexpect
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
B=${RIG_BUILD:-build/rig}
# A second bootable ISO that differs in its kernel command line, so the
# guest can tell which disk OVMF booted (boot_order test).
python3 - "$B/guest/test.iso" "$B/guest/test-marked.iso" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert data.count(b"mitigations=off") == 1, "ISO layout changed"
open(sys.argv[2], "wb").write(data.replace(b"mitigations=off", b"mitigations=of0"))
PY
inner=$(mktemp)
trap 'rm -f "$inner"' EXIT
{
    echo '#!/bin/sh'
    echo 'rc=0'
    for cpus in ${STORAGE_CPU_COUNTS:-1 4}; do
        echo "STORAGE_CPUS=$cpus sh \$RIG_FILES/storage-inner.sh || rc=1"
    done
    echo "sh \$RIG_FILES/bootorder-inner.sh nvme0 mitigations=of0 || rc=1"
    echo "sh \$RIG_FILES/bootorder-inner.sh block0 mitigations=off || rc=1"
    echo 'exit $rc'
} > "$inner"
exec tests/rig/rig.sh exec --vmm "$VMM" --script "$inner" --bin build/ttyexpect \
    --file "$B/guest/test.iso" --file "$B/guest/test-marked.iso" --file /usr/share/ovmf/OVMF.fd \
    --file tests/rig/storage-inner.sh --file tests/rig/bootorder-inner.sh --timeout 1500 "$@"
