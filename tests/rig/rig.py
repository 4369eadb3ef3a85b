#!/usr/bin/env python3
"""Host side of the nested rig (called by tests/rig/rig.sh, which builds first).

  run        boot L1 with a VMM, a script and files; stream L1's consoles;
             classify the end of the run; retry rig faults; return the verdict
  reference  one run of the reference scenario (tests/rig/reference.sh)
  check N    the reference scenario N times, without retries: a reliability
             measurement ending in "rig-check: P passed, F rig faults, T timeouts of N"

Outcomes of a run, and exit status of `run`/`reference`:
  verdict    the script's own exit status (0 = pass)
  timeout    124: the script did not finish within --timeout (never retried)
  rig fault  125: the outer QEMU aborted, L1 panicked/oopsed, L1 never got
             ready or died: retried up to --retries times, signature printed
  setup      126: bad input (missing file, library ldd cannot find, no
             /dev/kvm in L1, rig not built): not retried, step named
"""

import argparse
import ctypes
import os
import re
import signal
import statistics
import subprocess
import sys
import tarfile
import time

RIG_SRC = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(RIG_SRC))
RIG_LIB = os.path.join(RIG_SRC, "rig-lib.sh")  # helpers on every script's PATH
OUT = os.environ.get("RIG_BUILD") or os.path.join(TOP, "build", "rig")

EXIT_TIMEOUT, EXIT_RIG_FAULT, EXIT_SETUP = 124, 125, 126

# The outer machine ("L1").  TCG with SVM and nested paging; x2apic off
# (see tests/rig/README.md for what was measured).
# The -flags are those TCG lacks anyway (QEMU warns about each otherwise).
L1_CPU = os.environ.get("RIG_L1_CPU", "EPYC,+svm,+npt,-x2apic,-fxsr-opt,-misalignsse,-osvw,"
                                      "-topoext,-nrip-save,-xsavec")
L1_SMP = int(os.environ.get("RIG_L1_SMP", "4"))
L1_MEM_MIB = int(os.environ.get("RIG_L1_MEM", "4096"))
L1_APPEND = ("console=ttyS0,115200 panic=-1 loglevel=5 mitigations=off "
             "nokaslr " + os.environ.get("RIG_L1_APPEND", ""))
READY_TIMEOUT = int(os.environ.get("RIG_READY_TIMEOUT", "120"))

# Signatures of rig faults, matched on L1's kernel console (ttyS0) and on
# the outer QEMU's stderr.  The script's output is on another port (ttyS1),
# so an inner guest's panic cannot be mistaken for L1's.
L1_FAULTS = [
    ("l1-panic", re.compile(r"Kernel panic - not syncing: ?(.*)")),
    ("l1-oops", re.compile(r"(BUG: (?!soft lockup).*|kernel BUG at .*|Oops: .*|"
                           r"general protection fault.*|unable to handle .*)")),
]
L1_NOTES = [
    ("l1-stall", re.compile(r"(BUG: soft lockup.*|rcu: INFO: .*detected stall.*|"
                            r"INFO: task .* blocked for more than.*)")),
    ("l1-warning", re.compile(r"(WARNING: CPU: \d+ PID: \d+ at \S+)")),
]
OUTER_FAULT = re.compile(r"((?:\w+: )?assertion failed.*|Assertion .*failed.*|qemu: fatal: .*|"
                         r"\*\*\s*ERROR:.*|Bail out!.*)", re.I)


class SetupError(Exception):
    def __init__(self, step, msg):
        super().__init__(f"step {step}: {msg}")
        self.step = step


class Interrupted(Exception):
    pass


def say(msg):
    print(f"rig: {msg}", file=sys.stderr, flush=True)


def normalise(sig):
    """Signature text without addresses, pids and numbers, for grouping."""
    sig = re.sub(r"\b(0x)?[0-9a-f]{6,}\b", "X", sig)
    sig = re.sub(r"\d+", "N", sig)
    return re.sub(r"\s+", " ", sig).strip()[:160]


# ------------------------------------------------------------------ payload

class Cpio:
    """Writer of an uncompressed newc archive (what the kernel's initramfs
    unpacker reads), with directories created before their contents."""

    def __init__(self, f):
        self.f, self.ino, self.dirs = f, 0x10000, set()

    def _entry(self, name, mode, size):
        nb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(nb), 0)
        self.ino += 1
        self.f.write(b"070701" + "".join("%08X" % v for v in fields).encode() + nb)
        self._pad()

    def _pad(self):
        self.f.write(b"\0" * (-self.f.tell() % 4))

    def dir(self, name):
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        self.dir(os.path.dirname(name))
        self.dirs.add(name)
        self._entry(name, 0o40755, 0)

    def file(self, name, src, mode=None):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        st = os.stat(src)
        self._entry(name, 0o100000 | (mode if mode is not None else (st.st_mode & 0o777)), st.st_size)
        with open(src, "rb") as s:
            while True:
                b = s.read(1 << 20)
                if not b:
                    break
                self.f.write(b)
        self._pad()

    def data(self, name, blob, mode=0o644):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, 0o100000 | mode, len(blob))
        self.f.write(blob)
        self._pad()

    def tree(self, name, src):
        if os.path.isdir(src):
            self.dir(name)
            for e in sorted(os.listdir(src)):
                self.tree(os.path.join(name, e), os.path.join(src, e))
        else:
            self.file(name, src)

    def close(self):
        self._entry("TRAILER!!!", 0, 0)


def shared_libs(path):
    """Absolute paths of the shared libraries (and loader) that `path` needs."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    text = r.stdout + r.stderr
    if r.returncode != 0:
        if "not a dynamic executable" in text or "statically linked" in text:
            return []
        raise SetupError("payload", f"ldd {path} failed: {text.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise SetupError("payload", f"{path} needs {line.split()[0]}, which ldd cannot find")
        m = re.match(r"\S+ => (/\S+) \(0x", line) or re.match(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def shell_quote(v):
    return "'" + v.replace("'", "'\\''") + "'"


def env_pairs(args):
    pairs = []
    for e in args.env:
        k, eq, v = e.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise SetupError("payload", f"--env {e}: expected NAME=VALUE")
        pairs.append((k, v))
    return pairs


def write_payload(path, args):
    """The L1 initramfs: the base image (busybox, modules, /init), then /rig."""
    base = os.path.join(OUT, "l1-base.cpio")
    if not os.path.exists(base):
        raise SetupError("build", f"{base} missing: run tests/rig/rig.sh build")
    for what, p in [("vmm", args.vmm), ("script", args.script)] + [("bin", b) for b in args.bin]:
        if not os.path.isfile(p):
            raise SetupError("payload", f"--{what} {p}: no such file")
    libs = []
    for b in [args.vmm] + args.bin:
        libs += [lib for lib in shared_libs(b) if lib not in libs]
    with open(path, "wb") as f:
        with open(base, "rb") as s:
            while True:
                b = s.read(1 << 20)
                if not b:
                    break
                f.write(b)
        f.write(b"\0" * (-f.tell() % 4))
        start = f.tell()

        class Rel:  # alignment is relative to the start of the whole buffer
            def write(self, b):
                f.write(b)

            def tell(self):
                return f.tell() - start
        c = Cpio(Rel())
        c.file("rig/vmm", args.vmm, 0o755)
        c.file("rig/bin/" + os.path.basename(args.vmm), args.vmm, 0o755)
        for b in args.bin:
            c.file("rig/bin/" + os.path.basename(b), b, 0o755)
        c.file("rig/script", args.script, 0o755)
        c.file("rig/bin/rig-lib.sh", RIG_LIB, 0o644)
        c.data("rig/env", "".join(f"export {k}={shell_quote(v)}\n" for k, v in env_pairs(args)).encode())
        c.dir("rig/files")
        for lib in libs:
            c.file(lib, os.path.realpath(lib), 0o755)
        for spec in args.file:
            src, _, dest = spec.partition(":")
            if not os.path.exists(src):
                raise SetupError("payload", f"--file {src}: no such file or directory")
            dest = dest or os.path.basename(src.rstrip("/"))
            c.tree(dest if dest.startswith("/") else "rig/files/" + dest, src)
        c.close()


# --------------------------------------------------------------- one boot

def _pdeathsig():
    os.setsid()
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Tail:
    """Complete lines appended to a file since the last call."""

    def __init__(self, path):
        self.path, self.pos, self.buf = path, 0, b""

    def lines(self, final=False):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        self.buf += data
        parts = self.buf.split(b"\n")
        self.buf = parts.pop()
        if final and self.buf:
            parts.append(self.buf)
            self.buf = b""
        return [p.decode("utf-8", "replace").replace("\r", "").rstrip() for p in parts]


class Result:
    def __init__(self, kind, rc=None, sig="", secs=0.0, notes=(), logdir=""):
        self.kind, self.rc, self.sig, self.secs = kind, rc, sig, secs
        self.notes, self.logdir = list(notes), logdir

    def describe(self):
        if self.kind == "verdict":
            s = f"verdict {'pass' if self.rc == 0 else 'FAIL'} (script exit {self.rc})"
        elif self.kind == "timeout":
            s = f"TIMEOUT [{self.sig}]"
        elif self.kind == "rig-fault":
            s = f"RIG FAULT [{self.sig}]"
        else:
            s = f"SETUP ERROR [{self.sig}]"
        if self.notes:
            s += " notes: " + "; ".join(self.notes)
        return s


def outer_qemu():
    return os.environ.get("RIG_OUTER_QEMU") or os.path.join(OUT, "outer", "qemu-system-x86_64")


def boot_once(args, logdir, stream=True):
    os.makedirs(logdir, exist_ok=True)
    initrd = os.path.join(logdir, "initrd.cpio")
    l1log, runlog, errlog = (os.path.join(logdir, n) for n in ("l1.log", "run.log", "outer.err"))
    out_img = os.path.join(logdir, "out.img") if args.out else None
    t0 = time.monotonic()
    kernel = os.path.join(OUT, "kernel", "vmlinux")  # PVH entry, no decompression
    if not os.path.isfile(kernel) or os.environ.get("RIG_L1_PVH") == "0":
        kernel = os.path.join(OUT, "kernel", "vmlinuz")
    for what, p in (("outer QEMU", outer_qemu()), ("L1 kernel", kernel)):
        if not os.path.isfile(p):
            return Result("setup", sig=f"step build: {what} {p} missing: run tests/rig/rig.sh build", logdir=logdir)
    try:
        write_payload(initrd, args)
    except (SetupError, OSError) as e:
        if os.path.exists(initrd):
            os.unlink(initrd)
        sig = str(e) if isinstance(e, SetupError) else f"step payload: {e}"
        return Result("setup", sig=sig, logdir=logdir)
    cmd = [outer_qemu(), "-accel", "tcg", "-cpu", L1_CPU, "-smp", str(args.l1_smp),
           "-m", str(args.l1_mem), "-nodefaults", "-display", "none", "-vga", "none",
           "-no-reboot", "-net", "none", "-L", "/usr/share/qemu", "-L", "/usr/share/seabios",
           "-kernel", kernel, "-initrd", initrd, "-append", L1_APPEND + " " + args.l1_append,
           "-chardev", f"file,id=con,path={l1log}", "-serial", "chardev:con",
           "-chardev", f"file,id=run,path={runlog}", "-serial", "chardev:run"]
    if out_img:
        with open(out_img, "wb") as f:
            f.truncate(args.out_size << 20)
        cmd += ["-drive", f"file={out_img},if=virtio,format=raw"]
    with open(os.path.join(logdir, "cmd"), "w") as f:
        f.write(" ".join(cmd) + "\n")
    for p in (l1log, runlog):
        open(p, "w").close()
    errf = open(errlog, "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=subprocess.STDOUT,
                            preexec_fn=_pdeathsig)
    l1, run, err = Tail(l1log), Tail(runlog), Tail(errlog)
    state, t_ready, t_exit, t_fault = "boot", None, None, None
    exit_rc, setup_err, fault, killed_for = None, None, None, None
    notes, last_l1, t_err = [], "", None

    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    merged = open(os.path.join(logdir, "console.log"), "w")

    def show(tag, line):
        text = f"[{tag} {time.monotonic() - t0:5.1f}] {line}"
        merged.write(text + "\n")
        if stream:
            print(text, flush=True)

    def scan(final=False):
        nonlocal state, t_ready, t_exit, exit_rc, setup_err, fault, t_fault, last_l1
        for line in l1.lines(final):
            show("L1", line)
            if line.strip():
                last_l1 = line.strip()
            if "RIG-L1-READY" in line and state == "boot":
                state, t_ready = "ready", time.monotonic()
            m = re.search(r"RIG-L1-EXIT rc=(\d+)", line)
            if m and exit_rc is None:
                exit_rc, state, t_exit = int(m.group(1)), "exited", time.monotonic()
            m = re.search(r"RIG-L1-ERROR (.*)", line)
            if m and setup_err is None:
                setup_err = m.group(1)
            for name, rx in L1_FAULTS:
                m = rx.search(line)
                if m and fault is None:
                    fault, t_fault = f"{name}: {normalise(m.group(1) or m.group(0))}", time.monotonic()
            for name, rx in L1_NOTES:
                m = rx.search(line)
                if m:
                    n = f"{name}: {normalise(m.group(1))}"
                    if n not in notes:
                        notes.append(n)
        for line in run.lines(final):
            show("run", line)
            # The script's own finding that the rig, not the VMM, failed
            # (tests/rig/README.md): a rig fault like any other.
            m = re.match(r"RIG-FAULT (.*)", line.strip())
            if m and fault is None:
                fault, t_fault = f"script: {normalise(m.group(1))}", time.monotonic()
        for line in err.lines(final):
            show("outer", line)
            m = OUTER_FAULT.search(line)
            if m and fault is None:
                fault, t_fault = f"outer-qemu-abort: {normalise(m.group(1))}", time.monotonic()

    try:
        while True:
            scan()
            if os.path.exists(initrd) and state != "boot":
                os.unlink(initrd)  # L1 has it in RAM now
            rc = proc.poll()
            if rc is not None:
                break
            now = time.monotonic()
            if state == "boot" and now - t0 > args.ready_timeout:
                killed_for = "ready"
            elif state == "ready" and now - t_ready > args.timeout:
                killed_for = "timeout"
            elif state == "exited" and now - t_exit > 60:
                killed_for = "poweroff"
            if setup_err and t_err is None:
                t_err = now
            if t_err is not None and now - t_err > 30:
                killed_for = killed_for or "setup"  # L1 powers off after an error; it did not
            if fault and not fault.startswith(("l1-oops", "script:")) and now - t_fault > 30:
                killed_for = killed_for or "fault"  # a panic or an abort that did not end the outer QEMU
            if killed_for:
                kill()
                proc.wait()
                break
            time.sleep(0.1)
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        errf.close()
        if os.path.exists(initrd):
            os.unlink(initrd)
    kill()  # anything left in the process group
    scan(final=True)
    merged.close()
    rc = proc.returncode
    secs = time.monotonic() - t0
    R = lambda kind, **kw: Result(kind, secs=secs, notes=notes, logdir=logdir, **kw)  # noqa: E731

    if exit_rc is not None:
        if out_img:
            try:
                os.makedirs(args.out, exist_ok=True)
                with tarfile.open(out_img) as t:
                    try:
                        t.extractall(args.out, filter="data")
                    except TypeError:  # Python without extraction filters
                        t.extractall(args.out)
            except (OSError, tarfile.TarError) as e:
                notes.append(f"output disk unreadable: {e}")
        if exit_rc != 0 and fault:
            return R("rig-fault", sig=fault)
        if fault:
            notes.append("after a passing script: " + fault)
        return R("verdict", rc=exit_rc)
    if fault:
        return R("rig-fault", sig=fault)
    if setup_err:
        return R("setup", sig=f"L1 {setup_err}")
    if killed_for == "ready":
        return R("rig-fault", sig=f"l1-not-ready: no RIG-L1-READY within {args.ready_timeout} s "
                                  f"(last L1 line: {normalise(last_l1)[:80]})")
    if killed_for == "timeout":
        # An L1 CPU that stopped taking interrupts (a soft lockup or an RCU
        # stall of L1's own kernel) holds up whatever runs on it: no
        # userspace VMM can cause that on a sound kernel and CPU.
        stall = next((n for n in notes if n.startswith("l1-stall")), None)
        if stall:
            return R("rig-fault", sig=f"timeout after {stall}")
        return R("timeout", sig=f"script did not finish within {args.timeout} s")
    if rc is not None and rc < 0 and killed_for is None:
        return R("rig-fault", sig=f"outer-qemu-abort: killed by signal {-rc}")
    return R("rig-fault", sig=f"l1-died: outer QEMU exited {rc} without RIG-L1-EXIT "
                              f"(last L1 line: {normalise(last_l1)[:80]})")


def prune_runs(parent, keep=200):
    """Keeps the logs of the last `keep` attempts; drops initrds left behind
    by runs that were killed."""
    try:
        dirs = sorted(os.listdir(parent))
    except FileNotFoundError:
        return
    for d in dirs[:-keep]:
        subprocess.run(["rm", "-rf", os.path.join(parent, d)])
    for d in dirs[-keep:]:
        p = os.path.join(parent, d, "initrd.cpio")
        try:
            if time.time() - os.path.getmtime(p) > 3600:
                os.unlink(p)
        except OSError:
            pass


def run_with_retries(args, stream=True):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prune_runs(args.log_dir or os.path.join(OUT, "runs"))
    res = None
    for attempt in range(1, args.retries + 2):
        logdir = os.path.join(args.log_dir or os.path.join(OUT, "runs"), f"{stamp}-{os.getpid()}-{attempt}")
        res = boot_once(args, logdir, stream)
        say(f"attempt {attempt}: {res.describe()} in {res.secs:.1f} s (logs: {os.path.relpath(logdir)})")
        if res.kind != "rig-fault" or attempt > args.retries:
            break
        say(f"rig fault, retrying ({attempt}/{args.retries})")
    res.attempts = attempt
    return res


def exit_status(res):
    return {"verdict": res.rc, "timeout": EXIT_TIMEOUT, "rig-fault": EXIT_RIG_FAULT}.get(res.kind, EXIT_SETUP)


# ----------------------------------------------------------- direct mode

def cmd_direct(args):
    """The same contract as `run`, on a host whose KVM runs real guests:
    the script runs here (sh, or exec if ELF) with RIG_VMM, RIG_FILES,
    RIG_OUT and RIG_DIR set, in a fresh directory, within --timeout."""
    import shutil
    import tempfile
    for what, p in [("vmm", args.vmm), ("script", args.script)] + [("bin", b) for b in args.bin]:
        if not os.path.isfile(p):
            say(f"result: SETUP ERROR: step payload: --{what} {p}: no such file")
            return EXIT_SETUP
    d = tempfile.mkdtemp(prefix="rig-direct-")
    try:
        for sub in ("files", "bin", "work", "out"):
            os.makedirs(os.path.join(d, sub))
        for b in [args.vmm] + args.bin:
            os.symlink(os.path.abspath(b), os.path.join(d, "bin", os.path.basename(b)))
        os.symlink(RIG_LIB, os.path.join(d, "bin", "rig-lib.sh"))
        for spec in args.file:
            src, _, dest = spec.partition(":")
            if not os.path.exists(src):
                say(f"result: SETUP ERROR: step payload: --file {src}: no such file or directory")
                return EXIT_SETUP
            dest = dest or os.path.basename(src.rstrip("/"))
            if dest.startswith("/"):
                if not os.path.exists(dest):
                    say(f"result: SETUP ERROR: step payload: {dest} (absolute --file destination) "
                        "does not exist on this host")
                    return EXIT_SETUP
                continue
            os.makedirs(os.path.dirname(os.path.join(d, "files", dest)), exist_ok=True)
            os.symlink(os.path.abspath(src), os.path.join(d, "files", dest))
        try:
            extra = dict(env_pairs(args))
        except SetupError as e:
            say(f"result: SETUP ERROR: {e}")
            return EXIT_SETUP
        env = dict(os.environ, **extra, RIG_DIR=d, RIG_FILES=os.path.join(d, "files"), RIG_VMM=os.path.abspath(args.vmm),
                   RIG_OUT=os.path.abspath(args.out) if args.out else os.path.join(d, "out"),
                   PATH=os.path.join(d, "bin") + ":" + os.environ.get("PATH", ""))
        with open(args.script, "rb") as f:
            elf = f.read(4) == b"\x7fELF"
        cmd = [os.path.abspath(args.script)] if elf else ["sh", os.path.abspath(args.script)]
        if args.out:
            os.makedirs(args.out, exist_ok=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=os.path.join(d, "work"), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        import threading

        def pump():
            for line in proc.stdout:
                if not args.quiet:
                    print(f"[run {time.monotonic() - t0:5.1f}] " + line.decode("utf-8", "replace").rstrip(),
                          flush=True)
        th = threading.Thread(target=pump, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            rc = None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        th.join(5)
        secs = time.monotonic() - t0
        if rc is None:
            say(f"result: TIMEOUT (script did not finish within {args.timeout} s; not retried), direct mode")
            return EXIT_TIMEOUT
        say(f"result: {'pass' if rc == 0 else 'FAIL'} (script exit {rc}), direct mode, {secs:.1f} s")
        return rc if rc >= 0 else 128 - rc
    except Interrupted:
        return 130
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------- commands

def add_run_options(p):
    p.add_argument("--timeout", type=int, default=300, help="seconds for the script, from L1 ready (default 300)")
    p.add_argument("--retries", type=int, default=int(os.environ.get("RIG_RETRIES", "2")),
                   help="retries after a rig fault (default 2)")
    p.add_argument("--ready-timeout", type=int, default=READY_TIMEOUT)
    p.add_argument("--l1-smp", type=int, default=L1_SMP)
    p.add_argument("--l1-mem", type=int, default=L1_MEM_MIB, help="MiB")
    p.add_argument("--l1-append", default="", help="extra L1 kernel parameters")
    p.add_argument("--out", help="directory that receives what the script left in /rig/out")
    p.add_argument("--out-size", type=int, default=256, help="MiB of the output disk")
    p.add_argument("--log-dir", help="parent directory of the run logs (default build/rig/runs)")
    p.add_argument("--quiet", action="store_true", help="do not stream the consoles")


def reference_args(args):
    g = os.path.join(OUT, "guest")
    args.vmm = os.environ.get("RIG_INNER_QEMU", "/usr/bin/qemu-system-x86_64")
    args.script = os.path.join(RIG_SRC, "reference.sh")
    args.bin = []
    args.file = [os.path.join(g, "test.iso"), "/usr/share/ovmf/OVMF.fd",
                 "/usr/share/seabios/bios-256k.bin:/usr/share/seabios/bios-256k.bin"]
    for f in ("kvmvapic.bin", "linuxboot_dma.bin", "pvh.bin", "multiboot_dma.bin"):
        args.file.append(f"/usr/share/qemu/{f}:/usr/share/qemu/{f}")
    return args


def cmd_run(args):
    try:
        res = run_with_retries(args, stream=not args.quiet)
    except Interrupted:
        say("interrupted: outer QEMU killed")
        return 130
    tries = f"{res.attempts} attempt{'s' if res.attempts > 1 else ''}"
    if res.kind == "verdict":
        say(f"result: {'pass' if res.rc == 0 else 'FAIL'} (script exit {res.rc}) after {tries}, {res.secs:.1f} s")
    elif res.kind == "timeout":
        say(f"result: TIMEOUT ({res.sig}; not retried), {res.secs:.1f} s; logs {res.logdir}")
    elif res.kind == "rig-fault":
        say(f"result: RIG FAULT after {tries} [{res.sig}] -- not a verdict on the VMM; logs {res.logdir}")
    else:
        say(f"result: SETUP ERROR: {res.sig}")
    return exit_status(res)


def cmd_check(args):
    n = args.n
    results = []
    say(f"rig-check: reference scenario x{n} (L1: {args.l1_smp} vCPUs, {args.l1_mem} MiB; no retries)")
    try:
        for i in range(1, n + 1):
            args.retries = 0
            res = run_with_retries(args, stream=args.verbose)
            results.append(res)
            print(f"rig-check: run {i}/{n}: {res.describe()} {res.secs:.1f} s "
                  f"(host load {os.getloadavg()[0]:.1f})", flush=True)
    except Interrupted:
        say("interrupted")
    passed = sum(1 for r in results if r.kind == "verdict" and r.rc == 0)
    failed = [r for r in results if r.kind == "verdict" and r.rc != 0]
    faults = [r for r in results if r.kind == "rig-fault"]
    touts = [r for r in results if r.kind == "timeout"]
    setup = [r for r in results if r.kind == "setup"]
    times = [r.secs for r in results]
    if times:
        print(f"rig-check: wall time per run: min {min(times):.1f} s, median {statistics.median(times):.1f} s, "
              f"max {max(times):.1f} s; over 60 s: {sum(1 for t in times if t > 60)}")
    sigs = {}
    for r in faults + touts + failed + setup:
        key = f"{r.kind} [{r.sig or 'exit %s' % r.rc}]"
        sigs.setdefault(key, []).append(os.path.relpath(r.logdir))
    for k, v in sigs.items():
        print(f"rig-check: {len(v)} x {k}: {' '.join(v)}")
    if failed or setup:
        print(f"rig-check: {len(failed)} test failures, {len(setup)} setup errors")
    print(f"rig-check: {passed} passed, {len(faults)} rig faults, {len(touts)} timeouts of {n}")
    return 0 if passed == n else 1


def main():
    ap = argparse.ArgumentParser(prog="rig.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, what in (("run", "run a script inside L1"), ("direct", "run a script here (host KVM)")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--vmm", required=True, help="VMM binary, at /rig/vmm in L1 (shared libraries follow)")
        p.add_argument("--script", required=True, help="run by busybox sh (or executed if ELF) as root in L1")
        p.add_argument("--file", action="append", default=[],
                       help="SRC[:DEST]: at /rig/files/DEST (DEST absolute: at DEST); directories recursively")
        p.add_argument("--bin", action="append", default=[], help="extra binary, at /rig/bin, with its libraries")
        p.add_argument("--env", action="append", default=[], help="NAME=VALUE in the script's environment")
        add_run_options(p)
    p = sub.add_parser("reference", help="one run of the reference scenario")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE, e.g. REF_FIRMWARE=seabios")
    add_run_options(p)
    p = sub.add_parser("check", help="reliability loop over the reference scenario")
    p.add_argument("n", type=int, nargs="?", default=20)
    p.add_argument("--verbose", action="store_true", help="stream the consoles")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE, e.g. REF_FIRMWARE=seabios")
    add_run_options(p)
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.cmd == "run":
        return cmd_run(args)
    if args.cmd == "direct":
        return cmd_direct(args)
    reference_args(args)
    if args.cmd == "reference":
        return cmd_run(args)
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
