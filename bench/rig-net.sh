#!/bin/bash
# The network benchmark (bench/net.c) inside the nested rig's L1, where
# /dev/vhost-net exists: ours on its default vhost-net data path against
# QEMU with vhost=on, then ours with `vhost-net = false` against QEMU with
# vhost=off. Same test guest, same commands and tables as on the host.
# L1's CPU is software-emulated (QEMU TCG): every exit and every copy costs
# far more than on hardware, so the figures say little about real machines;
# compare only the ratios, and even those with care.
#
#   bench/rig-net.sh [--runs N] [--ms MS] [--tests LIST]   (passed to bench/net)
# BUILD (default build) names the build directory; RIG_NET_MODES
# ("vhost userspace") picks the modes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--runs 3)
make -s BUILD="$BUILD" "$BUILD/propolis-standalone" "$BUILD/bench/net" guest
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The script L1 runs (busybox sh, as root, in /rig/work).
cat > "$work/rig-net-inner.sh" <<'EOF'
#!/bin/sh
F=${RIG_FILES:-/rig/files}
echo "rig-net: L1 kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs (software-emulated)"
ls -l /dev/vhost-net /dev/net/tun /dev/kvm
status=0
for mode in $RIG_NET_MODES; do
    flag=
    [ "$mode" = vhost ] && flag=--vhost
    echo "rig-net: mode $mode"
    # shellcheck disable=SC2086 # the arguments are words
    /rig/bin/net --vmm "$RIG_VMM" --guest "$F/testguest.bin" $flag $RIG_NET_ARGS || status=1
done
exit $status
EOF
out=$work/out.txt
# rig.sh exec runs the script directly when host KVM runs real guests;
# bench/net makes a network namespace of its own for every VM either way.
tests/rig/rig.sh exec --vmm "$BUILD/propolis-standalone" --script "$work/rig-net-inner.sh" \
    --bin "$BUILD/bench/net" --bin /usr/bin/qemu-system-x86_64 \
    --file "$BUILD/guest/testguest.bin" \
    --file /usr/share/seabios/bios-256k.bin:/usr/share/seabios/bios-256k.bin \
    --file /usr/share/qemu/kvmvapic.bin:/usr/share/qemu/kvmvapic.bin \
    --file /usr/share/qemu/linuxboot_dma.bin:/usr/share/qemu/linuxboot_dma.bin \
    --env "RIG_NET_MODES=${RIG_NET_MODES:-vhost userspace}" --env "RIG_NET_ARGS=${args[*]}" \
    --timeout "${RIG_NET_TIMEOUT:-3000}" > "$out" 2>&1 || true
# The script's own lines, without the rig's "[run T] " prefix.
sed -n 's/^\[run *[0-9.]*\] //p' "$out"
grep -E '^rig: (result|FAILED)' "$out" || true
echo "rig-net: measured under the rig's software-emulated L1 CPU (QEMU TCG): the figures say" \
    "little about real hardware; compare the ratios only"
