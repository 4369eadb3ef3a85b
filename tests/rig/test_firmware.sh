#!/bin/bash
# Issue 4's real-firmware tests: Debian's OVMF reaches the UEFI shell under
# our VMM (1 and 4 vCPUs), its pci/memmap/smbiosview commands see our
# chipset, memory map and SMBIOS tables, reset and reset -s work, and
# SeaBIOS prints its banner. Runs in the nested rig, or directly on a host
# whose KVM runs real guests (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
VMM=${VMM:-build/propolis-standalone}
make -s "$VMM" build/ttyexpect
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/firmware-inner.sh \
    --bin build/ttyexpect --file /usr/share/ovmf/OVMF.fd \
    --file /usr/share/seabios/bios-256k.bin --timeout 1500 "$@"
