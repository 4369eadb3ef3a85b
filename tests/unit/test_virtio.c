/* virtio: the split-ring walker (chains, indirect tables, event index, used
 * ring) and its hostile cases; the PCI transport (IDs and capabilities,
 * feature negotiation, the status state machine, queue setup, notify, ISR
 * and INTx, MSI-X, the legacy interface, DEVICE_NEEDS_RESET, reset) driven
 * through the BAR handlers with a small echo device, no KVM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/bus.h"
#include "devices/device.h"
#include "pci/pci.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtqueue.h"

#include "support/fake_mem.h"
#include "support/poll.h"
#include "support/state.h"
#include "support/vring.h"

/* ---- Fake guest memory: RAM at 0 (1 MiB), RAM at 2 MiB (64 KiB), a hole
 * between, a read-only "ROM" page at 3 MiB. ---- */

#define RAM_A 0x0ull
#define RAM_A_SIZE 0x100000ull
#define RAM_B 0x200000ull
#define RAM_B_SIZE 0x10000ull
#define ROM 0x300000ull
#define ROM_SIZE 0x1000ull

static uint8_t *rom;

static void mem_setup(void)
{
    fake_mem_add(RAM_A, RAM_A_SIZE, false, 0);
    fake_mem_add(RAM_B, RAM_B_SIZE, false, 0);
    rom = fake_mem_add(ROM, ROM_SIZE, true, 0x5a);
}

/* ======================= Walker tests ======================= */

#define QSIZE 16
#define F_INDIRECT (1ull << VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ull << VIRTIO_RING_F_EVENT_IDX)

static struct virtq vq;
static struct log_ratelimit vq_log;
static struct vring ring = {.desc = 0x1000, .avail = 0x2000, .used = 0x3000, .size = QSIZE};
static struct iovec iov[64];

static int walker_setup(void **state)
{
    mem_setup();
    memset(&vq_log, 0, sizeof(vq_log));
    virtq_init(&vq, "walker", 3, QSIZE, &vq_log);
    vring_clear(&ring);
    vq.desc_gpa = ring.desc;
    vq.avail_gpa = ring.avail;
    vq.used_gpa = ring.used;
    return 0;
}

static int walker_teardown(void **state)
{
    virtq_destroy(&vq);
    fake_mem_free();
    return 0;
}

static void activate(uint64_t features)
{
    assert_true(virtq_activate(&vq, &fake_mem, features));
}

static enum virtq_pop_result pop(struct virtq_chain *c, unsigned cap)
{
    memset(c, 0, sizeof(*c));
    c->iov = iov;
    c->iov_cap = cap;
    return virtq_pop(&vq, c);
}

static void test_simple_chain(void **state)
{
    activate(0);
    struct virtq_chain c;
    assert_int_equal(pop(&c, 64), VIRTQ_EMPTY);
    vring_set_desc(&ring, 5, 0x10000, 16, VIRTQ_DESC_F_NEXT, 6);
    vring_set_desc(&ring, 6, 0x11000, 100, VIRTQ_DESC_F_NEXT, 2);
    vring_set_desc(&ring, 2, 0x12000, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 9);
    vring_set_desc(&ring, 9, RAM_B + 0x100, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(&ring, 5);
    assert_true(virtq_has_available(&vq));
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_int_equal(c.head, 5);
    assert_int_equal(c.nout, 2);
    assert_int_equal(c.nin, 2);
    assert_int_equal(c.out_bytes, 116);
    assert_int_equal(c.in_bytes, 513);
    assert_ptr_equal(iov[0].iov_base, mem_host(0x10000));
    assert_int_equal(iov[1].iov_len, 100);
    assert_ptr_equal(iov[3].iov_base, mem_host(RAM_B + 0x100));
    assert_int_equal(pop(&c, 64), VIRTQ_EMPTY);
    assert_false(virtq_has_available(&vq));
    /* Used ring: element then index; the first push always interrupts. */
    assert_true(virtq_push(&vq, 5, 513));
    assert_int_equal(vring_used_idx(&ring), 1);
    assert_int_equal(vring_used_id(&ring, 0), 5);
    assert_int_equal(vring_used_len(&ring, 0), 513);
    /* The driver may suppress interrupts with the avail flags. */
    mem_put16(ring.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
    vring_avail_add(&ring, 5);
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_false(virtq_push(&vq, 5, 1));
    assert_int_equal(vring_used_idx(&ring), 2);
    /* Readable buffers may sit in ROM. */
    vring_set_desc(&ring, 0, ROM + 0x10, 32, 0, 0);
    vring_avail_add(&ring, 0);
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_ptr_equal(iov[0].iov_base, rom + 0x10);
}

static void test_ring_wraps(void **state)
{
    activate(0);
    struct virtq_chain c;
    vring_set_desc(&ring, 1, 0x10000, 8, 0, 0);
    for (unsigned i = 0; i < 70000; i++) {
        vring_avail_add(&ring, 1);
        assert_int_equal(pop(&c, 4), VIRTQ_CHAIN);
        virtq_push(&vq, 1, 0);
    }
    assert_int_equal(vring_used_idx(&ring), (uint16_t)70000);
    assert_int_equal(pop(&c, 4), VIRTQ_EMPTY);
}

static void test_indirect(void **state)
{
    activate(F_INDIRECT);
    struct virtq_chain c;
    uint64_t table = 0x20000;
    vring_set_desc_at(table, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 2);
    vring_set_desc_at(table, 2, 0x11000, 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(table, 1, 0x12000, 1, VIRTQ_DESC_F_WRITE, 0);
    /* A direct descriptor may lead into the indirect one. */
    vring_set_desc(&ring, 0, 0x13000, 8, VIRTQ_DESC_F_NEXT, 3);
    vring_set_desc(&ring, 3, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&ring, 0);
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_int_equal(c.nout, 2);
    assert_int_equal(c.nin, 2);
    assert_int_equal(c.in_bytes, 4097);
    assert_ptr_equal(iov[1].iov_base, mem_host(0x10000));
    /* An unaligned table is fine. */
    uint64_t odd = 0x20101;
    vring_set_desc_at(odd, 0, 0x10000, 16, 0, 0);
    vring_set_desc(&ring, 4, odd, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&ring, 4);
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_int_equal(c.nout, 1);
}

static void expect_error(uint64_t features)
{
    struct virtq_chain c;
    assert_int_equal(pop(&c, 64), VIRTQ_ERROR);
    (void)features;
}

static void test_indirect_not_negotiated(void **state)
{
    activate(0);
    vring_set_desc_at(0x20000, 0, 0x10000, 16, 0, 0);
    vring_set_desc(&ring, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&ring, 0);
    expect_error(0);
}

static void test_nested_indirect(void **state)
{
    activate(F_INDIRECT);
    vring_set_desc_at(0x20000, 0, 0x21000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vring_set_desc_at(0x21000, 0, 0x10000, 16, 0, 0);
    vring_set_desc(&ring, 0, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&ring, 0);
    expect_error(0);
}

static void test_bad_indirect_tables(void **state)
{
    struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
    } cases[] = {
        {0x20000, 0, VIRTQ_DESC_F_INDIRECT},                        /* empty */
        {0x20000, 24, VIRTQ_DESC_F_INDIRECT},                       /* not a multiple of 16 */
        {0x20000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT},   /* INDIRECT + NEXT */
        {0x150000, 32, VIRTQ_DESC_F_INDIRECT},                      /* in the hole */
        {RAM_A_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT},               /* runs into the hole */
        {~0ull - 15, 32, VIRTQ_DESC_F_INDIRECT},                    /* wraps */
        {0x20000, (VIRTQ_MAX_SIZE + 1) * 16, VIRTQ_DESC_F_INDIRECT} /* too long */
    };
    activate(F_INDIRECT);
    vring_set_desc_at(0x20000, 0, 0x10000, 16, 0, 0);
    vring_set_desc_at(0x20000, 1, 0x10000, 16, 0, 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vring_set_desc(&ring, 0, cases[i].addr, cases[i].len, cases[i].flags, 1);
        vring_avail_add(&ring, 0);
        expect_error(0);
    }
}

static void test_loops(void **state)
{
    activate(F_INDIRECT);
    /* A two-descriptor loop in the ring. */
    vring_set_desc(&ring, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc(&ring, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
    vring_avail_add(&ring, 0);
    expect_error(0);
    /* A self loop. */
    vring_set_desc(&ring, 7, 0x10000, 16, VIRTQ_DESC_F_NEXT, 7);
    vring_avail_add(&ring, 7);
    expect_error(0);
    /* A loop inside an indirect table. */
    vring_set_desc_at(0x20000, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(0x20000, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
    vring_set_desc(&ring, 2, 0x20000, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&ring, 2);
    expect_error(0);
}

static void test_chain_lengths(void **state)
{
    activate(0);
    struct virtq_chain c;
    /* A chain using the whole queue is fine (with room for it). */
    for (unsigned i = 0; i < QSIZE; i++)
        vring_set_desc(&ring, i, 0x10000 + 0x100 * i, 16, i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0,
                       (uint16_t)(i + 1));
    vring_avail_add(&ring, 0);
    assert_int_equal(pop(&c, 64), VIRTQ_CHAIN);
    assert_int_equal(c.nout, QSIZE);
    /* ... but not beyond the device's buffer limit. */
    vring_avail_add(&ring, 0);
    assert_int_equal(pop(&c, QSIZE - 1), VIRTQ_ERROR);
}

static void test_bad_buffers(void **state)
{
    struct {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
    } cases[] = {
        {0x150000, 16, 0},               /* in the hole */
        {RAM_A_SIZE - 0x800, 0x1000, 0}, /* spans into the hole */
        {RAM_B + RAM_B_SIZE - 1, 2, 0},  /* past the end of RAM */
        {~0ull - 0xfff, 0x2000, 0},      /* addr + len overflows */
        {0xfee00000, 4, 0},              /* MMIO (APIC) */
        {ROM, 16, VIRTQ_DESC_F_WRITE},   /* writable buffer in ROM */
        {0x10000, 0, 0},                 /* zero length */
    };
    activate(0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        vring_set_desc(&ring, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
        vring_set_desc(&ring, 1, cases[i].addr, cases[i].len, cases[i].flags, 0);
        vring_avail_add(&ring, 0);
        expect_error(0);
    }
}

static void test_bad_order_and_indices(void **state)
{
    activate(0);
    /* Readable after writable. */
    vring_set_desc(&ring, 0, 0x10000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc(&ring, 1, 0x11000, 16, 0, 0);
    vring_avail_add(&ring, 0);
    expect_error(0);
    /* next out of range. */
    vring_set_desc(&ring, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, QSIZE);
    vring_avail_add(&ring, 0);
    expect_error(0);
    /* head out of range. */
    vring_avail_add(&ring, 0xffff);
    expect_error(0);
}

static void test_avail_index_jump(void **state)
{
    activate(0);
    vring_set_desc(&ring, 0, 0x10000, 16, 0, 0);
    mem_put16(ring.avail + 2, QSIZE + 1);
    expect_error(0);
    /* Exactly a queue's worth is fine. */
    virtq_deactivate(&vq);
    activate(0);
    for (unsigned i = 0; i < QSIZE; i++)
        mem_put16(ring.avail + 4 + 2 * i, 0);
    mem_put16(ring.avail + 2, QSIZE);
    struct virtq_chain c;
    for (unsigned i = 0; i < QSIZE; i++)
        assert_int_equal(pop(&c, 4), VIRTQ_CHAIN);
    assert_int_equal(pop(&c, 4), VIRTQ_EMPTY);
}

static void test_event_idx(void **state)
{
    activate(F_EVENT_IDX);
    struct virtq_chain c;
    uint64_t used_event = ring.avail + 4 + 2 * QSIZE;
    uint64_t avail_event = ring.used + 4 + 8 * QSIZE;
    vring_set_desc(&ring, 0, 0x10000, 16, 0, 0);
    for (unsigned i = 0; i < 4; i++)
        vring_avail_add(&ring, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(pop(&c, 4), VIRTQ_CHAIN);
    /* Flags are ignored with event index. */
    mem_put16(ring.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
    mem_put16(used_event, 0);
    assert_true(virtq_push(&vq, 0, 0));  /* first: always */
    assert_false(virtq_push(&vq, 0, 0)); /* used idx 2 passes event 0 only at 1 */
    mem_put16(used_event, 5);
    assert_false(virtq_push(&vq, 0, 0)); /* 3 */
    assert_false(virtq_push(&vq, 0, 0)); /* 4 */
    mem_put16(used_event, 3);
    /* new 4 (after this push 5)... the driver wants an interrupt once the
     * index passes 3: crossing happened before the last check, not now. */
    assert_false(virtq_push(&vq, 0, 0));
    mem_put16(used_event, 5);
    vring_avail_add(&ring, 0);
    assert_int_equal(pop(&c, 4), VIRTQ_CHAIN);
    assert_true(virtq_push(&vq, 0, 0)); /* 6 passes 5 */

    /* Notification enable writes avail_event = next index to consume. */
    virtq_disable_notify(&vq);
    assert_int_equal(mem_get16(ring.used), 0); /* flags untouched with event idx */
    assert_false(virtq_enable_notify(&vq));
    assert_int_equal(mem_get16(avail_event), 5);
    vring_avail_add(&ring, 0);
    assert_true(virtq_enable_notify(&vq));
}

/* Several chains returned at once: every element written, the index
 * moved once by all of them, one interrupt decision for the lot (event
 * index crossing anywhere inside the batch counts). */
static void test_push_many(void **state)
{
    activate(F_EVENT_IDX);
    struct virtq_chain c;
    uint64_t used_event = ring.avail + 4 + 2 * QSIZE;
    for (unsigned i = 0; i < 3; i++) {
        vring_set_desc(&ring, i, 0x10000 + i * 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
        vring_avail_add(&ring, (uint16_t)i);
    }
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(pop(&c, 4), VIRTQ_CHAIN);
    mem_put16(used_event, 1); /* wants an interrupt once the index passes 1 */
    static const uint16_t heads[3] = {2, 0, 1};
    static const uint32_t lens[3] = {16, 7, 1};
    assert_true(virtq_push_many(&vq, heads, lens, 3));
    assert_int_equal(vring_used_idx(&ring), 3);
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(vring_used_id(&ring, i), heads[i]);
        assert_int_equal(vring_used_len(&ring, i), lens[i]);
    }
    assert_false(virtq_push_many(&vq, heads, lens, 0));
    assert_int_equal(vring_used_idx(&ring), 3);
}

static void test_notify_flags(void **state)
{
    activate(0);
    virtq_disable_notify(&vq);
    assert_int_equal(mem_get16(ring.used), VIRTQ_USED_F_NO_NOTIFY);
    assert_false(virtq_enable_notify(&vq));
    assert_int_equal(mem_get16(ring.used), 0);
    vring_set_desc(&ring, 0, 0x10000, 16, 0, 0);
    vring_avail_add(&ring, 0);
    assert_true(virtq_enable_notify(&vq));
}

static void test_activation_checks(void **state)
{
    /* Misaligned rings. */
    vq.desc_gpa = ring.desc + 8;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.desc_gpa = ring.desc;
    vq.avail_gpa = ring.avail + 1;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.avail_gpa = ring.avail;
    vq.used_gpa = ring.used + 2;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    /* Outside RAM, across the hole, in ROM (used ring must be writable). */
    vq.used_gpa = 0x180000;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.used_gpa = RAM_A_SIZE - 64;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.used_gpa = ROM;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.desc_gpa = ~0ull - 15;
    vq.used_gpa = ring.used;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.desc_gpa = ring.desc;
    /* Sizes. */
    assert_false(virtq_size_valid(&vq, 0));
    assert_false(virtq_size_valid(&vq, 3));
    assert_false(virtq_size_valid(&vq, 32));
    assert_false(virtq_size_valid(&vq, 1ull << 32));
    assert_true(virtq_size_valid(&vq, 1));
    assert_true(virtq_size_valid(&vq, 8));
    vq.size = 6;
    assert_false(virtq_activate(&vq, &fake_mem, 0));
    vq.size = 8;
    assert_true(virtq_activate(&vq, &fake_mem, 0));
    /* Inactive queues pop nothing and push nothing. */
    virtq_deactivate(&vq);
    struct virtq_chain c;
    assert_int_equal(pop(&c, 4), VIRTQ_EMPTY);
    assert_false(virtq_push(&vq, 0, 0));
    assert_false(virtq_enable_notify(&vq));
}

static void test_legacy_layout(void **state)
{
    vq.size = 8;
    virtq_set_legacy_pfn(&vq, 5);
    assert_int_equal(vq.desc_gpa, 0x5000);
    assert_int_equal(vq.avail_gpa, 0x5080);
    assert_int_equal(vq.used_gpa, 0x6000);
    vq.size = 256;
    virtq_set_legacy_pfn(&vq, 1);
    assert_int_equal(vq.avail_gpa, 0x2000);
    assert_int_equal(vq.used_gpa, 0x3000);
}

static void test_iov_helpers(void **state)
{
    uint8_t a[3] = {1, 2, 3}, b[2] = {4, 5}, out[5];
    struct iovec v[2] = {{a, 3}, {b, 2}};
    assert_int_equal(iov_to_buf(v, 2, 2, out, 5), 3);
    assert_memory_equal(out, "\x03\x04\x05", 3);
    assert_int_equal(iov_to_buf(v, 2, 9, out, 5), 0);
    assert_int_equal(iov_from_buf(v, 2, 1, "xyz", 3), 3);
    assert_memory_equal(a, "\x01xy", 3);
    assert_int_equal(b[0], 'z');
}

/* ======================= Transport tests ======================= */

#define NQ 2
#define TQSIZE 64
#define DEV_TYPE 4 /* entropy: transitional id 0x1005 */
#define CFG_SIZE 8

/* The echo device: what a queue's chain reads comes back in its writable
 * buffers. Its first CFG_WRITABLE configuration bytes are the driver's to
 * write. */
#define CFG_WRITABLE 4

struct echo {
    struct virtio_device vdev;
    struct virtio_pci *vp;
    unsigned processed;
    unsigned config_writes;
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct echo echo;
static bool intx_level;
static unsigned intx_edges;
static struct {
    unsigned count;
    uint64_t addr;
    uint32_t data;
} msi;

/* Interrupts arrive on worker threads: the fakes store atomically. */
static void fake_router(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
    if (level && !__atomic_load_n(&intx_level, __ATOMIC_SEQ_CST))
        __atomic_fetch_add(&intx_edges, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&intx_level, level, __ATOMIC_SEQ_CST);
}

static void fake_msi(void *opaque, uint64_t addr, uint32_t data)
{
    __atomic_store_n(&msi.addr, addr, __ATOMIC_SEQ_CST);
    __atomic_store_n(&msi.data, data, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&msi.count, 1, __ATOMIC_SEQ_CST);
}

static bool intx(void)
{
    return __atomic_load_n(&intx_level, __ATOMIC_SEQ_CST);
}

static bool intx_asserted(void *arg)
{
    return intx();
}

static unsigned msi_count(void)
{
    return __atomic_load_n(&msi.count, __ATOMIC_SEQ_CST);
}

static uint32_t msi_data(void)
{
    return __atomic_load_n(&msi.data, __ATOMIC_SEQ_CST);
}

/* Copies readable bytes into the writable ones. */
static void echo_process(struct virtio_device *vdev, unsigned queue)
{
    struct echo *e = container_of(vdev, struct echo, vdev);
    struct virtq *q = virtio_queue_ring(vdev, queue);
    struct iovec v[16];
    for (;;) {
        virtq_disable_notify(q);
        for (;;) {
            if (!virtio_queue_running(vdev, queue))
                return;
            struct virtq_chain c = {.iov = v, .iov_cap = 16};
            enum virtq_pop_result r = virtq_pop(q, &c);
            if (r == VIRTQ_ERROR) {
                virtio_device_needs_reset(vdev, "bad ring");
                return;
            }
            if (r == VIRTQ_EMPTY)
                break;
            uint8_t buf[4096];
            size_t n = iov_to_buf(v, c.nout, 0, buf, sizeof(buf));
            n = iov_from_buf(v + c.nout, c.nin, 0, buf, n);
            __atomic_fetch_add(&e->processed, 1, __ATOMIC_SEQ_CST);
            virtio_queue_complete(vdev, queue, c.head, (uint32_t)n);
        }
        if (!virtq_enable_notify(q))
            return;
    }
}

static void echo_write_config(struct virtio_device *vdev, unsigned offset, unsigned size,
                              uint64_t value)
{
    struct echo *e = container_of(vdev, struct echo, vdev);
    e->config_writes++;
    for (unsigned i = 0; i < size && offset + i < CFG_WRITABLE; i++)
        vdev->config[offset + i] = (uint8_t)(value >> (8 * i));
}

/* The echo device is static: nothing to free. */
static void echo_destroy(struct virtio_device *vdev)
{
}

static const struct virtio_device_ops echo_ops = {
    .kind = "echo",
    .queue_notify = echo_process,
    .write_config = echo_write_config,
    .destroy = echo_destroy,
};

static uint64_t bar_read(unsigned bar, uint64_t off, unsigned size)
{
    const struct pci_bar *b = &echo.vp->pci.bars[bar];
    return b->ops->read(b->opaque, off, size);
}

static void bar_write(unsigned bar, uint64_t off, unsigned size, uint64_t v)
{
    const struct pci_bar *b = &echo.vp->pci.bars[bar];
    b->ops->write(b->opaque, off, size, v);
}

static uint64_t common_r(unsigned off, unsigned size)
{
    return bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_COMMON_OFFSET + off, size);
}

static void common_w(unsigned off, unsigned size, uint64_t v)
{
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_COMMON_OFFSET + off, size, v);
}

static uint8_t status(void)
{
    return (uint8_t)common_r(VIRTIO_COMMON_STATUS, 1);
}

static uint32_t cfg32(unsigned off)
{
    return pci_device_config_read(&echo.vp->pci, off, 4);
}

static int transport_setup(void **state)
{
    mem_setup();
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pcibus, &pio, &mmio);
    pci_bus_set_intx_router(&pcibus, (struct pci_intx_router){fake_router, NULL});
    intx_level = false;
    intx_edges = 0;
    memset(&msi, 0, sizeof(msi));
    memset(&echo, 0, sizeof(echo));
    static const uint8_t config[CFG_SIZE] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    struct virtio_device_params p = {
        .name = "echo0",
        .device_type = DEV_TYPE,
        .num_queues = NQ,
        .queue_size = TQSIZE,
        .features = 1ull << 3,
        .config_size = CFG_SIZE,
        .ops = &echo_ops,
        .mem = &fake_mem,
    };
    assert_int_equal(virtio_device_init(&echo.vdev, &p), 0);
    memcpy(echo.vdev.config, config, CFG_SIZE);
    echo.vp = virtio_pci_create(&echo.vdev, &(struct virtio_pci_params){
                                                .class_code = 0xff0000,
                                                .machine = NULL,
                                                .msix_sink = {.signal_msi = fake_msi},
                                            });
    assert_non_null(echo.vp);
    assert_int_equal(pci_bus_add(&pcibus, &echo.vp->pci, PCI_DEVFN(4, 0)), 0);
    /* Bus mastering, as firmware/drivers enable it. */
    pci_device_config_write(&echo.vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    return 0;
}

static int transport_teardown(void **state)
{
    virtio_pci_destroy(echo.vp);
    pci_bus_destroy(&pcibus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    fake_mem_free();
    return 0;
}

static bool used_reaches(void *arg)
{
    const struct vring *r = arg;
    return vring_used_idx(r) == r->avail_idx;
}

static bool needs_reset(void *arg)
{
    return status() & VIRTIO_STATUS_NEEDS_RESET;
}

/* Rings for the transport queues, in RAM B for queue 0 and RAM A for 1. */
static struct vring tring[NQ] = {
    {.desc = RAM_B + 0x0000, .avail = RAM_B + 0x1000, .used = RAM_B + 0x2000, .size = 16},
    {.desc = 0x40000, .avail = 0x41000, .used = 0x42000, .size = 16},
};

static void modern_setup_queue(unsigned q, struct vring *r)
{
    vring_clear(r);
    common_w(VIRTIO_COMMON_Q_SELECT, 2, q);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, r->size);
    common_w(VIRTIO_COMMON_Q_DESC, 8, r->desc);
    common_w(VIRTIO_COMMON_Q_AVAIL, 4, (uint32_t)r->avail);
    common_w(VIRTIO_COMMON_Q_AVAIL + 4, 4, r->avail >> 32);
    common_w(VIRTIO_COMMON_Q_USED, 8, r->used);
    common_w(VIRTIO_COMMON_Q_ENABLE, 2, 1);
}

static void modern_bring_up(uint64_t features)
{
    common_w(VIRTIO_COMMON_STATUS, 1, 0);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 0);
    common_w(VIRTIO_COMMON_GF, 4, (uint32_t)features);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 1);
    common_w(VIRTIO_COMMON_GF, 4, features >> 32);
    uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
    common_w(VIRTIO_COMMON_STATUS, 1, s);
    assert_int_equal(status(), s);
    for (unsigned q = 0; q < NQ; q++)
        modern_setup_queue(q, &tring[q]);
    common_w(VIRTIO_COMMON_STATUS, 1, s | VIRTIO_STATUS_DRIVER_OK);
    assert_int_equal(status(), s | VIRTIO_STATUS_DRIVER_OK);
}

static void post_echo(struct vring *r, uint16_t d, const char *text)
{
    size_t n = strlen(text);
    uint64_t src = r->desc + 0x800 + 0x40 * d, dst = src + 0x20;
    memcpy(mem_host(src), text, n);
    vring_set_desc(r, d, src, (uint32_t)n, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
    vring_set_desc(r, d + 1, dst, 32, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, d);
}

static void notify_modern(unsigned q)
{
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 4 * q, 2, q);
}

#define F_V1 (1ull << VIRTIO_F_VERSION_1)

static void test_ids_and_capabilities(void **state)
{
    assert_int_equal(cfg32(PCI_VENDOR_ID), 0x10051af4);
    assert_int_equal(cfg32(PCI_SUBSYSTEM_VENDOR_ID), (uint32_t)DEV_TYPE << 16 | 0x1af4);
    assert_int_equal(cfg32(PCI_REVISION_ID), 0xff000000); /* class ff0000, revision 0 */
    assert_int_equal(pci_device_config_read(&echo.vp->pci, PCI_INTERRUPT_PIN, 1), 1);
    /* BARs: I/O, memory, memory. */
    assert_int_equal(cfg32(PCI_BASE_ADDRESS_0) & 1, 1);
    pci_device_config_write(&echo.vp->pci, PCI_BASE_ADDRESS_0 + 8, 4, 0xffffffff);
    assert_int_equal(cfg32(PCI_BASE_ADDRESS_0 + 8), (uint32_t) ~(VIRTIO_PCI_MODERN_BAR_SIZE - 1));
    /* Walk the capability list. */
    unsigned seen_types = 0, cap = pci_device_config_read(&echo.vp->pci, PCI_CAPABILITY_LIST, 1);
    bool msix = false;
    for (unsigned hops = 0; cap && hops < 16; hops++) {
        uint8_t id = pci_get_byte(&echo.vp->pci, cap);
        if (id == PCI_CAP_ID_MSIX) {
            msix = true;
            assert_int_equal(pci_get_word(&echo.vp->pci, cap + 2), NQ); /* NQ + 1 vectors */
            assert_int_equal(pci_get_long(&echo.vp->pci, cap + 4), VIRTIO_PCI_BAR_MSIX);
        } else {
            assert_int_equal(id, PCI_CAP_ID_VNDR);
            uint8_t type = pci_get_byte(&echo.vp->pci, cap + 3);
            seen_types |= 1u << type;
            uint32_t off = pci_get_long(&echo.vp->pci, cap + 8);
            uint32_t len = pci_get_long(&echo.vp->pci, cap + 12);
            if (type != VIRTIO_PCI_CAP_PCI_CFG)
                assert_int_equal(pci_get_byte(&echo.vp->pci, cap + 4), VIRTIO_PCI_BAR_MODERN);
            switch (type) {
            case VIRTIO_PCI_CAP_COMMON_CFG:
                assert_int_equal(off, 0);
                assert_int_equal(len, 0x3c);
                break;
            case VIRTIO_PCI_CAP_NOTIFY_CFG:
                assert_int_equal(pci_get_byte(&echo.vp->pci, cap + 2), 20);
                assert_int_equal(off, VIRTIO_PCI_NOTIFY_OFFSET);
                assert_int_equal(len, 4 * NQ);
                assert_int_equal(pci_get_long(&echo.vp->pci, cap + 16), 4);
                break;
            case VIRTIO_PCI_CAP_ISR_CFG:
                assert_int_equal(off, VIRTIO_PCI_ISR_OFFSET);
                break;
            case VIRTIO_PCI_CAP_DEVICE_CFG:
                assert_int_equal(off, VIRTIO_PCI_DEVICE_OFFSET);
                assert_int_equal(len, CFG_SIZE);
                break;
            default:
                break;
            }
        }
        cap = pci_get_byte(&echo.vp->pci, cap + 1);
    }
    assert_true(msix);
    assert_int_equal(seen_types, 0x3e);
    /* Queue notify offsets follow the queue index. */
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_NOFF, 2), 1);
    assert_int_equal(common_r(VIRTIO_COMMON_NUMQ, 2), NQ);
    /* Device config, modern and legacy. */
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 2, 4), 0x66554433);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 6, 4), 0x8877);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_NOMSIX, 1), 0x11);
}

static void test_feature_negotiation(void **state)
{
    common_w(VIRTIO_COMMON_DFSELECT, 4, 0);
    uint32_t lo = (uint32_t)common_r(VIRTIO_COMMON_DF, 4);
    common_w(VIRTIO_COMMON_DFSELECT, 4, 1);
    uint32_t hi = (uint32_t)common_r(VIRTIO_COMMON_DF, 4);
    common_w(VIRTIO_COMMON_DFSELECT, 4, 7);
    assert_int_equal(common_r(VIRTIO_COMMON_DF, 4), 0);
    assert_true(lo & (1u << 3));
    assert_true(lo & (1u << VIRTIO_RING_F_INDIRECT_DESC));
    assert_true(lo & (1u << VIRTIO_RING_F_EVENT_IDX));
    assert_int_equal(hi, 1); /* VERSION_1 */

    /* Without VERSION_1 the modern interface refuses FEATURES_OK. */
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 0);
    common_w(VIRTIO_COMMON_GF, 4, 1u << 3);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(status(), 0x03);
    /* A feature the device does not offer: refused too. */
    common_w(VIRTIO_COMMON_GF, 4, 1u << 4);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 1);
    common_w(VIRTIO_COMMON_GF, 4, 1);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(status(), 0x03);
    /* A proper subset is accepted and reads back. */
    common_w(VIRTIO_COMMON_GFSELECT, 4, 0);
    common_w(VIRTIO_COMMON_GF, 4, 1u << 3);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(status(), 0x0b);
    assert_int_equal(virtio_features(&echo.vdev), F_V1 | (1u << 3));
    /* Changing features after FEATURES_OK is ignored. */
    common_w(VIRTIO_COMMON_GF, 4, (1u << 3) | (1u << VIRTIO_RING_F_EVENT_IDX));
    assert_int_equal(common_r(VIRTIO_COMMON_GF, 4), 1u << 3);
    /* Odd-sized or misaligned writes are ignored. */
    common_w(VIRTIO_COMMON_GFSELECT, 2, 1);
    common_w(VIRTIO_COMMON_GFSELECT + 1, 1, 1);
    assert_int_equal(common_r(VIRTIO_COMMON_GFSELECT, 4), 0);
    /* Reads of part of a field work. */
    assert_int_equal(common_r(VIRTIO_COMMON_GF, 1), 1u << 3);
}

static void test_status_machine(void **state)
{
    /* Out of order: ignored. */
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_DRIVER);
    assert_int_equal(status(), 0);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_FEATURES_OK);
    assert_int_equal(status(), VIRTIO_STATUS_ACKNOWLEDGE);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x07); /* DRIVER_OK without FEATURES_OK (modern) */
    assert_int_equal(status(), VIRTIO_STATUS_ACKNOWLEDGE);
    /* NEEDS_RESET is the device's bit. */
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(status(), VIRTIO_STATUS_ACKNOWLEDGE);
    assert_false(intx());
    /* Clearing a bit: the device needs a reset, with a config interrupt. */
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_DRIVER);
    assert_int_equal(status(), 0x43);
    assert_true(intx());
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1), VIRTIO_ISR_CONFIG);
    assert_false(intx());
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1), 0);
    /* FAILED may be set at any point. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0x83);
    assert_int_equal(status(), 0xc3);
    /* Reset clears everything. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(status(), 0);
    modern_bring_up(F_V1);
}

static void test_queue_setup_rules(void **state)
{
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 0);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), TQSIZE);
    /* Not a power of two, zero, too big: rejected, old value kept. */
    common_w(VIRTIO_COMMON_Q_SIZE, 2, 100);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, 0);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, TQSIZE * 2);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), TQSIZE);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, 8);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), 8);
    /* Addresses as 64-bit or two halves. */
    common_w(VIRTIO_COMMON_Q_DESC, 4, 0x12345000);
    common_w(VIRTIO_COMMON_Q_DESC + 4, 4, 0x1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_DESC, 8), 0x112345000ull);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_DESC + 4, 4), 1);
    common_w(VIRTIO_COMMON_Q_USED, 8, 0xabcd000);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_USED, 8), 0xabcd000);
    /* Out-of-range queue select: reads 0, writes ignored. */
    common_w(VIRTIO_COMMON_Q_SELECT, 2, NQ);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), 0);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, 8);
    common_w(VIRTIO_COMMON_Q_ENABLE, 2, 1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_ENABLE, 2), 0);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 0xffff);
    common_w(VIRTIO_COMMON_Q_DESC, 8, 0x1000);
    /* Once enabled, the queue's configuration is frozen; 0 is no disable. */
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 0);
    common_w(VIRTIO_COMMON_Q_ENABLE, 2, 1);
    common_w(VIRTIO_COMMON_Q_SIZE, 2, 16);
    common_w(VIRTIO_COMMON_Q_DESC, 8, 0x2000);
    common_w(VIRTIO_COMMON_Q_ENABLE, 2, 0);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), 8);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_DESC, 8), 0x112345000ull);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_ENABLE, 2), 1);
    /* queue_reset is not offered. */
    common_w(VIRTIO_COMMON_Q_RESET, 2, 1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_RESET, 2), 0);
    /* Reset brings the defaults back. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_SIZE, 2), TQSIZE);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_ENABLE, 2), 0);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_DESC, 8), 0);
}

static void test_queue_processing_intx(void **state)
{
    modern_bring_up(F_V1 | (1ull << VIRTIO_RING_F_EVENT_IDX));
    post_echo(&tring[0], 0, "hello");
    post_echo(&tring[0], 2, "world!");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
    assert_int_equal(vring_used_len(&tring[0], 0), 5);
    assert_int_equal(vring_used_id(&tring[0], 1), 2);
    assert_memory_equal(mem_host(tring[0].desc + 0x800 + 0x20), "hello", 5);
    assert_memory_equal(mem_host(tring[0].desc + 0x800 + 0x80 + 0x20), "world!", 6);
    /* INTx with the queue bit in ISR; reading ISR clears and deasserts. */
    assert_true(poll_until(intx_asserted, NULL));
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_ISR, 1), VIRTIO_ISR_QUEUE);
    assert_false(intx());
    /* The other queue; its rings are in the other RAM region. */
    post_echo(&tring[1], 4, "q1");
    notify_modern(1);
    assert_true(poll_until(used_reaches, &tring[1]));
    assert_int_equal(vring_used_id(&tring[1], 0), 4);
    /* Doorbells for queues that do not exist are logged and ignored. */
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 4 * NQ, 2, NQ);
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 2, 2, 0);
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 0xffc, 2, 0);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 77);
    assert_false(status() & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_notify_before_driver_ok(void **state)
{
    /* A doorbell on a device that is not running does nothing. */
    notify_modern(0);
    notify_modern(1);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 0);
    /* Buffers posted before DRIVER_OK are picked up when it is set. */
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
    common_w(VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 1);
    common_w(VIRTIO_COMMON_GF, 4, 1);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0b);
    modern_setup_queue(0, &tring[0]);
    post_echo(&tring[0], 0, "early");
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_true(poll_until(used_reaches, &tring[0]));
    /* Without bus mastering nothing is processed. */
    pci_device_config_write(&echo.vp->pci, PCI_COMMAND, 2, 0);
    post_echo(&tring[0], 2, "nomaster");
    notify_modern(0);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    assert_int_equal(vring_used_idx(&tring[0]), 1);
    pci_device_config_write(&echo.vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
}

static void test_bad_ring_needs_reset(void **state)
{
    modern_bring_up(F_V1);
    /* A loop: the device stops, sets NEEDS_RESET and interrupts. */
    vring_set_desc(&tring[0], 0, 0x10000, 8, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc(&tring[0], 1, 0x10000, 8, VIRTQ_DESC_F_NEXT, 0);
    vring_avail_add(&tring[0], 0);
    notify_modern(0);
    assert_true(poll_until(needs_reset, NULL));
    assert_true(poll_until(intx_asserted, NULL));
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1), VIRTIO_ISR_CONFIG);
    /* Nothing more is processed, on either queue. */
    unsigned before = __atomic_load_n(&echo.processed, __ATOMIC_SEQ_CST);
    post_echo(&tring[1], 0, "ignored");
    notify_modern(1);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    assert_int_equal(__atomic_load_n(&echo.processed, __ATOMIC_SEQ_CST), before);
    assert_int_equal(vring_used_idx(&tring[1]), 0);
    /* The driver resets and starts over; all is well again. */
    modern_bring_up(F_V1);
    assert_false(status() & VIRTIO_STATUS_NEEDS_RESET);
    post_echo(&tring[0], 0, "again");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));

    /* An available index that jumps past the queue size. */
    mem_put16(tring[1].avail + 2, 1000);
    notify_modern(1);
    assert_true(poll_until(needs_reset, NULL));
    common_w(VIRTIO_COMMON_STATUS, 1, 0);

    /* Rings outside RAM at DRIVER_OK. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0x01);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x03);
    common_w(VIRTIO_COMMON_GFSELECT, 4, 1);
    common_w(VIRTIO_COMMON_GF, 4, 1);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0b);
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 0);
    common_w(VIRTIO_COMMON_Q_DESC, 8, 0x180000);
    common_w(VIRTIO_COMMON_Q_ENABLE, 2, 1);
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_true(status() & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_msix_delivery(void **state)
{
    unsigned cap = echo.vp->msix.cap;
    /* MSI-X on: program vectors 0 (config) and 1 (queue 0). */
    pci_device_config_write(&echo.vp->pci, cap + 2, 2, MSIX_CONTROL_ENABLE);
    for (unsigned v = 0; v < 2; v++) {
        bar_write(VIRTIO_PCI_BAR_MSIX, v * 16, 4, 0xfee00000);
        bar_write(VIRTIO_PCI_BAR_MSIX, v * 16 + 8, 4, 0x40 + v);
        bar_write(VIRTIO_PCI_BAR_MSIX, v * 16 + 12, 4, 0);
    }
    modern_bring_up(F_V1);
    common_w(VIRTIO_COMMON_MSIX, 2, 0);
    assert_int_equal(common_r(VIRTIO_COMMON_MSIX, 2), 0);
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 0);
    common_w(VIRTIO_COMMON_Q_MSIX, 2, 1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_MSIX, 2), 1);
    /* A vector the device does not have reads back NO_VECTOR. */
    common_w(VIRTIO_COMMON_Q_SELECT, 2, 1);
    common_w(VIRTIO_COMMON_Q_MSIX, 2, NQ + 1);
    assert_int_equal(common_r(VIRTIO_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);

    post_echo(&tring[0], 0, "msi");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
    for (int i = 0; i < 1000 && msi_count() == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(msi_count(), 1);
    assert_int_equal(msi_data(), 0x41);
    assert_false(intx()); /* no INTx while MSI-X is on */
    /* NO_VECTOR on queue 1: no interrupt at all. */
    post_echo(&tring[1], 0, "quiet");
    notify_modern(1);
    assert_true(poll_until(used_reaches, &tring[1]));
    assert_int_equal(msi_count(), 1);
    assert_false(intx());
    /* The config interrupt goes to vector 0. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0x01);
    assert_true(status() & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(msi_count(), 2);
    assert_int_equal(msi_data(), 0x40);
    /* Legacy layout with MSI-X: vectors at 0x14/0x16, config at 0x18. */
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_VECTOR, 2), 0);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_MSIX, 1), 0x11);
    /* Virtio reset: vectors back to NO_VECTOR, MSI-X left alone. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(common_r(VIRTIO_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    assert_true(msix_enabled(&echo.vp->msix));
    /* Device reset: MSI-X off, PCI state back to power-on. */
    virtio_pci_reset(echo.vp);
    assert_false(msix_enabled(&echo.vp->msix));
    assert_int_equal(pci_device_config_read(&echo.vp->pci, PCI_COMMAND, 2), 0);
}

static void test_legacy_interface(void **state)
{
    uint16_t size = (uint16_t)bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SIZE, 2);
    assert_int_equal(size, TQSIZE);
    uint32_t features = (uint32_t)bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_DEVICE_FEATURES, 4);
    assert_true(features & (1u << 3));
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0x03);
    /* Features the device does not have are dropped. */
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_GUEST_FEATURES, 4,
              (1u << 3) | (1u << 4) | (1u << VIRTIO_RING_F_INDIRECT_DESC));
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_GUEST_FEATURES, 4),
                     (1u << 3) | (1u << VIRTIO_RING_F_INDIRECT_DESC));
    /* Queue 0 at page frame 0x50 (the legacy layout for TQSIZE entries). */
    struct vring r = {.desc = 0x50000, .avail = 0x50000 + 16 * TQSIZE, .size = TQSIZE};
    r.used = (r.avail + 6 + 2 * TQSIZE + 4095) & ~4095ull;
    vring_clear(&r);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SELECT, 2, 0);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4, 0x50);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4), 0x50);
    /* Queue select past the end: size 0 tells the driver there is none. */
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SELECT, 2, NQ);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SIZE, 2), 0);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4, 0x60);
    /* DRIVER_OK without FEATURES_OK is how legacy drivers do it. */
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0x07);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1), 0x07);
    /* An indirect chain (negotiated), notified through the legacy port. */
    vring_set_desc_at(0x58000, 0, 0x59000, 4, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(0x58000, 1, 0x59100, 16, VIRTQ_DESC_F_WRITE, 0);
    memcpy(mem_host(0x59000), "leg!", 4);
    vring_set_desc(&r, 3, 0x58000, 32, VIRTQ_DESC_F_INDIRECT, 0);
    vring_avail_add(&r, 3);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 0);
    assert_true(poll_until(used_reaches, &r));
    assert_int_equal(vring_used_len(&r, 0), 4);
    assert_memory_equal(mem_host(0x59100), "leg!", 4);
    assert_true(poll_until(intx_asserted, NULL));
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_ISR, 1), VIRTIO_ISR_QUEUE);
    /* Writing PFN 0 releases the queue; the reset then clears all. */
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SELECT, 2, 0);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4, 0);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4), 0);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1), 0);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_GUEST_FEATURES, 4), 0);
}

static void test_hostile_register_sweep(void **state)
{
    /* Every offset and size of every BAR, reads then writes of junk: no
     * crash, no hang; the device ends up usable after a reset. */
    static const unsigned sizes[] = {1, 2, 4, 8};
    static const uint64_t junk[] = {0, ~0ull, 0x8000000000000001ull, 0x1234};
    for (unsigned bar = 0; bar < 3; bar++) {
        uint64_t len = echo.vp->pci.bars[bar].size;
        for (uint64_t off = 0; off < len; off += (off < 0x80 || bar != 2) ? 1 : 0x3f7) {
            for (unsigned s = 0; s < 4; s++) {
                if (off + sizes[s] > len)
                    continue;
                bar_read(bar, off, sizes[s]);
                for (unsigned j = 0; j < 4; j++)
                    bar_write(bar, off, sizes[s], junk[j]);
            }
        }
    }
    virtio_pci_reset(echo.vp);
    pci_device_config_write(&echo.vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    modern_bring_up(F_V1);
    post_echo(&tring[0], 0, "alive");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
}

static uint8_t generation(void)
{
    return (uint8_t)common_r(VIRTIO_COMMON_CFGGENERATION, 1);
}

/* A device changing its configuration: the generation moves, the new bytes
 * read back, and the driver gets a configuration interrupt - on MSI-X, the
 * config vector. */
static void test_config_change_msix(void **state)
{
    unsigned cap = echo.vp->msix.cap;
    pci_device_config_write(&echo.vp->pci, cap + 2, 2, MSIX_CONTROL_ENABLE);
    bar_write(VIRTIO_PCI_BAR_MSIX, 0, 4, 0xfee00000);
    bar_write(VIRTIO_PCI_BAR_MSIX, 8, 4, 0x51);
    bar_write(VIRTIO_PCI_BAR_MSIX, 12, 4, 0);
    modern_bring_up(F_V1);
    common_w(VIRTIO_COMMON_MSIX, 2, 0);
    uint8_t before = generation();
    assert_int_equal(before, 0);
    static const uint8_t link[2] = {0xab, 0xcd};
    virtio_config_update(&echo.vdev, 6, link, sizeof(link));
    assert_int_equal(generation(), (uint8_t)(before + 1));
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 4, 4), 0xcdab6655);
    assert_int_equal(msi_count(), 1);
    assert_int_equal(msi_data(), 0x51);
    assert_false(intx());
    /* A change without new bytes (the device wrote them itself) too. */
    virtio_config_changed(&echo.vdev);
    assert_int_equal(generation(), (uint8_t)(before + 2));
    assert_int_equal(msi_count(), 2);
    /* Config vector NO_VECTOR: the generation moves, no interrupt. */
    common_w(VIRTIO_COMMON_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    virtio_config_changed(&echo.vdev);
    assert_int_equal(generation(), (uint8_t)(before + 3));
    assert_int_equal(msi_count(), 2);
    /* The status does not change, and the queues keep working. */
    assert_int_equal(status(), 0x0f);
    post_echo(&tring[0], 0, "still");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
    /* A reset does not move the generation back (drivers compare it). */
    common_w(VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(generation(), (uint8_t)(before + 3));
}

/* Without MSI-X: ISR bit 1 and INTx, cleared by reading the ISR. */
static void test_config_change_intx(void **state)
{
    modern_bring_up(F_V1);
    assert_false(intx());
    virtio_config_changed(&echo.vdev);
    assert_int_equal(generation(), 1);
    assert_true(intx());
    assert_int_equal(intx_edges, 1);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1), VIRTIO_ISR_CONFIG);
    assert_false(intx());
    /* The legacy ISR register shows the same bit. */
    virtio_config_changed(&echo.vdev);
    assert_true(intx());
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_ISR, 1), VIRTIO_ISR_CONFIG);
    assert_false(intx());
    assert_int_equal(generation(), 2);
}

/* Driver writes of the configuration reach the device's write_config op,
 * through either interface; bytes the device keeps read-only stay. */
static void test_config_write_reaches_device(void **state)
{
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 0, 2, 0xbeef);
    assert_int_equal(echo.config_writes, 1);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET, 4), 0x4433beef);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_NOMSIX + 2, 1, 0x99);
    assert_int_equal(echo.config_writes, 2);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET, 4), 0x4499beef);
    bar_write(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 4, 4, 0);
    assert_int_equal(echo.config_writes, 3);
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_DEVICE_OFFSET + 4, 4), 0x88776655);
    /* Driver writes are not configuration changes. */
    assert_int_equal(generation(), 0);
    assert_false(intx());
}

/* The device reports an error itself: NEEDS_RESET, a configuration
 * interrupt, no more processing on any queue, until the driver resets. */
static void test_device_needs_reset(void **state)
{
    modern_bring_up(F_V1);
    virtio_device_needs_reset(&echo.vdev, "the back end failed");
    assert_int_equal(status(), 0x4f);
    assert_true(intx());
    assert_int_equal(bar_read(VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_ISR_OFFSET, 1), VIRTIO_ISR_CONFIG);
    /* A second report does not interrupt again. */
    virtio_device_needs_reset(&echo.vdev, "again");
    assert_false(intx());
    unsigned before = __atomic_load_n(&echo.processed, __ATOMIC_SEQ_CST);
    post_echo(&tring[0], 0, "dropped");
    notify_modern(0);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    assert_int_equal(__atomic_load_n(&echo.processed, __ATOMIC_SEQ_CST), before);
    assert_int_equal(vring_used_idx(&tring[0]), 0);
    /* The driver's own writes cannot clear the bit; a reset does. */
    common_w(VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_int_equal(status(), 0x4f);
    modern_bring_up(F_V1);
    assert_int_equal(status(), 0x0f);
    post_echo(&tring[0], 0, "again");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
}

/* Pause parks the queues' loops: a notification while paused is not
 * processed until resume. */
static void test_pause_resume(void **state)
{
    struct device *dev = &echo.vp->pci.dev;
    modern_bring_up(F_V1);
    post_echo(&tring[0], 0, "one");
    notify_modern(0);
    assert_true(poll_until(used_reaches, &tring[0]));
    assert_int_equal(device_pause(dev), 0);
    post_echo(&tring[0], 2, "two");
    notify_modern(0);
    post_echo(&tring[1], 0, "three");
    notify_modern(1);
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    assert_int_equal(vring_used_idx(&tring[0]), 1);
    assert_int_equal(vring_used_idx(&tring[1]), 0);
    assert_int_equal(__atomic_load_n(&echo.processed, __ATOMIC_SEQ_CST), 1);
    device_resume(dev);
    assert_true(poll_until(used_reaches, &tring[0]));
    assert_true(poll_until(used_reaches, &tring[1]));
    assert_memory_equal(mem_host(tring[0].desc + 0x800 + 0x80 + 0x20), "two", 3);
}

/* A second echo device on the same bus (slot 5), for state loads. */
static struct echo twin;

static void twin_create(void)
{
    memset(&twin, 0, sizeof(twin));
    struct virtio_device_params p = {
        .name = "echo0", /* records are matched by name */
        .device_type = DEV_TYPE,
        .num_queues = NQ,
        .queue_size = TQSIZE,
        .features = 1ull << 3,
        .config_size = CFG_SIZE,
        .ops = &echo_ops,
        .mem = &fake_mem,
    };
    assert_int_equal(virtio_device_init(&twin.vdev, &p), 0);
    twin.vp = virtio_pci_create(&twin.vdev, &(struct virtio_pci_params){
                                                .class_code = 0xff0000,
                                                .msix_sink = {.signal_msi = fake_msi},
                                            });
    assert_non_null(twin.vp);
    assert_int_equal(pci_bus_add(&pcibus, &twin.vp->pci, PCI_DEVFN(5, 0)), 0);
}

/* A legacy driver's device with a pending ISR and a moved configuration
 * generation: the twin loaded from its state reads the same registers and
 * serves the next chain of the restored ring. */
static void test_state_roundtrip_legacy(void **state)
{
    struct vring r = {.desc = 0x50000, .avail = 0x50000 + 16 * TQSIZE, .size = TQSIZE};
    r.used = (r.avail + 6 + 2 * TQSIZE + 4095) & ~4095ull;
    vring_clear(&r);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0x03);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_GUEST_FEATURES, 4, 1u << 3);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_PFN, 4, 0x50);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_STATUS, 1, 0x07);
    post_echo(&r, 0, "before");
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 0);
    assert_true(poll_until(used_reaches, &r));
    virtio_config_changed(&echo.vdev);
    virtio_config_changed(&echo.vdev);
    bar_write(VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_QUEUE_SELECT, 2, 1);
    assert_int_equal(device_pause(&echo.vp->pci.dev), 0);

    twin_create();
    assert_int_equal(device_pause(&twin.vp->pci.dev), 0);
    assert_string_equal(twin.vp->pci.dev.ops->kind, "virtio-pci-echo");
    assert_state_roundtrip(&echo.vp->pci.dev, &twin.vp->pci.dev);
    const struct pci_bar *legacy = &twin.vp->pci.bars[VIRTIO_PCI_BAR_LEGACY];
    assert_int_equal(legacy->ops->read(legacy->opaque, VIRTIO_LEGACY_STATUS, 1), 0x07);
    assert_int_equal(legacy->ops->read(legacy->opaque, VIRTIO_LEGACY_QUEUE_SELECT, 2), 1);
    assert_int_equal(legacy->ops->read(legacy->opaque, VIRTIO_LEGACY_GUEST_FEATURES, 4), 1u << 3);
    assert_int_equal(virtio_config_generation(&twin.vdev), 2);
    assert_int_equal(legacy->ops->read(legacy->opaque, VIRTIO_LEGACY_ISR, 1),
                     VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG);
    device_resume(&twin.vp->pci.dev);
    post_echo(&r, 2, "after");
    legacy->ops->write(legacy->opaque, VIRTIO_LEGACY_QUEUE_NOTIFY, 2, 0);
    assert_true(poll_until(used_reaches, &r));
    assert_int_equal(vring_used_id(&r, 1), 2);
    assert_int_equal(__atomic_load_n(&twin.processed, __ATOMIC_SEQ_CST), 1);
    assert_memory_equal(mem_host(r.desc + 0x800 + 0x80 + 0x20), "after", 5);
    device_resume(&echo.vp->pci.dev);
    virtio_pci_destroy(twin.vp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_simple_chain, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_ring_wraps, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_indirect, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, walker_setup,
                                        walker_teardown),
        cmocka_unit_test_setup_teardown(test_nested_indirect, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_bad_indirect_tables, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_loops, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_chain_lengths, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_bad_buffers, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_bad_order_and_indices, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_avail_index_jump, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_event_idx, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_push_many, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_notify_flags, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_activation_checks, walker_setup, walker_teardown),
        cmocka_unit_test_setup_teardown(test_legacy_layout, walker_setup, walker_teardown),
        cmocka_unit_test(test_iov_helpers),
        cmocka_unit_test_setup_teardown(test_ids_and_capabilities, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_feature_negotiation, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_status_machine, transport_setup, transport_teardown),
        cmocka_unit_test_setup_teardown(test_queue_setup_rules, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_queue_processing_intx, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_notify_before_driver_ok, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_bad_ring_needs_reset, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_msix_delivery, transport_setup, transport_teardown),
        cmocka_unit_test_setup_teardown(test_legacy_interface, transport_setup, transport_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_register_sweep, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_config_change_msix, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_config_change_intx, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_config_write_reaches_device, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_device_needs_reset, transport_setup,
                                        transport_teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, transport_setup, transport_teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_legacy, transport_setup,
                                        transport_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
