#!/bin/bash
# Real-guest self-test of the rig path (`make rig-test`): the reference
# scenario (OVMF -> GRUB -> Linux, virtio-blk x2 + NVMe, 4 vCPUs) with
# Debian's QEMU as the VMM, directly under host KVM or in the nested rig as
# `rig.sh exec` decides.  Later real-guest tests follow the same pattern with
# VMM=build/propolis-standalone.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${RIG_BUILD:-build/rig}
exec tests/rig/rig.sh exec --vmm /usr/bin/qemu-system-x86_64 --script tests/rig/reference.sh \
    --file "$B/guest/test.iso" --file /usr/share/ovmf/OVMF.fd \
    --file /usr/share/seabios/bios-256k.bin:/usr/share/seabios/bios-256k.bin \
    --file /usr/share/qemu/kvmvapic.bin:/usr/share/qemu/kvmvapic.bin \
    --file /usr/share/qemu/linuxboot_dma.bin:/usr/share/qemu/linuxboot_dma.bin \
    --timeout 240 "$@"
