#!/bin/bash
# Issue 11's real-guest test: the spec's example config as written (paths
# and the vnic value changed; the rig's config disk added at a free slot)
# boots OVMF -> GRUB -> Linux from the test ISO with pci-virtio-viona on a
# TAP our VMM creates; the guest pings L1's end of the TAP and moves NET_MIB
# (64) MiB each way over TCP with md5 at both ends, reboots, and does it
# again with NET_REBOOT_MIB (8) MiB, then after reloading its virtio_net
# driver pings and fetches 8 MiB once more; once on the vhost-net data path and
# once on the userspace one (rig.sh exec: in the nested rig, whose L1 has
# /dev/vhost-net, or directly on a host whose KVM runs real guests - there
# in a network namespace of its own). See network-inner.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
# The userspace run needs [dev.X].vhost-net, which a VMM without it refuses.
paths=vhost
grep -q vhost-net src/config/*.c src/main.c && paths="vhost userspace"
tests/rig/rig.sh mkcfg "$work/cfg.img" shell
cp "$B/guest/test.iso" "$work/quickstart.iso"
# Directly on a host, the TAP and its addresses stay out of the host's own
# network namespace.
wrap=()
[ "$(tests/rig/rig.sh probe)" = direct ] && wrap=(unshare --net)
exec "${wrap[@]}" tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/network-inner.sh \
    --bin "$BUILD/ttyexpect" --file "$work/quickstart.iso" --file "$work/cfg.img" \
    --file /usr/share/OVMF/OVMF_CODE.fd --env "NET_PATHS=${NET_PATHS:-$paths}" \
    --env "NET_MIB=${NET_MIB:-64}" --env "NET_REBOOT_MIB=${NET_REBOOT_MIB:-8}" \
    --timeout 900 "$@"
