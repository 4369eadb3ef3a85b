#!/usr/bin/env bash
# The README quickstart with local files, in one command on a fresh Debian
# 12 machine: installs the packages it needs (as root; idempotent), builds
# everything (the VMM, and from Debian packages a bootable ISO: Debian's
# kernel with virtio and NVMe modules in a busybox initramfs, GRUB for EFI
# and BIOS), writes the example config (examples/quickstart.toml) with local
# paths, and boots it through OVMF.
#
# On a host whose KVM runs unmodified guests, run from a terminal, you get
# the guest's shell on this terminal (Ctrl-] leaves). Otherwise the run is
# scripted (tests/rig/quickstart-inner.sh): boot to the guest's shell, run a
# few commands there, power off; on a nested/paravirtual KVM (this project's
# CI machines) inside the nested rig. A guest that stops making progress
# (QS_IDLE seconds without console output, default 120) is stopped at once:
# the script prints the VMM's state dump and the last console lines and
# exits non-zero. A rig fault (L1 or the outer QEMU failing) is retried and
# reported as such (tests/rig/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    tools/install-deps.sh
    tests/rig/install-deps.sh
fi
make -s -j"$(nproc)" all
tests/rig/rig.sh build
work=build/quickstart
mkdir -p "$work"
tests/rig/rig.sh mkcfg "$work/cfg.img" shell
cp build/rig/guest/test.iso "$work/quickstart.iso"
mode=$(tests/rig/rig.sh probe)
if [ "$mode" = direct ] && [ -t 0 ]; then
    sed -e "s|@ISO@|$PWD/$work/quickstart.iso|" -e "s|@CFG@|$PWD/$work/cfg.img|" \
        examples/quickstart.toml > "$work/config.toml"
    echo "quickstart: host KVM runs real guests; starting the VM (console on ./ttya)"
    cd "$work"
    ../propolis-standalone config.toml &
    vmm=$!
    trap 'kill -TERM $vmm 2>/dev/null; wait $vmm 2>/dev/null || true' EXIT
    for _ in $(seq 200); do [ -S ttya ] && break; sleep 0.05; done
    socat -,rawer,escape=0x1d UNIX-CONNECT:ttya
    exit 0
fi
if [ "$mode" = rig ]; then
    echo "quickstart: this host's KVM cannot run unmodified guests (nested/paravirtual);"
    echo "quickstart: running the same VM inside the nested rig (tests/rig/README.md)"
fi
# QS_TIMEOUT bounds the guest's run; the rig's own timeout only backs it up.
# Scripted directly on a host, the NIC's TAP and its address stay out of
# the host's own network namespace.
wrap=()
[ "$mode" = direct ] && wrap=(unshare --net)
exec "${wrap[@]}" tests/rig/rig.sh exec --vmm build/propolis-standalone --script tests/rig/quickstart-inner.sh \
    --bin build/ttyexpect --file "$work/quickstart.iso" --file "$work/cfg.img" \
    --file examples/quickstart.toml --file /usr/share/OVMF/OVMF_CODE.fd \
    --env "QS_IDLE=${QS_IDLE:-120}" --env "QS_TIMEOUT=${QS_TIMEOUT:-300}" --timeout 360
