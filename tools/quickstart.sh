#!/usr/bin/env bash
# The README quickstart with local files: builds everything (the VMM, and
# from Debian packages a bootable ISO: Debian's kernel with virtio and NVMe
# modules in a busybox initramfs, GRUB for EFI and BIOS), writes the example
# config (examples/quickstart.toml) with local paths, and boots it through
# OVMF with the console attached.
#
# On a host whose KVM runs unmodified guests, you get the guest's shell on
# this terminal (Ctrl-] leaves). Where it cannot (nested/paravirtual KVM, as
# on this project's CI machines), the same VM runs inside the nested rig: the
# script says so, boots to the guest's shell, runs a few commands there and
# shows the transcript.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all
tests/rig/rig.sh build
work=build/quickstart
mkdir -p "$work"
{ printf 'RIGCFG1\nshell\nend\n'; } > "$work/cfg.img"
truncate -s 1M "$work/cfg.img"
cp build/rig/guest/test.iso "$work/quickstart.iso"
mode=$(tests/rig/rig.sh probe)
if [ "$mode" = direct ]; then
    sed -e "s|@ISO@|$PWD/$work/quickstart.iso|" -e "s|@CFG@|$PWD/$work/cfg.img|" \
        examples/quickstart.toml > "$work/config.toml"
    echo "quickstart: host KVM runs real guests; starting the VM (console on ./ttya)"
    cd "$work"
    ../propolis-standalone config.toml &
    vmm=$!
    trap 'kill -TERM $vmm 2>/dev/null; wait $vmm 2>/dev/null || true' EXIT
    for _ in $(seq 200); do [ -S ttya ] && break; sleep 0.05; done
    if [ -t 0 ]; then
        socat -,rawer,escape=0x1d UNIX-CONNECT:ttya
    else
        ../ttyexpect ttya timeout:300 "expect:RIG-SHELL ready" "send:\r" "expect:#" \
            "send:uname -a; ls /sys/block; poweroff -f\r" eof
    fi
    exit 0
fi
echo "quickstart: this host's KVM cannot run unmodified guests (nested/paravirtual);"
echo "quickstart: running the same VM inside the nested rig (tests/rig/README.md)"
inner=$(mktemp)
trap 'rm -f "$inner"' EXIT
cat > "$inner" <<'INNER'
#!/bin/sh
F=$RIG_FILES
sed -e "s|@ISO@|$F/quickstart.iso|" -e "s|@CFG@|$PWD/cfg.img|" \
    -e "s|/usr/share/OVMF/OVMF_CODE.fd|$F/OVMF_CODE.fd|" $F/quickstart.toml > config.toml
cp $F/cfg.img cfg.img
echo "== config.toml"; cat config.toml
$RIG_VMM config.toml > vmm.log 2>&1 &
vmm=$!
ttyexpect ttya timeout:400 "expect:RIG-SHELL ready" "send:\r" "expect:#" \
    "send:uname -a; cat /proc/cmdline; ls /sys/block; grep -c ^processor /proc/cpuinfo\r" \
    "expect:#" "send:poweroff -f\r" eof | tr -d '\r'
rc=$?
wait $vmm
echo "== VMM exit status $? (exit_on_halt); its log:"
cat vmm.log
exit $rc
INNER
exec tests/rig/rig.sh run --vmm build/propolis-standalone --script "$inner" --bin build/ttyexpect \
    --file "$work/quickstart.iso" --file "$work/cfg.img" --file examples/quickstart.toml \
    --file /usr/share/OVMF/OVMF_CODE.fd --timeout 900
