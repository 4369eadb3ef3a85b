/*
 * Hostile-guest fuzzer for the storage devices, the NIC and vsock, at CPL0.
 *
 * Command (parsed in main.c): devfuzz SEED [rounds=N]   (N: 1..64, default 8)
 * For every virtio-blk (1af4:1001/1042), virtio-net (1af4:1000/1041) and
 * NVMe (class 010802) function on bus 0 it assigns the BARs, then, each
 * round, drives the device the way a buggy or malicious driver would:
 * virtqueues of odd sizes at bad addresses, descriptor chains that loop,
 * overflow or point outside RAM, indirect tables of bad lengths, avail
 * indexes that jump; for virtio-net, random feature sets (mostly all the
 * device offers: offloads, MRG_RXBUF, the control queue, MQ), transmit
 * frames that are empty, shorter than an Ethernet header or over 64 KiB,
 * with virtio-net headers of bogus flags, GSO type, gso_size, hdr_len and
 * checksum offsets, writable transmit and readable receive buffers, the
 * receive queue kicked with no buffers, control commands of bad classes
 * and commands, short and long, MAC tables with huge or lying counts, and
 * resets with frames in flight; NVMe admin and I/O queues with bad sizes
 * and bases, random commands with bad PRPs and PRP lists, doorbells for
 * queues that do not exist, controller resets and shutdowns with commands
 * in flight; and random reads and writes of every size all over the BARs.
 * For every virtio-vsock function (1af4:1012/1053) the same virtqueue
 * rounds as for virtio-blk, then vsock_fuzz.c's hostile vsock driver
 * (connection storm, malformed packets, credit lies, broken chains, then
 * an echo check), which prints its own lines.
 * At the end it resets the devices and turns their decoding off. The VMM
 * must log the errors and keep running; what the devices do is not
 * checked here (the caller checks that the VM still answers and that the
 * devices work again after a driver resets them).
 *
 * Output (each line prefixed "testguest: "):
 *   devfuzz DEV at B:D ops=N      (one per device fuzzed; DEV: virtio-blk,
 *                                 virtio-net, virtio-vsock or nvme; after
 *                                 vsock_fuzz.c's "devfuzz vsock" lines)
 *   devfuzz done devices=N
 *
 * Memory: the devices are only ever given addresses in the scratch RAM
 * 64 MiB .. 128 MiB (the VM needs at least 128 MiB) or addresses that are
 * not RAM at all, so their DMA cannot touch the guest's own memory.
 */
#include "device_fuzz.h"

#include <stdbool.h>
#include <stddef.h>

#include "layout.h"
#include "pci.h"
#include "rand.h"
#include "virtio_modern.h"
#include "vsock_fuzz.h"

#define SCRATCH_BASE 0x4000000ULL
#define SCRATCH_END 0x8000000ULL

struct fuzz {
    uint64_t rng;
    uint64_t ops; /* register accesses on the current device */
};

static uint64_t rnd(struct fuzz *f)
{
    return xorshift64(&f->rng);
}

static uint64_t below(struct fuzz *f, uint64_t n)
{
    return n ? rnd(f) % n : 0;
}

static bool one_in(struct fuzz *f, unsigned n)
{
    return below(f, n) == 0;
}

/* ---- register and scratch access ---- */

static uint64_t load(volatile uint8_t *p, unsigned size)
{
    switch (size) {
    case 1:
        return *p;
    case 2:
        return *(volatile uint16_t *)p;
    case 4:
        return *(volatile uint32_t *)p;
    default:
        return *(volatile uint64_t *)p;
    }
}

static void store(volatile uint8_t *p, unsigned size, uint64_t v)
{
    switch (size) {
    case 1:
        *p = (uint8_t)v;
        break;
    case 2:
        *(volatile uint16_t *)p = (uint16_t)v;
        break;
    case 4:
        *(volatile uint32_t *)p = (uint32_t)v;
        break;
    default:
        *(volatile uint64_t *)p = v;
        break;
    }
}

static uint64_t mmio_read(struct fuzz *f, volatile uint8_t *p, unsigned size)
{
    f->ops++;
    return load(p, size);
}

static void mmio_write(struct fuzz *f, volatile uint8_t *p, unsigned size, uint64_t v)
{
    f->ops++;
    store(p, size, v);
}

static bool in_scratch(uint64_t addr, uint64_t len)
{
    return addr >= SCRATCH_BASE && addr <= SCRATCH_END && len <= SCRATCH_END - addr;
}

/* Stores to scratch RAM only: a structure placed at a bad address simply
 * is not written (the device must refuse the address anyway). */
static void put(uint64_t addr, unsigned size, uint64_t v)
{
    if (in_scratch(addr, size))
        store((volatile uint8_t *)(uintptr_t)addr, size, v);
}

/* An aligned block of scratch RAM of len bytes. */
static uint64_t scratch(struct fuzz *f, uint64_t len, uint64_t align)
{
    uint64_t a = SCRATCH_BASE + below(f, SCRATCH_END - SCRATCH_BASE - len);
    return a & ~(align - 1);
}

/* An address to hand to a device: mostly scratch RAM, else somewhere a
 * device must refuse (the end of RAM, the PCI hole and BARs, the local
 * APIC and friends, far above RAM, the top of the address space). Never
 * RAM below the scratch area. */
static uint64_t pick_addr(struct fuzz *f, uint64_t align)
{
    uint64_t a;
    switch (below(f, 12)) {
    case 0:
        a = SCRATCH_END - below(f, 4096);
        break;
    case 1:
        a = BENCH_MMIO_BASE + below(f, BENCH_MMIO_END - BENCH_MMIO_BASE);
        break;
    case 2:
        a = 0xFEC00000ULL + below(f, 0x1400000);
        break;
    case 3:
        a = 0x100000000ULL + below(f, 1ULL << 40);
        break;
    case 4:
        a = ~0ULL - below(f, 0x10000);
        break;
    case 5:
        a = rnd(f) | (1ULL << 63);
        break;
    default:
        a = scratch(f, 0, 1);
        break;
    }
    if (!one_in(f, 8))
        a &= ~(align - 1);
    return a;
}

/* A transfer length: mostly plausible, sometimes absurd. */
static uint32_t pick_len(struct fuzz *f)
{
    switch (below(f, 8)) {
    case 0:
        return 0;
    case 1:
        return (uint32_t)rnd(f);
    case 2:
        return 0xFFFFFFFFu - (uint32_t)below(f, 16);
    case 3:
        return (uint32_t)below(f, 64);
    default:
        return 512u << below(f, 12);
    }
}

/* A queue size for a device whose maximum is max: mostly valid powers of
 * two, sometimes zero, odd, or too big. */
static uint32_t pick_qsize(struct fuzz *f, uint32_t max)
{
    switch (below(f, 8)) {
    case 0:
        return 0;
    case 1:
        return (uint32_t)(rnd(f) & 0xffff);
    case 2:
        return max * 2;
    case 3:
        return 3 + (uint32_t)below(f, 60);
    default: {
        uint32_t s = 1u << below(f, 9);
        return s > max && max ? max : s;
    }
    }
}

/* Random accesses of every size all over one BAR. */
static void bar_noise(struct fuzz *f, uint64_t base, uint64_t size, unsigned count)
{
    if (!base || size < 8)
        return;
    for (unsigned i = 0; i < count; i++) {
        unsigned width = 1u << below(f, 4);
        uint64_t off = below(f, size - width + 1) & ~(uint64_t)(one_in(f, 4) ? 0 : width - 1);
        volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)(base + off);
        if (one_in(f, 2))
            mmio_write(f, p, width, rnd(f));
        else
            (void)mmio_read(f, p, width);
    }
}

/* ---- virtio-blk (modern interface) ---- */

/* Turns descriptor head into an indirect one: a table of random length
 * whose first entry is first/first_len and the rest random, linked with
 * mostly sane next fields; sometimes the table's address or length or the
 * descriptor's flags are wrong. */
static void put_indirect(struct fuzz *f, uint64_t table, uint16_t head, uint64_t first,
                         uint32_t first_len)
{
    uint32_t n = 1 + (uint32_t)below(f, 40);
    uint64_t it = scratch(f, 16ull * n, 16);
    for (uint32_t i = 0; i < n; i++) {
        put(it + 16ull * i, 8, i == 0 ? first : pick_addr(f, 1));
        put(it + 16ull * i + 8, 4, i == 0 ? first_len : pick_len(f));
        put(it + 16ull * i + 12, 2, (uint16_t)(i + 1 < n ? 1 : 2) | (one_in(f, 10) ? 4 : 0));
        put(it + 16ull * i + 14, 2, one_in(f, 5) ? (uint16_t)rnd(f) : (uint16_t)(i + 1));
    }
    uint64_t d = table + 16ull * head;
    put(d, 8, one_in(f, 6) ? pick_addr(f, 16) : it);
    put(d + 8, 4, one_in(f, 4) ? pick_len(f) : 16 * n);
    put(d + 12, 2, one_in(f, 6) ? 5 : 4);
}

/* One virtio-blk request: header, data, status; fields mutated now and then. */
static uint16_t vq_put_request(struct fuzz *f, uint64_t table, uint32_t entries, uint16_t head)
{
    static const uint32_t types[] = {0, 1, 4, 8, 11, 13};
    uint64_t hdr = scratch(f, 64, 16);
    uint32_t type = one_in(f, 8) ? (uint32_t)rnd(f) : types[below(f, 6)];
    put(hdr, 4, type);
    put(hdr + 4, 4, 0);
    put(hdr + 8, 8, one_in(f, 4) ? rnd(f) : below(f, 4096));
    /* discard / write-zeroes segment: sector, num_sectors, flags */
    put(hdr + 16, 8, below(f, 8192));
    put(hdr + 24, 4, (uint32_t)below(f, 1u << 20));
    put(hdr + 28, 4, (uint32_t)below(f, 4));
    uint16_t idx[3] = {head, (uint16_t)((head + 1) % entries), (uint16_t)((head + 2) % entries)};
    for (unsigned k = 0; k < 3; k++) {
        uint64_t d = table + 16ull * idx[k];
        uint64_t addr = k == 0 ? hdr : k == 1 ? pick_addr(f, 512) : scratch(f, 1, 1);
        uint32_t len = k == 0 ? (one_in(f, 6) ? pick_len(f) : 16) : k == 1 ? pick_len(f) : 1;
        uint16_t flags = k < 2 ? 1 : 0;
        if (k == 2 || (k == 1 && type == 0))
            flags |= 2; /* device-writable */
        if (one_in(f, 6))
            flags = (uint16_t)(rnd(f) & 7);
        uint16_t next = one_in(f, 8) ? (uint16_t)rnd(f) : idx[(k + 1) % 3];
        put(d, 8, addr);
        put(d + 8, 4, len);
        put(d + 12, 2, flags);
        put(d + 14, 2, next);
    }
    /* Now and then an indirect table instead: random length, random entries. */
    if (one_in(f, 5))
        put_indirect(f, table, head, hdr, 16);
    return idx[2];
}

/* A virtqueue being set up: its rings (in scratch RAM, or bad addresses). */
struct fuzz_vq {
    uint64_t desc, avail, used;
    uint32_t entries; /* descriptors we fill */
};

/* Selects queue qi and gives it a size and ring addresses: often bad ones,
 * or (sane) a valid size of 16..256 and rings in scratch RAM, so that the
 * device gets as far as the chains. */
static void vq_setup(struct fuzz *f, volatile uint8_t *common, uint16_t qi, struct fuzz_vq *q,
                     bool sane)
{
    mmio_write(f, common + VCOM_Q_SELECT, 2, qi);
    uint32_t max = (uint32_t)mmio_read(f, common + VCOM_Q_SIZE, 2);
    uint32_t size = sane ? 16u << below(f, 5) : pick_qsize(f, max ? max : 256);
    while (sane && max && size > max)
        size >>= 1;
    mmio_write(f, common + VCOM_Q_SIZE, 2, size);
    q->entries = size && size <= 1024 ? size : 256;
    q->desc = !sane && one_in(f, 5) ? pick_addr(f, 16) : scratch(f, 16ull * q->entries, 16);
    q->avail = !sane && one_in(f, 5) ? pick_addr(f, 2) : scratch(f, 6 + 2ull * q->entries, 2);
    q->used = !sane && one_in(f, 5) ? pick_addr(f, 4) : scratch(f, 6 + 8ull * q->entries, 4);
    mmio_write(f, common + VCOM_Q_DESC, 8, q->desc);
    mmio_write(f, common + VCOM_Q_AVAIL, 8, q->avail);
    mmio_write(f, common + VCOM_Q_USED, 8, q->used);
}

/* Avail ring: heads mostly at chain starts (multiples of stride up to
 * fill); the index jumps now and then (rarely when sane). Then the queue
 * is enabled, mostly. */
static void vq_publish(struct fuzz *f, volatile uint8_t *common, const struct fuzz_vq *q,
                       uint32_t fill, uint32_t stride, bool sane)
{
    uint16_t n = (uint16_t)(one_in(f, sane ? 20 : 5) ? rnd(f) : below(f, fill / stride + 2));
    put(q->avail, 2, below(f, 2));
    put(q->avail + 2, 2, n);
    for (uint32_t i = 0; i < q->entries && i < 64; i++)
        put(q->avail + 4 + 2ull * i, 2,
            one_in(f, 6) ? (uint16_t)rnd(f) : (uint16_t)(stride * below(f, fill / stride + 1)));
    put(q->avail + 4 + 2ull * q->entries, 2, rnd(f)); /* used_event */
    put(q->used + 2, 2, 0);
    if (!one_in(f, 8))
        mmio_write(f, common + VCOM_Q_ENABLE, 2, 1);
}

/* Resets the device (waiting a little for it), then ACKNOWLEDGE | DRIVER. */
static void virtio_restart(struct fuzz *f, volatile uint8_t *common)
{
    mmio_write(f, common + VCOM_STATUS, 1, 0);
    for (unsigned i = 0; i < 100 && mmio_read(f, common + VCOM_STATUS, 1) != 0; i++)
        ;
    mmio_write(f, common + VCOM_STATUS, 1, VST_ACK | VST_DRIVER);
}

static void virtio_queue(struct fuzz *f, volatile uint8_t *common, unsigned nq)
{
    uint16_t qi = one_in(f, 6) ? (uint16_t)rnd(f) : (uint16_t)below(f, nq);
    struct fuzz_vq q;
    vq_setup(f, common, qi, &q, false);

    /* Fill the table: requests, and some descriptors of pure noise. */
    uint32_t fill = q.entries < 96 ? q.entries : 96;
    for (uint32_t i = 0; i + 3 <= fill; i += 3)
        vq_put_request(f, q.desc, q.entries, (uint16_t)i);
    for (unsigned i = 0; i < 4; i++) {
        uint64_t d = q.desc + 16ull * below(f, q.entries);
        put(d, 8, pick_addr(f, 1));
        put(d + 8, 4, pick_len(f));
        put(d + 12, 2, rnd(f));
        put(d + 14, 2, rnd(f));
    }
    vq_publish(f, common, &q, fill, 3, false);
}

static void virtio_round(struct fuzz *f, volatile uint8_t *common, volatile uint8_t *notify,
                         uint32_t mult, const uint64_t *bar_addr, const uint64_t *bar_size)
{
    virtio_restart(f, common);
    for (unsigned sel = 0; sel < 2; sel++) {
        mmio_write(f, common + VCOM_DFSELECT, 4, sel);
        uint64_t feat = mmio_read(f, common + VCOM_DF, 4);
        mmio_write(f, common + VCOM_GFSELECT, 4, one_in(f, 8) ? rnd(f) : sel);
        mmio_write(f, common + VCOM_GF, 4, one_in(f, 6) ? rnd(f) : feat & (rnd(f) | (sel ? 1 : 0)));
    }
    mmio_write(f, common + VCOM_STATUS, 1,
               one_in(f, 8) ? rnd(f) : VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    unsigned nq = (unsigned)mmio_read(f, common + VCOM_NUM_QUEUES, 2);
    if (nq == 0 || nq > 64)
        nq = 1;
    for (unsigned q = 1 + (unsigned)below(f, 3); q > 0; q--)
        virtio_queue(f, common, nq);
    mmio_write(f, common + VCOM_STATUS, 1,
               one_in(f, 10) ? rnd(f) : VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
    for (unsigned k = 0; k < 6; k++) {
        uint64_t qi = one_in(f, 5) ? below(f, 1024) : below(f, nq);
        if (qi * mult < 0x1000 && mult)
            mmio_write(f, notify + qi * mult, 2, one_in(f, 5) ? rnd(f) : qi);
        if (one_in(f, 3)) /* a reset racing the requests */
            mmio_write(f, common + VCOM_STATUS, 1, 0);
    }
    for (unsigned i = 0; i < 6; i++)
        bar_noise(f, bar_addr[i], bar_size[i], 24);
}

/* ---- virtio-net (modern interface) ---- */

#define NET_F_MQ (1ULL << 22)

enum net_role { NET_RX, NET_TX, NET_CTRL };

/* A 16-bit header field: zero, all ones, small, plausible or random. */
static uint16_t net_u16(struct fuzz *f)
{
    switch (below(f, 6)) {
    case 0:
        return 0;
    case 1:
        return 0xffff;
    case 2:
        return (uint16_t)rnd(f);
    case 3:
        return (uint16_t)below(f, 16);
    default:
        return (uint16_t)below(f, 1600);
    }
}

/* A frame buffer length: mostly a normal frame, else shorter than an
 * Ethernet header, just over 64 KiB plus headers, or half of that (two
 * such pieces are too much); for a malformed chain (bad) also empty,
 * absurd, or up to 1 MiB. */
static uint32_t net_len(struct fuzz *f, bool bad)
{
    switch (below(f, bad ? 10 : 7)) {
    case 0:
        return (uint32_t)below(f, 14);
    case 1:
        return 65536 + 14 + 4 + (uint32_t)below(f, 3);
    case 2:
        return 0x8000 + (uint32_t)below(f, 0x8000);
    case 7:
        return 0;
    case 8:
        return (uint32_t)rnd(f);
    case 9:
        return 0x10000u << below(f, 5);
    default:
        return 60 + (uint32_t)below(f, 1455);
    }
}

/* A virtio-net header at at: flags, GSO type, hdr_len, gso_size,
 * csum_start, csum_offset and num_buffers mostly wrong somehow. */
static void net_put_hdr(struct fuzz *f, uint64_t at)
{
    static const uint8_t gso[] = {0, 0, 1, 3, 4, 5, 0x81, 0x84};
    put(at, 1, one_in(f, 3) ? rnd(f) : below(f, 2)); /* NEEDS_CSUM, DATA_VALID, ... */
    put(at + 1, 1, one_in(f, 6) ? rnd(f) : gso[below(f, sizeof(gso))]);
    for (unsigned o = 2; o < 12; o += 2)
        put(at + o, 2, net_u16(f));
}

/* A control command at buf (class, command, data); returns the length of
 * the data: MAC tables with huge or lying counts, addresses of odd
 * lengths, RX modes and pair counts out of range, unknown classes. */
static uint32_t net_put_ctrl(struct fuzz *f, uint64_t buf)
{
    static const uint8_t classes[] = {0, 0, 1, 1, 1, 2, 4, 5};
    static const uint32_t counts[] = {0, 1, 64, 65, 0xffffffffu, 0x2aaaaaabu};
    uint8_t cls = one_in(f, 8) ? (uint8_t)rnd(f) : classes[below(f, sizeof(classes))];
    uint8_t cmd = one_in(f, 6) ? (uint8_t)rnd(f) : (uint8_t)below(f, 7);
    uint32_t len;
    put(buf, 1, cls);
    put(buf + 1, 1, cmd);
    if (cls == 1 && cmd == 0) { /* MAC_TABLE_SET: two tables */
        uint64_t off = 2;
        for (unsigned t = 0; t < 2; t++) {
            uint32_t count = one_in(f, 3) ? (uint32_t)below(f, 80) : counts[below(f, 6)];
            uint32_t entries = count < 80 ? count : (uint32_t)below(f, 80);
            put(buf + off, 4, count);
            off += 4;
            for (uint32_t e = 0; e < entries; e++, off += 6) {
                put(buf + off, 4, rnd(f));
                put(buf + off + 4, 2, rnd(f));
            }
        }
        len = (uint32_t)(off - 2);
        if (one_in(f, 3)) /* a little short or long */
            len = len + 8 - (uint32_t)below(f, 17);
    } else {
        put(buf + 2, 8, one_in(f, 2) ? below(f, 3) : rnd(f));
        len = cls == 1 ? 5 + (uint32_t)below(f, 3) : (uint32_t)below(f, 4);
    }
    return one_in(f, 10) ? (uint32_t)rnd(f) : len;
}

/* One chain of 1..4 descriptors from head, for a queue of role: TX
 * header and frame pieces, RX buffers, or a control command and its ack,
 * of hostile contents and lengths. One chain in five is also malformed
 * (loops, links out of range, flags flipped: readable RX or writable TX
 * buffers, addresses outside RAM, empty buffers), one in ten indirect
 * with a table of garbage: each of those stops the queue, so most chains
 * are well formed for the device to reach the frames. */
static void net_put_chain(struct fuzz *f, const struct fuzz_vq *q, uint16_t head,
                          enum net_role role)
{
    unsigned n = 1 + (unsigned)below(f, 4);
    bool bad = one_in(f, 5);
    uint64_t buf = scratch(f, 0x40000, 16);
    uint32_t ctrl_len = 0;
    if (role == NET_TX)
        net_put_hdr(f, buf);
    else if (role == NET_CTRL)
        ctrl_len = net_put_ctrl(f, buf);
    for (unsigned k = 0; k < n; k++) {
        uint16_t idx = (uint16_t)((head + k) % q->entries);
        uint64_t d = q->desc + 16ull * idx;
        bool last = k + 1 == n;
        uint64_t addr = buf + (k == 0 ? 0 : 0x400 + 0x8000ull * (k - 1));
        uint32_t len = net_len(f, bad);
        uint16_t flags = last ? 0 : 1;
        uint16_t next = (uint16_t)((idx + 1) % q->entries);
        if (role == NET_TX && k == 0 && !one_in(f, 4))
            len = one_in(f, 2) ? 12 : 12 + (uint32_t)below(f, 1515); /* header (and frame) */
        if (role == NET_RX || (role == NET_CTRL && last))
            flags |= 2;
        if (role == NET_CTRL && last) { /* the ack byte (sometimes none, or two) */
            addr = buf + 0x300;
            len = one_in(f, 6) ? (uint32_t)below(f, 3) : 1;
        } else if (role == NET_CTRL) { /* class and command, with or before the data */
            addr = buf + (k ? 2 : 0);
            len = k ? ctrl_len : n > 2 ? 2 : 2 + ctrl_len;
        }
        if (!len && !bad) /* an empty buffer is a malformed chain */
            len = 1;
        if (bad && one_in(f, 3))
            addr = pick_addr(f, 1);
        if (bad && one_in(f, 3))
            flags ^= (uint16_t)(1u << below(f, 3)); /* NEXT, WRITE or INDIRECT flipped */
        if (bad && one_in(f, 3))
            next = one_in(f, 2) ? head /* a loop */ : (uint16_t)rnd(f);
        put(d, 8, addr);
        put(d + 8, 4, len);
        put(d + 12, 2, flags);
        put(d + 14, 2, next);
    }
    if (one_in(f, 10))
        put_indirect(f, q->desc, head, buf, role == NET_TX ? 12 : (uint32_t)below(f, 4096));
}

/* Sets up queue qi for role with chains at every fourth descriptor. */
static void net_queue(struct fuzz *f, volatile uint8_t *common, uint16_t qi, enum net_role role)
{
    struct fuzz_vq q;
    bool sane = !one_in(f, 3);
    vq_setup(f, common, qi, &q, sane);
    uint32_t fill = q.entries < 96 ? q.entries : 96;
    for (uint32_t i = 0; i + 4 <= fill; i += 4)
        net_put_chain(f, &q, (uint16_t)i, role);
    vq_publish(f, common, &q, fill >= 4 ? fill - 4 : 0, 4, sane);
    if (role == NET_RX && one_in(f, 4))
        put(q.avail + 2, 2, 0); /* RX with no buffers posted */
}

static void net_round(struct fuzz *f, volatile uint8_t *common, volatile uint8_t *notify,
                      uint32_t mult, const uint64_t *bar_addr, const uint64_t *bar_size)
{
    virtio_restart(f, common);
    /* Features: mostly all the device offers (offloads, MRG_RXBUF, the
     * control queue, MQ), else a random part of them, or anything. */
    uint64_t offered = 0, want;
    for (unsigned sel = 0; sel < 2; sel++) {
        mmio_write(f, common + VCOM_DFSELECT, 4, sel);
        offered |= mmio_read(f, common + VCOM_DF, 4) << (32 * sel);
    }
    switch (below(f, 8)) {
    case 0:
        want = rnd(f);
        break;
    case 1:
    case 2:
        want = (offered & rnd(f)) | VIRTIO_F_VERSION_1;
        break;
    default:
        want = offered;
        break;
    }
    for (unsigned sel = 0; sel < 2; sel++) {
        mmio_write(f, common + VCOM_GFSELECT, 4, sel);
        mmio_write(f, common + VCOM_GF, 4, want >> (32 * sel));
    }
    mmio_write(f, common + VCOM_STATUS, 1,
               one_in(f, 10) ? rnd(f) : VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    unsigned nq = (unsigned)mmio_read(f, common + VCOM_NUM_QUEUES, 2);
    if (nq < 3 || nq > 64)
        nq = 3;
    uint16_t ctrl = (uint16_t)(want & NET_F_MQ ? nq - 1 : 2);
    uint16_t pair = (uint16_t)(want & NET_F_MQ ? 2 * below(f, nq / 2) : 0);
    if (!one_in(f, 4))
        net_queue(f, common, pair, NET_RX);
    if (!one_in(f, 4))
        net_queue(f, common, pair + 1, NET_TX);
    if (!one_in(f, 3))
        net_queue(f, common, one_in(f, 8) ? (uint16_t)rnd(f) : ctrl, NET_CTRL);
    mmio_write(f, common + VCOM_STATUS, 1,
               one_in(f, 10) ? rnd(f) : VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
    for (unsigned k = 0; k < 8; k++) {
        uint64_t qi = one_in(f, 8) ? below(f, 1024) : one_in(f, 3) ? ctrl : pair + below(f, 2);
        if (qi * mult < 0x1000 && mult)
            mmio_write(f, notify + qi * mult, 2, one_in(f, 5) ? rnd(f) : qi);
        if (one_in(f, 8)) /* a reset with frames in flight */
            mmio_write(f, common + VCOM_STATUS, 1, 0);
    }
    for (unsigned i = 0; i < 6; i++)
        bar_noise(f, bar_addr[i], bar_size[i], 24);
}

/* ---- NVMe ---- */

enum {
    NV_CAP = 0x00,
    NV_CC = 0x14,
    NV_CSTS = 0x1C,
    NV_AQA = 0x24,
    NV_ASQ = 0x28,
    NV_ACQ = 0x30,
    NV_DB = 0x1000,
};

static void nvme_wait_rdy(struct fuzz *f, volatile uint8_t *regs, bool want)
{
    for (unsigned i = 0; i < 2000; i++) {
        uint32_t csts = (uint32_t)mmio_read(f, regs + NV_CSTS, 4);
        if ((csts & 2) || ((csts & 1) != 0) == want)
            return;
    }
}

/* A PRP list page in scratch whose entries are picked addresses. */
static uint64_t nvme_prp_list(struct fuzz *f)
{
    uint64_t list = scratch(f, 4096, 4096);
    for (unsigned i = 0; i < 512; i += 1 + (unsigned)below(f, 8))
        put(list + 8ull * i, 8, pick_addr(f, 4096));
    return one_in(f, 8) ? list + 8 * below(f, 512) : list;
}

static void nvme_put_sqe(struct fuzz *f, uint64_t sqe, bool admin, uint16_t cid)
{
    static const uint8_t admin_ops[] = {0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C};
    static const uint8_t io_ops[] = {0x00, 0x01, 0x02, 0x08, 0x09};
    uint8_t opc = one_in(f, 10) ? (uint8_t)rnd(f)
                  : admin       ? admin_ops[below(f, sizeof(admin_ops))]
                                : io_ops[below(f, sizeof(io_ops))];
    uint32_t cdw0 = opc | (uint32_t)cid << 16 | (one_in(f, 12) ? (uint32_t)(rnd(f) & 0xC300) : 0);
    put(sqe, 4, cdw0);
    put(sqe + 4, 4, one_in(f, 6) ? (uint32_t)rnd(f) : 1);
    put(sqe + 24, 8, pick_addr(f, one_in(f, 3) ? 4 : 4096));
    put(sqe + 32, 8, one_in(f, 2) ? nvme_prp_list(f) : pick_addr(f, 4096));
    uint32_t cdw10, cdw11 = (uint32_t)rnd(f), cdw12 = (uint32_t)rnd(f);
    uint16_t qid = (uint16_t)(one_in(f, 5) ? rnd(f) : 1 + below(f, 4));
    uint16_t qsz = (uint16_t)(pick_qsize(f, 1024) - 1);
    switch (admin ? opc : 0xff) {
    case 0x01: /* create SQ: the CQ id is random too */
    case 0x05: /* create CQ */
        cdw10 = (uint32_t)qsz << 16 | qid;
        cdw11 = (one_in(f, 6) ? 0 : 1) |
                (opc == 0x01 ? (uint32_t)(1 + below(f, 4)) << 16
                             : (uint32_t)below(f, 2) << 1 | (uint32_t)below(f, 40) << 16);
        break;
    case 0x00:
    case 0x04:
        cdw10 = qid;
        break;
    case 0x06:
        cdw10 = (uint32_t)(one_in(f, 4) ? rnd(f) & 0xff : below(f, 4));
        break;
    case 0x02: /* log page id, NUMDL */
        cdw10 = (uint32_t)below(f, 8) | (uint32_t)(rnd(f) & 0xffff) << 16;
        break;
    case 0x09:
    case 0x0A:
        cdw10 = one_in(f, 3) ? (uint32_t)rnd(f) : 7; /* mostly Number of Queues */
        break;
    default: /* I/O: starting LBA low bits, mostly small */
        cdw10 = one_in(f, 4) ? (uint32_t)rnd(f) : (uint32_t)below(f, 4096);
        cdw11 = one_in(f, 4) ? (uint32_t)rnd(f) : 0;
        cdw12 = one_in(f, 4) ? (uint32_t)rnd(f) : (uint32_t)below(f, 256);
        break;
    }
    put(sqe + 40, 4, cdw10);
    put(sqe + 44, 4, cdw11);
    put(sqe + 48, 4, cdw12);
    put(sqe + 52, 4, rnd(f));
    put(sqe + 56, 4, rnd(f));
    put(sqe + 60, 4, rnd(f));
}

static void nvme_round(struct fuzz *f, volatile uint8_t *regs, uint64_t bar_size)
{
    uint64_t cap = mmio_read(f, regs + NV_CAP, 8);
    unsigned stride = 4u << ((cap >> 32) & 0xf);
    uint32_t mqes = (uint32_t)(cap & 0xffff) + 1;

    mmio_write(f, regs + NV_CC, 4, 0);
    nvme_wait_rdy(f, regs, false);
    uint32_t asz = pick_qsize(f, mqes < 4096 ? mqes : 4096);
    uint32_t csz = pick_qsize(f, mqes < 4096 ? mqes : 4096);
    uint32_t aqa = ((csz - 1) & 0xfff) << 16 | ((asz - 1) & 0xfff);
    mmio_write(f, regs + NV_AQA, 4, one_in(f, 8) ? rnd(f) : aqa);
    uint32_t entries = asz && asz <= 4096 ? asz : 64;
    uint64_t asq = one_in(f, 6) ? pick_addr(f, 4096) : scratch(f, 64ull * entries, 4096);
    uint64_t acq = one_in(f, 6) ? pick_addr(f, 4096) : scratch(f, 16ull * entries, 4096);
    mmio_write(f, regs + NV_ASQ, 8, asq);
    mmio_write(f, regs + NV_ACQ, 8, acq);

    /* Admin commands: I/O queue 1 created properly at first now and then,
     * then random ones. */
    uint32_t n = 1 + (uint32_t)below(f, entries < 24 ? entries : 24);
    uint64_t iosq = scratch(f, 64 * 64, 4096), iocq = scratch(f, 16 * 64, 4096);
    for (uint32_t i = 0; i < n && i < entries; i++) {
        uint64_t sqe = asq + 64ull * i;
        nvme_put_sqe(f, sqe, true, (uint16_t)i);
        if (i < 2 && !one_in(f, 4)) {
            put(sqe, 4, (i == 0 ? 0x05u : 0x01u) | i << 16);
            put(sqe + 24, 8, i == 0 ? iocq : iosq);
            put(sqe + 40, 4, 63u << 16 | 1);
            put(sqe + 44, 4, i == 0 ? 1 : 1u | 1u << 16);
        }
    }
    uint32_t cc = 1 | 6u << 16 | 4u << 20;
    mmio_write(f, regs + NV_CC, 4, one_in(f, 8) ? rnd(f) : cc);
    nvme_wait_rdy(f, regs, true);
    mmio_write(f, regs + NV_DB, 4, one_in(f, 6) ? rnd(f) : n);

    /* I/O commands on queue 1 (which may or may not exist by now). */
    uint32_t m = 1 + (uint32_t)below(f, 48);
    for (uint32_t i = 0; i < m && i < 64; i++)
        nvme_put_sqe(f, iosq + 64ull * i, false, (uint16_t)i);
    mmio_write(f, regs + NV_DB + 2 * stride, 4, one_in(f, 6) ? rnd(f) : m);

    /* Doorbells for anything, completion heads included. */
    for (unsigned k = 0; k < 8; k++) {
        uint64_t off = NV_DB + (uint64_t)below(f, 70) * stride;
        if (off + 4 <= bar_size)
            mmio_write(f, regs + off, 4, one_in(f, 3) ? rnd(f) : below(f, 80));
    }
    if (one_in(f, 3)) /* reset or shut down with commands in flight */
        mmio_write(f, regs + NV_CC, 4, one_in(f, 2) ? 0 : cc | 1u << 14);
    bar_noise(f, (uint64_t)(uintptr_t)regs, bar_size < 0x2000 ? bar_size : 0x2000, 24);
}

/* ---- the entry point ---- */

unsigned device_fuzz(uint64_t seed, unsigned rounds, uint64_t tsc_khz,
                     void (*say)(const char *line),
                     void (*report)(const char *kind, unsigned dev, uint64_t ops))
{
    struct fuzz f = {.rng = seed ? seed * 0x9E3779B97F4A7C15ULL : 0x2545F4914F6CDD1DULL};
    uint64_t next = BENCH_MMIO_BASE;
    unsigned devices = 0;
    for (unsigned dev = 2; dev < 32; dev++) {
        uint32_t id = pci_cfg_read(0, dev, 0x00);
        uint32_t class_rev = pci_cfg_read(0, dev, 0x08);
        bool virtio = pci_is_virtio_blk(id, class_rev);
        bool net = pci_is_virtio_net(id, class_rev);
        bool nvme = pci_is_nvme(id, class_rev);
        bool vsock = vsock_fuzz_match(id, class_rev);
        virtio |= vsock; /* its virtqueue rounds are virtio-blk's */
        if (!virtio && !net && !nvme)
            continue;
        uint64_t bar_addr[6], bar_size[6];
        pci_assign_bars(0, dev, bar_addr, bar_size, &next);
        f.ops = 0;
        uint32_t mult = 0;
        volatile uint8_t *common = virtio || net ? pci_virtio_cap(0, dev, bar_addr, 1, 0) : 0;
        volatile uint8_t *notify = virtio || net ? pci_virtio_cap(0, dev, bar_addr, 2, &mult) : 0;
        volatile uint8_t *regs = (volatile uint8_t *)(uintptr_t)bar_addr[0];
        for (unsigned r = 0; r < rounds; r++) {
            if (virtio && common && notify)
                virtio_round(&f, common, notify, mult, bar_addr, bar_size);
            else if (net && common && notify)
                net_round(&f, common, notify, mult, bar_addr, bar_size);
            else if (nvme && regs)
                nvme_round(&f, regs, bar_size[0]);
            if (one_in(&f, 4)) { /* memory decoding off and on under the device */
                uint32_t cmd = pci_cfg_read(0, dev, 0x04) & 0xffff;
                pci_cfg_write(0, dev, 0x04, cmd & ~2u);
                pci_cfg_write(0, dev, 0x04, cmd);
            }
        }
        /* Leave the device reset and quiet. */
        if ((virtio || net) && common)
            mmio_write(&f, common + VCOM_STATUS, 1, 0);
        if (nvme && regs) {
            mmio_write(&f, regs + NV_CC, 4, 0);
            nvme_wait_rdy(&f, regs, false);
        }
        if (vsock)
            f.ops += vsock_fuzz(0, dev, bar_addr, f.rng, rounds, tsc_khz, say);
        pci_disable(0, dev);
        report(vsock    ? "virtio-vsock"
               : virtio ? "virtio-blk"
               : net    ? "virtio-net"
                        : "nvme",
               dev, f.ops);
        devices++;
    }
    return devices;
}
