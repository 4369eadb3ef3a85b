#!/bin/bash
# Issue 12's real-guest tests of the guest devices (guest-devices-inner.sh):
# pvpanic seen through ACPI by Linux's driver and a guest panic in our log.
# Runs in the nested rig, or directly on a host whose KVM runs real guests
# (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
VMM=${VMM:-build/propolis-standalone}
BUILD=${BUILD:-$(dirname "$VMM")}
make -s BUILD="$BUILD" "$VMM" "$BUILD/ttyexpect"
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
B=${RIG_BUILD:-build/rig}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tests/rig/rig.sh mkcfg "$work/pvpanic-cfg.img" \
    'sh cat /sys/bus/acpi/devices/QEMU0001:00/hid' \
    'sh readlink /sys/bus/platform/devices/QEMU0001:00/driver' \
    'sh echo c > /proc/sysrq-trigger'
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/guest-devices-inner.sh \
    --bin "$BUILD/ttyexpect" --file "$B/guest/test.iso" --file "$work/pvpanic-cfg.img" \
    --file /usr/share/OVMF/OVMF_CODE.fd --env "DEV_TESTS=${DEV_TESTS:-pvpanic}" \
    --timeout 900 "$@"
