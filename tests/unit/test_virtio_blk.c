/* pci-virtio-block over a fake back end (synchronous, or asynchronous with
 * completions from another thread): configuration and features, read,
 * write, flush, GET_ID, discard, write-zeroes, error statuses, read-only
 * and 4 KiB disks, several queues with requests in flight, reset draining
 * in-flight requests, a hostile guest exhausting the request pool, a
 * destroy waiting for a completion's tail (the wake-up of a starved worker),
 * and a broken device leaving its neighbour alone. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
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
#include "virtio/virtio_blk.h"
#include "virtio/virtio_pci.h"

#include "support/fake_block.h"
#include "support/fake_mem.h"
#include "support/state.h"
#include "support/vp_regs.h"
#include "support/vring.h"

/* ---- Guest memory: 4 MiB of RAM at 0. ---- */

#define RAM_SIZE 0x400000ull

/* ---- Devices under test ---- */

struct tdev {
    struct fake_block fb;
    struct virtio_device *vdev;
    struct virtio_pci *vp;
    struct vring rings[2];
    uint64_t scratch; /* request headers and statuses */
    uint64_t data;    /* data buffers */
};

struct opts {
    uint64_t size;
    uint32_t block_size;
    bool read_only;
    bool async;
    unsigned queues;
    uint8_t slot;
    uint64_t base; /* where this device's rings and buffers go */
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct tdev dev;
static unsigned msi_count;

static void fake_msi(void *opaque, uint64_t addr, uint32_t data)
{
    __atomic_fetch_add(&msi_count, 1, __ATOMIC_SEQ_CST);
}

static void fake_router(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
}

static void tdev_create(struct tdev *t, const struct opts *o)
{
    memset(t, 0, sizeof(*t));
    fake_block_init(&t->fb, "disk0",
                    &(struct block_info){
                        .size = o->size,
                        .block_size = o->block_size,
                        .read_only = o->read_only,
                        .can_discard = !o->read_only,
                        .can_write_zeroes = !o->read_only,
                        .volatile_cache = true,
                        .workers = 4,
                    });
    t->fb.async = o->async;
    t->fb.drain_completes = true; /* a reset's drain finishes what is in flight */
    struct virtio_blk_params p = {
        .name = "vblk",
        .backend = &t->fb.be,
        .num_queues = o->queues,
        .mem = &fake_mem,
    };
    t->vdev = virtio_blk_create(&p);
    assert_non_null(t->vdev);
    t->vp = virtio_pci_create(t->vdev, &(struct virtio_pci_params){
                                           .machine = NULL,
                                           .msix_sink = {.signal_msi = fake_msi},
                                       });
    assert_non_null(t->vp);
    assert_int_equal(pci_bus_add(&pcibus, &t->vp->pci, PCI_DEVFN(o->slot, 0)), 0);
    pci_device_config_write(&t->vp->pci, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    for (unsigned q = 0; q < 2; q++) {
        uint64_t b = o->base + q * 0x10000;
        t->rings[q] =
            (struct vring){.desc = b, .avail = b + 0x1000, .used = b + 0x2000, .size = 16};
    }
    t->scratch = o->base + 0x20000;
    t->data = o->base + 0x40000;
}

static void tdev_destroy(struct tdev *t)
{
    if (t->vp) { /* NULL: the test destroyed the device itself */
        struct pci_device *pdev = &t->vp->pci;
        pdev->dev.ops->destroy(&pdev->dev);
    }
    fake_block_fini(&t->fb);
}

static uint64_t device_features(struct tdev *t)
{
    return vp_device_features(t->vp);
}

/* Drives the modern interface to DRIVER_OK with `features` and nq queues. */
static void bring_up(struct tdev *t, uint64_t features, unsigned nq)
{
    vp_negotiate(t->vp, features);
    for (unsigned q = 0; q < nq; q++) {
        struct vring *r = &t->rings[q];
        vring_clear(r);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_SIZE, 2, r->size);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_DESC, 8, r->desc);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_AVAIL, 8, r->avail);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_USED, 8, r->used);
        vp_common_write(t->vp, VIRTIO_COMMON_Q_ENABLE, 2, 1);
    }
    vp_common_write(t->vp, VIRTIO_COMMON_STATUS, 1, 0x0f);
    assert_int_equal(vp_common_read(t->vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
}

static void notify(struct tdev *t, unsigned q)
{
    vp_bar_write(t->vp, VIRTIO_PCI_BAR_MODERN, VIRTIO_PCI_NOTIFY_OFFSET + 4 * q, 2, q);
}

/* Request slot s: header at scratch + 0x40 s, status at + 0x20. */
static uint64_t hdr_gpa(struct tdev *t, unsigned s)
{
    return t->scratch + 0x40ull * s;
}

static uint8_t status_of(struct tdev *t, unsigned s)
{
    return *mem_host(hdr_gpa(t, s) + 0x20);
}

/* A three-part request (header, optional data, status) at descriptors
 * d, d+1, d+2 of queue q, using request slot s. */
static void post(struct tdev *t, unsigned q, uint16_t d, unsigned s, uint32_t type, uint64_t sector,
                 uint64_t data, uint32_t len, bool data_writable)
{
    struct vring *r = &t->rings[q];
    uint64_t h = hdr_gpa(t, s);
    mem_put32(h, type);
    mem_put32(h + 4, 0);
    mem_put64(h + 8, sector);
    *mem_host(h + 0x20) = 0xee;
    uint16_t next = (uint16_t)(d + 1);
    vring_set_desc_at(r->desc, d, h, 16, VIRTQ_DESC_F_NEXT, next);
    if (len) {
        vring_set_desc_at(r->desc, next, data, len,
                          VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0),
                          (uint16_t)(next + 1));
        next++;
    }
    vring_set_desc_at(r->desc, next, h + 0x20, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, d);
}

/* Posts one request, notifies, waits, returns its status. */
static uint8_t run(struct tdev *t, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                   bool data_writable)
{
    struct vring *r = &t->rings[0];
    post(t, 0, 0, 0, type, sector, data, len, data_writable);
    notify(t, 0);
    assert_true(vring_wait_used(r, r->avail_idx));
    return status_of(t, 0);
}

#define F_V1 (1ull << VIRTIO_F_VERSION_1)
#define F_INDIRECT (1ull << VIRTIO_RING_F_INDIRECT_DESC)
#define F_BLK(x) (1ull << (x))
#define STD_FEATURES                                                                               \
    (F_V1 | F_BLK(VIRTIO_BLK_F_SEG_MAX) | F_BLK(VIRTIO_BLK_F_BLK_SIZE) |                           \
     F_BLK(VIRTIO_BLK_F_FLUSH) | F_BLK(VIRTIO_BLK_F_DISCARD) | F_BLK(VIRTIO_BLK_F_WRITE_ZEROES))

static void common_setup(void)
{
    fake_mem_add(0, RAM_SIZE, false, 0);
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pcibus, &pio, &mmio);
    pci_bus_set_intx_router(&pcibus, (struct pci_intx_router){fake_router, NULL});
    msi_count = 0;
}

static void common_teardown(void)
{
    pci_bus_destroy(&pcibus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    fake_mem_free();
}

static int setup(void **state)
{
    common_setup();
    struct opts o = {.size = 1 << 20, .block_size = 512, .queues = 2, .slot = 5, .base = 0x100000};
    tdev_create(&dev, &o);
    return 0;
}

static int setup_async(void **state)
{
    common_setup();
    struct opts o = {.size = 1 << 20,
                     .block_size = 512,
                     .queues = 2,
                     .slot = 5,
                     .base = 0x100000,
                     .async = true};
    tdev_create(&dev, &o);
    return 0;
}

static int teardown(void **state)
{
    tdev_destroy(&dev);
    common_teardown();
    return 0;
}

/* ======================= Tests ======================= */

static void test_identity_config_features(void **state)
{
    struct pci_device *pdev = &dev.vp->pci;
    assert_int_equal(pci_device_config_read(pdev, PCI_VENDOR_ID, 4), 0x10011af4);
    assert_int_equal(pci_device_config_read(pdev, PCI_SUBSYSTEM_VENDOR_ID, 4), 0x00021af4);
    assert_int_equal(pci_device_config_read(pdev, PCI_REVISION_ID, 4), 0x01000000);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_CAPACITY, 8), 2048);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_SIZE_MAX, 4), 0);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_SEG_MAX, 4), VIRTIO_BLK_SEG_MAX);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_BLK_SIZE, 4), 512);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_NUM_QUEUES, 2), 2);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, 4),
                     VIRTIO_BLK_MAX_DISCARD_SECTORS);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4), 1);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_DISCARD_ALIGN, 4), 1);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_MAX_WZ_SEG, 4), 1);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CFG_WZ_MAY_UNMAP, 1), 0);
    assert_int_equal(vp_device_config_read(dev.vp, VIRTIO_BLK_CONFIG_SIZE, 4),
                     0); /* past the end */
    /* The legacy window carries the same configuration. */
    assert_int_equal(vp_bar_read(dev.vp, VIRTIO_PCI_BAR_LEGACY, VIRTIO_LEGACY_CONFIG_NOMSIX, 4),
                     2048);
    uint64_t f = device_features(&dev);
    assert_int_equal(f & STD_FEATURES, STD_FEATURES);
    assert_true(f & F_BLK(VIRTIO_BLK_F_MQ));
    assert_false(f & F_BLK(VIRTIO_BLK_F_RO));
    assert_true(f & F_INDIRECT);
    assert_true(f & (1ull << VIRTIO_RING_F_EVENT_IDX));
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_NUMQ, 2), 2);
    vp_common_write(dev.vp, VIRTIO_COMMON_Q_SELECT, 2, 0);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
}

static void test_write_then_read(void **state)
{
    bring_up(&dev, STD_FEATURES, 2);
    struct vring *r = &dev.rings[0];
    uint64_t src = dev.data, dst = dev.data + 0x10000;
    for (unsigned i = 0; i < 4096; i++)
        *mem_host(src + i) = (uint8_t)(i * 7 + 1);
    /* Write 4 KiB at sector 8, the data in two descriptors. */
    uint64_t h = hdr_gpa(&dev, 1);
    mem_put32(h, VIRTIO_BLK_T_OUT);
    mem_put64(h + 8, 8);
    vring_set_desc_at(r->desc, 4, h, 16, VIRTQ_DESC_F_NEXT, 5);
    vring_set_desc_at(r->desc, 5, src, 1024, VIRTQ_DESC_F_NEXT, 6);
    vring_set_desc_at(r->desc, 6, src + 1024, 3072, VIRTQ_DESC_F_NEXT, 7);
    vring_set_desc_at(r->desc, 7, h + 0x20, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, 4);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, 1));
    assert_int_equal(status_of(&dev, 1), VIRTIO_BLK_S_OK);
    assert_int_equal(vring_used_len(r, 0), 1);
    assert_memory_equal(dev.fb.disk + 8 * 512, mem_host(src), 4096);
    /* Read it back into another buffer. */
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 8, dst, 4096, true), VIRTIO_BLK_S_OK);
    assert_int_equal(vring_used_len(r, 1), 4097);
    assert_memory_equal(mem_host(dst), mem_host(src), 4096);
    assert_int_equal(dev.fb.reads, 1);
    assert_int_equal(dev.fb.writes, 1);
    assert_int_equal(dev.fb.last_offset, 4096);
    /* The last sector of the disk. */
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 2047, dst, 512, true), VIRTIO_BLK_S_OK);
}

static void test_any_layout(void **state)
{
    bring_up(&dev, STD_FEATURES, 1);
    struct vring *r = &dev.rings[0];
    /* OUT: header and data in one buffer. */
    uint64_t b = dev.data;
    mem_put32(b, VIRTIO_BLK_T_OUT);
    mem_put32(b + 4, 0);
    mem_put64(b + 8, 2);
    memset(mem_host(b + 16), 0xab, 512);
    vring_set_desc_at(r->desc, 0, b, 16 + 512, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(r->desc, 1, b + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, 0);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, 1));
    assert_int_equal(*mem_host(b + 0x1000), VIRTIO_BLK_S_OK);
    assert_int_equal(dev.fb.disk[2 * 512], 0xab);
    assert_int_equal(dev.fb.disk[3 * 512 - 1], 0xab);
    /* IN: header split over two buffers; data and status in one. */
    uint64_t h = dev.data + 0x2000, d = dev.data + 0x3000;
    mem_put32(h, VIRTIO_BLK_T_IN);
    mem_put32(h + 4, 0);
    mem_put64(h + 8, 2);
    vring_set_desc_at(r->desc, 2, h, 5, VIRTQ_DESC_F_NEXT, 3);
    vring_set_desc_at(r->desc, 3, h + 5, 11, VIRTQ_DESC_F_NEXT, 4);
    vring_set_desc_at(r->desc, 4, d, 513, VIRTQ_DESC_F_WRITE, 0);
    *mem_host(d + 512) = 0xee;
    vring_avail_add(r, 2);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, 2));
    assert_int_equal(*mem_host(d + 512), VIRTIO_BLK_S_OK);
    assert_int_equal(*mem_host(d), 0xab);
    assert_int_equal(*mem_host(d + 511), 0xab);
}

static void test_flush_and_get_id(void **state)
{
    bring_up(&dev, STD_FEATURES, 1);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
    assert_int_equal(dev.fb.flushes, 1);
    memset(mem_host(dev.data), 0x77, 64);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_GET_ID, 0, dev.data, 20, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(mem_host(dev.data), "disk0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    assert_int_equal(*mem_host(dev.data + 20), 0x77);
    /* A short ID buffer gets what fits. */
    memset(mem_host(dev.data), 0x77, 64);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_GET_ID, 0, dev.data, 3, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(mem_host(dev.data), "dis\x77", 4);
}

static void put_segment(uint64_t gpa, uint64_t sector, uint32_t n, uint32_t flags)
{
    mem_put64(gpa, sector);
    mem_put32(gpa + 8, n);
    mem_put32(gpa + 12, flags);
}

static void test_discard_and_write_zeroes(void **state)
{
    bring_up(&dev, STD_FEATURES, 1);
    memset(dev.fb.disk, 0xff, 1 << 20);
    uint64_t seg = dev.data;
    put_segment(seg, 4, 4, VIRTIO_BLK_WZ_F_UNMAP);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 16, false), VIRTIO_BLK_S_OK);
    assert_int_equal(dev.fb.write_zeroes, 1);
    assert_int_equal(dev.fb.last_offset, 2048);
    assert_int_equal(dev.fb.last_len, 2048);
    assert_int_equal(dev.fb.disk[2047], 0xff);
    assert_int_equal(dev.fb.disk[2048], 0);
    assert_int_equal(dev.fb.disk[4095], 0);
    assert_int_equal(dev.fb.disk[4096], 0xff);
    put_segment(seg, 100, 8, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 16, false), VIRTIO_BLK_S_OK);
    assert_int_equal(dev.fb.discards, 1);
    assert_int_equal(dev.fb.last_offset, 100 * 512);
    /* Unmap on discard, unknown flags, two segments, a bad length: UNSUPP. */
    put_segment(seg, 0, 1, VIRTIO_BLK_WZ_F_UNMAP);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 16, false), VIRTIO_BLK_S_UNSUPP);
    put_segment(seg, 0, 1, 0x2);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 16, false), VIRTIO_BLK_S_UNSUPP);
    put_segment(seg, 0, 1, 0);
    put_segment(seg + 16, 8, 1, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 32, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 12, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
    /* Out of range, or too many sectors: IOERR. */
    put_segment(seg, 2040, 16, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 16, false), VIRTIO_BLK_S_IOERR);
    put_segment(seg, ~0ull, 1, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_WRITE_ZEROES, 0, seg, 16, false), VIRTIO_BLK_S_IOERR);
    put_segment(seg, 0, VIRTIO_BLK_MAX_DISCARD_SECTORS + 1, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 16, false), VIRTIO_BLK_S_IOERR);
    /* Zero sectors: nothing to do. */
    put_segment(seg, 0, 0, 0);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_DISCARD, 0, seg, 16, false), VIRTIO_BLK_S_OK);
    assert_int_equal(dev.fb.discards, 1);
    assert_int_equal(dev.fb.write_zeroes, 1);
}

static void test_error_statuses(void **state)
{
    bring_up(&dev, STD_FEATURES, 1);
    struct vring *r = &dev.rings[0];
    uint64_t d = dev.data;
    /* Past the end, far past the end (sector * 512 overflows), straddling. */
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 2048, d, 512, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 1ull << 60, d, 512, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_OUT, 2047, d, 1024, false), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_OUT, ~0ull, d, 512, false), VIRTIO_BLK_S_IOERR);
    /* A length that is not a whole number of sectors. */
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 0, d, 100, true), VIRTIO_BLK_S_IOERR);
    /* Unknown request types. */
    assert_int_equal(run(&dev, 99, 0, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(run(&dev, 10, 0, d, 4, true), VIRTIO_BLK_S_UNSUPP); /* GET_LIFETIME */
    /* A header shorter than 16 bytes. */
    uint64_t h = hdr_gpa(&dev, 2);
    mem_put32(h, VIRTIO_BLK_T_IN);
    vring_set_desc_at(r->desc, 8, h, 8, VIRTQ_DESC_F_NEXT, 9);
    vring_set_desc_at(r->desc, 9, h + 0x20, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_avail_add(r, 8);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, r->avail_idx));
    assert_int_equal(status_of(&dev, 2), VIRTIO_BLK_S_IOERR);
    /* No writable byte for a status: returned with length 0. */
    vring_set_desc_at(r->desc, 10, h, 16, 0, 0);
    vring_avail_add(r, 10);
    notify(&dev, 0);
    assert_true(vring_wait_used(r, r->avail_idx));
    assert_int_equal(vring_used_len(r, r->avail_idx - 1), 0);
    /* The back end fails. */
    dev.fb.fail_status = -EIO;
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 0, d, 512, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_IOERR);
    dev.fb.fail_status = -EOPNOTSUPP;
    assert_int_equal(run(&dev, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
    dev.fb.fail_status = 0;
    /* None of this broke the device. */
    assert_false(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 0, d, 512, true), VIRTIO_BLK_S_OK);
}

static void test_read_only(void **state)
{
    common_setup();
    struct tdev t;
    struct opts o = {.size = 1 << 20,
                     .block_size = 512,
                     .queues = 1,
                     .slot = 6,
                     .base = 0x100000,
                     .read_only = true};
    tdev_create(&t, &o);
    uint64_t f = device_features(&t);
    assert_true(f & F_BLK(VIRTIO_BLK_F_RO));
    assert_false(f & F_BLK(VIRTIO_BLK_F_DISCARD));
    assert_false(f & F_BLK(VIRTIO_BLK_F_WRITE_ZEROES));
    assert_false(f & F_BLK(VIRTIO_BLK_F_MQ));
    assert_int_equal(vp_device_config_read(t.vp, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 4), 0);
    /* Asking for a feature that is not offered: FEATURES_OK refused. */
    vp_common_write(t.vp, VIRTIO_COMMON_STATUS, 1, 1);
    vp_common_write(t.vp, VIRTIO_COMMON_STATUS, 1, 3);
    vp_common_write(t.vp, VIRTIO_COMMON_GFSELECT, 4, 0);
    vp_common_write(t.vp, VIRTIO_COMMON_GF, 4, 1u << VIRTIO_BLK_F_DISCARD);
    vp_common_write(t.vp, VIRTIO_COMMON_GFSELECT, 4, 1);
    vp_common_write(t.vp, VIRTIO_COMMON_GF, 4, 1);
    vp_common_write(t.vp, VIRTIO_COMMON_STATUS, 1, 0x0b);
    assert_int_equal(vp_common_read(t.vp, VIRTIO_COMMON_STATUS, 1), 0x03);
    bring_up(&t, F_V1 | F_BLK(VIRTIO_BLK_F_RO), 1);
    memset(t.fb.disk, 0x42, 512);
    assert_int_equal(run(&t, VIRTIO_BLK_T_OUT, 0, t.data, 512, false), VIRTIO_BLK_S_IOERR);
    assert_int_equal(t.fb.writes, 0);
    assert_int_equal(run(&t, VIRTIO_BLK_T_IN, 0, t.data, 512, true), VIRTIO_BLK_S_OK);
    assert_int_equal(*mem_host(t.data), 0x42);
    put_segment(t.data + 0x1000, 0, 1, 0);
    assert_int_equal(run(&t, VIRTIO_BLK_T_DISCARD, 0, t.data + 0x1000, 16, false),
                     VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(run(&t, VIRTIO_BLK_T_WRITE_ZEROES, 0, t.data + 0x1000, 16, false),
                     VIRTIO_BLK_S_UNSUPP);
    tdev_destroy(&t);
    common_teardown();
}

static void test_4k_blocks(void **state)
{
    common_setup();
    struct tdev t;
    struct opts o = {.size = 1 << 20, .block_size = 4096, .queues = 1, .slot = 6, .base = 0x100000};
    tdev_create(&t, &o);
    assert_int_equal(vp_device_config_read(t.vp, VIRTIO_BLK_CFG_BLK_SIZE, 4), 4096);
    assert_int_equal(vp_device_config_read(t.vp, VIRTIO_BLK_CFG_CAPACITY, 8), 2048);
    assert_int_equal(vp_device_config_read(t.vp, VIRTIO_BLK_CFG_DISCARD_ALIGN, 4), 8);
    bring_up(&t, STD_FEATURES, 1);
    assert_int_equal(run(&t, VIRTIO_BLK_T_IN, 1, t.data, 4096, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&t, VIRTIO_BLK_T_IN, 0, t.data, 512, true), VIRTIO_BLK_S_IOERR);
    assert_int_equal(run(&t, VIRTIO_BLK_T_IN, 8, t.data, 4096, true), VIRTIO_BLK_S_OK);
    assert_int_equal(run(&t, VIRTIO_BLK_T_IN, 2040, t.data, 4096, true), VIRTIO_BLK_S_OK);
    put_segment(t.data + 0x2000, 4, 8, 0);
    assert_int_equal(run(&t, VIRTIO_BLK_T_DISCARD, 0, t.data + 0x2000, 16, false),
                     VIRTIO_BLK_S_IOERR);
    tdev_destroy(&t);
    common_teardown();
}

struct completer {
    struct fake_block *fb;
    unsigned want;
};

static void *complete_thread(void *arg)
{
    struct completer *c = arg;
    if (!fake_block_wait_pending(c->fb, c->want))
        return (void *)1;
    fake_block_complete_all(c->fb);
    return NULL;
}

static void test_async_multiqueue(void **state)
{
    bring_up(&dev, STD_FEATURES | (1ull << VIRTIO_RING_F_EVENT_IDX) | F_BLK(VIRTIO_BLK_F_MQ), 2);
    /* MSI-X with one vector per queue. */
    struct pci_device *pdev = &dev.vp->pci;
    pci_device_config_write(pdev, dev.vp->msix.cap + 2, 2, MSIX_CONTROL_ENABLE);
    for (unsigned v = 0; v < 3; v++) {
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v, 4, 0xfee00000);
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v + 8, 4, 0x30 + v);
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v + 12, 4, 0);
    }
    for (unsigned q = 0; q < 2; q++) {
        vp_common_write(dev.vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        vp_common_write(dev.vp, VIRTIO_COMMON_Q_MSIX, 2, q + 1);
    }
    /* Five reads on each queue (three descriptors each), all in flight. */
    for (unsigned q = 0; q < 2; q++) {
        for (unsigned i = 0; i < 5; i++) {
            unsigned slot = q * 8 + i;
            memset(dev.fb.disk + slot * 512, (int)slot + 1, 512);
            post(&dev, q, (uint16_t)(3 * i), slot, VIRTIO_BLK_T_IN, slot,
                 dev.data + 0x1000ull * slot, 512, true);
        }
        notify(&dev, q);
    }
    struct completer c = {&dev.fb, 10};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, complete_thread, &c), 0);
    void *ret;
    pthread_join(th, &ret);
    assert_null(ret);
    for (unsigned q = 0; q < 2; q++) {
        assert_true(vring_wait_used(&dev.rings[q], 5));
        for (unsigned i = 0; i < 5; i++) {
            unsigned slot = q * 8 + i;
            assert_int_equal(status_of(&dev, slot), VIRTIO_BLK_S_OK);
            assert_int_equal(*mem_host(dev.data + 0x1000ull * slot), slot + 1);
        }
    }
    assert_int_equal(dev.fb.max_pending, 10);
    /* Interrupts follow the used-ring update: allow them a moment. */
    for (int i = 0; i < 2000 && __atomic_load_n(&msi_count, __ATOMIC_SEQ_CST) < 2; i++) {
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    assert_true(__atomic_load_n(&msi_count, __ATOMIC_SEQ_CST) >= 2);
}

static void *complete_later(void *arg)
{
    usleep(20000);
    fake_block_complete_all(arg);
    return NULL;
}

static void test_reset_drains_in_flight(void **state)
{
    bring_up(&dev, STD_FEATURES, 1);
    for (unsigned i = 0; i < 4; i++)
        post(&dev, 0, (uint16_t)(3 * i), i, VIRTIO_BLK_T_IN, i, dev.data + 0x1000ull * i, 512,
             true);
    notify(&dev, 0);
    assert_true(fake_block_wait_pending(&dev.fb, 4));
    /* The driver resets: the write returns once nothing is in flight (the
     * back end completes the requests a little later, on its own). */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, complete_later, &dev.fb), 0);
    vp_common_write(dev.vp, VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(fake_block_pending(&dev.fb), 0);
    pthread_join(t, NULL);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0);
    /* Everything completed before the reset finished. */
    assert_int_equal(vring_used_idx(&dev.rings[0]), 4);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(status_of(&dev, i), VIRTIO_BLK_S_OK);
    /* The device reset op does the same with requests in flight. */
    bring_up(&dev, STD_FEATURES, 1);
    post(&dev, 0, 0, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
    notify(&dev, 0);
    assert_true(fake_block_wait_pending(&dev.fb, 1));
    struct pci_device *pdev = &dev.vp->pci;
    assert_int_equal(pthread_create(&t, NULL, complete_later, &dev.fb), 0);
    pdev->dev.ops->reset(&pdev->dev);
    assert_int_equal(fake_block_pending(&dev.fb), 0);
    pthread_join(t, NULL);
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0);
}

/* Queue 0 up with indirect descriptors, and descriptor 0 an indirect
 * chain reading sector 0: one descriptor per request, posted as often as
 * a test likes. */
static void bring_up_indirect_read(struct vring *r)
{
    bring_up(&dev, STD_FEATURES | F_INDIRECT, 1);
    uint64_t table = dev.scratch + 0x1000, h = hdr_gpa(&dev, 0);
    mem_put32(h, VIRTIO_BLK_T_IN);
    mem_put64(h + 8, 0);
    vring_set_desc_at(table, 0, h, 16, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(table, 1, dev.data, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    vring_set_desc_at(table, 2, h + 0x20, 1, VIRTQ_DESC_F_WRITE, 0);
    vring_set_desc_at(r->desc, 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
}

static void test_hostile_pool_exhaustion(void **state)
{
    /* Queue of 4 and indirect chains: one descriptor per request. A
     * hostile driver keeps posting the same head while it is in flight;
     * the device never has more than 4 requests out. */
    struct vring *r = &dev.rings[0];
    r->size = 4;
    bring_up_indirect_read(r);
    for (unsigned i = 0; i < 4; i++)
        vring_avail_add(r, 0);
    notify(&dev, 0);
    assert_true(fake_block_wait_pending(&dev.fb, 4));
    for (unsigned i = 0; i < 4; i++)
        vring_avail_add(r, 0);
    notify(&dev, 0);
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    assert_int_equal(fake_block_pending(&dev.fb), 4);
    fake_block_complete_n(&dev.fb, 4);
    assert_true(fake_block_wait_pending(&dev.fb, 4)); /* the next four, after a kick */
    fake_block_complete_n(&dev.fb, 4);
    assert_true(vring_wait_used(r, 8));
    assert_int_equal(dev.fb.max_pending, 4);
    assert_false(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

/* A completion held at its tail (request back in the pool, starved worker
 * not yet woken) from before the destroy starts until it has returned, or
 * for 300 ms after it started (a destroy that waits for the completion, as
 * it must, returns only after that). Waiting for the start, not a fixed
 * time, keeps the test right on a loaded machine. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, destroying, destroyed, left;
} tail = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false, false};

static void deadline_in(struct timespec *until, long ms)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += ms / 1000;
    until->tv_nsec += (ms % 1000) * 1000000L;
    if (until->tv_nsec >= 1000000000) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000;
    }
}

static void hold_completion_tail(void)
{
    struct timespec until;
    pthread_mutex_lock(&tail.lock);
    tail.entered = true;
    pthread_cond_broadcast(&tail.cond);
    deadline_in(&until, 30000); /* a bound for a broken test only */
    while (!tail.destroying)
        if (pthread_cond_timedwait(&tail.cond, &tail.lock, &until) == ETIMEDOUT)
            break;
    deadline_in(&until, 300);
    while (!tail.destroyed)
        if (pthread_cond_timedwait(&tail.cond, &tail.lock, &until) == ETIMEDOUT)
            break;
    tail.left = true;
    pthread_mutex_unlock(&tail.lock);
}

/* Completes whatever reaches the fake back end until the device is gone:
 * should the worker get to submit again before the destroy stops it, that
 * request completes too, and the destroy does not wait for it forever. */
static void *complete_now(void *arg)
{
    for (;;) {
        fake_block_complete_all(arg);
        pthread_mutex_lock(&tail.lock);
        bool done = tail.destroyed;
        pthread_mutex_unlock(&tail.lock);
        if (done)
            return NULL;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static bool worker_starved(struct tdev *t)
{
    char buf[128];
    for (int i = 0; i < 8000; i++) {
        t->vdev->ops->describe_queue(t->vdev, 0, buf, sizeof(buf));
        if (strstr(buf, "waiting for a free request"))
            return true;
        struct timespec ts = {0, 250000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* No completion may touch the device once its queues have quiesced: the
 * destroy waits for a completion until it has woken the starved worker.
 * (Were the wake-up outside the in-flight count, the held completion would
 * kick a freed device: ASan reports a heap-use-after-free.) */
static void test_destroy_waits_for_completion_tail(void **state)
{
    /* Queue size 1 and an indirect chain: one request fills the pool, the
     * next chain starves the worker, so the completion must wake it. */
    struct vring *r = &dev.rings[0];
    r->size = 1;
    bring_up_indirect_read(r);
    vring_avail_add(r, 0);
    notify(&dev, 0);
    assert_true(fake_block_wait_pending(&dev.fb, 1));
    vring_avail_add(r, 0);
    notify(&dev, 0);
    assert_true(worker_starved(&dev));

    virtio_blk_wake_hook = hold_completion_tail;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, complete_now, &dev.fb), 0);
    pthread_mutex_lock(&tail.lock);
    while (!tail.entered)
        pthread_cond_wait(&tail.cond, &tail.lock);
    tail.destroying = true;
    pthread_cond_broadcast(&tail.cond);
    pthread_mutex_unlock(&tail.lock);
    struct pci_device *pdev = &dev.vp->pci;
    pdev->dev.ops->destroy(&pdev->dev);
    dev.vp = NULL;
    pthread_mutex_lock(&tail.lock);
    bool waited = tail.left;
    tail.destroyed = true;
    pthread_cond_broadcast(&tail.cond);
    pthread_mutex_unlock(&tail.lock);
    pthread_join(t, NULL);
    virtio_blk_wake_hook = NULL;
    assert_true(waited);
}

static void test_broken_device_isolated(void **state)
{
    struct tdev other;
    struct opts o = {.size = 1 << 20, .block_size = 512, .queues = 1, .slot = 7, .base = 0x200000};
    tdev_create(&other, &o);
    bring_up(&dev, STD_FEATURES, 1);
    bring_up(&other, STD_FEATURES, 1);
    /* Device A gets a descriptor loop and a buffer in MMIO space. */
    struct vring *r = &dev.rings[0];
    uint64_t h = hdr_gpa(&dev, 0);
    mem_put32(h, VIRTIO_BLK_T_IN);
    vring_set_desc_at(r->desc, 0, h, 16, VIRTQ_DESC_F_NEXT, 1);
    vring_set_desc_at(r->desc, 1, 0xfee00000, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
    vring_set_desc_at(r->desc, 2, h + 0x20, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
    vring_avail_add(r, 0);
    notify(&dev, 0);
    for (int i = 0; i < 4000; i++) {
        if (vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET)
            break;
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    assert_true(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(vring_used_idx(r), 0);
    /* Device B carries on. */
    memset(other.fb.disk, 0x5c, 512);
    assert_int_equal(run(&other, VIRTIO_BLK_T_IN, 0, other.data, 512, true), VIRTIO_BLK_S_OK);
    assert_int_equal(*mem_host(other.data), 0x5c);
    /* And A works again after the driver resets it. */
    bring_up(&dev, STD_FEATURES, 1);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
    tdev_destroy(&other);
}

static void test_bad_parameters(void **state)
{
    struct fake_block fb;
    fake_block_init(&fb, NULL, &(struct block_info){.size = 1000, .block_size = 512});
    struct virtio_blk_params p = {.name = "bad", .backend = &fb.be, .mem = &fake_mem};
    assert_null(virtio_blk_create(&p)); /* size not a multiple of the block size */
    fb.be.info = (struct block_info){.size = 4096, .block_size = 100};
    assert_null(virtio_blk_create(&p));
    fb.be.info = (struct block_info){.size = 4096, .block_size = 512};
    p.num_queues = 17;
    assert_null(virtio_blk_create(&p));
    p.num_queues = 0;
    p.backend = NULL;
    assert_null(virtio_blk_create(&p));
    fake_block_fini(&fb);
}

/* Pause with requests in flight at a slow back end: pause returns once
 * each of them has completed into the used ring; a notification while
 * paused is not processed; resume picks it up. */
static void test_pause_waits_for_in_flight(void **state)
{
    struct device *d = &dev.vp->pci.dev;
    bring_up(&dev, STD_FEATURES, 1);
    for (unsigned i = 0; i < 4; i++)
        post(&dev, 0, (uint16_t)(3 * i), i, VIRTIO_BLK_T_IN, i, dev.data + 0x1000ull * i, 512,
             true);
    notify(&dev, 0);
    assert_true(fake_block_wait_pending(&dev.fb, 4));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, complete_later, &dev.fb), 0);
    assert_int_equal(device_pause(d), 0);
    /* Everything completed before pause returned, statuses and all. */
    assert_int_equal(fake_block_pending(&dev.fb), 0);
    assert_int_equal(vring_used_idx(&dev.rings[0]), 4);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(status_of(&dev, i), VIRTIO_BLK_S_OK);
    pthread_join(t, NULL);
    /* Paused: a new request waits. */
    post(&dev, 0, 12, 4, VIRTIO_BLK_T_IN, 4, dev.data + 0x4000, 512, true);
    notify(&dev, 0);
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    assert_int_equal(fake_block_pending(&dev.fb), 0);
    assert_int_equal(dev.fb.reads, 4);
    assert_int_equal(vring_used_idx(&dev.rings[0]), 4);
    /* Nothing guest-visible changed. */
    assert_int_equal(vp_common_read(dev.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
    device_resume(d);
    assert_true(fake_block_wait_pending(&dev.fb, 1));
    fake_block_complete_all(&dev.fb);
    assert_true(vring_wait_used(&dev.rings[0], 5));
    assert_int_equal(status_of(&dev, 4), VIRTIO_BLK_S_OK);
    /* Pause on an idle device, and again after a reset. */
    assert_int_equal(device_pause(d), 0);
    device_resume(d);
    vp_common_write(dev.vp, VIRTIO_COMMON_STATUS, 1, 0);
    assert_int_equal(device_pause(d), 0);
    device_resume(d);
}

/* dev with both queues up on MSI-X (vectors 1 and 2, config 0) and some
 * completed I/O on each, then paused; `other` a second device of the same
 * disk geometry, paused too (as a machine is before a load). */
static void active_device_and_twin(struct tdev *other)
{
    bring_up(&dev, STD_FEATURES | (1ull << VIRTIO_RING_F_EVENT_IDX) | F_BLK(VIRTIO_BLK_F_MQ), 2);
    pci_device_config_write(&dev.vp->pci, dev.vp->msix.cap + 2, 2, MSIX_CONTROL_ENABLE);
    for (unsigned v = 0; v < 3; v++) {
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v, 4, 0xfee00000);
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v + 8, 4, 0x30 + v);
        vp_bar_write(dev.vp, VIRTIO_PCI_BAR_MSIX, 16 * v + 12, 4, 0);
    }
    vp_common_write(dev.vp, VIRTIO_COMMON_MSIX, 2, 0);
    for (unsigned q = 0; q < 2; q++) {
        vp_common_write(dev.vp, VIRTIO_COMMON_Q_SELECT, 2, q);
        vp_common_write(dev.vp, VIRTIO_COMMON_Q_MSIX, 2, q + 1);
    }
    memset(dev.fb.disk, 0x3c, 4096);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_OUT, 8, dev.data, 512, false), VIRTIO_BLK_S_OK);
    assert_int_equal(run(&dev, VIRTIO_BLK_T_IN, 0, dev.data, 512, true), VIRTIO_BLK_S_OK);
    post(&dev, 1, 0, 8, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
    notify(&dev, 1);
    assert_true(vring_wait_used(&dev.rings[1], 1));
    assert_int_equal(device_pause(&dev.vp->pci.dev), 0);

    struct opts o = {.size = 1 << 20, .block_size = 512, .queues = 2, .slot = 6, .base = 0x100000};
    tdev_create(other, &o);
    assert_int_equal(device_pause(&other->vp->pci.dev), 0);
}

/* The state of a device with active queues and completed I/O loads into a
 * twin and saves back byte for byte; the twin then serves a new request
 * on the restored ring, with its interrupt on the restored vector. */
static void test_state_roundtrip_active_queues(void **state)
{
    struct tdev other;
    active_device_and_twin(&other);
    assert_string_equal(dev.vp->pci.dev.ops->kind, "virtio-pci-blk");
    assert_int_equal(dev.vp->pci.dev.ops->state_version, 1);
    assert_state_roundtrip(&dev.vp->pci.dev, &other.vp->pci.dev);
    assert_int_equal(vp_common_read(other.vp, VIRTIO_COMMON_STATUS, 1), 0x0f);
    assert_int_equal(vp_common_read(other.vp, VIRTIO_COMMON_MSIX, 2), 0);
    vp_common_write(other.vp, VIRTIO_COMMON_Q_SELECT, 2, 1);
    assert_int_equal(vp_common_read(other.vp, VIRTIO_COMMON_Q_MSIX, 2), 2);
    assert_true(msix_enabled(&other.vp->msix));

    device_resume(&other.vp->pci.dev);
    struct vring *r = &dev.rings[0]; /* the ring now driven by `other` */
    memset(other.fb.disk + 5 * 512, 0x6e, 512);
    unsigned msis = __atomic_load_n(&msi_count, __ATOMIC_SEQ_CST);
    /* Event index: the driver asks for an interrupt once used.idx passes
     * 2, which takes the restored record of the last interrupt (at 2). */
    vring_set_used_event(r, 2);
    post(&dev, 0, 6, 3, VIRTIO_BLK_T_IN, 5, dev.data + 0x3000, 512, true);
    notify(&other, 0);
    assert_true(vring_wait_used(r, 3));
    assert_int_equal(vring_used_id(r, 2), 6);
    assert_int_equal(vring_used_len(r, 2), 513);
    assert_int_equal(status_of(&dev, 3), VIRTIO_BLK_S_OK);
    assert_int_equal(*mem_host(dev.data + 0x3000), 0x6e);
    assert_int_equal(other.fb.reads, 1);
    assert_int_equal(dev.fb.reads, 1); /* the paused original did nothing */
    for (int i = 0; i < 2000 && __atomic_load_n(&msi_count, __ATOMIC_SEQ_CST) == msis; i++) {
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    assert_true(__atomic_load_n(&msi_count, __ATOMIC_SEQ_CST) > msis);
    /* The second queue carries on from its restored index too. */
    post(&dev, 1, 3, 9, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
    notify(&other, 1);
    assert_true(vring_wait_used(&dev.rings[1], 2));
    assert_int_equal(other.fb.flushes, 1);
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&other);
}

static void test_state_refusals(void **state)
{
    struct tdev other;
    active_device_and_twin(&other);
    assert_state_refusals(&dev.vp->pci.dev, &other.vp->pci.dev);

    uint16_t size = 3;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.q0.size", &size,
                               sizeof(size));
    uint16_t vector = 3; /* two queues: vectors 0..2 */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "transport.q1.vector", &vector,
                               sizeof(vector));
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "transport.config_vector",
                               &vector, sizeof(vector));
    uint64_t features = STD_FEATURES | F_BLK(VIRTIO_BLK_F_RO); /* RO is not offered */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.driver_features",
                               &features, sizeof(features));
    uint8_t status = 0x4f; /* NEEDS_RESET is no driver bit */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.status", &status,
                               sizeof(status));
    status = 0x0d; /* DRIVER_OK and FEATURES_OK without DRIVER */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.status", &status,
                               sizeof(status));
    uint16_t idx = 7; /* chains in flight that no device holds */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.q0.last_avail_idx",
                               &idx, sizeof(idx));
    uint64_t outside = 0x10000000; /* rings outside guest RAM */
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "virtio.q1.desc", &outside,
                               sizeof(outside));
    uint8_t isr = 0x80;
    assert_state_field_refused(&dev.vp->pci.dev, &other.vp->pci.dev, "transport.isr", &isr,
                               sizeof(isr));
    tdev_destroy(&other);

    /* Another disk: refused by the device's own field. */
    struct tdev bigger;
    struct opts o = {.size = 2 << 20, .block_size = 512, .queues = 2, .slot = 7, .base = 0x100000};
    tdev_create(&bigger, &o);
    struct snap_buf b = {0};
    char err[512] = "";
    state_save(&dev.vp->pci.dev, &b);
    assert_int_not_equal(state_load(&bigger.vp->pci.dev, b.data, b.len, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "blk.config"));
    snap_buf_free(&b);
    device_resume(&dev.vp->pci.dev);
    tdev_destroy(&bigger);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identity_config_features, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_then_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_any_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_and_get_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_statuses, setup, teardown),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_4k_blocks),
        cmocka_unit_test_setup_teardown(test_async_multiqueue, setup_async, teardown),
        cmocka_unit_test_setup_teardown(test_reset_drains_in_flight, setup_async, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_pool_exhaustion, setup_async, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_waits_for_completion_tail, setup_async,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_broken_device_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_waits_for_in_flight, setup_async, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_active_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
