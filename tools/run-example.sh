#!/usr/bin/env bash
# Runs the example VM (examples/testguest.toml) with its console on this
# terminal. With a terminal attached you talk to the guest yourself (type
# "cpus=2 mem=256" at its prompt); without one, the script answers the
# guest's self-test for you and shows the transcript.
set -euo pipefail
cd "$(dirname "$0")/.."
work=build/example
mkdir -p "$work"
cp examples/testguest.toml "$work/config.toml"
sed -i "s|^bootrom = .*|bootrom = \"$PWD/build/guest/testguest.bin\"|" "$work/config.toml"
cd "$work"
../propolis-standalone config.toml &
vmm=$!
trap 'kill -TERM $vmm 2>/dev/null; wait $vmm 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S ttya ] && break; sleep 0.05; done
if [ -t 0 ]; then
    echo "example: connected to ./ttya; answer 'cpus=2 mem=256' at the prompt; Ctrl-] to leave"
    socat -,rawer,escape=0x1d UNIX-CONNECT:ttya
else
    python3 - <<'PY'
import socket, time
s = socket.socket(socket.AF_UNIX); s.connect("ttya"); s.settimeout(60)
buf = b""
def until(needle):
    global buf
    while needle.encode() not in buf:
        chunk = s.recv(4096)
        if not chunk: raise SystemExit("console closed")
        buf += chunk
until("testguest: ready"); s.sendall(b"cpus=2 mem=256\r")
until("testguest: echo?"); s.sendall(b"hello from the example\r")
until("testguest: irq?"); s.sendall(b"!")
until("testguest: PASS")
print(buf.decode(errors="replace"), end="")
PY
fi
