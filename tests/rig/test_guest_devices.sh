#!/bin/bash
# Issue 12's real-guest tests of the guest devices (guest-devices-inner.sh):
# pvpanic seen through ACPI by Linux's driver and a guest panic in our log;
# a cloud-init disk found by label and its files checksummed in the guest;
# vsock both ways through port mappings and the device's UNIX socket.
# Runs in the nested rig, or directly on a host whose KVM runs real guests
# (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
tests/rig/rig.sh mkcfg "$work/pvpanic-cfg.img" \
    'sh cat /sys/bus/acpi/devices/QEMU0001:00/hid' \
    'sh readlink /sys/bus/platform/devices/QEMU0001:00/driver' \
    'sh echo c > /proc/sysrq-trigger'
tests/rig/rig.sh mkcfg "$work/shell-cfg.img" shell
tests/rig/rig.sh mkcfg "$work/cloudinit-cfg.img" \
    'sh mkdir -p /mnt && mount -t vfat -o ro $(findfs LABEL=cidata) /mnt && echo mounted' \
    'sh md5sum /mnt/user-data' 'sh md5sum /mnt/meta-data' 'sh md5sum /mnt/network-config' \
    'sh ls /mnt | tr "\n" ,' \
    'sh dmesg | grep -i -E "fat|nls|vfs|mount" | tail -3 | tr "\n" " "'
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/guest-devices-inner.sh \
    --bin "$BUILD/ttyexpect" --file "$B/guest/test.iso" --file "$work/pvpanic-cfg.img" \
    --file "$work/shell-cfg.img" --file "$work/cloudinit-cfg.img" --bin "$B/rig-vsock" \
    --file /usr/share/OVMF/OVMF_CODE.fd --env "DEV_TESTS=${DEV_TESTS:-pvpanic cloudinit vsock}" \
    --env "VSOCK_MIB=${VSOCK_MIB:-64}" \
    --timeout 900 "$@"
