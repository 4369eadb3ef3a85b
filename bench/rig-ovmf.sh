#!/bin/bash
# Seconds from exec to the UEFI shell prompt, ours and QEMU side by side in
# the same rig run (or directly on a host whose KVM runs real guests), with
# the ratio. Timings in the rig are those of a software CPU: compare only
# the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/propolis-standalone build/ttyexpect
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
out=$(mktemp)
trap 'rm -f "$out"' EXIT
tests/rig/rig.sh exec --vmm build/propolis-standalone --script bench/rig-ovmf-inner.sh \
    --bin build/ttyexpect --bin /usr/bin/qemu-system-x86_64 --file /usr/share/ovmf/OVMF.fd \
    --file /usr/share/seabios/bios-256k.bin:/usr/share/seabios/bios-256k.bin \
    --file /usr/share/qemu/kvmvapic.bin:/usr/share/qemu/kvmvapic.bin \
    --file /usr/share/qemu/linuxboot_dma.bin:/usr/share/qemu/linuxboot_dma.bin \
    --timeout 3000 | tee "$out" | grep -E 'BENCH-OVMF|rig: result' || true
python3 - "$out" <<'PY'
import re, statistics, sys
ours, qemu = [], []
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"BENCH-OVMF round=\d+ ours_ms=(\d+) qemu_ms=(\d+)", line)
    if m:
        ours.append(int(m.group(1)) / 1000)
        qemu.append(int(m.group(2)) / 1000)
if not ours:
    print("rig-ovmf: no complete round")
    sys.exit(0)
o, q = statistics.median(ours), statistics.median(qemu)
print("exec -> UEFI shell prompt (rig, 1 vCPU, 512 MiB), median of %d: ours %.1f s, qemu %.1f s, ratio ours/qemu %.2f (target <= 1.0)" % (len(ours), o, q, o / q))
PY
