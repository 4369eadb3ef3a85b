#!/bin/bash
# Boot times with Debian's OVMF (1 vCPU, 512 MiB), our VMM and QEMU 7.2 in
# the same rig run, BENCH_ROUNDS (10) rounds in a random order inside each
# round; median and interquartile range, ratio ours/QEMU:
#   exec -> the UEFI shell prompt (no disk or NIC), and
#   exec -> the rig guest's /init marker: OVMF -> GRUB -> Linux from the
#   rig's test.iso on a virtio-blk disk (QEMU: with an iothread, io_uring). The rig's L1 is a software CPU (QEMU
# TCG) whose every exit is emulated: the seconds say little about real
# hardware; compare the ratio only ("software-CPU rig, ratios only").
# Raw results: one JSON line per measurement in $BUILD/bench/rig-ovmf.jsonl.
#   BUILD (build), BENCH_ROUNDS (10), RIG_OVMF_TIMEOUT (rig timeout, s)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${BENCH_ROUNDS:-10}
LABEL="software-CPU rig, ratios only"
nice -n 19 make -s BUILD="$BUILD" "$BUILD/propolis-standalone" "$BUILD/ttyexpect"
tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
R=${RIG_BUILD:-build/rig}
mkdir -p "$BUILD/bench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# The devices QEMU's pc machine keeps with the options used in L1 (same
# binary, TCG here: only the kvm- prefixes differ), against ours.
ours_devices="i440FX-pcihost i440FX PIIX3 PIIX4_PM fw_cfg_io hpet ioapic i8042 ps2-kbd ps2-mouse isa-i8259 isa-pit mc146818rtc port92"
qemu_devices=$( (echo 'info qtree'; echo quit) | timeout 30 /usr/bin/qemu-system-x86_64 \
    -machine pc,accel=tcg,vmport=off,smm=off -nodefaults -no-user-config -display none -vga none \
    -global apic-common.vapic=off -S -monitor stdio 2>/dev/null | sed -n 's/^ *dev: \([^,]*\),.*/\1/p' | sort | uniq -c |
    awk '{print $2 ($1 > 1 ? "x" $1 : "")}' | tr '\n' ' ')
only_qemu=
for dev in $qemu_devices; do
    case " $ours_devices " in *" ${dev%x[0-9]*} "*) ;; *) only_qemu="$only_qemu $dev" ;; esac
done
echo "rig-ovmf: devices only QEMU has (QEMU 7.2's pc machine offers no option to remove them):${only_qemu:- none}"
echo "rig-ovmf: devices only ours has: COM2-COM4 (QEMU with -nodefaults has COM1 only) and the 0x402 debug port (QEMU leaves 0x402 unassigned; a write exits to userspace in both) [$LABEL]"

started=$(date +%s)
tests/rig/rig.sh exec --vmm "$BUILD/propolis-standalone" --script bench/rig-ovmf-inner.sh \
    --bin "$BUILD/ttyexpect" --bin /usr/bin/qemu-system-x86_64 --file /usr/share/ovmf/OVMF.fd \
    --file "$R/guest/test.iso" \
    --env "BENCH_ROUNDS=$ROUNDS" --timeout "${RIG_OVMF_TIMEOUT:-$((ROUNDS * 600 + 300))}" > "$out" 2>&1 || true
echo "rig-ovmf: rig run took $(($(date +%s) - started)) s"
sed -n 's/^\[run *[0-9.]*\] //p' "$out" | grep -E '^BENCH-OVMF' || true
grep -E '^rig: (result|FAILED|attempt)' "$out" || true
python3 - "$out" "$BUILD/bench/rig-ovmf.jsonl" "$LABEL" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import json, re, statistics, sys, time
src, jsonl, label, commit = sys.argv[1:5]
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
TESTS = {"BENCH-OVMF": ("exec-to-uefi-shell", "exec -> UEFI shell prompt"),
         "BENCH-OVMF-LINUX": ("exec-to-linux-init", "exec -> Linux /init via OVMF, GRUB, virtio-blk")}
rows = []
for line in open(src, errors="replace"):
    m = re.search(r"(BENCH-OVMF(?:-LINUX)?) round=(\d+) pos=(\d) vmm=(\w+) ms=(\d+|fail)", line)
    if m:
        rows.append({"test": TESTS[m.group(1)][0], "round": int(m.group(2)), "pos": int(m.group(3)),
                     "vmm": m.group(4), "ms": None if m.group(5) == "fail" else int(m.group(5))})
with open(jsonl, "a") as o:
    for r in rows:
        o.write(json.dumps(dict(r, bench="rig-ovmf", cpus=1, mem_mib=512,
                                date=stamp, commit=commit, label=label)) + "\n")
def stats(v):
    v = sorted(v)
    if len(v) < 2:
        return (v[0], 0.0) if v else (None, None)
    q = statistics.quantiles(v, n=4, method="inclusive")
    return statistics.median(v), q[2] - q[0]
for test, what in TESTS.values():
    sel = [r for r in rows if r["test"] == test]
    res = {}
    for k in ("ours", "qemu"):
        ok = [r["ms"] / 1000 for r in sel if r["vmm"] == k and r["ms"] is not None]
        res[k] = (stats(ok), len(ok), sum(1 for r in sel if r["vmm"] == k and r["ms"] is None))
    (o, oi), no, fo = res["ours"]
    (q, qi), nq, fq = res["qemu"]
    if o is None or q is None:
        print("rig-ovmf: %s: no complete measurement [%s]" % (what, label))
        continue
    first = sum(1 for r in sel if r["pos"] == 1 and r["vmm"] == "ours")
    print("%s, 1 vCPU, 512 MiB [%s]: ours median %.1f s (IQR %.1f, n=%d, %d failed), "
          "qemu median %.1f s (IQR %.1f, n=%d, %d failed), ratio ours/qemu %.2f; ours ran first in %d of %d rounds"
          % (what, label, o, oi, no, fo, q, qi, nq, fq, o / q, first, len({r["round"] for r in sel})))
    pairs = {}
    for r in sel:
        if r["ms"] is not None:
            pairs.setdefault(r["round"], {})[r["vmm"]] = r["ms"]
    ratios = [p["ours"] / p["qemu"] for p in pairs.values() if len(p) == 2]
    if ratios:
        m, i = stats(ratios)
        print("  per-round ratio ours/qemu [%s]: median %.2f (IQR %.2f, n=%d)" % (label, m, i, len(ratios)))
PY
