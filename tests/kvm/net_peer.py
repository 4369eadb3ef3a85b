#!/usr/bin/env python3
"""The host end of the test guest's `net` command (guest/net_test.c): runs
inside the VM's network namespace (nsenter --net=/proc/PID/ns/net) with an
AF_PACKET socket on the TAP, and speaks the guest's frame generator
(guest/net_frame.h, which the guest and bench/net.c share; this is the
same in Python).

  net_peer.py check IFNAME MAC COUNT SIZE SEED
      Prints "peer ready", captures the guest's COUNT frames (in order,
      byte for byte), then sends the COUNT host frames; prints one line
      "peer result {json}" (rx_ok, rx_bad, first_bad, tx_sent) and exits.
  net_peer.py noise IFNAME
      Prints "peer ready", then sends frames of ethertype 0x88b6 (which
      `net check` ignores) of random sizes, about 2000 a second, until
      SIGTERM; then "peer result {json}" with tx_sent.
  net_peer.py blast IFNAME MAC SIZE
      As noise, but generator frames of ethertype 0x88b5 (`net bench rx`
      checks and counts those; seed 1) as fast as the TAP takes them.
  net_peer.py count IFNAME MAC
      Prints "peer ready", counts the guest's frames of ethertype 0x88b5
      until SIGTERM, then "peer result {json}" with rx_frames.

Every wait has a limit (the check's is 120 s), so a peer never outlives a
failed test for long."""

import json
import random
import signal
import socket
import struct
import sys
import time

ETHERTYPE = 0x88B5
NOISE_ETHERTYPE = 0x88B6
DIR_GUEST = 0x47  # 'G'
DIR_HOST = 0x48  # 'H'
HOST_MAC = bytes([0x02, 0x70, 0x65, 0x65, 0x72, 0x00])
BROADCAST = b"\xff" * 6
M32 = 0xFFFFFFFF
PACKET_OUTGOING = 4


def mix(x):
    """lowbias32, as net_frame_mix in guest/net_frame.h."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def frame_len(seed, direction, index, largest):
    if index == 0:
        return largest
    if index == 1:
        return 60
    return 60 + mix(seed ^ (direction << 24) ^ ((index * 0x9E3779B9) & M32)) % (largest - 59)


def frame(seed, direction, index, length, dst, src):
    key = mix((mix(seed ^ (direction << 24)) + index) & M32)
    head = dst + src + struct.pack(">H", ETHERTYPE) + bytes([direction, 1]) + \
        struct.pack("<IHH", index, length, seed & 0xFFFF)
    words = struct.pack("<%dI" % ((length - 24 + 3) // 4),
                        *(mix((key + k) & M32) for k in range((length - 24 + 3) // 4)))
    return (head + words)[:length]


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def open_socket(ifname, proto):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: we are root
    s.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)  # SO_SNDBUFFORCE
    s.bind((ifname, proto))
    return s


def send(s, data):
    """One frame; the TAP's queue may be full for a moment (ENOBUFS)."""
    for _ in range(2000):
        try:
            s.send(data)
            return
        except OSError as e:
            if e.errno not in (105, 11):  # ENOBUFS, EAGAIN
                raise
            time.sleep(0.001)
    raise OSError("the TAP took no frame for 2 s")


def result(**kw):
    print("peer result " + json.dumps(kw), flush=True)


def check(ifname, mac, count, size, seed):
    s = open_socket(ifname, ETHERTYPE)
    print("peer ready", flush=True)
    ok = bad = 0
    first_bad = None
    deadline = time.monotonic() + 120
    while ok + bad < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            break
        if addr[2] == PACKET_OUTGOING:
            continue
        index = ok + bad
        want = frame(seed, DIR_GUEST, index, frame_len(seed, DIR_GUEST, index, size),
                     BROADCAST, mac)
        if data == want:
            ok += 1
            continue
        bad += 1
        if first_bad is None:
            at = next((i for i in range(min(len(data), len(want))) if data[i] != want[i]),
                      min(len(data), len(want)))
            first_bad = "frame %d: %d bytes, want %d; first difference at byte %d" % (
                index, len(data), len(want), at)
    sent = 0
    if ok + bad == count:
        for index in range(count):
            send(s, frame(seed, DIR_HOST, index, frame_len(seed, DIR_HOST, index, size),
                          mac, HOST_MAC))
            sent += 1
    result(rx_ok=ok, rx_bad=bad, first_bad=first_bad, tx_sent=sent)


class Stop:
    stop = False

    @classmethod
    def handler(cls, signum, frame_):
        cls.stop = True


def until_sigterm(fn):
    signal.signal(signal.SIGTERM, Stop.handler)
    deadline = time.monotonic() + 600
    while not Stop.stop and time.monotonic() < deadline:
        fn()


def noise(ifname):
    s = open_socket(ifname, NOISE_ETHERTYPE)
    rnd = random.Random(7)
    sent = [0]
    print("peer ready", flush=True)

    def one():
        n = rnd.randrange(60, 1515)
        send(s, BROADCAST + HOST_MAC + struct.pack(">H", NOISE_ETHERTYPE) + rnd.randbytes(n - 14))
        sent[0] += 1
        time.sleep(0.0005)

    until_sigterm(one)
    result(tx_sent=sent[0])


def blast(ifname, mac, size):
    s = open_socket(ifname, ETHERTYPE)
    frames = [frame(1, DIR_HOST, i, size, mac, HOST_MAC) for i in range(64)]
    sent = [0]
    print("peer ready", flush=True)

    def some():
        for f in frames:
            try:
                s.send(f)
                sent[0] += 1
            except OSError as e:
                if e.errno not in (105, 11):
                    raise
                time.sleep(0.0002)

    until_sigterm(some)
    result(tx_sent=sent[0])


def count(ifname, mac):
    s = open_socket(ifname, ETHERTYPE)
    s.settimeout(0.2)
    seen = [0]
    print("peer ready", flush=True)

    def some():
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            return
        if addr[2] != PACKET_OUTGOING and data[6:12] == mac and data[14] == DIR_GUEST:
            seen[0] += 1

    until_sigterm(some)
    result(rx_frames=seen[0])


def main(argv):
    mode = argv[1]
    if mode == "check":
        check(argv[2], mac_bytes(argv[3]), int(argv[4]), int(argv[5]), int(argv[6]))
    elif mode == "noise":
        noise(argv[2])
    elif mode == "blast":
        blast(argv[2], mac_bytes(argv[3]), int(argv[4]))
    elif mode == "count":
        count(argv[2], mac_bytes(argv[3]))
    else:
        sys.exit("net_peer.py: unknown mode %r" % mode)


if __name__ == "__main__":
    main(sys.argv)
