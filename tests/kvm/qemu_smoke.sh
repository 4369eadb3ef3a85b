#!/bin/sh
# Run the test guest (guest/README.md) under QEMU and drive its whole COM1
# protocol: boot, parameters, cpus, memory, echo, UART interrupt, PASS, then
# ping / unknown command / triple fault (boot 2) / cf9 reset (boot 3) / halt.
#
# Usage: tests/kvm/qemu_smoke.sh [--guest build/guest/testguest.bin]
#            [--accel kvm|tcg] [--smp N] [--mem MiB] [--timeout S] [--keep]
# Exit status 0 when every step matched.
set -eu
exec python3 - "$@" <<'PYEOF'
import argparse, os, socket, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--guest", default="build/guest/testguest.bin")
ap.add_argument("--accel", default="kvm", choices=["kvm", "tcg"])
ap.add_argument("--smp", type=int, default=2)
ap.add_argument("--mem", type=int, default=256)
ap.add_argument("--timeout", type=float, default=60.0)
ap.add_argument("--qemu", default="qemu-system-x86_64")
ap.add_argument("--keep", action="store_true", help="keep the temp dir")
a = ap.parse_args()

tmp = tempfile.mkdtemp(prefix="tg-qemu-")
sock_path = os.path.join(tmp, "com1.sock")
dbg_path = os.path.join(tmp, "debugcon.out")
# QEMU -M pc: RAM below 4 GiB is all of it up to 3.5 GiB, else 3 GiB.
lowmem = a.mem if a.mem < 3584 else 3072
params = "cpus=%d mem=%d lowmem=%d" % (a.smp, a.mem, lowmem)

cmd = [a.qemu, "-M", "pc", "-m", str(a.mem), "-smp", str(a.smp),
       "-bios", a.guest, "-display", "none", "-nodefaults",
       "-serial", "unix:%s,server=on,wait=on" % sock_path,
       "-chardev", "file,id=dbg,path=%s" % dbg_path,
       "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
cmd += ["-enable-kvm"] if a.accel == "kvm" else ["-accel", "tcg"]
print("+", " ".join(cmd), flush=True)
qemu = subprocess.Popen(cmd)
t_start = time.monotonic()

s = None
for _ in range(200):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        break
    except OSError:
        s = None
        time.sleep(0.05)
if s is None:
    qemu.kill()
    sys.exit("qemu_smoke: cannot connect to %s" % sock_path)

buf = b""
failed = False

def fail(msg):
    global failed
    failed = True
    print("qemu_smoke: FAIL:", msg, flush=True)
    raise SystemExit(1)

def read_line(timeout):
    global buf
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timeout waiting for a line (have %r)" % buf)
        s.settimeout(left)
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        if not d:
            fail("serial closed (have %r)" % buf)
        buf += d
    line, buf = buf.split(b"\n", 1)
    if not line.endswith(b"\r"):
        fail("line without CR: %r" % line)
    text = line[:-1].decode("latin-1")
    print("%7.3f  %s" % (time.monotonic() - t_start, text), flush=True)
    return text

def expect(want, timeout=None):
    line = read_line(timeout or a.timeout)
    ok = line.startswith(want) if want.endswith(" ") else line == want
    if not ok:
        fail("got %r want %r" % (line, want))
    return line

def send(data):
    print("        >> %r" % data, flush=True)
    s.sendall(data.encode())

def one_boot(n):
    expect("testguest: boot %d" % n)
    expect("testguest: ready")
    t0 = time.monotonic()
    send(params + "\n")
    apics = []
    for k in range(a.smp):
        line = expect("testguest: cpu %d apic " % k)
        apics.append(int(line.split()[-1]))
    if len(set(apics)) != a.smp:
        fail("duplicate APIC ids %r" % apics)
    expect("testguest: cpus %d ok" % a.smp)
    expect("testguest: mem lowmem_end ok")
    expect("testguest: mem highmem ok" if a.mem > lowmem else "testguest: mem highmem skipped")
    expect("testguest: echo?")
    send("hello, world 42\r\n")
    expect("testguest: echo hello, world 42")
    expect("testguest: irq?")
    send("Z")
    expect("testguest: irq ok 5a")
    expect("testguest: PASS")
    print("        boot %d: params -> PASS in %.3f s" % (n, time.monotonic() - t0))
    send("ping\n")
    expect("testguest: pong")
    send("frobnicate 7\n")
    expect("testguest: unknown command frobnicate 7")

try:
    one_boot(1)
    send("triple\n")
    expect("testguest: triple fault")
    one_boot(2)
    send("cf9\n")  # QEMU implements the PIIX reset control register
    one_boot(3)
    send("halt\n")
    expect("testguest: halting")
    time.sleep(0.2)
    with open(dbg_path, "rb") as f:
        dbg = f.read()
    if dbg != b"Sdone\n" * 3:
        fail("debugcon %r" % dbg)
    print("qemu_smoke: debugcon %r" % dbg)
except SystemExit:
    failed = True
finally:
    qemu.kill()
    qemu.wait()
    s.close()
    if not a.keep:
        for f in (sock_path, dbg_path):
            try:
                os.unlink(f)
            except OSError:
                pass
        os.rmdir(tmp)
print("qemu_smoke: %s (accel=%s smp=%d mem=%d)" % ("FAIL" if failed else "ok", a.accel, a.smp, a.mem))
sys.exit(1 if failed else 0)
PYEOF
