/* The NVMe controller (src/nvme) over the fake block back end: the input
 * is a hostile driver's program: register and doorbell accesses of any
 * offset and size, guest memory (queues, PRP lists, data), commands
 * written at a queue's tail with its doorbell rung (admin and I/O, any
 * opcode and field, PRPs anywhere), MSI-X table and PBA accesses, PCI
 * config writes, resets, pause/resume, and a saved state corrupted and
 * loaded back. After each doorbell the fuzzer waits for the I/O worker to
 * go idle (nvme_wait_idle), so every input runs the same way. */
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "devices/device.h"
#include "nvme/nvme.h"
#include "nvme/nvme_int.h"
#include "pci/pci.h"

#include "fuzz_support.h"
#include "support/fake_block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The usual layout: queue q's SQ at q * 0x1000 (64 entries) and its CQ
 * at 0x8000 + q * 0x1000 (queue bases are page-aligned); queues 0..3;
 * data from 0xc000 (to the end of RAM and the tail region after it). */
#define SQ_GPA(q) ((uint64_t)(q)*0x1000)
#define CQ_GPA(q) (0x8000 + (uint64_t)(q)*0x1000)
#define USUAL_QUEUES 4
#define DATA_GPA 0xc000ull

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

static void signal_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

static void set_intx(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
}

struct ctx {
    struct nvme_ctrl *ctrl;
    struct pci_device *pdev;
    uint16_t tail[USUAL_QUEUES];
};

static void bar0_write(struct ctx *c, uint64_t off, unsigned size, uint64_t v)
{
    c->pdev->bars[0].ops->write(c->pdev->bars[0].opaque, off, size, v);
    nvme_wait_idle(c->ctrl);
}

/* A PRP or data pointer: mostly into the data area, page-aligned or not. */
static uint64_t prp(struct fuzz_in *in)
{
    uint8_t sel = fi_u8(in);
    if (sel < 0x80)
        return DATA_GPA + ((uint64_t)(sel & 0x1f) << 9);
    if (sel < 0xe0)
        return DATA_GPA + fi_u16(in) % (FUZZ_RAM_SIZE + FUZZ_TAIL_SIZE - DATA_GPA);
    return fi_gpa(in);
}

/* A command at queue q's tail (usual layout), then its doorbell. */
static void submit(struct ctx *c, struct fuzz_in *in)
{
    unsigned q = fi_u8(in) % USUAL_QUEUES;
    struct nvme_sqe sqe;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opcode = fi_u8(in);
    uint8_t shape = fi_u8(in);
    sqe.flags = shape & 0x80 ? fi_u8(in) : 0;
    sqe.cid = fi_u16(in);
    sqe.nsid = shape & 1 ? fi_u32(in) : 1;
    sqe.prp1 = prp(in);
    sqe.prp2 = shape & 2 ? prp(in) : 0;
    sqe.cdw10 = fi_u32(in);
    sqe.cdw11 = fi_u32(in);
    if (shape & 4) {
        sqe.cdw12 = fi_u32(in);
        sqe.cdw13 = fi_u32(in);
    }
    if (shape & 8) {
        sqe.cdw2 = fi_u32(in);
        sqe.cdw14 = fi_u32(in);
        sqe.cdw15 = fi_u32(in);
        sqe.mptr = fi_u64(in);
    }
    guest_mem_write(&fake_mem, SQ_GPA(q) + 64ull * (c->tail[q] % 64), &sqe, sizeof(sqe));
    c->tail[q] = (uint16_t)(c->tail[q] + 1);
    uint16_t wrap = shape & 0x40 ? fi_u16(in) : 64;
    bar0_write(c, NVME_REG_DBS + 8ull * q, 4, c->tail[q] % (wrap ? wrap : 1));
}

/* Enables the controller with the usual admin queues of `entries`. */
static void enable(struct ctx *c, uint32_t entries)
{
    memset(c->tail, 0, sizeof(c->tail));
    bar0_write(c, NVME_REG_CC, 4, 0);
    bar0_write(c, NVME_REG_AQA, 4, ((entries - 1) << 16) | (entries - 1));
    bar0_write(c, NVME_REG_ASQ, 8, SQ_GPA(0));
    bar0_write(c, NVME_REG_ACQ, 8, CQ_GPA(0));
    bar0_write(c, NVME_REG_CC, 4, NVME_CC_EN | (6u << 16) | (4u << 20));
}

/* Creates I/O CQ and SQ q (usual layout) through admin commands. */
static void create_io_queue(struct ctx *c, unsigned q, uint16_t entries, uint16_t vector)
{
    struct nvme_sqe cmds[2];
    memset(cmds, 0, sizeof(cmds));
    cmds[0].opcode = 0x05; /* create I/O CQ */
    cmds[0].prp1 = CQ_GPA(q);
    cmds[0].cdw10 = (uint32_t)(entries - 1) << 16 | q;
    cmds[0].cdw11 = (uint32_t)vector << 16 | 3; /* interrupts on, contiguous */
    cmds[1].opcode = 0x01;                      /* create I/O SQ */
    cmds[1].prp1 = SQ_GPA(q);
    cmds[1].cdw10 = (uint32_t)(entries - 1) << 16 | q;
    cmds[1].cdw11 = (uint32_t)q << 16 | 1;
    for (unsigned i = 0; i < 2; i++) {
        cmds[i].cid = (uint16_t)(0x100 + i);
        guest_mem_write(&fake_mem, SQ_GPA(0) + 64ull * (c->tail[0] % 64), &cmds[i],
                        sizeof(cmds[i]));
        c->tail[0] = (uint16_t)(c->tail[0] + 1);
    }
    bar0_write(c, NVME_REG_DBS, 4, c->tail[0] % 64);
}

/* A corrupted saved state loaded back (fuzz_corrupt_state), then the I/O
 * worker idle again. */
static void corrupt_state(struct ctx *c, struct fuzz_in *in)
{
    fuzz_corrupt_state(&c->pdev->dev, in);
    nvme_wait_idle(c->ctrl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    struct fake_block fb;
    uint8_t shape = fuzz_disk_init(&fb, &in);
    struct ctx c = {0};
    c.ctrl = nvme_create(&(struct nvme_params){.name = "nvme0",
                                               .backend = &fb.be,
                                               .mem = &fake_mem,
                                               .msix_sink = {.signal_msi = signal_msi}});
    if (!c.ctrl)
        abort();
    c.pdev = nvme_pci_device(c.ctrl);
    struct bus pio, mmio;
    struct pci_bus pbus;
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pbus, &pio, &mmio);
    pci_bus_set_intx_router(&pbus, (struct pci_intx_router){set_intx, NULL});
    if (pci_bus_add(&pbus, c.pdev, PCI_DEVFN(4, 0)) < 0)
        abort();
    pci_device_config_write(c.pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
    if (!(shape & 0x80)) {
        /* What most drivers do first: admin queues, then I/O queue 1. */
        enable(&c, 64);
        create_io_queue(&c, 1, 64, 0); /* vector 0: MSI-X is off */
    }
    struct pci_bar *msix_bar = &c.pdev->bars[NVME_MSIX_BAR];
    for (unsigned steps = 0; fi_more(&in) && steps < 256; steps++) {
        uint8_t op = fi_u8(&in);
        /* 0xff selects the case added last; the others keep their meaning. */
        switch (op == 0xff ? 14 : op % 14) {
        case 0:
            fi_mem_write(&in);
            break;
        case 1: { /* register write */
            uint64_t off = fi_u16(&in) % NVME_BAR0_SIZE;
            unsigned sz = fi_size(&in);
            bar0_write(&c, off, sz, fi_u64(&in));
            break;
        }
        case 2: { /* register read */
            uint64_t off = fi_u16(&in) % NVME_BAR0_SIZE;
            (void)c.pdev->bars[0].ops->read(c.pdev->bars[0].opaque, off, fi_size(&in));
            break;
        }
        case 3: { /* SQ tail or CQ head doorbell of any queue */
            uint16_t which = fi_u8(&in) % (2 * NVME_NUM_QUEUES + 2);
            bar0_write(&c, NVME_REG_DBS + 4ull * which, 4, fi_u16(&in));
            break;
        }
        case 4:
        case 5:
        case 6:
            submit(&c, &in);
            break;
        case 7:
            enable(&c, 2u + fi_u8(&in) % 63);
            break;
        case 8: {
            unsigned q = 1 + fi_u8(&in) % (USUAL_QUEUES - 1);
            uint16_t entries = (uint16_t)(2 + fi_u8(&in) % 63);
            create_io_queue(&c, q, entries, fi_u8(&in) % 40);
            break;
        }
        case 9: { /* MSI-X table and PBA */
            uint64_t off = fi_u16(&in) % NVME_MSIX_BAR_SIZE;
            unsigned sz = fi_size(&in);
            if (fi_u8(&in) & 1)
                msix_bar->ops->write(msix_bar->opaque, off, sz, fi_u64(&in));
            else
                (void)msix_bar->ops->read(msix_bar->opaque, off, sz);
            break;
        }
        case 10: { /* PCI config space */
            unsigned off = fi_u8(&in);
            unsigned sz = 1u << (fi_u8(&in) % 3);
            off &= ~(sz - 1);
            pci_device_config_write(c.pdev, off, sz, fi_u32(&in));
            break;
        }
        case 11: /* machine reset */
            c.pdev->dev.ops->drop_decodes(&c.pdev->dev);
            c.pdev->dev.ops->reset(&c.pdev->dev);
            pci_device_config_write(c.pdev, PCI_COMMAND, 2, PCI_COMMAND_MASTER);
            memset(c.tail, 0, sizeof(c.tail));
            break;
        case 12:
            if (device_pause(&c.pdev->dev) == 0)
                device_resume(&c.pdev->dev);
            nvme_wait_idle(c.ctrl);
            break;
        default:
            corrupt_state(&c, &in);
            break;
        case 14: { /* Doorbell Buffer Config: buffers at data pages, or anywhere */
            struct nvme_sqe cmd;
            memset(&cmd, 0, sizeof(cmd));
            cmd.opcode = NVME_ADM_DBBUF_CONFIG;
            cmd.cid = 0x17c;
            uint8_t sel = fi_u8(&in);
            cmd.prp1 = sel & 1 ? fi_gpa(&in) : DATA_GPA + 0x1000ull * ((sel >> 1) & 3);
            cmd.prp2 = sel & 8 ? fi_gpa(&in) : DATA_GPA + 0x1000ull * ((sel >> 4) & 3);
            guest_mem_write(&fake_mem, SQ_GPA(0) + 64ull * (c.tail[0] % 64), &cmd, sizeof(cmd));
            c.tail[0] = (uint16_t)(c.tail[0] + 1);
            bar0_write(&c, NVME_REG_DBS, 4, c.tail[0] % 64);
            break;
        }
        }
    }
    c.pdev->dev.ops->destroy(&c.pdev->dev);
    pci_bus_destroy(&pbus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    fake_block_fini(&fb);
    return 0;
}
