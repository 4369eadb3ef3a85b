/* PCI (src/pci, the i440FX and PIIX3 functions, the virtio-pci transport):
 * the input is a sequence of guest accesses through the real buses: the
 * 0xCF8/0xCFC configuration mechanism (any size and offset, 0xCF9
 * included), the ECAM window, and whatever the BARs decode once the guest
 * programs them (I/O, 32- and 64-bit memory): a test function's registers
 * and its MSI-X table and PBA, and a virtio-pci function's legacy,
 * MSI-X and modern BARs over a device model that only takes notes (its
 * transport registers are what is fuzzed here; the queue targets drive
 * the device models). Resets and a corrupted saved state of every
 * function come in between. */
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "devices/device.h"
#include "devices/i440fx.h"
#include "devices/pc_layout.h"
#include "devices/piix3.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtio/virtio.h"
#include "virtio/virtio_pci.h"

#include "fuzz_support.h"
#include "support/msix_fn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void machine_build(void);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    fuzz_mem_reset();
    machine_build();
    return 0;
}

/* ---- A test function: three BARs of plain registers and MSI-X ---- */

struct test_fn {
    struct msix_fn fn; /* config space, MSI-X, state */
    uint8_t regs[256];
};

static uint64_t regs_read(void *opaque, uint64_t off, unsigned size)
{
    struct test_fn *t = opaque;
    if (off >= sizeof(t->regs) || size > sizeof(t->regs) - off)
        abort(); /* the bus handed us an access outside the BAR */
    return le_load(t->regs + off, size);
}

static void regs_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
    struct test_fn *t = opaque;
    if (off >= sizeof(t->regs) || size > sizeof(t->regs) - off)
        abort();
    le_store(t->regs + off, size, v);
}

static const struct io_ops regs_ops = {regs_read, regs_write};

static void test_reset(struct device *d)
{
    struct test_fn *t = container_of(d, struct test_fn, fn.pci.dev);
    msix_reset(&t->fn.msix);
    pci_device_reset(&t->fn.pci);
}

static const struct device_ops test_dev_ops = {.drop_decodes = pci_device_drop_decodes,
                                               .reset = test_reset,
                                               .state = msix_fn_state,
                                               .kind = "pci-fuzz-test",
                                               .state_version = 1};

static void signal_msi(void *opaque, uint64_t addr, uint32_t data)
{
}

static void test_fn_build(struct test_fn *t)
{
    static const struct pci_ids ids = {
        .vendor_id = 0x1234, .device_id = 0x5678, .class_code = 0xff0000};
    memset(t, 0, sizeof(*t));
    struct pci_device *pci = &t->fn.pci;
    pci_device_init(pci, "test", &test_dev_ops, &ids, &msix_fn_pci_ops);
    if (pci_register_bar(pci, 0, PCI_BAR_IO, false, 256, &regs_ops, t) < 0 ||
        pci_register_bar(pci, 1, PCI_BAR_MEM32, false, 256, &regs_ops, t) < 0 ||
        pci_register_bar(pci, 2, PCI_BAR_MEM64, true, 0x1000, &msix_bar_io_ops, &t->fn.msix) < 0 ||
        msix_init(&t->fn.msix, pci, 16, 2, 0, 0x800, (struct msix_sink){.signal_msi = signal_msi}) <
            0)
        abort();
    pci_set_interrupt_pin(pci, PCI_INTB);
}

/* ---- A virtio device model that only takes notes ---- */

struct note_dev {
    struct virtio_device vdev;
    unsigned notifies;
};

static void note_notify(struct virtio_device *vdev, unsigned queue)
{
    container_of(vdev, struct note_dev, vdev)->notifies++;
}

static void note_destroy(struct virtio_device *vdev)
{
    free(container_of(vdev, struct note_dev, vdev));
}

static void note_write_config(struct virtio_device *vdev, unsigned off, unsigned size, uint64_t v)
{
    if (off < vdev->config_size && size <= vdev->config_size - off)
        le_store(vdev->config + off, size, v);
}

static const struct virtio_device_ops note_ops = {.kind = "note",
                                                  .queue_notify = note_notify,
                                                  .write_config = note_write_config,
                                                  .destroy = note_destroy};

static struct virtio_pci *virtio_fn_build(void)
{
    struct note_dev *n = calloc(1, sizeof(*n));
    if (!n)
        abort();
    struct virtio_device_params p = {.name = "note",
                                     .device_type = VIRTIO_ID_BLOCK,
                                     .num_queues = 2,
                                     .queue_size = 16,
                                     .features = 0x7,
                                     .config_size = 24,
                                     .ops = &note_ops,
                                     .mem = &fake_mem};
    if (virtio_device_init(&n->vdev, &p) < 0)
        abort();
    struct virtio_pci *vp = virtio_pci_create(
        &n->vdev, &(struct virtio_pci_params){.msix_sink = {.signal_msi = signal_msi}});
    if (!vp)
        abort();
    return vp;
}

/* ---- The machine ---- */

static void set_intx(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
}

static void set_irq(void *opaque, unsigned n, bool level)
{
}

#define IO_BASE 0xc000ull
#define MMIO32_BASE PC_PCI_MMIO32_BASE
#define MMIO64_BASE 0x1000000000ull
#define SLOT_TEST 3
#define SLOT_VIRTIO 4

struct machine_parts {
    struct bus pio, mmio;
    struct pci_bus pbus;
    struct i440fx hb;
    struct piix3 isa;
    struct test_fn test;
    struct virtio_pci *vp;
    struct device *devs[4];
};

/* An address the guest would use: mostly near a window it can program. */
static uint64_t pick_addr(struct fuzz_in *in, bool *mmio)
{
    uint8_t sel = fi_u8(in);
    uint64_t off = fi_u16(in);
    *mmio = true;
    switch (sel % 8) {
    case 0:
        *mmio = false;
        return 0xcf8 + off % 8;
    case 1:
        *mmio = false;
        return IO_BASE + off % 0x400;
    case 2: /* ECAM: bus 0, any function and register */
        return PC_ECAM_BASE + (off & 0xffff) * 16 + (sel >> 4);
    case 3:
        return PC_ECAM_BASE + ((uint64_t)fi_u8(in) << 20) + (off & 0xfffff);
    case 4:
    case 5: /* window n (bits 4-6) of program_bar() */
        return MMIO32_BASE + (uint64_t)((sel >> 4) & 7) * 0x10000 + off;
    case 6:
        return MMIO64_BASE + (uint64_t)((sel >> 4) & 7) * 0x10000 + off;
    default:
        *mmio = sel & 0x80;
        return fi_u64(in);
    }
}

/* Programs a BAR (config write through 0xCF8/0xCFC) of slot's function 0
 * with a base in its usual window, and enables decoding. */
static void program_bar(struct machine_parts *m, uint8_t slot, unsigned bar, unsigned n)
{
    uint8_t devfn = PCI_DEVFN(slot, 0);
    unsigned reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint32_t low = pci_bus_config_read(&m->pbus, 0, devfn, reg, 4);
    uint64_t base;
    if (low & PCI_BAR_SPACE_IO)
        base = IO_BASE + 0x100ull * n;
    else if (low & PCI_BAR_MEM_TYPE_64)
        base = MMIO64_BASE + 0x10000ull * n;
    else
        base = MMIO32_BASE + 0x10000ull * n;
    bus_write(&m->pio, 0xcf8, 4, 0x80000000u | (uint32_t)devfn << 8 | reg);
    bus_write(&m->pio, 0xcfc, 4, (uint32_t)base);
    if (low & PCI_BAR_MEM_TYPE_64) {
        bus_write(&m->pio, 0xcf8, 4, 0x80000000u | (uint32_t)devfn << 8 | (reg + 4));
        bus_write(&m->pio, 0xcfc, 4, (uint32_t)(base >> 32));
    }
    bus_write(&m->pio, 0xcf8, 4, 0x80000000u | (uint32_t)devfn << 8 | PCI_COMMAND);
    bus_write(&m->pio, 0xcfc, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static struct machine_parts m;

static void machine_build(void)
{
    bus_init(&m.pio, "pio");
    bus_init(&m.mmio, "mmio");
    pci_bus_init(&m.pbus, &m.pio, &m.mmio);
    pci_bus_set_intx_router(&m.pbus, (struct pci_intx_router){set_intx, NULL});
    i440fx_init(&m.hb, (struct i440fx_hooks){0});
    struct irq_bank pirq[PC_PIRQ_COUNT];
    for (unsigned i = 0; i < PC_PIRQ_COUNT; i++)
        pirq[i] = (struct irq_bank){set_irq, NULL};
    piix3_init(&m.isa, pirq);
    test_fn_build(&m.test);
    m.vp = virtio_fn_build();
    if (i440fx_attach(&m.hb, &m.pbus) < 0 || piix3_attach(&m.isa, &m.pbus) < 0 ||
        pci_bus_add(&m.pbus, &m.test.fn.pci, PCI_DEVFN(SLOT_TEST, 0)) < 0 ||
        pci_bus_add(&m.pbus, &m.vp->pci, PCI_DEVFN(SLOT_VIRTIO, 0)) < 0)
        abort();
    m.devs[0] = &m.hb.pci.dev;
    m.devs[1] = &m.isa.pci.dev;
    m.devs[2] = &m.test.fn.pci.dev;
    m.devs[3] = &m.vp->pci.dev;
}

/* The machine reset the VMM does (both passes over every function): each
 * input starts from power-on state, so the machine is built only once
 * (the virtio function's queue loops are threads). An input that crashes
 * only after others would point at state a reset leaves behind. */
static void machine_reset(struct machine_parts *mp)
{
    for (unsigned i = 0; i < 4; i++)
        if (mp->devs[i]->ops->drop_decodes)
            mp->devs[i]->ops->drop_decodes(mp->devs[i]);
    for (unsigned i = 0; i < 4; i++)
        if (mp->devs[i]->ops->reset)
            mp->devs[i]->ops->reset(mp->devs[i]);
    pci_bus_reset(&mp->pbus);
    memset(mp->test.regs, 0, sizeof(mp->test.regs));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    machine_reset(&m);
    uint8_t first = fi_u8(&in);
    if (!(first & 0x80)) {
        /* What firmware does first: every BAR of both functions placed. */
        for (unsigned b = 0; b < 3; b++) {
            program_bar(&m, SLOT_TEST, b, b);
            program_bar(&m, SLOT_VIRTIO, b, 4 + b);
        }
    }
    for (unsigned steps = 0; fi_more(&in) && steps < 512; steps++) {
        switch (fi_u8(&in) % 10) {
        case 0:
            fi_mem_write(&in);
            break;
        case 1:
        case 2: { /* a read */
            bool mmio;
            uint64_t a = pick_addr(&in, &mmio);
            (void)bus_read(mmio ? &m.mmio : &m.pio, a, fi_size(&in));
            break;
        }
        case 3:
        case 4:
        case 5: { /* a write */
            bool mmio;
            uint64_t a = pick_addr(&in, &mmio);
            unsigned sz = fi_size(&in);
            bus_write(mmio ? &m.mmio : &m.pio, a, sz, fi_u64(&in));
            break;
        }
        case 6: { /* a config cycle through the ports */
            uint32_t bus_number = fi_u8(&in);
            uint32_t devfn = fi_u8(&in);
            uint32_t addr = 0x80000000u | bus_number << 16 | devfn << 8 | (fi_u8(&in) & 0xfc);
            if (fi_u8(&in) & 0x80)
                addr = fi_u32(&in);
            bus_write(&m.pio, 0xcf8, 4, addr);
            unsigned sz = fi_size(&in);
            unsigned off = fi_u8(&in) & 3;
            if (fi_u8(&in) & 1)
                bus_write(&m.pio, 0xcfc + off, sz, fi_u32(&in));
            else
                (void)bus_read(&m.pio, 0xcfc + off, sz);
            break;
        }
        case 7: {
            uint8_t which = fi_u8(&in);
            program_bar(&m, which & 1 ? SLOT_VIRTIO : SLOT_TEST, (which >> 1) % 6, which >> 4);
            break;
        }
        case 8:
            machine_reset(&m);
            break;
        default:
            fuzz_corrupt_state(m.devs[fi_u8(&in) % 4], &in);
            break;
        }
    }
    return 0;
}
