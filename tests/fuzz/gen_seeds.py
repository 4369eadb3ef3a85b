#!/usr/bin/env python3
"""Writes the seed inputs of the binary-format fuzz targets into
tests/fuzz/corpus/<target>/ (the text targets' seeds are plain files).
The encodings follow fuzz_support.c and fuzz_virtio.c: little-endian
values, guest addresses as a selector byte then 16 bits in RAM."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v): return struct.pack('<B', v & 0xff)
def u16(v): return struct.pack('<H', v & 0xffff)
def u32(v): return struct.pack('<I', v & 0xffffffff)
def u64(v): return struct.pack('<Q', v & 0xffffffffffffffff)


def gpa(addr):
    """fi_gpa: an address in RAM (below 64 KiB)."""
    assert addr < 0x10000
    return u8(0) + u16(addr)


def mem(addr, data):
    """Operation 0: guest memory."""
    assert 0 < len(data) <= 256
    return u8(0) + gpa(addr) + u8(len(data) - 1) + data


DATA = 0x4000  # FUZZ_VQ_DATA


def desc(off, length, write=False, next_=None, force_next=False):
    """One descriptor of post_chain: flags, [next], buffer at DATA+off."""
    flags = (2 if write else 0) | (0x40 if force_next else 0)
    out = b''
    if next_ is not None:
        out += u8(flags | 0x80) + u8(next_)
    else:
        out += u8(flags)
    return out + u8(0) + u16(off) + u16(length)


def chain(q, head, descs, indirect_at=None):
    """Operation 9: a chain on queue q, made available and notified."""
    hdr = (len(descs) - 1) | (0x80 if indirect_at is not None else 0)
    out = u8(9) + u8(q) + u8(hdr) + u8(head)
    if indirect_at is not None:
        out += u16(indirect_at)
    return out + b''.join(descs)


def write(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def blk_req(type_, sector, data_len, data_write, slot=0):
    h = 0x40 * slot
    ops = mem(DATA + h, u32(type_) + u32(0) + u64(sector))
    descs = [desc(h, 16)]
    if data_len:
        descs.append(desc(0x1000 + 0x1000 * slot, data_len, write=data_write))
    descs.append(desc(h + 0x20, 1, write=True))
    return ops, descs


def virtio_blk():
    bring_up = u8(4)  # queues of 16, every feature
    for name, shape, reqs in [
        ('read', 0x00, [(0, 0, 512, True)]),
        ('write-read', 0x00, [(1, 1, 512, False), (0, 1, 1024, True)]),
        ('flush-getid', 0x10, [(4, 0, 0, False), (8, 0, 20, True)]),
        ('discard-wz', 0x0c, [(11, 0, 16, False), (13, 0, 16, False)]),
        ('async-4k', 0x22, [(0, 0, 4096, True), (1, 8, 4096, False)]),
        ('ro-write', 0x01, [(1, 0, 512, False)]),
    ]:
        data = u8(shape) + bring_up
        for slot, (t, sec, ln, wr) in enumerate(reqs):
            ops, descs = blk_req(t, sec, ln, wr, slot)
            if t in (11, 13):  # one discard segment: sector, num, flags
                ops += mem(0x1000 + 0x1000 * slot + DATA, u64(sec) + u32(8) + u32(0))
            data += ops + chain(0, slot * 4, descs)
        if shape & 0x20:
            data += u8(32) + u8(7)  # complete what is held
        write('virtio_blk', name, data)
    # An indirect request, and a looped chain.
    ops, descs = blk_req(0, 0, 512, True)
    write('virtio_blk', 'indirect', u8(0) + bring_up + ops + chain(0, 0, descs, 0x2000))
    loop = [desc(0, 16, next_=1), desc(0x20, 1, True, next_=0, force_next=True)]
    write('virtio_blk', 'loop', u8(0) + bring_up + chain(0, 0, loop))


def virtqueue():
    # max 16; configure the usual layout with indirect + event idx; post and pop.
    cfg = u8(1) + u8(0x04 | 0x08 | 0x10) + u8(4)
    post = u8(3) + u8(2) + u8(0) + desc(0, 64) + desc(0x100, 64) + desc(0x200, 64, True)
    pop = u8(4) + u8(16)
    push = u8(5) + u8(0) + u32(64)
    write('virtqueue', 'post-pop-push', u8(4) + cfg + post + pop + push + u8(8) + pop)
    ind = (u8(3) + u8(0x81) + u8(1) + u16(0x3000) + desc(0, 32) + desc(0x40, 32, True))
    write('virtqueue', 'indirect', u8(4) + cfg + ind + pop + u8(6) + u8(0) + u16(32))
    loop = u8(3) + u8(0x01) + u8(0) + desc(0, 8, next_=1) + desc(0, 8, next_=0, force_next=True)
    write('virtqueue', 'loop', u8(4) + cfg + loop + pop)
    write('virtqueue', 'legacy', u8(3) + u8(2) + u8(1) + u8(1) + pop)


def nvme_cmd(q, opcode, cdw10=0, cdw11=0, cdw12=None, prp1_sel=0, prp2=None, nsid=None):
    """Operation 4 of fuzz_nvme: a command at queue q's tail."""
    shape = (1 if nsid is not None else 0) | (2 if prp2 is not None else 0) | \
        (4 if cdw12 is not None else 0)
    out = u8(4) + u8(q) + u8(opcode) + u8(shape) + u16(0x42)
    if nsid is not None:
        out += u32(nsid)
    out += u8(prp1_sel)
    if prp2 is not None:
        out += prp2
    out += u32(cdw10) + u32(cdw11)
    if cdw12 is not None:
        out += u32(cdw12) + u32(0)
    return out


def nvme():
    # Default bring-up (admin queues, I/O queue pair 1), then commands.
    write('nvme', 'identify', u8(0) + nvme_cmd(0, 0x06, cdw10=1) + nvme_cmd(0, 0x06, cdw10=0, nsid=1)
          + nvme_cmd(0, 0x06, cdw10=2))
    write('nvme', 'write-read', u8(0) + nvme_cmd(1, 0x01, 0, 0, 0) + nvme_cmd(1, 0x02, 0, 0, 7))
    # 16 KiB: PRP1 at 0xd000, then a PRP list (at the data area's start) of three pages.
    prp_list = b''.join(u64(0xe000 + 0x1000 * i) for i in range(3))
    write('nvme', 'prp-list', u8(0) + mem(0xc000, prp_list) +
          nvme_cmd(1, 0x02, 0, 0, 31, prp1_sel=8, prp2=u8(0)))
    write('nvme', 'features-log', u8(0) + nvme_cmd(0, 0x09, cdw10=7, cdw11=0x00030003) +
          nvme_cmd(0, 0x0a, cdw10=7) + nvme_cmd(0, 0x02, cdw10=(0x7f << 16) | 2, nsid=0xffffffff) +
          nvme_cmd(0, 0x0c))
    write('nvme', 'flush-dsm-wz', u8(0x1c) + nvme_cmd(1, 0x00) +
          mem(0xc000, u32(0) + u32(8) + u64(0)) + nvme_cmd(1, 0x09, cdw10=0, cdw11=4) +
          nvme_cmd(1, 0x08, 0, 0, 3))
    write('nvme', 'delete-queues', u8(0) + nvme_cmd(0, 0x00, cdw10=1) + nvme_cmd(0, 0x04, cdw10=1))
    # Registers by hand: disabled controller, doorbells, shutdown.
    write('nvme', 'registers', u8(0x80) + u8(1) + u16(0x24) + u8(2) + u64(0x003f003f) +
          u8(1) + u16(0x14) + u8(2) + u64(0x00460001) + u8(3) + u8(0) + u16(1) +
          u8(1) + u16(0x14) + u8(2) + u64(0x00464001) + u8(2) + u16(0x1c) + u8(2))
    write('nvme', 'state', u8(0) + nvme_cmd(1, 0x01, 0, 0, 0) + u8(13) + u8(1) + u32(100) + u8(7))


def fw_dma(at_page, selector, control, length, addr, whole=False):
    """Operation 4 of fuzz_fw_cfg: a control structure at 0x100 * at_page."""
    return (u8(4) + u8(0) + u8(at_page) + u8(0) + u16(selector) + u8(control) + u8(0) +
            u16(length) + gpa(addr) + u8(1 if whole else 0))


def fw_cfg():
    sel = lambda s: u8(1) + u8(0x40) + u16(s)
    reads = lambda n: u8(2) + u8(n - 1) + u8(0)
    write('fw_cfg', 'signature-id', u8(0) + sel(0) + reads(4) + sel(1) + reads(4))
    write('fw_cfg', 'dir-dma', u8(0) + fw_dma(1, 0x19, 0x0a, 0x400, 0x1000))
    write('fw_cfg', 'pc-tables', u8(1) + fw_dma(1, 0x19, 0x0a, 0x1000, 0x1000) +
          fw_dma(2, 0x20, 0x0a, 0x2000, 0x2000, whole=True) + fw_dma(3, 0x21, 0x0e, 0x10, 0x3000))
    # ramfb: select the file by name order (the last of the small items), write a mode.
    mode = struct.pack('>QIIIII', 0x8000, 0x34325258, 0, 640, 480, 2560)
    write('fw_cfg', 'ramfb', u8(0) + mem(0x2000, mode) + fw_dma(1, 0x22, 0x18, 28, 0x2000) +
          u8(7) + u8(9) + u8(1) + u32(10) + u8(0))
    write('fw_cfg', 'dma-bad', u8(0) + fw_dma(1, 0x19, 0x0a, 0xffff, 0xfff0) +
          u8(6) + u8(0) + u8(2) + u8(1) + u64(0xffffffffffffffff))


def pci():
    cfg = lambda devfn, reg, size, val: (u8(6) + u8(0) + u8(devfn) + u8(reg) + u8(0) +
                                         u8({1: 0, 2: 1, 4: 2}[size]) + u8(reg & 3) + u8(1) + u32(val))
    rd = lambda sel, off, size: u8(1) + u8(sel) + u16(off) + u8({1: 0, 2: 1, 4: 2, 8: 3}[size])
    wr = lambda sel, off, size, v: u8(3) + u8(sel) + u16(off) + u8({1: 0, 2: 1, 4: 2, 8: 3}[size]) + u64(v)
    # BARs placed (program_bar: test function's BAR n in window n, the virtio function's
    # in window 4 + n); the test function's registers, then MSI-X: enable, vector 0 unmasked.
    write('pci', 'msix', u8(0) + wr(1, 0, 4, 0x11223344) + rd(0x14, 0, 4) +
          cfg(3 << 3, 0x40, 4, 0x80000000) + wr(0x26, 0, 8, 0xfee00000) + wr(0x26, 8, 4, 0x41) +
          wr(0x26, 12, 4, 0) + rd(0x26, 0x800, 8))
    # The virtio function's legacy BAR (I/O at 0xc400), MSI-X (32-bit window 5) and modern
    # BAR (32-bit window 6): common config, status, device config, notify.
    write('pci', 'virtio', u8(0) + rd(1, 0x400, 4) + wr(1, 0x412, 1, 3) + rd(1, 0x412, 1) +
          rd(0x54, 0, 4) + wr(0x64, 0x14, 1, 1) + wr(0x64, 0x14, 1, 3) + rd(0x64, 0x0, 4) +
          rd(0x64, 0x1000, 4) + wr(0x64, 0x2000, 2, 0) + rd(0x64, 0x3000, 1))
    # ECAM and config cycles of every size, header and capabilities.
    write('pci', 'config', u8(0x80) + cfg(0, 0x59, 1, 0x30) + cfg(8, 0x60, 4, 0x0b0a0980) +
          rd(2, 0x0000, 4) + rd(2, 0x0034, 1) + wr(2, 0x0004, 2, 7) + cfg(3 << 3, 0x10, 4, 0xffffffff) +
          cfg(3 << 3, 0x14, 4, 0xffffffff) + cfg(4 << 3, 0x18, 4, 0xffffffff) + u8(8) + u8(9) + u8(2) + u8(1) + u32(9) + u8(7))


def vsock_hdr(op, src_port=5000, dst_port=1234, length=0, flags=0, buf_alloc=65536, fwd=0,
              src_cid=3, dst_cid=2, type_=1):
    return (u64(src_cid) + u64(dst_cid) + u32(src_port) + u32(dst_port) + u32(length) +
            u16(type_) + u16(op) + u32(flags) + u32(buf_alloc) + u32(fwd))


def vsock():
    up = u8(0) + u8(5)  # shape, queues of 32
    rx = b''.join(chain(0, 2 * i, [desc(0x2000 + 0x200 * i, 0x200, write=True)]) for i in range(4))
    def tx(slot, hdr, payload=b''):
        ops = mem(DATA + 0x100 * slot, hdr)
        descs = [desc(0x100 * slot, 44)]
        if payload:
            ops += mem(DATA + 0x1000 + 0x100 * slot, payload)
            descs.append(desc(0x1000 + 0x100 * slot, len(payload)))
        return ops + chain(1, 2 * slot, descs)
    accept = u8(32)
    peer_send = u8(33) + u8(0) + u8(1) + b'hello from the host'
    peer_read = u8(34) + u8(0)
    write('vsock', 'connect-rw', up + rx + tx(0, vsock_hdr(1)) + u8(8) + u8(0) + accept +
          u8(8) + u8(0) + tx(1, vsock_hdr(5, length=5), b'hello') + peer_read + peer_send +
          u8(8) + u8(0) + tx(2, vsock_hdr(4, flags=3)) + tx(3, vsock_hdr(3)))
    write('vsock', 'unmapped-credit', up + rx + tx(0, vsock_hdr(1, dst_port=99)) +
          tx(1, vsock_hdr(7)) + tx(2, vsock_hdr(6)) + u8(8) + u8(2))
    write('vsock', 'parse', u8(0x80) + u8(36) + vsock_hdr(5, length=100) + u8(0) + u8(0) + u16(200) + u8(0))
    write('vsock', 'bad-cid', up + rx + tx(0, vsock_hdr(1, src_cid=7)) + tx(1, vsock_hdr(5, length=70000)))


def virtio_net():
    up = u8(0) + u8(5)  # one pair, queues of 32
    rx = b''.join(chain(0, 2 * i, [desc(0x2000 + 0x800 * i, 0x800, write=True)]) for i in range(4))
    frame = bytes.fromhex('525400123456') + bytes.fromhex('020000000001') + b'\x08\x00' + bytes(range(46))
    hdr = bytes(12)
    gso = u8(1) + u8(4) + u16(14) + u16(1400) + u16(34) + u16(16) + u16(0)  # csum + TCPv4 GSO
    tx = (mem(DATA, hdr + frame) + chain(1, 0, [desc(0, 12 + len(frame))]) +
          mem(DATA + 0x100, gso) + mem(DATA + 0x200, frame) +
          chain(1, 2, [desc(0x100, 12), desc(0x200, len(frame))]))
    host_frame = u8(32) + u8(0) + u16(len(hdr + frame)) + hdr + frame
    drain = u8(33)
    write('virtio_net', 'tx-rx', up + rx + tx + drain + host_frame + host_frame)
    # Control queue (2): promiscuous off, a MAC table, MQ pairs 1; ack byte writable.
    ctrl = lambda slot, cls, cmd, data: (mem(DATA + 0x400 + 0x80 * slot, u8(cls) + u8(cmd)) +
                                       mem(DATA + 0x420 + 0x80 * slot, data) +
                                       chain(2, 3 * slot, [desc(0x400 + 0x80 * slot, 2),
                                                           desc(0x420 + 0x80 * slot, len(data)),
                                                           desc(0x470 + 0x80 * slot, 1, write=True)]))
    table = u32(1) + bytes.fromhex('525400aabbcc') + u32(1) + bytes.fromhex('01005e000001')
    write('virtio_net', 'ctrl', up + ctrl(0, 0, 0, u8(0)) + ctrl(1, 1, 0, table) +
          ctrl(2, 4, 0, u16(1)) + ctrl(3, 0, 1, u8(1)) + rx + host_frame)
    write('virtio_net', 'link-hangup', up + rx + u8(34) + u8(0) + host_frame + u8(34) + u8(1) +
          u8(35) + u8(0) + tx + host_frame)


if __name__ == '__main__':
    targets = sys.argv[1:] or ['virtio_blk', 'virtqueue', 'nvme', 'fw_cfg', 'pci', 'vsock', 'virtio_net']
    for t in targets:
        globals()[t]()
