#!/bin/bash
# fio inside a real Linux guest (the rig's test guest with Debian's fio,
# build/rig/guest/test-fio.iso), under our VMM and under QEMU 7.2 at its
# best practice with the same devices, side by side in the nested rig's L1
# (tests/rig/README.md): SeaBIOS -> GRUB -> Linux, virtio-blk and NVMe data
# disks (files in L1's tmpfs), fio on the raw devices with direct=1 and
# io_uring. Measured:
#   boot     exec -> the guest's /init printing "RIG-REPORT boot"
#   qd1      4 KiB random read and write at QD1: IOPS, clat p50/p99/p99.9
#   qd       4 KiB random read IOPS at QD 1, 4, 16, 64, 128
#   bs       sequential read MiB/s at QD8 with 4k, 64k, 1m blocks
#   scale    4 KiB random read, QD16 per job, numjobs = vCPUs = 1, 2, 4;
#            IOPS and L1 CPU of the VMM process per I/O (all threads, and
#            without the vCPU threads), from /proc/PID/task/*/schedstat
# Each round runs every (vCPUs, VMM) pair, the pairs and the order inside
# each pair shuffled. Median and IQR over rounds, ratio ours/QEMU.
# Every figure comes from a software CPU (L1 is QEMU TCG): ratios only.
#
#   bench/rig-fio.sh        BUILD (build), BENCH_ROUNDS (3), FIO_CPUS ("1 2 4"),
#                           FIO_RUNTIME (3 s per fio job), FIO_SIZE_MIB (128),
#                           FIO_JOBS (a grep -E pattern: only the jobs it
#                           names, e.g. "scale"), FIO_PERF (1: profile each
#                           job in L1 with perf record on the VMM's
#                           threads; needs Debian's linux-perf on the host),
#                           FIO_QEMU_STATS (1: QEMU's "info blockstats"
#                           after each job, RIG-FIO-QSTATS lines: how many
#                           requests its virtio-blk merged),
#                           RIG_FIO_TIMEOUT (rig timeout, s),
#                           FIO_COMBINE (1: the table from every run in the
#                           JSON file of this commit and these settings, so
#                           rounds can be gathered over several invocations),
#                           FIO_SUMMARY_ONLY (1: no rig run, only that table),
#                           FIO_FROM_LOG (a rig run's console.log: its
#                           figures added without running the rig again)
# Raw results: one JSON line per measurement in $BUILD/bench/rig-fio.jsonl,
# each naming its invocation ("run"), commit and settings.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${BENCH_ROUNDS:-3}
CPUS=${FIO_CPUS:-1 2 4}
RUNTIME=${FIO_RUNTIME:-3}
SIZE_MIB=${FIO_SIZE_MIB:-128}
LABEL="software-CPU rig, ratios only"
R=${RIG_BUILD:-build/rig}
mkdir -p "$BUILD/bench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/out.txt
# Rounds of different code never share a table. "commit" is the last one
# that changed what is measured (the VMM, the rig, this bench), so commits
# of other files do not split a series; a tree with such changes is -dirty.
measured=(src guest tests/rig bench/rig-fio.sh bench/rig-fio-inner.sh Makefile)
commit=$(git log -1 --format=%h -- "${measured[@]}" 2>/dev/null || true)
commit=${commit:-unknown}
git diff --quiet HEAD -- "${measured[@]}" 2>/dev/null || commit="$commit-dirty"
combine=${FIO_COMBINE:-}
jsonl_name=rig-fio.jsonl
[ -n "${FIO_PERF:-}" ] && jsonl_name=rig-fio-profiled.jsonl
if [ -n "${FIO_SUMMARY_ONLY:-}" ]; then
    combine=1
    : >"$out"
elif [ -n "${FIO_FROM_LOG:-}" ]; then
    # A rig run's console.log (build/rig/runs/*/) read again, e.g. when the
    # parsing below failed: its figures are added as one more invocation.
    cp "$FIO_FROM_LOG" "$out"
    export FIO_RUN_ID="log:$FIO_FROM_LOG"
else
    nice -n 19 make -s BUILD="$BUILD" "$BUILD/propolis-standalone" "$BUILD/ttyexpect"
    tests/rig/rig.sh build >/dev/null 2>&1 || tests/rig/rig.sh build
    echo "rig-fio: $ROUNDS rounds, vCPUs $CPUS, ${RUNTIME} s per fio job, ${SIZE_MIB} MiB disks ($LABEL)"
    started=$(date +%s)
    perf_bin=()
    if [ -n "${FIO_PERF:-}" ]; then
        # Debian's /usr/bin/perf is the tool itself; L1 runs the same 6.1 kernel series.
        command -v perf >/dev/null || { echo "rig-fio: FIO_PERF needs perf (apt-get install linux-perf)" >&2; exit 1; }
        # Profiled runs measure the tools too: their figures go to another file.
        perf_bin=(--bin "$(command -v perf)" --env FIO_PERF=1)
    fi
    tests/rig/rig.sh exec --vmm "$BUILD/propolis-standalone" --script bench/rig-fio-inner.sh \
        --bin "$BUILD/ttyexpect" --bin /usr/bin/qemu-system-x86_64 "${perf_bin[@]}" \
        --env "FIO_JOBS=${FIO_JOBS:-.}" --env "FIO_QEMU_STATS=${FIO_QEMU_STATS:-}" \
        --file "$R/guest/test-fio.iso" --file /usr/share/seabios/bios-256k.bin \
        --env "BENCH_ROUNDS=$ROUNDS" --env "FIO_CPUS=$CPUS" --env "FIO_RUNTIME=$RUNTIME" \
        --env "FIO_SIZE_MIB=$SIZE_MIB" \
        --timeout "${RIG_FIO_TIMEOUT:-$((ROUNDS * 1500 + 600))}" > "$out" 2>&1 || true
    echo "rig-fio: rig run took $(($(date +%s) - started)) s"
    # The script's own lines, without the rig's "[run T] " prefix.
    sed -n 's/^\[run *[0-9.]*\] //p' "$out" | grep -E '^(rig-fio|RIG-FIO-(BOOT|RESULT|CMD|FAIL|ROUND|QSTATS))' |
        grep -v -E '^RIG-FIO-RESULT|guest: RIG-REPORT action' || true
    sed -n 's/^\[run *[0-9.]*\] //p' "$out" | grep '^RIG-FIO-PERF' || true
    grep -E '^rig: (result|FAILED|attempt)' "$out" || true
fi
python3 - "$out" "$BUILD/bench/$jsonl_name" "$LABEL" "$commit" "$RUNTIME" "$SIZE_MIB" "$CPUS" \
    "${FIO_JOBS:-.}" "$combine" <<'PY'
import json, os, re, statistics, sys, time
src, jsonl, label, commit, runtime_s, size_mib, cpus_set, jobs_pattern, combine = sys.argv[1:10]
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
# An invocation's rounds are told apart from another's by its start (or,
# for a saved log read again, by the log's name).
run = os.environ.get("FIO_RUN_ID") or stamp
# What must match for runs to share a table.
settings = {"commit": commit, "label": label, "fio_runtime_s": int(runtime_s),
            "size_mib": int(size_mib), "cpus_set": cpus_set, "jobs_pattern": jobs_pattern}
boots, jobs = [], []
for raw in open(src, errors="replace"):
    m = re.match(r"\[run *[0-9.]*\] (RIG-FIO-(BOOT|RESULT) .*)", raw.rstrip("\n"))
    if not m:
        continue
    line = m.group(1)
    head, _, terse = line.partition(" terse=")
    kv = dict(w.split("=", 1) for w in head.split()[1:] if "=" in w)
    if m.group(2) == "BOOT":
        if kv.get("boot_ms", "fail") != "fail":
            boots.append({"vmm": kv["vmm"], "round": int(kv["round"]), "cpus": int(kv["cpus"]),
                          "boot_s": int(kv["boot_ms"]) / 1000})
        continue
    f = terse.split(";")
    if len(f) < 80 or f[0] != "3":
        continue
    def pct(base, want):   # clat percentiles, "50.000000%=38" (usec)
        for x in f[base:base + 20]:
            k, _, v = x.partition("%=")
            if k and abs(float(k) - want) < 1e-6:
                return int(v)
        return None
    rd, wr = 5, 46   # 0-based start of the read and write sections (terse v3)
    w = "write" in kv["rw"]
    s = wr if w else rd
    ios = int(int(f[s]) * 1024 / int(kv["bs_bytes"]))   # KiB moved / block size
    runtime_ms = int(f[s + 3])
    cpu_ns, io_ns = int(kv["cpu_ns"]), int(kv["io_cpu_ns"])
    jobs.append({
        "vmm": kv["vmm"], "round": int(kv["round"]), "cpus": int(kv["cpus"]), "job": kv["job"],
        "dev": kv["dev"], "rw": kv["rw"], "bs": kv["bs"], "qd": int(kv["qd"]),
        "numjobs": int(kv["numjobs"]), "error": int(f[4]),
        "iops": float(f[s + 2]), "mib_s": int(f[s + 1]) / 1024, "ios": ios, "fio_runtime_ms": runtime_ms,
        "clat_p50_us": pct(s + 12, 50), "clat_p99_us": pct(s + 12, 99), "clat_p999_us": pct(s + 12, 99.9),
        "l1_wall_ms": int(kv["wall_ms"]), "cpu_ns": cpu_ns, "io_cpu_ns": io_ns,
        "cpu_us_per_io": cpu_ns / 1000 / ios if ios else None,
        "io_cpu_us_per_io": io_ns / 1000 / ios if ios else None})
with open(jsonl, "a") as o:
    for b in boots:
        o.write(json.dumps({**b, **settings, "bench": "rig-fio", "test": "boot", "date": stamp,
                            "run": run}) + "\n")
    for j in jobs:
        o.write(json.dumps({**j, **settings, "bench": "rig-fio", "test": j["job"], "date": stamp,
                            "run": run}) + "\n")
for r in boots + jobs:
    r["run"] = run
if combine:
    boots, jobs = [], []
    try:
        lines = open(jsonl).read().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        r = json.loads(line)
        if any(r.get(k) != v for k, v in settings.items()):
            continue
        (boots if r["test"] == "boot" else jobs).append(r)
    runs = sorted({r["run"] for r in boots + jobs})
    print("rig-fio: the table below gathers %d invocation(s) of commit %s with these settings: %s" % (
        len(runs), commit, ", ".join(runs) or "none"))
bad = [j for j in jobs if j["error"]]
for j in bad:
    print("rig-fio: excluded (fio error %d): %s %s round %d" % (j["error"], j["vmm"], j["job"], j["round"]))
jobs = [j for j in jobs if not j["error"]]

def q(vals):
    vals = sorted(vals)
    if len(vals) == 1:
        return vals[0], 0.0
    qs = statistics.quantiles(vals, n=4, method="inclusive")
    return statistics.median(vals), qs[2] - qs[0]
def cell(vals, fmt):
    if not vals:
        return "-", None
    m, iqr = q(vals)
    return ("%s (IQR %s, n=%d)" % (fmt % m, fmt % iqr, len(vals))), m
def row(what, unit, key, sel, fmt="%.0f", lower_better=False):
    a = [j[key] for j in jobs if j["vmm"] == "ours" and sel(j) and j[key] is not None]
    b = [j[key] for j in jobs if j["vmm"] == "qemu" and sel(j) and j[key] is not None]
    ca, ma = cell(a, fmt)
    cb, mb = cell(b, fmt)
    ratio = "%.2f" % (ma / mb) if ma is not None and mb else "-"
    print("%-34s %-10s ours %-28s qemu %-28s ours/qemu %s%s  [%s]" % (
        what, unit, ca, cb, ratio, " (lower is better)" if lower_better else "", label))

print("\nrig-fio results (%s): median (IQR, rounds) per figure; raw lines in %s" % (label, jsonl))
bo = [b["boot_s"] for b in boots if b["vmm"] == "ours"]
bq = [b["boot_s"] for b in boots if b["vmm"] == "qemu"]
for c in sorted({b["cpus"] for b in boots}):
    a = [b["boot_s"] for b in boots if b["vmm"] == "ours" and b["cpus"] == c]
    z = [b["boot_s"] for b in boots if b["vmm"] == "qemu" and b["cpus"] == c]
    ca, ma = cell(a, "%.1f")
    cb, mb = cell(z, "%.1f")
    print("%-34s %-10s ours %-28s qemu %-28s ours/qemu %s (lower is better)  [%s]" % (
        "boot exec->/init marker, %d vCPU" % c, "s", ca, cb, "%.2f" % (ma / mb) if ma and mb else "-", label))
for dev in ("vblk", "nvme"):
    name = {"vblk": "virtio-blk", "nvme": "NVMe"}[dev]
    print("-- %s, 1 vCPU" % name)
    by_job = lambda name: (lambda j: j["cpus"] == 1 and j["job"] == "%s-%s" % (dev, name))
    for rw, short in (("randread", "rr"), ("randwrite", "rw")):
        row("4k %s QD1" % rw, "IOPS", "iops", by_job(short + "-qd1"))
        for p, k in (("p50", "clat_p50_us"), ("p99", "clat_p99_us"), ("p99.9", "clat_p999_us")):
            row("4k %s QD1 clat %s" % (rw, p), "us", k, by_job(short + "-qd1"), lower_better=True)
    for qd in (1, 4, 16, 64, 128):
        row("4k randread QD%d" % qd, "IOPS", "iops", by_job("rr-qd%d" % qd))
    for bs in ("4k", "64k", "1m"):
        row("seq read %s QD8" % bs, "MiB/s", "mib_s", by_job("seq-" + bs), fmt="%.1f")
    print("-- %s, scaling: 4k randread QD16 per job, numjobs = vCPUs" % name)
    for c in sorted({j["cpus"] for j in jobs}):
        sc2 = lambda j, c=c: j["dev"] == dev and j["cpus"] == c and j["job"] == dev + "-scale"
        row("%d vCPU IOPS" % c, "IOPS", "iops", sc2)
        row("%d vCPU L1 CPU/I/O, all threads" % c, "us", "cpu_us_per_io", sc2, fmt="%.1f", lower_better=True)
        row("%d vCPU L1 CPU/I/O, no vCPU thr." % c, "us", "io_cpu_us_per_io", sc2, fmt="%.1f", lower_better=True)
rounds = sorted({(r["run"], r["round"]) for r in jobs + boots})
print("rig-fio: %d complete job results, %d boots, %d rounds; %s" % (len(jobs), len(boots), len(rounds), label))
PY
