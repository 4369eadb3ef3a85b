/* NVMe controller: registers, admin commands, I/O with PRPs and PRP lists,
 * interrupts, a hostile guest, pause and resume, saved state, and shadow
 * doorbells (Doorbell Buffer Config). Fake guest memory (a malloc'ed
 * buffer), a fake back end (synchronous, or holding requests to test reset and shutdown with I/O in
 * flight) and the BAR io_ops; no KVM. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "nvme/nvme.h"
#include "nvme/nvme_int.h"

#include "support/fake_block.h"
#include "support/fake_mem.h"
#include "support/poll.h"
#include "support/state.h"

/* ---- Fake guest memory ---- */

#define RAM_SIZE (8u * 1024 * 1024)
#define ROM_BASE 0x10000000ull
#define ROM_SIZE 0x10000ull
#define MMIO_ADDR 0xfe000000ull /* not RAM: "device registers" */
#define PAGE 4096u

static uint64_t next_page;

static uint64_t galloc(unsigned pages)
{
    uint64_t gpa = next_page;
    next_page += (uint64_t)pages * PAGE;
    assert_true(next_page <= RAM_SIZE);
    memset(mem_host(gpa), 0, (size_t)pages * PAGE);
    return gpa;
}

/* ---- Fake back end ---- */

#define DISK_BLOCKS 4096u
#define BLOCK 512u

static struct fake_block fbe;

/* Completes the held requests from another thread after a delay, while the
 * test thread sits in a register write waiting for them. */
static void *delayed_release(void *arg)
{
    usleep(50 * 1000);
    fake_block_release(&fbe);
    return NULL;
}

/* ---- Fake MSI sink and INTx router ---- */

static _Atomic unsigned msi_count;
static _Atomic uint32_t msi_last_data;
static _Atomic bool intx_level;
static _Atomic unsigned intx_edges;

static void fake_signal_msi(void *opaque, uint64_t address, uint32_t data)
{
    atomic_fetch_add(&msi_count, 1);
    atomic_store(&msi_last_data, data);
}

static void fake_set_intx(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
    if (level && !atomic_load(&intx_level))
        atomic_fetch_add(&intx_edges, 1);
    atomic_store(&intx_level, level);
}

/* ---- Fixture ---- */

static struct nvme_ctrl *ctrl;
static struct pci_device *pdev;
static struct bus pio_bus, mmio_bus;
static struct pci_bus pbus;
/* Controllers rebuilt from the same configuration (state tests). */
static struct pci_bus twin_bus;

struct tq {
    uint16_t qid;
    uint64_t sq, cq;
    uint32_t sq_size, cq_size;
    uint32_t sq_tail, cq_head;
    bool phase;
    uint16_t next_cid;
};

static struct tq aq, ioq;

static int setup_common(bool read_only, bool vwc, const char *serial)
{
    fake_mem_add(0, RAM_SIZE, false, 0);
    fake_mem_add(ROM_BASE, ROM_SIZE, true, 0);
    next_page = 0x10000;

    /* Synchronous until a test holds requests (fbe.async); drain() leaves
     * held requests alone, so resets wait for delayed_release(). */
    fake_block_init(&fbe, "disk0",
                    &(struct block_info){
                        .size = (uint64_t)DISK_BLOCKS * BLOCK,
                        .block_size = BLOCK,
                        .read_only = read_only,
                        .can_discard = true,
                        .can_write_zeroes = true,
                        .volatile_cache = vwc,
                        .workers = 1,
                    });
    atomic_store(&msi_count, 0);
    atomic_store(&intx_level, false);
    atomic_store(&intx_edges, 0);

    struct nvme_params params = {
        .name = "dev.nvme0",
        .serial = serial, /* NULL: the back end's name */
        .backend = &fbe.be,
        .mem = &fake_mem,
        .msix_sink = {.signal_msi = fake_signal_msi},
    };
    ctrl = nvme_create(&params);
    assert_non_null(ctrl);
    pdev = nvme_pci_device(ctrl);
    bus_init(&pio_bus, "pio");
    bus_init(&mmio_bus, "mmio");
    pci_bus_init(&pbus, &pio_bus, &mmio_bus);
    pci_bus_set_intx_router(&pbus, (struct pci_intx_router){fake_set_intx, NULL});
    assert_int_equal(pci_bus_add(&pbus, pdev, PCI_DEVFN(4, 0)), 0);
    pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    pci_bus_init(&twin_bus, &pio_bus, &mmio_bus);
    pci_bus_set_intx_router(&twin_bus, (struct pci_intx_router){fake_set_intx, NULL});
    return 0;
}

/* Another controller built as setup_common() built the first one. */
static struct nvme_ctrl *make_twin(unsigned slot)
{
    struct nvme_params params = {
        .name = "dev.nvme0",
        .backend = &fbe.be,
        .mem = &fake_mem,
        .msix_sink = {.signal_msi = fake_signal_msi},
    };
    struct nvme_ctrl *twin = nvme_create(&params);
    assert_non_null(twin);
    assert_int_equal(pci_bus_add(&twin_bus, nvme_pci_device(twin), PCI_DEVFN(slot, 0)), 0);
    return twin;
}

static void destroy_ctrl(struct nvme_ctrl *c)
{
    struct pci_device *p = nvme_pci_device(c);
    p->dev.ops->destroy(&p->dev);
}

static int setup(void **state)
{
    return setup_common(false, true, NULL);
}

static int setup_ro(void **state)
{
    return setup_common(true, true, NULL);
}

/* The real mem-async back end: completions on its worker threads. */
static struct block_backend *mem_be;
static int teardown(void **state);

static int setup_mem_backend(void **state)
{
    setup_common(false, true, NULL);
    pdev->dev.ops->destroy(&pdev->dev);
    pci_bus_destroy(&pbus);
    struct config_block_dev cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.name = (char *)"memdisk";
    cfg.type = CONFIG_BLOCK_MEM_ASYNC;
    cfg.mem_async.size = (uint64_t)DISK_BLOCKS * BLOCK;
    cfg.mem_async.workers = 4;
    mem_be = block_backend_open(&cfg);
    assert_non_null(mem_be);
    struct nvme_params params = {.name = "dev.nvme1", .backend = mem_be, .mem = &fake_mem};
    ctrl = nvme_create(&params);
    assert_non_null(ctrl);
    pdev = nvme_pci_device(ctrl);
    pci_bus_init(&pbus, &pio_bus, &mmio_bus);
    assert_int_equal(pci_bus_add(&pbus, pdev, PCI_DEVFN(5, 0)), 0);
    pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    return 0;
}

static int teardown_mem_backend(void **state)
{
    teardown(state); /* destroys the controller first */
    block_backend_destroy(mem_be);
    return 0;
}

static int setup_long_serial(void **state)
{
    return setup_common(false, false, "a-block-device-name-longer-than-20\x01");
}

static int teardown(void **state)
{
    fake_block_release(&fbe);
    pdev->dev.ops->destroy(&pdev->dev);
    pci_bus_destroy(&pbus);
    pci_bus_destroy(&twin_bus);
    bus_destroy(&pio_bus);
    bus_destroy(&mmio_bus);
    fake_block_fini(&fbe);
    fake_mem_free();
    return 0;
}

/* ---- Register and queue helpers ---- */

static uint64_t rd(uint64_t off, unsigned size)
{
    return pdev->bars[0].ops->read(pdev->bars[0].opaque, off, size);
}

static void wr(uint64_t off, unsigned size, uint64_t v)
{
    pdev->bars[0].ops->write(pdev->bars[0].opaque, off, size, v);
}

static void sq_doorbell(uint16_t qid, uint32_t v)
{
    wr(0x1000 + 8u * qid, 4, v);
}

static void cq_doorbell(uint16_t qid, uint32_t v)
{
    wr(0x1000 + 8u * qid + 4, 4, v);
}

struct cqe {
    uint32_t dw0, dw1;
    uint16_t sqhd, sqid, cid, status;
};

static unsigned sc_of(const struct cqe *e)
{
    return (e->status >> 1) & 0xff;
}

static unsigned sct_of(const struct cqe *e)
{
    return (e->status >> 9) & 0x7;
}

#define CC_ENABLE (NVME_CC_EN | (6u << 16) | (4u << 20))

static void enable_ctrl(uint32_t aq_entries)
{
    aq = (struct tq){0};
    aq.sq = galloc(1);
    aq.cq = galloc(1);
    aq.sq_size = aq.cq_size = aq_entries;
    aq.phase = true;
    wr(NVME_REG_AQA, 4, ((aq_entries - 1) << 16) | (aq_entries - 1));
    wr(NVME_REG_ASQ, 8, aq.sq);
    wr(NVME_REG_ACQ, 8, aq.cq);
    wr(NVME_REG_CC, 4, CC_ENABLE);
    assert_int_equal(rd(NVME_REG_CSTS, 4) & (NVME_CSTS_RDY | NVME_CSTS_CFS), NVME_CSTS_RDY);
}

static uint16_t submit(struct tq *q, struct nvme_sqe sqe)
{
    sqe.cid = q->next_cid++;
    memcpy(mem_host(q->sq + (uint64_t)q->sq_tail * 64), &sqe, sizeof(sqe));
    q->sq_tail = (q->sq_tail + 1) % q->sq_size;
    sq_doorbell(q->qid, q->sq_tail);
    return sqe.cid;
}

static bool cqe_ready(struct tq *q)
{
    uint32_t dw3 = __atomic_load_n((uint32_t *)mem_host(q->cq + (uint64_t)q->cq_head * 16 + 12),
                                   __ATOMIC_ACQUIRE);
    return ((dw3 >> 16) & 1) == (q->phase ? 1u : 0u);
}

/* Waits (up to 5 s) for the next completion and consumes it. */
static bool wait_cqe(struct tq *q, struct cqe *out, bool ring)
{
    for (int i = 0; i < 50000 && !cqe_ready(q); i++)
        usleep(100);
    if (!cqe_ready(q))
        return false;
    memcpy(out, mem_host(q->cq + (uint64_t)q->cq_head * 16), sizeof(*out));
    q->cq_head = (q->cq_head + 1) % q->cq_size;
    if (q->cq_head == 0)
        q->phase = !q->phase;
    if (ring)
        cq_doorbell(q->qid, q->cq_head);
    return true;
}

static struct cqe run(struct tq *q, struct nvme_sqe sqe)
{
    uint16_t cid = submit(q, sqe);
    struct cqe e;
    assert_true(wait_cqe(q, &e, true));
    assert_int_equal(e.cid, cid);
    assert_int_equal(e.sqid, q->qid);
    return e;
}

static struct cqe admin(struct nvme_sqe sqe)
{
    return run(&aq, sqe);
}

static void assert_ok(const struct cqe *e)
{
    assert_int_equal(sct_of(e), 0);
    assert_int_equal(sc_of(e), 0);
}

static void assert_status(const struct cqe *e, unsigned sct, unsigned sc)
{
    assert_int_equal(sct_of(e), sct);
    assert_int_equal(sc_of(e), sc);
}

static struct cqe create_cq(uint16_t qid, uint32_t size, uint64_t base, bool ien, uint16_t iv)
{
    return admin((struct nvme_sqe){.opcode = NVME_ADM_CREATE_CQ,
                                   .prp1 = base,
                                   .cdw10 = ((size - 1) << 16) | qid,
                                   .cdw11 = ((uint32_t)iv << 16) | (ien ? 2u : 0u) | 1u});
}

static struct cqe create_sq(uint16_t qid, uint32_t size, uint64_t base, uint16_t cqid)
{
    return admin((struct nvme_sqe){.opcode = NVME_ADM_CREATE_SQ,
                                   .prp1 = base,
                                   .cdw10 = ((size - 1) << 16) | qid,
                                   .cdw11 = ((uint32_t)cqid << 16) | 1u});
}

/* Enabled controller with I/O queue pair 1 (CQ ien, vector 0). */
static void bring_up(uint32_t sq_size, uint32_t cq_size)
{
    enable_ctrl(32);
    ioq = (struct tq){.qid = 1, .sq_size = sq_size, .cq_size = cq_size, .phase = true};
    ioq.sq = galloc((sq_size * 64 + PAGE - 1) / PAGE);
    ioq.cq = galloc((cq_size * 16 + PAGE - 1) / PAGE);
    struct cqe e = create_cq(1, cq_size, ioq.cq, true, 0);
    assert_ok(&e);
    e = create_sq(1, sq_size, ioq.sq, 1);
    assert_ok(&e);
}

static struct nvme_sqe rw_cmd(uint8_t op, uint64_t slba, uint32_t nlb, uint64_t prp1, uint64_t prp2)
{
    return (struct nvme_sqe){.opcode = op,
                             .nsid = 1,
                             .prp1 = prp1,
                             .prp2 = prp2,
                             .cdw10 = (uint32_t)slba,
                             .cdw11 = (uint32_t)(slba >> 32),
                             .cdw12 = nlb - 1};
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 9));
}

/* ---- Registers and admin ---- */

static void test_registers_power_on(void **state)
{
    uint64_t cap = rd(NVME_REG_CAP, 8);
    assert_int_equal(cap & 0xffff, NVME_MQES);
    assert_true(cap & NVME_CAP_CQR);
    assert_int_equal((cap >> 32) & 0xf, 0);               /* DSTRD */
    assert_true(cap & NVME_CAP_CSS_NVM);                  /* NVM command set */
    assert_int_equal((cap >> 48) & 0xff, 0);              /* MPSMIN/MAX: 4 KiB */
    assert_int_equal(rd(NVME_REG_CAP + 4, 4), cap >> 32); /* dword halves */
    assert_int_equal(rd(NVME_REG_VS, 4), 0x00010400);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    assert_int_equal(rd(NVME_REG_CC, 4), 0);
    assert_int_equal(pci_get_word(pdev, PCI_VENDOR_ID), 0x01de);
    assert_int_equal(pci_get_word(pdev, PCI_DEVICE_ID), 0x0000);
    assert_int_equal(pci_get_long(pdev, 0x08) >> 8, 0x010802);
    assert_int_equal(pci_get_byte(pdev, PCI_INTERRUPT_PIN), PCI_INTA);
    assert_int_equal(pdev->bars[0].type, PCI_BAR_MEM64);
    assert_true(pdev->bars[0].size >= 0x4000);
    assert_true(pci_find_capability(pdev, PCI_CAP_ID_MSIX) != 0);
    /* Registers written as the drivers do and read back. */
    wr(NVME_REG_AQA, 4, 0x001f001f);
    wr(NVME_REG_ASQ, 4, 0x12345000);
    wr(NVME_REG_ASQ + 4, 4, 0x1);
    assert_int_equal(rd(NVME_REG_AQA, 4), 0x001f001f);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0x112345000ull);
    wr(NVME_REG_CC, 4, (6u << 16) | (4u << 20)); /* Linux writes CC before EN */
    assert_int_equal(rd(NVME_REG_CC, 4), (6u << 16) | (4u << 20));
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
}

/* Any size at any offset reads the bytes the registers hold (zero where
 * none is); writes take aligned dwords and qwords only, a qword over two
 * registers writes both and a dword writes half of ASQ/ACQ. */
static void test_register_access_sizes(void **state)
{
    uint64_t cap = rd(NVME_REG_CAP, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(rd(NVME_REG_CAP + i, 1), (cap >> (8 * i)) & 0xff);
    assert_int_equal(rd(NVME_REG_CAP + 2, 2), (cap >> 16) & 0xffff);
    assert_int_equal(rd(NVME_REG_CAP + 7, 2), (cap >> 56) | ((NVME_VERSION & 0xff) << 8));
    assert_int_equal(rd(NVME_REG_VS + 1, 1), (NVME_VERSION >> 8) & 0xff);
    const uint32_t cc = (6u << 16) | (4u << 20), cc_other = (6u << 16) | (5u << 20);
    wr(NVME_REG_CC, 4, cc);
    assert_int_equal(rd(NVME_REG_CC + 2, 4), cc >> 16); /* then two reserved bytes */
    assert_int_equal(rd(NVME_REG_CC, 8), cc);
    /* Reserved, NSSR (absent), CMBLOC/CMBSZ (absent), the last dword. */
    assert_int_equal(rd(0x18, 4), 0);
    assert_int_equal(rd(NVME_REG_NSSR, 4), 0);
    assert_int_equal(rd(0x38, 8), 0);
    assert_int_equal(rd(NVME_REG_DBS - 4, 4), 0);
    assert_int_equal(rd(NVME_REG_DBS - 4, 8), 0);

    /* ASQ: a qword write, then the upper and lower dword halves. */
    wr(NVME_REG_ASQ, 8, 0x1122334455667fffull);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0x1122334455667000ull);
    wr(NVME_REG_ASQ + 4, 4, 0xaabbccdd);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0xaabbccdd55667000ull);
    assert_int_equal(rd(NVME_REG_ASQ + 4, 4), 0xaabbccdd);
    assert_int_equal(rd(NVME_REG_ASQ + 5, 1), 0xcc);
    wr(NVME_REG_ASQ, 4, 0x12345678);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0xaabbccdd12345000ull);
    assert_int_equal(rd(NVME_REG_ACQ, 8), 0);
    wr(NVME_REG_ACQ + 4, 4, 0x7);
    assert_int_equal(rd(NVME_REG_ACQ, 8), 0x700000000ull);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0xaabbccdd12345000ull);
    /* Other sizes and misaligned writes are dropped. */
    wr(NVME_REG_ASQ, 2, 0);
    wr(NVME_REG_ASQ + 2, 4, 0);
    wr(NVME_REG_ASQ + 4, 8, 0);
    wr(NVME_REG_ASQ + 7, 1, 0);
    assert_int_equal(rd(NVME_REG_ASQ, 8), 0xaabbccdd12345000ull);

    /* Qwords over two dword registers reach both, in order. */
    wr(NVME_REG_NSSR, 8, (0x000f0007ull << 32) | 0x4e564d65); /* NSSR ignored, AQA */
    assert_int_equal(rd(NVME_REG_AQA, 4), 0x000f0007);
    assert_int_equal(rd(NVME_REG_NSSR, 4), 0);
    wr(NVME_REG_VS, 8, 1ull << 32); /* VS read-only, INTMS sets bit 0 */
    assert_int_equal(rd(NVME_REG_INTMS, 4), 1);
    assert_int_equal(rd(NVME_REG_INTMC, 4), 1);
    assert_int_equal(rd(NVME_REG_VS, 4), NVME_VERSION);
    wr(NVME_REG_INTMC, 8, (uint64_t)cc_other << 32 | 1); /* INTMC, then CC */
    assert_int_equal(rd(NVME_REG_INTMS, 4), 0);
    assert_int_equal(rd(NVME_REG_CC, 4), cc_other);
    wr(0x18, 8, 0xffffffffffffffffull); /* reserved, then CSTS (read-only) */
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    /* CAP and VS are read-only. */
    wr(NVME_REG_CAP, 8, 0);
    wr(NVME_REG_CAP + 4, 4, 0);
    assert_int_equal(rd(NVME_REG_CAP, 8), cap);
}

static void test_enable_and_identify(void **state)
{
    enable_ctrl(32);
    uint64_t buf = galloc(1);
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = buf, .cdw10 = 1});
    assert_ok(&e);
    uint8_t *id = mem_host(buf);
    assert_int_equal(id[0] | (id[1] << 8), 0x01de);
    assert_memory_equal(id + 4, "disk0               ", 20);
    assert_int_equal(id[77], 8); /* MDTS: 1 MiB */
    assert_int_equal(id[512], 0x66);
    assert_int_equal(id[513], 0x44);
    uint32_t nn;
    memcpy(&nn, id + 516, 4);
    assert_int_equal(nn, 1);
    assert_true(id[525] & 1); /* VWC */
    uint16_t oncs = (uint16_t)(id[520] | (id[521] << 8));
    assert_true(oncs & (1u << 2)); /* DSM */
    assert_true(oncs & (1u << 3)); /* Write Zeroes */
    uint32_t ver;
    memcpy(&ver, id + 80, 4);
    assert_int_equal(ver, 0x00010400);

    /* Namespace: size and LBA format. */
    memset(mem_host(buf), 0xee, PAGE);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .nsid = 1, .prp1 = buf, .cdw10 = 0});
    assert_ok(&e);
    uint64_t nsze;
    memcpy(&nsze, id, 8);
    assert_int_equal(nsze, DISK_BLOCKS);
    assert_int_equal(id[25], 0);      /* NLBAF */
    assert_int_equal(id[26], 0);      /* FLBAS */
    assert_int_equal(id[128 + 2], 9); /* LBADS: 512 bytes */
    assert_int_equal(id[4095], 0);    /* zero padded */

    /* Namespace 2 does not exist. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .nsid = 2, .prp1 = buf, .cdw10 = 0});
    assert_status(&e, 0, NVME_SC_INVALID_NS);
    /* Active namespace list: [1]. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .nsid = 0, .prp1 = buf, .cdw10 = 2});
    assert_ok(&e);
    uint32_t list[2];
    memcpy(list, id, sizeof(list));
    assert_int_equal(list[0], 1);
    assert_int_equal(list[1], 0);
    /* Descriptor list: an NGUID. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .nsid = 1, .prp1 = buf, .cdw10 = 3});
    assert_ok(&e);
    assert_int_equal(id[0], 2);
    assert_int_equal(id[1], 16);
    /* Identify into a buffer split over two pages (PRP1 offset + PRP2). */
    uint64_t two = galloc(2);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_IDENTIFY, .prp1 = two + 0x800, .prp2 = two + PAGE, .cdw10 = 1});
    assert_ok(&e);
    assert_memory_equal((uint8_t *)mem_host(two + 0x800) + 4, "disk0", 5);
    /* Unknown CNS and unknown admin opcode. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = buf, .cdw10 = 0x55});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    e = admin((struct nvme_sqe){.opcode = 0x7f});
    assert_status(&e, 0, NVME_SC_INVALID_OPCODE);
    /* Identify into ROM or MMIO: data transfer error. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = ROM_BASE, .cdw10 = 1});
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = MMIO_ADDR, .cdw10 = 1});
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
}

static void test_features_and_logs(void **state)
{
    enable_ctrl(32);
    /* Number of Queues: granted up to 16 each. */
    struct cqe e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = (3u << 16) | 3});
    assert_ok(&e);
    assert_int_equal(e.dw0, (3u << 16) | 3);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = (99u << 16) | 99});
    assert_ok(&e);
    assert_int_equal(e.dw0, (15u << 16) | 15);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES});
    assert_ok(&e);
    assert_int_equal(e.dw0, (15u << 16) | 15);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0xffffffffu});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    /* Volatile write cache, interrupt coalescing, temperature threshold. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_VOLATILE_WC});
    assert_ok(&e);
    assert_int_equal(e.dw0, 1);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_IRQ_COALESCE, .cdw11 = 0x0a05});
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_IRQ_COALESCE});
    assert_int_equal(e.dw0, 0x0a05);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_TEMP_THRESH});
    assert_ok(&e);
    assert_int_equal(e.dw0 & 0xffff, 343);
    /* Host Memory Buffer (0x0d) and Keep Alive (0x0f): not supported. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_SET_FEATURES, .cdw10 = 0x0d, .cdw11 = 1});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = 0x0f});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    /* Saving is not supported. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_SET_FEATURES,
                                .cdw10 = NVME_FEAT_ARBITRATION | (1u << 31)});
    assert_status(&e, 1, NVME_SC_FEATURE_NOT_SAVEABLE);

    /* Logs: SMART (512 bytes), error information, firmware slot, unknown. */
    uint64_t buf = galloc(1);
    memset(mem_host(buf), 0xee, PAGE);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .nsid = 0xffffffff,
                                .prp1 = buf,
                                .cdw10 = ((512u / 4 - 1) << 16) | NVME_LOG_SMART});
    assert_ok(&e);
    uint8_t *p = mem_host(buf);
    assert_int_equal(p[3], 100);    /* available spare */
    assert_int_equal(p[512], 0xee); /* exactly 512 bytes written */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .prp1 = buf,
                                .cdw10 = ((64u / 4 - 1) << 16) | NVME_LOG_ERROR});
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .prp1 = buf,
                                .cdw10 = ((512u / 4 - 1) << 16) | NVME_LOG_FW_SLOT});
    assert_ok(&e);
    assert_int_equal(p[0], 1);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_GET_LOG_PAGE, .prp1 = buf, .cdw10 = ((16u - 1) << 16) | 0x70});
    assert_status(&e, 1, NVME_SC_INVALID_LOG_PAGE);
    /* Abort: reported as not aborted. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_ABORT, .cdw10 = (7u << 16) | 0});
    assert_ok(&e);
    assert_int_equal(e.dw0 & 1, 1);
}

/* ---- I/O round trips ---- */

static void test_io_prp1_only(void **state)
{
    bring_up(16, 16);
    uint64_t wbuf = galloc(1), rbuf = galloc(1);
    fill_pattern(mem_host(wbuf), 1024, 1);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 10, 2, wbuf, 0));
    assert_ok(&e);
    assert_memory_equal(fbe.disk + 10 * BLOCK, mem_host(wbuf), 1024);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 10, 2, rbuf, 0));
    assert_ok(&e);
    assert_memory_equal(mem_host(rbuf), mem_host(wbuf), 1024);
    assert_int_equal(e.sqhd, ioq.sq_tail);
    /* PRP1 with an offset inside the page. */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 10, 1, rbuf + 0x600, 0));
    assert_ok(&e);
    assert_memory_equal((uint8_t *)mem_host(rbuf) + 0x600, mem_host(wbuf), 512);
}

static void test_io_prp1_prp2(void **state)
{
    bring_up(16, 16);
    uint64_t data = galloc(4);
    /* 4 KiB starting mid-page: PRP1 covers 2 KiB, PRP2 (another page) 2 KiB. */
    uint64_t p1 = data + 0x800, p2 = data + 3 * PAGE;
    fill_pattern(mem_host(p1), 0x800, 2);
    fill_pattern(mem_host(p2), 0x800, 3);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 100, 8, p1, p2));
    assert_ok(&e);
    assert_memory_equal(fbe.disk + 100 * BLOCK, mem_host(p1), 0x800);
    assert_memory_equal(fbe.disk + 100 * BLOCK + 0x800, mem_host(p2), 0x800);
    assert_int_equal(fbe.last_iovcnt, 2);
    uint64_t r = galloc(2);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 100, 8, r + 0x800, r + PAGE));
    assert_ok(&e);
    assert_memory_equal(mem_host(r + 0x800), fbe.disk + 100 * BLOCK, 0x1000);
    assert_int_equal(fbe.last_iovcnt, 1); /* contiguous pages merged */
}

static void test_io_prp_list(void **state)
{
    bring_up(16, 16);
    /* 64 KiB over 16 scattered pages (every other page): PRP1 + list of 15. */
    uint64_t pages = galloc(32), list = galloc(1);
    uint64_t *l = (void *)mem_host(list);
    for (unsigned i = 1; i < 16; i++)
        l[i - 1] = pages + 2ull * i * PAGE;
    for (unsigned i = 0; i < 16; i++)
        fill_pattern(mem_host(pages + 2ull * i * PAGE), PAGE, 10 + i);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 256, 128, pages, list));
    assert_ok(&e);
    assert_int_equal(fbe.last_iovcnt, 16);
    for (unsigned i = 0; i < 16; i++)
        assert_memory_equal(fbe.disk + 256 * BLOCK + i * PAGE, mem_host(pages + 2ull * i * PAGE),
                            PAGE);

    /* Read back through contiguous pages: one iovec. */
    uint64_t r = galloc(16), rlist = galloc(1);
    uint64_t *rl = (void *)mem_host(rlist);
    for (unsigned i = 1; i < 16; i++)
        rl[i - 1] = r + (uint64_t)i * PAGE;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 256, 128, r, rlist));
    assert_ok(&e);
    assert_int_equal(fbe.last_iovcnt, 1);
    assert_memory_equal(mem_host(r), fbe.disk + 256 * BLOCK, 16 * PAGE);
}

static void test_io_prp_list_chained(void **state)
{
    bring_up(16, 16);
    /* The list starts 4 entries before the end of its page: 3 data entries,
     * then a pointer to a second list page holding the other 12. */
    uint64_t pages = galloc(16), lists = galloc(2);
    uint64_t first = lists + PAGE - 4 * 8, second = lists + PAGE;
    uint64_t *l1 = (void *)mem_host(first), *l2 = (void *)mem_host(second);
    for (unsigned i = 0; i < 3; i++)
        l1[i] = pages + (uint64_t)(i + 1) * PAGE;
    l1[3] = second;
    for (unsigned i = 0; i < 12; i++)
        l2[i] = pages + (uint64_t)(i + 4) * PAGE;
    fill_pattern(mem_host(pages), 16 * PAGE, 5);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 128, pages, first));
    assert_ok(&e);
    assert_memory_equal(fbe.disk, mem_host(pages), 16 * PAGE);

    /* A full 1 MiB (MDTS) transfer: PRP1 + 255 list entries in one page. */
    uint64_t big = galloc(256), blist = galloc(1);
    uint64_t *bl = (void *)mem_host(blist);
    for (unsigned i = 1; i < 256; i++)
        bl[i - 1] = big + (uint64_t)i * PAGE;
    fill_pattern(mem_host(big), 256 * PAGE, 9);
    e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 1024, 2048, big, blist));
    assert_ok(&e);
    assert_memory_equal(fbe.disk + 1024 * BLOCK, mem_host(big), 256 * PAGE);
}

static void test_io_flush_fua_dsm_write_zeroes(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(2);
    fill_pattern(mem_host(buf), 2 * PAGE, 4);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 16, buf, buf + PAGE));
    assert_ok(&e);
    assert_int_equal(fbe.flushes, 0);

    e = run(&ioq, (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 1});
    assert_ok(&e);
    assert_int_equal(fbe.flushes, 1);
    e = run(&ioq, (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 0xffffffff});
    assert_ok(&e);
    assert_int_equal(fbe.flushes, 2);

    /* FUA write: a flush follows before the completion. */
    struct nvme_sqe fua = rw_cmd(NVME_CMD_WRITE, 40, 1, buf, 0);
    fua.cdw12 |= NVME_RW_FUA;
    e = run(&ioq, fua);
    assert_ok(&e);
    assert_int_equal(fbe.flushes, 3);

    /* Dataset Management, deallocate two ranges. */
    uint64_t ranges = galloc(1);
    uint32_t *r = (void *)mem_host(ranges);
    r[0] = 0, r[1] = 2, r[2] = 1, r[3] = 0;  /* LBA 1-2 */
    r[4] = 0, r[5] = 3, r[6] = 10, r[7] = 0; /* LBA 10-12 */
    e = run(
        &ioq,
        (struct nvme_sqe){
            .opcode = NVME_CMD_DSM, .nsid = 1, .prp1 = ranges, .cdw10 = 1, .cdw11 = NVME_DSM_AD});
    assert_ok(&e);
    assert_int_equal(fbe.discards, 2);
    static const uint8_t zero[3 * BLOCK];
    assert_memory_equal(fbe.disk + 1 * BLOCK, zero, 2 * BLOCK);
    assert_memory_equal(fbe.disk + 10 * BLOCK, zero, 3 * BLOCK);
    assert_memory_equal(fbe.disk, mem_host(buf), BLOCK); /* LBA 0 untouched */
    /* A range beyond the namespace fails the whole command, nothing done. */
    r[8] = 0, r[9] = 8, r[10] = DISK_BLOCKS - 4, r[11] = 0;
    e = run(
        &ioq,
        (struct nvme_sqe){
            .opcode = NVME_CMD_DSM, .nsid = 1, .prp1 = ranges, .cdw10 = 2, .cdw11 = NVME_DSM_AD});
    assert_status(&e, 0, NVME_SC_LBA_RANGE);
    assert_int_equal(fbe.discards, 2);

    /* Write Zeroes. */
    e = run(&ioq,
            (struct nvme_sqe){
                .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = 4, .cdw12 = 2}); /* LBA 4-6 */
    assert_ok(&e);
    assert_int_equal(fbe.write_zeroes, 1);
    assert_memory_equal(fbe.disk + 4 * BLOCK, zero, 3 * BLOCK);
    assert_memory_equal(fbe.disk + 3 * BLOCK, (uint8_t *)mem_host(buf) + 3 * BLOCK, BLOCK);

    /* Unknown I/O opcode; Compare is not supported. */
    e = run(&ioq, (struct nvme_sqe){.opcode = 0x05, .nsid = 1});
    assert_status(&e, 0, NVME_SC_INVALID_OPCODE);

    /* SMART counters saw the I/O. */
    uint64_t log = galloc(1);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .prp1 = log,
                                .cdw10 = ((512u / 4 - 1) << 16) | NVME_LOG_SMART});
    assert_ok(&e);
    uint64_t writes;
    memcpy(&writes, (uint8_t *)mem_host(log) + 80, 8);
    assert_int_equal(writes, 2);
}

static void test_read_only_namespace(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(1), id = galloc(1);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 1, buf, 0));
    assert_status(&e, 0, NVME_SC_NS_WRITE_PROTECTED);
    assert_true(e.status & (NVME_DNR << 1));
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .nsid = 1, .prp1 = id, .cdw10 = 0});
    assert_ok(&e);
    assert_int_equal(((uint8_t *)mem_host(id))[99] & 1, 1); /* NSATTR: write protected */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = id, .cdw10 = 1});
    uint16_t oncs =
        (uint16_t)(((uint8_t *)mem_host(id))[520] | (((uint8_t *)mem_host(id))[521] << 8));
    assert_int_equal(oncs & 0xc, 0);
}

static void test_serial_truncated_no_cache(void **state)
{
    enable_ctrl(8);
    uint64_t id = galloc(1);
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = id, .cdw10 = 1});
    assert_ok(&e);
    assert_memory_equal((uint8_t *)mem_host(id) + 4, "a-block-device-name-", 20);
    assert_int_equal(((uint8_t *)mem_host(id))[525], 0); /* no volatile write cache */
    /* Without a cache, Flush completes without reaching the back end and the
     * feature is absent. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_VOLATILE_WC});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    ioq = (struct tq){.qid = 1, .sq_size = 4, .cq_size = 4, .phase = true};
    ioq.sq = galloc(1);
    ioq.cq = galloc(1);
    e = create_cq(1, 4, ioq.cq, false, 0); /* polled */
    assert_ok(&e);
    e = create_sq(1, 4, ioq.sq, 1);
    assert_ok(&e);
    struct nvme_sqe fua = rw_cmd(NVME_CMD_WRITE, 0, 1, id, 0);
    fua.cdw12 |= NVME_RW_FUA;
    e = run(&ioq, fua);
    assert_ok(&e);
    e = run(&ioq, (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 1});
    assert_ok(&e);
    assert_int_equal(fbe.flushes, 0);
    assert_false(intx_level); /* polled queue: no interrupt */
}

/* ---- Interrupts ---- */

static void test_intx_and_masking(void **state)
{
    bring_up(16, 16);
    /* The admin CQ raised INTx during bring-up and the head doorbells
     * lowered it. */
    assert_false(intx_level);
    unsigned edges = atomic_load(&intx_edges);
    uint64_t buf = galloc(1);
    submit(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    struct cqe e;
    assert_true(wait_cqe(&ioq, &e, false));
    nvme_wait_idle(ctrl); /* the entry is visible just before the interrupt */
    assert_true(intx_level);
    assert_int_equal(atomic_load(&intx_edges), edges + 1);
    wr(NVME_REG_INTMS, 4, 1); /* mask vector 0 */
    assert_false(intx_level);
    wr(NVME_REG_INTMC, 4, 1);
    assert_true(intx_level);
    cq_doorbell(1, ioq.cq_head); /* consumed: deasserts */
    assert_false(intx_level);
}

static void msix_program(unsigned vector, uint32_t data)
{
    const struct io_ops *ops = pdev->bars[NVME_MSIX_BAR].ops;
    void *op = pdev->bars[NVME_MSIX_BAR].opaque;
    uint64_t entry = NVME_MSIX_TABLE_OFFSET + vector * 16u;
    ops->write(op, entry + 0, 4, 0xfee00000);
    ops->write(op, entry + 4, 4, 0);
    ops->write(op, entry + 8, 4, data);
    ops->write(op, entry + 12, 4, 0); /* unmask */
}

static void test_msix(void **state)
{
    unsigned cap = pci_find_capability(pdev, PCI_CAP_ID_MSIX);
    msix_program(0, 0x40);
    msix_program(3, 0x43);
    pci_device_config_write(pdev, cap + MSIX_CAP_CONTROL, 2, MSIX_CONTROL_ENABLE);
    enable_ctrl(32);
    uint64_t id = galloc(1);
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = id, .cdw10 = 1});
    assert_ok(&e);
    assert_true(atomic_load(&msi_count) >= 1);
    assert_int_equal(atomic_load(&msi_last_data), 0x40);
    assert_false(intx_level);

    ioq = (struct tq){.qid = 1, .sq_size = 8, .cq_size = 8, .phase = true};
    ioq.sq = galloc(1);
    ioq.cq = galloc(1);
    /* Vector beyond the table: refused. */
    e = create_cq(1, 8, ioq.cq, true, NVME_MSIX_VECTORS);
    assert_status(&e, 1, NVME_SC_INVALID_VECTOR);
    e = create_cq(1, 8, ioq.cq, true, 3);
    assert_ok(&e);
    e = create_sq(1, 8, ioq.sq, 1);
    assert_ok(&e);
    unsigned before = atomic_load(&msi_count);
    uint64_t buf = galloc(1);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
    nvme_wait_idle(ctrl);
    assert_int_equal(atomic_load(&msi_count), before + 1);
    assert_int_equal(atomic_load(&msi_last_data), 0x43);
    assert_false(intx_level);
}

/* ---- Hostile guest ---- */

static void test_bad_prps(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(4), list = galloc(1);
    /* Data outside RAM, in MMIO, in ROM (for a read the device writes). */
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, 0x7ff00000, 0));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 1, MMIO_ADDR, 0));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, ROM_BASE, 0));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 1, ROM_BASE, 0)); /* reading ROM is fine */
    assert_ok(&e);
    /* A page straddling the end of RAM. */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 8, RAM_SIZE - 0x800, RAM_SIZE));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    /* PRP1 not dword aligned; PRP2 data pointer not page aligned. */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf + 2, 0));
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 8, buf + 0x800, buf + PAGE + 8));
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    /* PRP list pointer misaligned, list outside RAM, list entry misaligned,
     * entry outside RAM, chained pointer misaligned. */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 24, buf, list + 4));
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 24, buf, MMIO_ADDR));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    uint64_t *l = (void *)mem_host(list);
    l[0] = buf + PAGE;
    l[1] = buf + 2 * PAGE + 0x10;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 24, buf, list));
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    l[1] = 0x40000000;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 24, buf, list));
    assert_status(&e, 0, NVME_SC_DATA_XFER_ERROR);
    uint64_t *tail = (void *)mem_host(list + PAGE - 16);
    tail[0] = buf + PAGE;
    tail[1] = buf + 8; /* chain pointer must be page aligned */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 32, buf, list + PAGE - 16));
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    /* A chain that points at itself ends when the length runs out. */
    tail[1] = list;
    l[0] = buf + PAGE;
    for (unsigned i = 0; i < 511; i++)
        l[i] = buf + PAGE;
    l[511] = list;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 2048, buf, list + PAGE - 16));
    assert_ok(&e);
    assert_int_equal(fbe.reads, 1);
}

static void test_bad_lba_and_size(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(1);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_READ, DISK_BLOCKS, 1, buf, 0));
    assert_status(&e, 0, NVME_SC_LBA_RANGE);
    e = run(&ioq, rw_cmd(NVME_CMD_WRITE, DISK_BLOCKS - 1, 2, buf, 0));
    assert_status(&e, 0, NVME_SC_LBA_RANGE);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, ~0ull, 1, buf, 0));
    assert_status(&e, 0, NVME_SC_LBA_RANGE);
    /* 2049 blocks of 512 bytes: more than MDTS (1 MiB). */
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 2049, buf, 0));
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    struct nvme_sqe bad_ns = rw_cmd(NVME_CMD_READ, 0, 1, buf, 0);
    bad_ns.nsid = 2;
    e = run(&ioq, bad_ns);
    assert_status(&e, 0, NVME_SC_INVALID_NS);
    struct nvme_sqe fused = rw_cmd(NVME_CMD_READ, 0, 1, buf, 0);
    fused.flags = 0x01;
    e = run(&ioq, fused);
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    struct nvme_sqe sgl = rw_cmd(NVME_CMD_READ, 0, 1, buf, 0);
    sgl.flags = 0x40;
    e = run(&ioq, sgl);
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    e = run(&ioq,
            (struct nvme_sqe){
                .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = DISK_BLOCKS - 1, .cdw12 = 1});
    assert_status(&e, 0, NVME_SC_LBA_RANGE);
    /* Back-end errors map to media errors. */
    fbe.fail_status = -EIO;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_status(&e, NVME_SCT_MEDIA, NVME_SC_READ_ERROR);
    e = run(&ioq, rw_cmd(NVME_CMD_WRITE, 0, 1, buf, 0));
    assert_status(&e, NVME_SCT_MEDIA, NVME_SC_WRITE_FAULT);
    fbe.fail_status = 0;
}

static void test_bad_doorbells(void **state)
{
    /* Disabled controller: doorbells are ignored. */
    sq_doorbell(0, 1);
    sq_doorbell(1, 1);
    cq_doorbell(5, 1);
    wr(0x1000 + 8 * 100, 4, 3);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);

    bring_up(16, 16);
    /* An AER to receive the error events. */
    uint16_t aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    assert_false(cqe_ready(&aq));

    /* Doorbell of queue 100 (nonexistent, beyond the maximum). */
    wr(0x1000 + 8 * 100, 4, 3);
    struct cqe e;
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, aer_cid);
    assert_ok(&e);
    assert_int_equal(e.dw0 & 0x7, NVME_AER_TYPE_ERROR);
    assert_int_equal((e.dw0 >> 8) & 0xff, NVME_AER_INFO_INVALID_DB_REGISTER);
    assert_int_equal((e.dw0 >> 16) & 0xff, NVME_LOG_ERROR);
    /* Further errors stay masked until the error log is read; no AER is
     * outstanding anyway. */
    sq_doorbell(7, 1);
    cq_doorbell(9, 0);
    assert_false(cqe_ready(&aq));
    uint64_t log = galloc(1);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .prp1 = log,
                                .cdw10 = ((64u / 4 - 1) << 16) | NVME_LOG_ERROR});
    assert_ok(&e);

    /* SQ tail at the queue size: invalid value. */
    aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    sq_doorbell(1, 16);
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, aer_cid);
    assert_int_equal((e.dw0 >> 8) & 0xff, NVME_AER_INFO_INVALID_DB_VALUE);
    /* CQ head past the posted entries, beyond the size: ignored. */
    cq_doorbell(1, 5);
    cq_doorbell(1, 1000);
    /* Odd sizes on doorbells and registers are dropped. */
    wr(0x1000 + 8, 2, 1);
    wr(0x1000 + 8, 8, 1);
    wr(NVME_REG_CC, 2, 0);
    wr(NVME_REG_CC + 1, 4, 0);
    assert_int_equal(rd(NVME_REG_CSTS, 4) & NVME_CSTS_RDY, NVME_CSTS_RDY);
    /* The queue still works. */
    uint64_t buf = galloc(1);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
    /* AER limit: four outstanding, the fifth is refused. */
    for (unsigned i = 0; i < NVME_AERL + 1; i++)
        submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    assert_status(&e, 1, NVME_SC_AER_LIMIT);
}

/* Outstanding AERs must not use up a small admin CQ: with the minimum of
 * two entries, an AER followed by another command still completes both. */
static void test_aer_on_two_entry_admin_cq(void **state)
{
    enable_ctrl(2);
    uint16_t aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    struct cqe e =
        admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = galloc(1), .cdw10 = 1});
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = galloc(1), .cdw10 = 1});
    assert_ok(&e);
    /* An event raised while the CQ has no free slot waits for the head
     * doorbell: the AER completes after the host consumed the entry. */
    uint16_t cid =
        submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = galloc(1), .cdw10 = 1});
    assert_true(wait_cqe(&aq, &e, false));
    assert_int_equal(e.cid, cid);
    wr(0x1000 + 8 * 100, 4, 3); /* bad doorbell: an error event */
    assert_false(cqe_ready(&aq));
    cq_doorbell(0, aq.cq_head);
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, aer_cid);
    assert_int_equal(e.dw0 & 0x7, NVME_AER_TYPE_ERROR);
}

static void test_bad_queue_commands(void **state)
{
    enable_ctrl(32);
    uint64_t q = galloc(16);
    struct cqe e;
    /* SQ for a missing CQ. */
    e = create_sq(1, 16, q, 5);
    assert_status(&e, 1, NVME_SC_CQ_INVALID);
    e = create_sq(1, 16, q, 0);
    assert_status(&e, 1, NVME_SC_CQ_INVALID);
    /* Queue sizes 1 and above MQES + 1. */
    e = create_cq(1, 1, q, true, 0);
    assert_status(&e, 1, NVME_SC_QUEUE_SIZE);
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_CREATE_CQ, .prp1 = q, .cdw10 = (0xffffu << 16) | 1, .cdw11 = 3});
    assert_status(&e, 1, NVME_SC_QUEUE_SIZE);
    /* Queue ids 0, beyond the granted count, 100. */
    e = create_cq(0, 16, q, true, 0);
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    e = create_cq(100, 16, q, true, 0);
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    /* Not physically contiguous, misaligned, outside RAM. */
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_CREATE_CQ, .prp1 = q, .cdw10 = (15u << 16) | 1, .cdw11 = 2});
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    e = create_cq(1, 16, q + 0x100, true, 0);
    assert_status(&e, 0, NVME_SC_PRP_OFFSET_INVALID);
    e = create_cq(1, 16, MMIO_ADDR, true, 0);
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    e = create_cq(1, 512, RAM_SIZE - PAGE, true, 0); /* runs off the end */
    assert_status(&e, 0, NVME_SC_INVALID_FIELD);
    /* A non-zero vector needs MSI-X. */
    e = create_cq(1, 16, q, true, 2);
    assert_status(&e, 1, NVME_SC_INVALID_VECTOR);

    e = create_cq(1, 16, q, true, 0);
    assert_ok(&e);
    e = create_cq(1, 16, q, true, 0); /* exists */
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    e = create_sq(1, 16, q + 4 * PAGE, 1);
    assert_ok(&e);
    /* Number of Queues after creation: command sequence error. */
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0});
    assert_status(&e, 0, NVME_SC_CMD_SEQ_ERROR);
    /* Delete the CQ while the SQ uses it; delete what does not exist. */
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1});
    assert_status(&e, 1, NVME_SC_INVALID_QUEUE_DELETION);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 0});
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 9});
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1});
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1});
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1});
    assert_status(&e, 1, NVME_SC_QID_INVALID);
    /* With queues gone, Number of Queues may be set again and limits ids. */
    e = admin((struct nvme_sqe){
        .opcode = NVME_ADM_SET_FEATURES, .cdw10 = NVME_FEAT_NUM_QUEUES, .cdw11 = 0});
    assert_ok(&e);
    assert_int_equal(e.dw0, 0);
    e = create_cq(2, 16, q, true, 0);
    assert_status(&e, 1, NVME_SC_QID_INVALID);
}

static void test_enable_refused(void **state)
{
    /* Admin queue outside RAM: CFS, not ready; a reset clears it. */
    wr(NVME_REG_AQA, 4, 0x000f000f);
    wr(NVME_REG_ASQ, 8, MMIO_ADDR);
    wr(NVME_REG_ACQ, 8, 0x20000);
    wr(NVME_REG_CC, 4, CC_ENABLE);
    assert_int_equal(rd(NVME_REG_CSTS, 4) & (NVME_CSTS_RDY | NVME_CSTS_CFS), NVME_CSTS_CFS);
    sq_doorbell(0, 1); /* ignored */
    wr(NVME_REG_CC, 4, 0);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    /* Unsupported page size. */
    wr(NVME_REG_ASQ, 8, 0x30000);
    wr(NVME_REG_CC, 4, CC_ENABLE | (1u << 7));
    assert_int_equal(rd(NVME_REG_CSTS, 4) & NVME_CSTS_CFS, NVME_CSTS_CFS);
    wr(NVME_REG_CC, 4, 0);
    enable_ctrl(2); /* the smallest admin queues work */
    uint64_t buf = galloc(1);
    for (int i = 0; i < 5; i++) {
        struct cqe e =
            admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = buf, .cdw10 = 1});
        assert_ok(&e);
    }
}

static void test_cq_full_holds_completions(void **state)
{
    /* CQ of 2 entries holds one completion; SQ of 8. */
    bring_up(8, 2);
    uint64_t buf = galloc(1);
    uint16_t cids[4];
    for (int i = 0; i < 4; i++)
        cids[i] = submit(&ioq, rw_cmd(NVME_CMD_READ, (uint64_t)i, 1, buf, 0));
    nvme_wait_idle(ctrl);
    struct cqe e;
    for (int i = 0; i < 4; i++) {
        /* Exactly one entry is posted until the host frees its slot. */
        assert_true(wait_cqe(&ioq, &e, false));
        assert_int_equal(e.cid, cids[i]);
        nvme_wait_idle(ctrl);
        assert_false(cqe_ready(&ioq));
        cq_doorbell(1, ioq.cq_head);
    }
    nvme_wait_idle(ctrl);
    assert_false(cqe_ready(&ioq));
    assert_int_equal(fbe.reads, 4);
}

static void test_reset_with_io_in_flight(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(8);
    fbe.async = true;
    for (int i = 0; i < 4; i++)
        submit(&ioq, rw_cmd(NVME_CMD_READ, (uint64_t)i, 1, buf + (uint64_t)i * PAGE, 0));
    for (int i = 0; i < 5000 && fake_block_pending(&fbe) < 4; i++)
        usleep(1000);
    assert_int_equal(fake_block_pending(&fbe), 4);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, delayed_release, NULL), 0);
    wr(NVME_REG_CC, 4, 0); /* returns once the back end has finished */
    pthread_join(t, NULL);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    /* Completions of the reset queues were dropped, not written. */
    assert_false(cqe_ready(&ioq));
    /* The controller comes back. */
    next_page += PAGE;
    bring_up(16, 16);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
}

static void test_shutdown_with_io_in_flight(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(1);
    fill_pattern(mem_host(buf), PAGE, 8);
    fbe.async = true;
    uint16_t cid = submit(&ioq, rw_cmd(NVME_CMD_WRITE, 8, 8, buf, 0));
    for (int i = 0; i < 5000 && fake_block_pending(&fbe) < 1; i++)
        usleep(1000);
    assert_int_equal(fake_block_pending(&fbe), 1);
    unsigned flushes = fbe.flushes;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, delayed_release, NULL), 0);
    wr(NVME_REG_CC, 4, CC_ENABLE | (1u << 14)); /* SHN = normal */
    pthread_join(t, NULL);
    assert_int_equal(rd(NVME_REG_CSTS, 4) & NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_COMPLETE);
    assert_int_equal(fbe.flushes, flushes + 1);
    /* The in-flight write completed and was posted. */
    struct cqe e;
    assert_true(wait_cqe(&ioq, &e, true));
    assert_int_equal(e.cid, cid);
    assert_ok(&e);
    assert_memory_equal(fbe.disk + 8 * BLOCK, mem_host(buf), PAGE);
    /* Then the host disables; enable works again. */
    wr(NVME_REG_CC, 4, 0);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    enable_ctrl(8);
}

static void test_delete_sq_with_io_in_flight(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(1);
    fbe.async = true;
    uint16_t cid = submit(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    for (int i = 0; i < 5000 && fake_block_pending(&fbe) < 1; i++)
        usleep(1000);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, delayed_release, NULL), 0);
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1});
    pthread_join(t, NULL);
    assert_ok(&e);
    /* The command finished (and was posted) before the deletion completed. */
    assert_true(wait_cqe(&ioq, &e, true));
    assert_int_equal(e.cid, cid);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1});
    assert_ok(&e);
}

static void *release_held_thread(void *arg)
{
    fake_block_release(&fbe);
    return NULL;
}

/* A completion that wakes the worker its SQ starved is in flight until the
 * wake-up is done: were the count dropped first, a teardown waiting for the
 * SQ to go idle could free the controller under the kick. The test holds
 * work_lock (which the kick takes), so the first completion stops in its
 * kick; the SQ must not look idler meanwhile. */
static void test_completion_kick_counts_as_in_flight(void **state)
{
    /* An SQ of 2 has a pool of 2: the third command starves the worker. */
    bring_up(2, 16);
    uint64_t buf = galloc(3);
    struct nvme_sq *sq = &ctrl->sqs[1];
    fbe.async = true;
    for (unsigned i = 0; i < 3; i++) {
        submit(&ioq, rw_cmd(NVME_CMD_READ, i, 1, buf + (uint64_t)i * PAGE, 0));
        for (int t = 0; t < 5000 && fake_block_pending(&fbe) < (i < 2 ? i + 1 : 2); t++)
            usleep(1000);
    }
    bool starved = false;
    for (int t = 0; t < 5000 && !starved; t++) {
        pthread_mutex_lock(&sq->lock);
        starved = sq->starved;
        pthread_mutex_unlock(&sq->lock);
        if (!starved)
            usleep(1000);
    }
    assert_true(starved);
    assert_int_equal(fake_block_pending(&fbe), 2);

    pthread_mutex_lock(&ctrl->work_lock);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, release_held_thread, NULL), 0);
    for (int i = 0; i < 5000 && !cqe_ready(&ioq); i++)
        usleep(1000);
    bool posted = cqe_ready(&ioq);
    /* The first completion is posted; watch its release for 100 ms. */
    unsigned low = 2;
    for (int i = 0; i < 1000; i++) {
        if (pthread_mutex_trylock(&sq->lock) == 0) {
            if (sq->inflight < low)
                low = sq->inflight;
            pthread_mutex_unlock(&sq->lock);
        }
        usleep(100);
    }
    pthread_mutex_unlock(&ctrl->work_lock);
    pthread_join(t, NULL);
    assert_true(posted);
    assert_int_equal(low, 2);
    /* All three complete once the worker runs again. */
    struct cqe e;
    for (int i = 0; i < 3; i++) {
        assert_true(wait_cqe(&ioq, &e, true));
        assert_ok(&e);
    }
}

static void test_bus_master_off(void **state)
{
    bring_up(16, 16);
    pci_device_config_write(pdev, PCI_COMMAND, 2, 0);
    uint64_t buf = galloc(1);
    submit(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    nvme_wait_idle(ctrl);
    assert_false(cqe_ready(&ioq));
    assert_int_equal(fbe.reads, 0);
    /* Back on: the next doorbell processes both. */
    pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    submit(&ioq, rw_cmd(NVME_CMD_READ, 1, 1, buf, 0));
    struct cqe e;
    assert_true(wait_cqe(&ioq, &e, true));
    assert_true(wait_cqe(&ioq, &e, true));
    assert_int_equal(fbe.reads, 2);
}

static void test_device_reset(void **state)
{
    bring_up(16, 16);
    pdev->dev.ops->reset(&pdev->dev);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    assert_int_equal(rd(NVME_REG_CC, 4), 0);
    assert_int_equal(rd(NVME_REG_AQA, 4), 0);
    pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    next_page += PAGE;
    bring_up(16, 16);
}

/* Random garbage in the SQ: every command completes with some status, the
 * controller survives, memory stays in bounds (ASan). */
static void test_fuzz_commands(void **state)
{
    bring_up(64, 64);
    uint64_t buf = galloc(4);
    uint64_t list = galloc(1);
    srand(12345);
    uint64_t *l = (void *)mem_host(list);
    for (unsigned i = 0; i < 512; i++)
        l[i] = (rand() & 1) ? buf + (uint64_t)(rand() % 4) * PAGE : ((uint64_t)rand() << 12);
    for (int n = 0; n < 3000; n++) {
        struct nvme_sqe s;
        uint8_t *b = (uint8_t *)&s;
        for (size_t i = 0; i < sizeof(s); i++)
            b[i] = (uint8_t)rand();
        static const uint8_t ops[] = {0x00, 0x01, 0x02, 0x08, 0x09, 0x05, 0x7f};
        s.opcode = ops[rand() % 7];
        if (rand() % 2)
            s.flags = 0;
        if (rand() % 2)
            s.nsid = 1;
        if (rand() % 2)
            s.cdw12 &= 0x0fff;
        if (rand() % 2) {
            s.cdw10 %= DISK_BLOCKS;
            s.cdw11 = 0;
        }
        switch (rand() % 4) {
        case 0:
            s.prp1 = buf + (rand() % 4) * PAGE;
            break;
        case 1:
            s.prp1 = buf + (uint64_t)(rand() % 0x4000) * 4;
            break;
        default:
            break;
        }
        switch (rand() % 3) {
        case 0:
            s.prp2 = list + (uint64_t)(rand() % 512) * 8;
            break;
        case 1:
            s.prp2 = buf + PAGE;
            break;
        default:
            break;
        }
        struct cqe e = run(&ioq, s);
        (void)e;
    }
    uint64_t r = galloc(1);
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, r, 0));
    assert_ok(&e);
}

static void test_real_backend_two_queues(void **state)
{
    bring_up(64, 64);
    struct tq q2 = {.qid = 2, .sq_size = 64, .cq_size = 64, .phase = true};
    q2.sq = galloc(1);
    q2.cq = galloc(1);
    struct cqe e = create_cq(2, 64, q2.cq, false, 0);
    assert_ok(&e);
    e = create_sq(2, 64, q2.sq, 2);
    assert_ok(&e);
    /* 48 writes of 8 KiB on each queue at once, then read everything back. */
    uint64_t data = galloc(96 * 2);
    fill_pattern(mem_host(data), 96 * 2 * PAGE, 21);
    struct tq *qs[2] = {&ioq, &q2};
    for (unsigned i = 0; i < 96; i++) {
        struct tq *q = qs[i % 2];
        uint64_t buf = data + (uint64_t)i * 2 * PAGE;
        submit(q, rw_cmd(NVME_CMD_WRITE, (uint64_t)i * 16, 16, buf, buf + PAGE));
    }
    for (unsigned k = 0; k < 2; k++)
        for (unsigned i = 0; i < 48; i++) {
            assert_true(wait_cqe(qs[k], &e, true));
            assert_ok(&e);
        }
    uint64_t back = galloc(2);
    for (unsigned i = 0; i < 96; i += 7) {
        e = run(&ioq, rw_cmd(NVME_CMD_READ, (uint64_t)i * 16, 16, back, back + PAGE));
        assert_ok(&e);
        assert_memory_equal(mem_host(back), mem_host(data + (uint64_t)i * 2 * PAGE), 2 * PAGE);
    }
    /* Flush, deallocate (reads zeroes on mem-async), write zeroes. */
    e = run(&q2, (struct nvme_sqe){.opcode = NVME_CMD_FLUSH, .nsid = 1});
    assert_ok(&e);
    uint64_t ranges = galloc(1);
    uint32_t *r = (void *)mem_host(ranges);
    r[1] = 16, r[2] = 0;  /* LBA 0-15 */
    r[5] = 16, r[6] = 32; /* LBA 32-47 */
    e = run(
        &q2,
        (struct nvme_sqe){
            .opcode = NVME_CMD_DSM, .nsid = 1, .prp1 = ranges, .cdw10 = 1, .cdw11 = NVME_DSM_AD});
    assert_ok(&e);
    e = run(&q2, (struct nvme_sqe){
                     .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = 16, .cdw12 = 15});
    assert_ok(&e);
    static const uint8_t zero[3 * 16 * BLOCK];
    uint64_t big = galloc(6), blist = galloc(1);
    uint64_t *bl = (void *)mem_host(blist);
    for (unsigned i = 1; i < 6; i++)
        bl[i - 1] = big + (uint64_t)i * PAGE;
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 48, big, blist));
    assert_ok(&e);
    assert_memory_equal(mem_host(big), zero, sizeof(zero));

    /* Reset with writes in flight: no hang, no stray completion. */
    for (unsigned i = 0; i < 40; i++) {
        uint64_t buf = data + (uint64_t)(i % 96) * 2 * PAGE;
        submit(&q2, rw_cmd(NVME_CMD_WRITE, (uint64_t)i * 16, 16, buf, buf + PAGE));
    }
    wr(NVME_REG_CC, 4, 0);
    assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
    nvme_wait_idle(ctrl);
}

/* ---- Pause, resume and state ---- */

static _Atomic bool pause_returned;

static void *pause_thread(void *arg)
{
    assert_int_equal(device_pause(&pdev->dev), 0);
    atomic_store(&pause_returned, true);
    return NULL;
}

/* Pause waits for every request at the back end, follow-ups included, and
 * posts its completion; while paused no doorbell is acted on; resume runs
 * what was rung meanwhile. */
static void test_pause_waits_for_io_in_flight(void **state)
{
    bring_up(16, 16);
    uint64_t buf = galloc(4);
    fill_pattern(mem_host(buf), PAGE, 6);
    fbe.async = true;
    /* The FUA write first: the back end completes newest first, so the
     * reads finish before it and its flush comes last. */
    struct nvme_sqe fua = rw_cmd(NVME_CMD_WRITE, 64, 8, buf, 0);
    fua.cdw12 |= NVME_RW_FUA;
    uint16_t write_cid = submit(&ioq, fua);
    assert_true(fake_block_wait_pending(&fbe, 1));
    for (unsigned i = 0; i < 3; i++)
        submit(&ioq, rw_cmd(NVME_CMD_READ, i, 1, buf + (uint64_t)(i + 1) * PAGE, 0));
    assert_true(fake_block_wait_pending(&fbe, 4));
    unsigned flushes = fbe.flushes;

    atomic_store(&pause_returned, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pause_thread, NULL), 0);
    usleep(100 * 1000);
    assert_false(atomic_load(&pause_returned));
    fake_block_complete_n(&fbe, 3); /* the reads */
    usleep(50 * 1000);
    assert_false(atomic_load(&pause_returned));
    fake_block_complete_n(&fbe, 1); /* the write: its flush follows */
    assert_true(fake_block_wait_pending(&fbe, 1));
    usleep(50 * 1000);
    assert_false(atomic_load(&pause_returned));
    fake_block_complete_n(&fbe, 1);
    pthread_join(t, NULL);
    assert_true(atomic_load(&pause_returned));
    assert_int_equal(fbe.flushes, flushes + 1);

    /* All four were posted before pause returned (CQ head not rung: that
     * is a doorbell too). */
    struct cqe e;
    for (unsigned i = 0; i < 4; i++) {
        assert_true(cqe_ready(&ioq));
        assert_true(wait_cqe(&ioq, &e, false));
        assert_ok(&e);
        if (i == 3)
            assert_int_equal(e.cid, write_cid);
    }
    assert_false(cqe_ready(&ioq));
    assert_memory_equal(fbe.disk + 64 * BLOCK, mem_host(buf), PAGE);

    /* Paused: an I/O and an admin doorbell are not acted on. */
    unsigned reads = fbe.reads;
    uint16_t io_cid = submit(&ioq, rw_cmd(NVME_CMD_READ, 64, 8, buf + PAGE, 0));
    uint16_t admin_cid =
        submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = galloc(1), .cdw10 = 1});
    usleep(100 * 1000);
    assert_int_equal(fake_block_pending(&fbe), 0);
    assert_int_equal(fbe.reads, reads);
    assert_false(cqe_ready(&ioq));
    assert_false(cqe_ready(&aq));
    /* A second pause is a no-op; resume runs both. */
    assert_int_equal(device_pause(&pdev->dev), 0);
    device_resume(&pdev->dev);
    cq_doorbell(1, ioq.cq_head);
    assert_true(fake_block_wait_pending(&fbe, 1));
    fake_block_release(&fbe);
    assert_true(wait_cqe(&ioq, &e, true));
    assert_int_equal(e.cid, io_cid);
    assert_ok(&e);
    assert_memory_equal(mem_host(buf + PAGE), mem_host(buf), PAGE);
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, admin_cid);
    assert_ok(&e);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
}

static bool pause_done(void *arg)
{
    return atomic_load(&pause_returned);
}

/* With every request of an SQ at the back end and more entries waiting,
 * pause takes none of them as the in-flight ones complete; resume does. */
static void test_pause_takes_no_new_command(void **state)
{
    bring_up(256, 256);
    uint64_t buf = galloc(1);
    fbe.async = true;
    const unsigned extra = 2, total = NVME_SQ_MAX_INFLIGHT + extra;
    for (unsigned i = 0; i < total; i++)
        submit(&ioq, rw_cmd(NVME_CMD_READ, i, 1, buf, 0));
    assert_true(fake_block_wait_pending(&fbe, NVME_SQ_MAX_INFLIGHT));
    usleep(20 * 1000);
    assert_int_equal(fake_block_pending(&fbe), NVME_SQ_MAX_INFLIGHT); /* the pool is used up */

    atomic_store(&pause_returned, false);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pause_thread, NULL), 0);
    usleep(50 * 1000);
    assert_false(atomic_load(&pause_returned));
    fake_block_complete_n(&fbe, NVME_SQ_MAX_INFLIGHT);
    bool returned = poll_until(pause_done, NULL);
    if (!returned)
        fake_block_release(&fbe); /* let the pause end before failing */
    pthread_join(t, NULL);
    assert_true(returned);
    assert_int_equal(fake_block_pending(&fbe), 0);
    assert_int_equal(fbe.reads, NVME_SQ_MAX_INFLIGHT);
    struct cqe e;
    for (unsigned i = 0; i < NVME_SQ_MAX_INFLIGHT; i++) {
        assert_true(wait_cqe(&ioq, &e, false));
        assert_ok(&e);
    }
    assert_false(cqe_ready(&ioq));

    device_resume(&pdev->dev);
    cq_doorbell(1, ioq.cq_head);
    assert_true(fake_block_wait_pending(&fbe, extra));
    fake_block_release(&fbe);
    for (unsigned i = 0; i < extra; i++) {
        assert_true(wait_cqe(&ioq, &e, true));
        assert_ok(&e);
    }
    assert_int_equal(fbe.reads, total);
}

static struct cqe set_feature(uint8_t fid, uint32_t value)
{
    return admin((struct nvme_sqe){.opcode = NVME_ADM_SET_FEATURES, .cdw10 = fid, .cdw11 = value});
}

static uint32_t get_feature(uint8_t fid)
{
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_FEATURES, .cdw10 = fid});
    assert_ok(&e);
    return e.dw0;
}

/* Saves a running controller: refused, the error says why. */
static void assert_save_refused_while_running(void)
{
    struct snap_buf b = {0};
    char err[512] = "";
    assert_int_equal(device_save_state(&pdev->dev, &b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "dev.nvme0"));
    assert_non_null(strstr(err, "not paused"));
    snap_buf_free(&b);
}

/* Queues (one pair on MSI-X vector 3, one polled), features, I/O done, an
 * outstanding AER and an SQ tail rung while paused: the state is the same
 * after a load, and the rebuilt controller carries on where the first
 * stopped. */
static void test_state_roundtrip_and_restored_io(void **state)
{
    unsigned cap = pci_find_capability(pdev, PCI_CAP_ID_MSIX);
    msix_program(0, 0x40);
    msix_program(3, 0x43);
    pci_device_config_write(pdev, cap + MSIX_CAP_CONTROL, 2, MSIX_CONTROL_ENABLE);
    enable_ctrl(32);
    struct cqe e = set_feature(NVME_FEAT_NUM_QUEUES, (2u << 16) | 2);
    assert_ok(&e);
    e = set_feature(NVME_FEAT_IRQ_COALESCE, 0x0a05);
    assert_ok(&e);
    e = set_feature(NVME_FEAT_ARBITRATION, 0x03020107);
    assert_ok(&e);
    e = set_feature(NVME_FEAT_VOLATILE_WC, 0);
    assert_ok(&e);
    ioq = (struct tq){.qid = 1, .sq_size = 16, .cq_size = 16, .phase = true};
    ioq.sq = galloc(1);
    ioq.cq = galloc(1);
    e = create_cq(1, 16, ioq.cq, true, 3);
    assert_ok(&e);
    e = create_sq(1, 16, ioq.sq, 1);
    assert_ok(&e);
    struct tq q2 = {.qid = 2, .sq_size = 8, .cq_size = 8, .phase = true};
    q2.sq = galloc(1);
    q2.cq = galloc(1);
    e = create_cq(2, 8, q2.cq, false, 0);
    assert_ok(&e);
    e = create_sq(2, 8, q2.sq, 2);
    assert_ok(&e);

    /* I/O on both, enough to wrap the small queue's phase. */
    uint64_t data = galloc(2), back = galloc(2);
    fill_pattern(mem_host(data), 2 * PAGE, 17);
    for (unsigned i = 0; i < 14; i++) {
        e = run(i % 2 ? &q2 : &ioq,
                rw_cmd(NVME_CMD_WRITE, (uint64_t)i * 16, 16, data, data + PAGE));
        assert_ok(&e);
    }
    e = run(&q2, rw_cmd(NVME_CMD_READ, 16, 16, back, back + PAGE));
    assert_ok(&e);
    assert_memory_equal(mem_host(back), mem_host(data), 2 * PAGE);
    assert_int_equal(q2.cq_head, 0); /* wrapped: the phase flipped */
    assert_false(q2.phase);
    uint16_t aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    assert_save_refused_while_running();

    /* Paused, a read is rung on queue 1 and not fetched. */
    assert_int_equal(device_pause(&pdev->dev), 0);
    memset(mem_host(back), 0, 2 * PAGE);
    uint16_t rung_cid = submit(&ioq, rw_cmd(NVME_CMD_READ, 32, 16, back, back + PAGE));
    usleep(20 * 1000);
    assert_false(cqe_ready(&ioq));

    struct nvme_ctrl *twin = make_twin(4);
    assert_state_roundtrip(&pdev->dev, &nvme_pci_device(twin)->dev);

    /* The first controller goes; the rebuilt one takes over. */
    destroy_ctrl(ctrl);
    ctrl = twin;
    pdev = nvme_pci_device(twin);
    assert_int_equal(rd(NVME_REG_CSTS, 4) & (NVME_CSTS_RDY | NVME_CSTS_CFS), NVME_CSTS_RDY);
    assert_int_equal(rd(NVME_REG_AQA, 4), (31u << 16) | 31);
    unsigned msis = atomic_load(&msi_count);
    device_resume(&pdev->dev);
    /* The read rung before the save runs on the restored queue. */
    assert_true(wait_cqe(&ioq, &e, true));
    assert_int_equal(e.cid, rung_cid);
    assert_ok(&e);
    assert_memory_equal(mem_host(back), mem_host(data), 2 * PAGE);
    nvme_wait_idle(ctrl);
    assert_int_equal(atomic_load(&msi_count), msis + 1);
    assert_int_equal(atomic_load(&msi_last_data), 0x43);
    /* New commands on both restored queues, phases and ids continuing. */
    fill_pattern(mem_host(data), 2 * PAGE, 18);
    e = run(&q2, rw_cmd(NVME_CMD_WRITE, 200, 16, data, data + PAGE));
    assert_ok(&e);
    assert_memory_equal(fbe.disk + 200 * BLOCK, mem_host(data), 2 * PAGE);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 200, 16, back, back + PAGE));
    assert_ok(&e);
    assert_memory_equal(mem_host(back), mem_host(data), 2 * PAGE);
    /* Features as set; the write cache stayed off (writes are flushed). */
    assert_int_equal(get_feature(NVME_FEAT_NUM_QUEUES), (2u << 16) | 2);
    assert_int_equal(get_feature(NVME_FEAT_IRQ_COALESCE), 0x0a05);
    assert_int_equal(get_feature(NVME_FEAT_ARBITRATION), 0x03020107);
    assert_int_equal(get_feature(NVME_FEAT_VOLATILE_WC), 0);
    /* SMART: the write count came along (14 + 1). */
    uint64_t log = galloc(1);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                .prp1 = log,
                                .cdw10 = ((512u / 4 - 1) << 16) | NVME_LOG_SMART});
    assert_ok(&e);
    uint64_t writes;
    memcpy(&writes, (uint8_t *)mem_host(log) + 80, 8);
    assert_int_equal(writes, 15);
    /* The outstanding AER completes on the restored controller. */
    wr(0x1000 + 8 * 100, 4, 3);
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, aer_cid);
    assert_int_equal(e.dw0 & 0x7, NVME_AER_TYPE_ERROR);
}

static void test_state_refusals(void **state)
{
    enable_ctrl(32);
    struct cqe e = set_feature(NVME_FEAT_NUM_QUEUES, (1u << 16) | 1); /* two of each */
    assert_ok(&e);
    ioq = (struct tq){.qid = 1, .sq_size = 16, .cq_size = 16, .phase = true};
    ioq.sq = galloc(1);
    ioq.cq = galloc(1);
    e = create_cq(1, 16, ioq.cq, true, 0);
    assert_ok(&e);
    e = create_sq(1, 16, ioq.sq, 1);
    assert_ok(&e);
    uint64_t buf = galloc(1);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
    wr(0x1000 + 8 * 100, 4, 3); /* an error event, queued: no AER to take it */
    assert_save_refused_while_running();
    assert_int_equal(device_pause(&pdev->dev), 0);

    struct nvme_ctrl *twin = make_twin(7);
    assert_state_roundtrip(&pdev->dev, &nvme_pci_device(twin)->dev);
    destroy_ctrl(twin);
    struct nvme_ctrl *victim = make_twin(5);
    assert_state_refusals(&pdev->dev, &nvme_pci_device(victim)->dev);
    destroy_ctrl(victim);

    victim = make_twin(6);
    struct device *from = &pdev->dev, *to = &nvme_pci_device(victim)->dev;
    uint32_t v32 = NVME_MQES + 2; /* beyond CAP.MQES */
    assert_state_field_refused(from, to, "sq1.size", &v32, sizeof(v32));
    v32 = 1;
    assert_state_field_refused(from, to, "cq1.size", &v32, sizeof(v32));
    v32 = 16; /* the queue has 16 entries: 0 to 15 */
    assert_state_field_refused(from, to, "sq1.head", &v32, sizeof(v32));
    assert_state_field_refused(from, to, "cq1.tail", &v32, sizeof(v32));
    uint16_t v16 = NVME_MSIX_VECTORS;
    assert_state_field_refused(from, to, "cq1.iv", &v16, sizeof(v16));
    v16 = 2; /* CQ 2 was never created */
    assert_state_field_refused(from, to, "sq1.cqid", &v16, sizeof(v16));
    v32 = 0x3u | (1u << 3); /* CQ 3: beyond the two granted */
    assert_state_field_refused(from, to, "cqs", &v32, sizeof(v32));
    v16 = 17;
    assert_state_field_refused(from, to, "nsqa", &v16, sizeof(v16));
    uint64_t v64 = 0x1234;
    assert_state_field_refused(from, to, "cq1.base", &v64, sizeof(v64));
    v64 = DISK_BLOCKS * 2ull;
    assert_state_field_refused(from, to, "nsze", &v64, sizeof(v64));
    v32 = 7;
    assert_state_field_refused(from, to, "aer_count", &v32, sizeof(v32));
    v32 = NVME_CC_EN | (1u << 31);
    assert_state_field_refused(from, to, "cc", &v32, sizeof(v32));
    uint8_t v8 = 9; /* not an event type */
    assert_state_field_refused(from, to, "event0.type", &v8, sizeof(v8));
    destroy_ctrl(victim);

    /* The saved controller carries on after resume; its queued event goes
     * to the next AER. */
    device_resume(&pdev->dev);
    e = run(&ioq, rw_cmd(NVME_CMD_READ, 1, 1, buf, 0));
    assert_ok(&e);
    e = admin((struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    assert_int_equal(e.dw0 & 0x7, NVME_AER_TYPE_ERROR);
    assert_int_equal((e.dw0 >> 8) & 0xff, NVME_AER_INFO_INVALID_DB_REGISTER);
}

/* ---- Shadow doorbells (Doorbell Buffer Config) ---- */

/* A driver's view of the shadow doorbell and EventIdx buffers, as Linux
 * uses them (nvme_dbbuf_update_and_check_event): the new value goes to the
 * shadow entry, then a full fence, then the MMIO doorbell is written only
 * if the value passed the device's EventIdx. Counts the MMIO doorbells. */
struct dbbuf_drv {
    bool on;
    uint64_t dbs, eis;
    unsigned mmio;
};

static uint32_t *dbbuf_entry(uint64_t base, uint16_t qid, bool is_cq)
{
    return (uint32_t *)(void *)mem_host(base + (2u * qid + (is_cq ? 1u : 0u)) * 4u);
}

static void drv_doorbell(struct dbbuf_drv *d, uint16_t qid, bool is_cq, uint16_t value)
{
    if (d->on) {
        uint32_t *db = dbbuf_entry(d->dbs, qid, is_cq);
        uint16_t old = (uint16_t)__atomic_load_n(db, __ATOMIC_RELAXED);
        __atomic_store_n(db, value, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        uint16_t event =
            (uint16_t)__atomic_load_n(dbbuf_entry(d->eis, qid, is_cq), __ATOMIC_ACQUIRE);
        if ((uint16_t)(value - event - 1) >= (uint16_t)(value - old))
            return; /* the device is still fetching: it reads the shadow */
    }
    d->mmio++;
    wr(0x1000 + 8u * qid + (is_cq ? 4u : 0u), 4, value);
}

static struct cqe dbbuf_config(uint64_t dbs, uint64_t eis)
{
    return admin((struct nvme_sqe){.opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = dbs, .prp2 = eis});
}

/* A command written at q's tail, its doorbell through the driver. */
static uint16_t drv_submit(struct dbbuf_drv *d, struct tq *q, struct nvme_sqe sqe)
{
    sqe.cid = q->next_cid++;
    memcpy(mem_host(q->sq + (uint64_t)q->sq_tail * 64), &sqe, sizeof(sqe));
    q->sq_tail = (q->sq_tail + 1) % q->sq_size;
    drv_doorbell(d, q->qid, false, (uint16_t)q->sq_tail);
    return sqe.cid;
}

/* I/O queue pair 1, polled (no interrupt: the head doorbell is not needed
 * for INTx), as the benchmark's driver and Linux's poll queues use it. */
static void create_polled_pair(uint32_t sq_size, uint32_t cq_size)
{
    ioq = (struct tq){.qid = 1, .sq_size = sq_size, .cq_size = cq_size, .phase = true};
    ioq.sq = galloc((sq_size * 64 + PAGE - 1) / PAGE);
    ioq.cq = galloc((cq_size * 16 + PAGE - 1) / PAGE);
    struct cqe e = create_cq(1, cq_size, ioq.cq, false, 0);
    assert_ok(&e);
    e = create_sq(1, sq_size, ioq.sq, 1);
    assert_ok(&e);
}

/* total reads of one block at queue depth qd on ioq, each SQ tail and CQ
 * head through the driver: every command completes exactly once (a lost
 * wake-up would leave one waiting: 5 s, then failure). */
static void run_at_depth(struct dbbuf_drv *d, unsigned total, unsigned qd, uint64_t buf, bool spin)
{
    static uint8_t outstanding[65536];
    memset(outstanding, 0, sizeof(outstanding));
    unsigned submitted = 0, completed = 0, inflight = 0;
    while (completed < total) {
        while (inflight < qd && submitted < total) {
            uint16_t cid =
                drv_submit(d, &ioq, rw_cmd(NVME_CMD_READ, submitted % DISK_BLOCKS, 1, buf, 0));
            assert_int_equal(outstanding[cid], 0);
            outstanding[cid] = 1;
            submitted++;
            inflight++;
        }
        /* spin: a driver that answers at once, racing the device going idle
         * (a lost wake-up shows as a command that never completes); else
         * one that sleeps until completions are there, as on an interrupt. */
        for (int i = 0; spin && i < 1000000 && !cqe_ready(&ioq); i++)
            __builtin_ia32_pause();
        for (int i = 0; i < 50000 && !cqe_ready(&ioq); i++)
            usleep(100);
        if (!cqe_ready(&ioq))
            fail_msg("completion %u of %u (%u submitted) never came", completed + 1, total,
                     submitted);
        struct cqe e;
        while (cqe_ready(&ioq)) {
            assert_true(wait_cqe(&ioq, &e, false));
            assert_ok(&e);
            assert_int_equal(outstanding[e.cid], 1);
            outstanding[e.cid] = 0;
            completed++;
            inflight--;
        }
        drv_doorbell(d, 1, true, (uint16_t)ioq.cq_head);
    }
    assert_int_equal(submitted, total);
}

/* Identify Controller offers the command (OACS bit 8); it is accepted; the
 * admin queue's entries follow its MMIO doorbells, and a queue created
 * afterwards starts with its entries at 0 and works through them. */
static void test_dbbuf_offered_and_accepted(void **state)
{
    enable_ctrl(32);
    uint64_t id = galloc(1);
    struct cqe e = admin((struct nvme_sqe){.opcode = NVME_ADM_IDENTIFY, .prp1 = id, .cdw10 = 1});
    assert_ok(&e);
    uint8_t *b = mem_host(id);
    assert_int_equal(b[256] | (b[257] << 8), NVME_OACS_DBBUF);

    struct dbbuf_drv d = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
    memset(mem_host(d.dbs), 0xff, PAGE);
    memset(mem_host(d.eis), 0xff, PAGE);
    e = dbbuf_config(d.dbs, d.eis);
    assert_ok(&e);
    /* The admin queue's entries: its tail and head as rung by MMIO. */
    assert_int_equal(*dbbuf_entry(d.dbs, 0, false), aq.sq_tail);
    assert_int_equal(*dbbuf_entry(d.dbs, 0, true), aq.cq_head);
    assert_int_equal(*dbbuf_entry(d.dbs, 1, false), 0xffffffffu); /* no queue 1 yet */

    create_polled_pair(16, 16);
    assert_int_equal(*dbbuf_entry(d.dbs, 0, false), aq.sq_tail);
    assert_int_equal(*dbbuf_entry(d.dbs, 0, true), aq.cq_head);
    for (unsigned is_cq = 0; is_cq < 2; is_cq++) {
        assert_int_equal(*dbbuf_entry(d.dbs, 1, is_cq), 0);
        assert_int_equal(*dbbuf_entry(d.eis, 1, is_cq), 0);
    }
    /* The first command rings (EventIdx 0); its completion needs no head
     * doorbell (a polled CQ: EventIdx at the tail). */
    uint64_t buf = galloc(1);
    memcpy(fbe.disk + 3 * BLOCK, "shadow", 6);
    uint16_t cid = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 3, 1, buf, 0));
    assert_int_equal(d.mmio, 1);
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, cid);
    assert_ok(&e);
    assert_memory_equal(mem_host(buf), "shadow", 6);
    drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
    assert_int_equal(d.mmio, 1);
    nvme_wait_idle(ctrl);
    assert_int_equal(*dbbuf_entry(d.eis, 1, false), 1); /* idle at tail 1 */
    assert_int_equal(*dbbuf_entry(d.eis, 1, true), 1);  /* the CQ tail */

    /* Sent again: the queues move to the new buffers, set to where they are. */
    struct dbbuf_drv d2 = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
    e = dbbuf_config(d2.dbs, d2.eis);
    assert_ok(&e);
    assert_int_equal(*dbbuf_entry(d2.dbs, 1, false), 1);
    assert_int_equal(*dbbuf_entry(d2.dbs, 1, true), 1);
    cid = drv_submit(&d2, &ioq, rw_cmd(NVME_CMD_READ, 3, 1, buf, 0));
    assert_int_equal(d2.mmio, 1);
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, cid);
    assert_ok(&e);
}

/* The fake back end taking some time per request on the submitting thread,
 * as a device busy with each command (the worker does not go idle at once:
 * the counts below do not hang on how the test's threads are scheduled). */
static const struct block_backend_ops *fake_block_ops;

static int slow_submit(struct block_backend *be, struct block_request *req)
{
    usleep(20);
    return fake_block_ops->submit(be, req);
}

/* A driver that uses only the shadow doorbells and EventIdx: 10,000 reads
 * at queue depth 32 all complete, with far fewer MMIO doorbells than the
 * same driver needs without them (one per SQ tail and CQ head update). */
static void test_dbbuf_fewer_mmio_doorbells(void **state)
{
    enum { TOTAL = 10000, QD = 32 };
    enable_ctrl(32);
    create_polled_pair(64, 64);
    uint64_t buf = galloc(1);
    fake_block_ops = fbe.be.ops;
    static struct block_backend_ops slow_ops;
    slow_ops = *fbe.be.ops;
    slow_ops.submit = slow_submit;
    fbe.be.ops = &slow_ops; /* no request in flight: the worker is idle */
    struct dbbuf_drv plain = {.on = false};
    run_at_depth(&plain, TOTAL, QD, buf, false);

    struct dbbuf_drv d = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
    struct cqe e = dbbuf_config(d.dbs, d.eis);
    assert_ok(&e);
    unsigned reads = fbe.reads;
    run_at_depth(&d, TOTAL, QD, buf, false);
    assert_int_equal(fbe.reads, reads + TOTAL);
    nvme_wait_idle(ctrl);
    fbe.be.ops = fake_block_ops;
    print_message("MMIO doorbells for %u commands at QD %u: %u plain (%.3f per command), %u with "
                  "shadow doorbells (%.3f per command)\n",
                  TOTAL, QD, plain.mmio, (double)plain.mmio / TOTAL, d.mmio,
                  (double)d.mmio / TOTAL);
    assert_true(plain.mmio >= TOTAL);
    assert_true(d.mmio * 10 < plain.mmio);
    /* A driver that reaps and submits the moment a completion is there, on
     * a device that answers at once, races the device going idle at every
     * command: each still completes (more of them ring: the device is idle
     * whenever the driver is slower than it). */
    for (unsigned qd = QD; qd >= 1; qd /= 32) {
        d.mmio = 0;
        run_at_depth(&d, TOTAL, qd, buf, true);
        print_message("spinning driver at QD %u: %u MMIO doorbells (%.3f per command)\n", qd,
                      d.mmio, (double)d.mmio / TOTAL);
    }
    assert_int_equal(fbe.reads, reads + 3 * TOTAL);
}

static unsigned dnr_of(const struct cqe *e)
{
    return (e->status >> 15) & 1;
}

/* Buffers not page aligned, not RAM, read-only or overlapping: Invalid
 * Field, and the controller keeps using its MMIO doorbells only. */
static void test_dbbuf_bad_addresses(void **state)
{
    enable_ctrl(32);
    create_polled_pair(16, 16);
    uint64_t a = galloc(1), b = galloc(1);
    const struct {
        uint64_t dbs, eis;
    } bad[] = {
        {a + 8, b},     {a, b + 0x800}, {a + 4, b + 4}, {MMIO_ADDR, b},
        {a, MMIO_ADDR}, {ROM_BASE, b},  {a, ROM_BASE},  {RAM_SIZE, b},
        {a, RAM_SIZE},  {a, a},         {~0xfffull, b}, {a, 1ull << 52},
    };
    for (unsigned i = 0; i < ARRAY_LEN(bad); i++) {
        struct cqe e = dbbuf_config(bad[i].dbs, bad[i].eis);
        assert_status(&e, 0, NVME_SC_INVALID_FIELD);
        assert_int_equal(dnr_of(&e), 1);
    }
    /* Nothing was taken: an MMIO doorbell runs exactly its command (the
     * shadow tail, 0 here, is not read). */
    uint64_t buf = galloc(1);
    unsigned reads = fbe.reads;
    struct cqe e = run(&ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
    assert_ok(&e);
    nvme_wait_idle(ctrl);
    assert_int_equal(fbe.reads, reads + 1);
    assert_false(cqe_ready(&ioq));
    /* The last page of RAM is fine. */
    e = dbbuf_config(RAM_SIZE - PAGE, a);
    assert_ok(&e);
}

/* Controller reset (CC.EN cleared) and device reset drop the buffers: the
 * controller neither writes them nor reads them afterwards. */
static void test_dbbuf_reset_clears(void **state)
{
    uint64_t buf = galloc(1);
    for (unsigned round = 0; round < 2; round++) {
        enable_ctrl(32);
        struct dbbuf_drv d = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
        struct cqe e = dbbuf_config(d.dbs, d.eis);
        assert_ok(&e);
        create_polled_pair(16, 16);
        uint16_t cid = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 0, 1, buf, 0));
        assert_true(wait_cqe(&ioq, &e, false));
        assert_int_equal(e.cid, cid);
        drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
        nvme_wait_idle(ctrl);
        if (round == 0) {
            wr(NVME_REG_CC, 4, 0);
            assert_int_equal(rd(NVME_REG_CSTS, 4), 0);
        } else {
            pdev->dev.ops->reset(&pdev->dev);
            pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
        }
        /* Markers in both old buffers; a new controller life must not
         * touch them. */
        memset(mem_host(d.dbs), 0x5a, PAGE);
        memset(mem_host(d.eis), 0xa5, PAGE);
        enable_ctrl(32);
        create_polled_pair(16, 16);
        unsigned reads = fbe.reads;
        for (unsigned i = 0; i < 3; i++) {
            e = run(&ioq, rw_cmd(NVME_CMD_READ, i, 1, buf, 0));
            assert_ok(&e);
        }
        nvme_wait_idle(ctrl);
        assert_int_equal(fbe.reads, reads + 3);
        for (unsigned i = 0; i < PAGE; i++) {
            assert_int_equal(((uint8_t *)mem_host(d.dbs))[i], 0x5a);
            assert_int_equal(((uint8_t *)mem_host(d.eis))[i], 0xa5);
        }
        wr(NVME_REG_CC, 4, 0);
    }
}

static int state_at(void *opaque, struct snap *s)
{
    struct device *dev = opaque;
    return dev->ops->state(dev, s);
}

/* The buffers travel with the state (version 2): a command written only to
 * the shadow doorbell while paused runs on the restored controller after
 * resume, which goes on with the same buffers. A version 1 state (none)
 * still loads; a bad buffer address is refused. */
static void test_dbbuf_state_roundtrip(void **state)
{
    enable_ctrl(32);
    struct dbbuf_drv d = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
    struct cqe e = dbbuf_config(d.dbs, d.eis);
    assert_ok(&e);
    create_polled_pair(16, 16);
    uint64_t data = galloc(1), back = galloc(1);
    fill_pattern(mem_host(data), PAGE, 31);
    /* Enough to wrap both queues. */
    for (unsigned i = 0; i < 20; i++) {
        uint16_t cid = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_WRITE, i * 8, 8, data, 0));
        assert_true(wait_cqe(&ioq, &e, false));
        assert_int_equal(e.cid, cid);
        assert_ok(&e);
        drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
    }
    assert_int_equal(device_pause(&pdev->dev), 0);
    /* Paused: the shadow tail moves, no MMIO doorbell at all. */
    struct nvme_sqe sqe = rw_cmd(NVME_CMD_READ, 40, 8, back, 0);
    sqe.cid = ioq.next_cid++;
    memcpy(mem_host(ioq.sq + (uint64_t)ioq.sq_tail * 64), &sqe, sizeof(sqe));
    ioq.sq_tail = (ioq.sq_tail + 1) % ioq.sq_size;
    __atomic_store_n(dbbuf_entry(d.dbs, 1, false), ioq.sq_tail, __ATOMIC_RELEASE);
    usleep(20 * 1000);
    assert_false(cqe_ready(&ioq));

    struct nvme_ctrl *twin = make_twin(4);
    assert_state_roundtrip(&pdev->dev, &nvme_pci_device(twin)->dev);
    struct device *from = &pdev->dev;
    struct nvme_ctrl *victim = make_twin(5);
    struct device *to = &nvme_pci_device(victim)->dev;
    uint64_t v64 = d.dbs + 4;
    assert_state_field_refused(from, to, "dbbuf_dbs", &v64, sizeof(v64));
    v64 = MMIO_ADDR;
    assert_state_field_refused(from, to, "dbbuf_eis", &v64, sizeof(v64));
    v64 = d.dbs;
    assert_state_field_refused(from, to, "dbbuf_eis", &v64, sizeof(v64)); /* overlap */
    uint8_t off = 0;
    assert_state_field_refused(from, to, "dbbuf", &off, sizeof(off));

    /* A version 1 state (before Doorbell Buffer Config) loads, without it. */
    struct snap_buf v1 = {0};
    char err[512] = "";
    assert_int_equal(
        snap_save_record(&v1, from->name, from->ops->kind, 1, state_at, from, err, sizeof(err)), 0);
    assert_int_equal(state_load(to, v1.data, v1.len, err, sizeof(err)), 0);
    assert_false(victim->dbbuf);
    assert_true(victim->sqs[1].active && !victim->sqs[1].shadow.on);
    snap_buf_free(&v1);
    destroy_ctrl(victim);

    destroy_ctrl(ctrl);
    ctrl = twin;
    pdev = nvme_pci_device(twin);
    unsigned mmio = d.mmio;
    device_resume(&pdev->dev);
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, sqe.cid);
    assert_ok(&e);
    assert_memory_equal(mem_host(back), mem_host(data), PAGE);
    drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
    /* Carrying on through the same buffers. */
    memset(mem_host(back), 0, PAGE);
    uint16_t cid = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 8, 8, back, 0));
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, cid);
    assert_ok(&e);
    assert_memory_equal(mem_host(back), mem_host(data), PAGE);
    assert_int_equal(d.mmio, mmio + 1); /* the SQ was idle: that one rang */
}

/* Shadow values a hostile driver writes are handled as bad MMIO doorbell
 * values are: ignored (no command fetched past the queue), an Invalid
 * Doorbell Write Value error event, and the queue works once the value is
 * sane again. */
static void test_dbbuf_hostile_shadow_values(void **state)
{
    enable_ctrl(32);
    struct dbbuf_drv d = {.on = true, .dbs = galloc(1), .eis = galloc(1)};
    struct cqe e = dbbuf_config(d.dbs, d.eis);
    assert_ok(&e);
    create_polled_pair(16, 16);
    uint64_t buf = galloc(1), log = galloc(1);
    static const uint32_t tails[] = {16, 0xffff, 0xffffffffu};
    for (unsigned i = 0; i < ARRAY_LEN(tails); i++) {
        uint16_t aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
        unsigned reads = fbe.reads;
        /* One real command rung by MMIO, then a shadow tail past the queue. */
        struct nvme_sqe sqe = rw_cmd(NVME_CMD_READ, i, 1, buf, 0);
        sqe.cid = ioq.next_cid++;
        memcpy(mem_host(ioq.sq + (uint64_t)ioq.sq_tail * 64), &sqe, sizeof(sqe));
        ioq.sq_tail = (ioq.sq_tail + 1) % ioq.sq_size;
        __atomic_store_n(dbbuf_entry(d.dbs, 1, false), tails[i], __ATOMIC_RELEASE);
        sq_doorbell(1, ioq.sq_tail);
        assert_true(wait_cqe(&ioq, &e, false));
        assert_int_equal(e.cid, sqe.cid);
        assert_true(wait_cqe(&aq, &e, true));
        assert_int_equal(e.cid, aer_cid);
        assert_int_equal(e.dw0 & 0x7, NVME_AER_TYPE_ERROR);
        assert_int_equal((e.dw0 >> 8) & 0xff, NVME_AER_INFO_INVALID_DB_VALUE);
        nvme_wait_idle(ctrl);
        assert_int_equal(fbe.reads, reads + 1);
        assert_false(cqe_ready(&ioq));
        /* The error log unmasks the next error event. */
        e = admin((struct nvme_sqe){.opcode = NVME_ADM_GET_LOG_PAGE,
                                    .prp1 = log,
                                    .cdw10 = ((64u / 4 - 1) << 16) | NVME_LOG_ERROR});
        assert_ok(&e);
        /* Sane again: the driver's next command runs. */
        __atomic_store_n(dbbuf_entry(d.dbs, 1, false), ioq.sq_tail, __ATOMIC_RELEASE);
        uint16_t cid = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 5, 1, buf, 0));
        assert_true(wait_cqe(&ioq, &e, false));
        assert_int_equal(e.cid, cid);
        assert_ok(&e);
        drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
    }

    /* A CQ head past the posted entries, found when the CQ looks full: the
     * same error event, and the completions wait for a real head. */
    uint16_t aer_cid = submit(&aq, (struct nvme_sqe){.opcode = NVME_ADM_ASYNC_EVENT});
    for (unsigned i = 0; i < 15; i++) /* the CQ holds 15 */
        drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, i, 1, buf, 0));
    nvme_wait_idle(ctrl);
    unsigned reads = fbe.reads;
    uint32_t sane_head = ioq.cq_head;
    __atomic_store_n(dbbuf_entry(d.dbs, 1, true), 1000, __ATOMIC_RELEASE);
    uint16_t last = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 15, 1, buf, 0));
    assert_true(wait_cqe(&aq, &e, true));
    assert_int_equal(e.cid, aer_cid);
    assert_int_equal((e.dw0 >> 8) & 0xff, NVME_AER_INFO_INVALID_DB_VALUE);
    nvme_wait_idle(ctrl);
    assert_int_equal(fbe.reads, reads); /* no slot: not fetched */
    for (unsigned i = 0; i < 15; i++) {
        assert_true(wait_cqe(&ioq, &e, false));
        assert_ok(&e);
    }
    assert_false(cqe_ready(&ioq));
    /* The driver puts its last sane head back and moves on by its rule:
     * the last command completes. */
    __atomic_store_n(dbbuf_entry(d.dbs, 1, true), sane_head, __ATOMIC_RELEASE);
    drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, last);
    assert_ok(&e);
    assert_int_equal(fbe.reads, reads + 1);
    drv_doorbell(&d, 1, true, (uint16_t)ioq.cq_head);

    /* Bus mastering off: the buffers are neither read nor written (a
     * command rung meanwhile waits); back on, the next doorbell runs it. */
    nvme_wait_idle(ctrl);
    pci_device_config_write(pdev, PCI_COMMAND, 2, 0);
    *dbbuf_entry(d.eis, 1, false) = *dbbuf_entry(d.eis, 1, true) = 0xdeadbeef;
    uint8_t eis_before[PAGE];
    memcpy(eis_before, mem_host(d.eis), PAGE);
    last = drv_submit(&d, &ioq, rw_cmd(NVME_CMD_READ, 7, 1, buf, 0));
    sq_doorbell(1, ioq.sq_tail);
    cq_doorbell(1, ioq.cq_head);
    nvme_wait_idle(ctrl);
    assert_false(cqe_ready(&ioq));
    assert_int_equal(fbe.reads, reads + 1);
    assert_memory_equal(mem_host(d.eis), eis_before, PAGE);
    pci_device_config_write(pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    sq_doorbell(1, ioq.sq_tail);
    assert_true(wait_cqe(&ioq, &e, false));
    assert_int_equal(e.cid, last);
    assert_ok(&e);
}

int main(void)
{
    log_set_level(getenv("NVME_TEST_LOG") ? LOG_DEBUG : LOG_CRITICAL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registers_power_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_access_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_and_identify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_features_and_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_prp1_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_prp1_prp2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_prp_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_prp_list_chained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_flush_fua_dsm_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_namespace, setup_ro, teardown),
        cmocka_unit_test_setup_teardown(test_serial_truncated_no_cache, setup_long_serial,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_intx_and_masking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_prps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lba_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_doorbells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_queue_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aer_on_two_entry_admin_cq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cq_full_holds_completions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_with_io_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_with_io_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_sq_with_io_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_kick_counts_as_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bus_master_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_backend_two_queues, setup_mem_backend,
                                        teardown_mem_backend),
        cmocka_unit_test_setup_teardown(test_pause_waits_for_io_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_takes_no_new_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_restored_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_offered_and_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_fewer_mmio_doorbells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_bad_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_reset_clears, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_state_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbbuf_hostile_shadow_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
