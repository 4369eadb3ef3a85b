/* PCI core: config mechanism #1 and ECAM decoding, masks, BAR sizing and
 * mapping on real buses, INTx, capabilities, reset, hostile sweeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/bus.h"
#include "pci/pci.h"
#include "support/state.h"

#define ECAM_BASE_TEST 0xe0000000ull
#define ECAM_SIZE_TEST 0x10000000ull
#define TEST_SLOT 3

struct region {
    unsigned reads, writes;
    uint64_t last_offset, last_value;
    unsigned last_size;
};

static uint64_t region_read(void *opaque, uint64_t offset, unsigned size)
{
    struct region *r = opaque;
    r->reads++;
    r->last_offset = offset;
    r->last_size = size;
    return 0x5a5a5a5a5a5a5a5aull;
}

static void region_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct region *r = opaque;
    r->writes++;
    r->last_offset = offset;
    r->last_size = size;
    r->last_value = value;
}

static const struct io_ops region_ops = {region_read, region_write};

struct intx_event {
    uint8_t devfn;
    unsigned pin;
    bool level;
};

struct test_dev {
    struct pci_device pci;
    struct region io, mem32, mem64;
    unsigned hook_writes;
    unsigned last_hook_offset;
    int mapped_events;
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct test_dev dev_a, dev_b, dev_fn2;
static struct region cf9, sentinel;
static struct intx_event intx_log[32];
static unsigned intx_count;

static void fake_router(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
    if (intx_count < 32)
        intx_log[intx_count] = (struct intx_event){devfn, pin, level};
    intx_count++;
}

static void hook_write(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t value)
{
    struct test_dev *d = container_of(pdev, struct test_dev, pci);
    d->hook_writes++;
    d->last_hook_offset = offset;
}

static void hook_bar_mapped(struct pci_device *pdev, unsigned bar, bool mapped, uint64_t base)
{
    struct test_dev *d = container_of(pdev, struct test_dev, pci);
    d->mapped_events += mapped ? 1 : -1;
}

static const struct pci_device_ops test_pci_ops = {.config_write = hook_write,
                                                   .bar_mapped = hook_bar_mapped};

static int test_dev_state(struct device *dev, struct snap *s)
{
    snap_enter(s, "pci");
    pci_device_state(container_of(dev, struct pci_device, dev), s);
    snap_leave(s);
    return snap_error(s);
}

static const struct device_ops test_dev_ops = {
    .state = test_dev_state, .kind = "test-pci", .state_version = 1};

static void test_dev_init(struct test_dev *d, const char *name, uint16_t device_id)
{
    static const struct pci_ids base_ids = {.vendor_id = 0x1234,
                                            .subsystem_vendor_id = 0x1af4,
                                            .subsystem_id = 0x1100,
                                            .class_code = 0x010802,
                                            .revision = 7};
    struct pci_ids ids = base_ids;
    ids.device_id = device_id;
    memset(d, 0, sizeof(*d));
    pci_device_init(&d->pci, name, &test_dev_ops, &ids, &test_pci_ops);
    assert_int_equal(pci_register_bar(&d->pci, 0, PCI_BAR_IO, false, 32, &region_ops, &d->io), 0);
    assert_int_equal(
        pci_register_bar(&d->pci, 1, PCI_BAR_MEM32, false, 0x1000, &region_ops, &d->mem32), 0);
    assert_int_equal(
        pci_register_bar(&d->pci, 2, PCI_BAR_MEM64, true, 0x100000, &region_ops, &d->mem64), 0);
    pci_set_interrupt_pin(&d->pci, PCI_INTA);
}

static int setup(void **state)
{
    bus_init(&pio, "pio");
    bus_init(&mmio, "mmio");
    pci_bus_init(&pcibus, &pio, &mmio);
    pci_bus_set_intx_router(&pcibus, (struct pci_intx_router){fake_router, NULL});
    memset(&cf9, 0, sizeof(cf9));
    memset(&sentinel, 0, sizeof(sentinel));
    pci_bus_set_cf9_handler(&pcibus, &region_ops, &cf9);
    assert_true(pci_bus_map_config_space(&pcibus, ECAM_BASE_TEST, ECAM_SIZE_TEST));
    test_dev_init(&dev_a, "dev-a", 0x0001);
    test_dev_init(&dev_b, "dev-b", 0x0002);
    assert_int_equal(pci_bus_add(&pcibus, &dev_a.pci, PCI_DEVFN(TEST_SLOT, 0)), 0);
    assert_int_equal(pci_bus_add(&pcibus, &dev_b.pci, PCI_DEVFN(4, 0)), 0);
    intx_count = 0;
    return 0;
}

static int teardown(void **state)
{
    pci_device_destroy(&dev_a.pci);
    pci_device_destroy(&dev_b.pci);
    pci_bus_destroy(&pcibus);
    bus_destroy(&pio);
    bus_destroy(&mmio);
    return 0;
}

static uint32_t cfg_addr(uint8_t devfn, unsigned reg)
{
    return 0x80000000u | (uint32_t)devfn << 8 | (reg & 0xfc);
}

static uint32_t cfg_read(uint8_t devfn, unsigned reg, unsigned size)
{
    bus_write(&pio, 0xcf8, 4, cfg_addr(devfn, reg));
    return (uint32_t)bus_read(&pio, 0xcfc + (reg & 3), size);
}

static void cfg_write(uint8_t devfn, unsigned reg, unsigned size, uint32_t value)
{
    bus_write(&pio, 0xcf8, 4, cfg_addr(devfn, reg));
    bus_write(&pio, 0xcfc + (reg & 3), size, value);
}

static uint64_t ecam_addr(uint8_t bus_number, uint8_t devfn, unsigned reg)
{
    return ECAM_BASE_TEST + ((uint64_t)bus_number << 20) + ((uint64_t)devfn << 12) + reg;
}

static void test_mechanism1_byte_lanes(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    assert_int_equal(cfg_read(devfn, 0, 4), 0x00011234);
    assert_int_equal(cfg_read(devfn, 0, 2), 0x1234);
    assert_int_equal(cfg_read(devfn, 2, 2), 0x0001);
    assert_int_equal(cfg_read(devfn, 1, 1), 0x12);
    assert_int_equal(cfg_read(devfn, 3, 1), 0x00);
    assert_int_equal(cfg_read(devfn, 0x08, 4), 0x01080207); /* class 010802, rev 7 */
    assert_int_equal(cfg_read(devfn, 0x0b, 1), 0x01);
    assert_int_equal(cfg_read(devfn, 0x2c, 4), 0x11001af4);
    /* The address register reads back without its reserved bits. */
    bus_write(&pio, 0xcf8, 4, 0xffffffff);
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0x80fffffc);
    /* Enable bit clear: no configuration cycle. */
    bus_write(&pio, 0xcf8, 4, cfg_addr(devfn, 0) & 0x7fffffff);
    assert_int_equal(bus_read(&pio, 0xcfc, 4), 0xffffffff);
    bus_write(&pio, 0xcfc, 4, 0);
    assert_int_equal(cfg_read(devfn, 0, 4), 0x00011234);
}

static void test_mechanism1_writes_by_lane(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    cfg_write(devfn, PCI_INTERRUPT_LINE, 1, 0x0b);
    assert_int_equal(cfg_read(devfn, PCI_INTERRUPT_LINE, 1), 0x0b);
    assert_int_equal(cfg_read(devfn, PCI_INTERRUPT_PIN, 1), PCI_INTA);
    /* Read-only bytes in the same dword keep their value. */
    cfg_write(devfn, PCI_INTERRUPT_LINE, 4, 0xffffff05);
    assert_int_equal(cfg_read(devfn, PCI_INTERRUPT_LINE, 4), 0x00000105);
    cfg_write(devfn, 0x0d, 1, 0x40); /* latency timer */
    assert_int_equal(cfg_read(devfn, 0x0c, 4), 0x00004000);
    /* Vendor, device and class ignore writes. */
    cfg_write(devfn, 0, 4, 0xdeadbeef);
    cfg_write(devfn, 8, 4, 0xdeadbeef);
    assert_int_equal(cfg_read(devfn, 0, 4), 0x00011234);
    assert_int_equal(cfg_read(devfn, 8, 4), 0x01080207);
    assert_true(dev_a.hook_writes >= 4);
    assert_int_equal(dev_a.last_hook_offset, 8);
}

static void test_cf8_shares_dword_with_cf9(void **state)
{
    bus_write(&pio, 0xcf8, 4, 0x80001800);
    bus_write(&pio, 0xcf9, 1, 0x06);
    assert_int_equal(cf9.writes, 1);
    assert_int_equal(cf9.last_value, 0x06);
    assert_int_equal(cf9.last_offset, 0);
    assert_int_equal(bus_read(&pio, 0xcf9, 1), 0x5a);
    assert_int_equal(cf9.reads, 1);
    /* The byte write did not touch the address latch. */
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0x80001800);
    /* Other sub-dword accesses at 0xCF8 neither latch nor reach 0xCF9. */
    bus_write(&pio, 0xcfb, 1, 0x01);
    bus_write(&pio, 0xcf8, 2, 0x1234);
    bus_write(&pio, 0xcfa, 2, 0x1234);
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0x80001800);
    assert_int_equal(bus_read(&pio, 0xcf8, 1), 0xff);
    assert_int_equal(bus_read(&pio, 0xcfa, 2), 0xffff);
    assert_int_equal(cf9.writes, 1);
}

static void test_absent_functions_read_all_ones(void **state)
{
    assert_int_equal(cfg_read(PCI_DEVFN(9, 0), 0, 4), 0xffffffff);
    assert_int_equal(cfg_read(PCI_DEVFN(9, 0), 2, 2), 0xffff);
    assert_int_equal(cfg_read(PCI_DEVFN(TEST_SLOT, 1), 0, 4), 0xffffffff);
    /* Another bus number through mechanism #1. */
    bus_write(&pio, 0xcf8, 4, 0x80000000u | 1u << 16 | (uint32_t)PCI_DEVFN(TEST_SLOT, 0) << 8);
    assert_int_equal(bus_read(&pio, 0xcfc, 4), 0xffffffff);
    cfg_write(PCI_DEVFN(9, 0), 0x10, 4, 0); /* dropped */
}

static void test_ecam(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0), 4), 0x00011234);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 2), 2), 0x0001);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x0a), 1), 0x08);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x28), 8), 0x11001af400000000ull);
    assert_int_equal(bus_read(&mmio, ecam_addr(1, devfn, 0), 4), 0xffffffff);
    assert_int_equal(bus_read(&mmio, ecam_addr(255, 0xff, 0xffc), 4), 0xffffffff);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, PCI_DEVFN(7, 0), 0), 2), 0xffff);
    /* Extended space of a conventional function reads 0, writes vanish. */
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x100), 4), 0);
    bus_write(&mmio, ecam_addr(0, devfn, 0x100), 4, 0xffffffff);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x100), 4), 0);
    /* Accesses crossing a dword are unsupported requests. */
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 2), 4), 0xffffffff);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 3), 2), 0xffff);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 4), 8), ~0ull);
    bus_write(&mmio, ecam_addr(0, devfn, 0x3b), 2, 0x0909);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x3c), 1), 0);
    /* An aligned 8-byte write is two dwords. */
    bus_write(&mmio, ecam_addr(0, devfn, 0x38), 8, 0x0000000900000000ull);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, devfn, 0x3c), 1), 9);
    /* ECAM and mechanism #1 see the same space. */
    assert_int_equal(cfg_read(devfn, 0x3c, 1), 9);
}

static void test_multifunction_header_bit(void **state)
{
    uint8_t fn0 = PCI_DEVFN(TEST_SLOT, 0);
    assert_int_equal(cfg_read(fn0, PCI_HEADER_TYPE, 1), 0x00);
    test_dev_init(&dev_fn2, "dev-fn2", 0x0003);
    assert_int_equal(pci_bus_add(&pcibus, &dev_fn2.pci, PCI_DEVFN(TEST_SLOT, 2)), 0);
    assert_int_equal(cfg_read(fn0, PCI_HEADER_TYPE, 1), 0x80);
    assert_int_equal(cfg_read(fn0, 0x0c, 4) >> 16, 0x0080);
    assert_int_equal(bus_read(&mmio, ecam_addr(0, fn0, 0x0e), 2), 0x0080);
    assert_int_equal(cfg_read(PCI_DEVFN(TEST_SLOT, 2), PCI_HEADER_TYPE, 1), 0x00);
    assert_int_equal(cfg_read(PCI_DEVFN(TEST_SLOT, 2), 0, 4), 0x00031234);
    assert_int_equal(cfg_read(PCI_DEVFN(4, 0), PCI_HEADER_TYPE, 1), 0x00);
    /* The slot is taken. */
    struct test_dev late;
    test_dev_init(&late, "late", 0x0004);
    assert_int_equal(pci_bus_add(&pcibus, &late.pci, PCI_DEVFN(TEST_SLOT, 2)), -1);
    assert_null(late.pci.bus);
    assert_int_equal(pci_bus_add(&pcibus, &dev_fn2.pci, PCI_DEVFN(8, 0)), -1); /* already on */
    pci_device_destroy(&late.pci);
    pci_device_destroy(&dev_fn2.pci);
}

static void test_status_w1c_and_command_mask(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    pci_set_word(&dev_a.pci, PCI_STATUS, 0xf900 | PCI_STATUS_DEVSEL_MEDIUM);
    cfg_write(devfn, PCI_STATUS, 2, 0x0100 | 0x0200 | 0x0010);
    assert_int_equal(cfg_read(devfn, PCI_STATUS, 2), 0xf800 | PCI_STATUS_DEVSEL_MEDIUM);
    cfg_write(devfn, PCI_COMMAND, 4, 0xffff0000); /* clears all error bits, command 0 */
    assert_int_equal(cfg_read(devfn, PCI_STATUS, 2), PCI_STATUS_DEVSEL_MEDIUM);
    cfg_write(devfn, PCI_COMMAND, 2, 0xffff);
    assert_int_equal(cfg_read(devfn, PCI_COMMAND, 2), 0x0547);
    assert_true(pci_bus_master_enabled(&dev_a.pci));
    cfg_write(devfn, PCI_COMMAND, 1, 0x03);
    assert_false(pci_bus_master_enabled(&dev_a.pci));
    assert_int_equal(pci_command(&dev_a.pci), 0x0503);
}

static void test_bar_sizing(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    assert_int_equal(cfg_read(devfn, 0x10, 4), 0x1);
    assert_int_equal(cfg_read(devfn, 0x14, 4), 0x0);
    assert_int_equal(cfg_read(devfn, 0x18, 4), 0xc);
    for (unsigned reg = 0x10; reg < 0x28; reg += 4)
        cfg_write(devfn, reg, 4, 0xffffffff);
    assert_int_equal(cfg_read(devfn, 0x10, 4), 0xffffffe1);
    assert_int_equal(cfg_read(devfn, 0x14, 4), 0xfffff000);
    assert_int_equal(cfg_read(devfn, 0x18, 4), 0xfff0000c);
    assert_int_equal(cfg_read(devfn, 0x1c, 4), 0xffffffff);
    assert_int_equal(cfg_read(devfn, 0x20, 4), 0);
    assert_int_equal(cfg_read(devfn, 0x24, 4), 0);
    assert_int_equal(cfg_read(devfn, PCI_ROM_ADDRESS, 4), 0);
    cfg_write(devfn, PCI_ROM_ADDRESS, 4, 0xffffffff);
    assert_int_equal(cfg_read(devfn, PCI_ROM_ADDRESS, 4), 0);
    /* Nothing was decoded while sizing (decode bits are off). */
    assert_int_equal(dev_a.mapped_events, 0);
    assert_int_equal(bus_read(&mmio, 0xfffff000, 4), 0xffffffff);
    assert_int_equal(dev_a.mem32.reads, 0);
}

static void program_bars(uint8_t devfn, uint16_t io, uint32_t mem32, uint64_t mem64)
{
    cfg_write(devfn, 0x10, 4, io);
    cfg_write(devfn, 0x14, 4, mem32);
    cfg_write(devfn, 0x18, 4, (uint32_t)mem64);
    cfg_write(devfn, 0x1c, 4, (uint32_t)(mem64 >> 32));
}

static void test_bar_mapping_follows_decode_and_moves(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    program_bars(devfn, 0xc000, 0xc0000000, 0x800000000ull);
    assert_int_equal(bus_read(&pio, 0xc004, 2), 0xffff); /* decode off */
    cfg_write(devfn, PCI_COMMAND, 2, PCI_COMMAND_IO);
    assert_int_equal(bus_read(&pio, 0xc004, 2), 0x5a5a);
    assert_int_equal(dev_a.io.last_offset, 4);
    assert_int_equal(dev_a.io.last_size, 2);
    assert_int_equal(bus_read(&mmio, 0xc0000000, 4), 0xffffffff);
    cfg_write(devfn, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    bus_write(&mmio, 0xc0000ff8, 8, 0x1122334455667788ull);
    assert_int_equal(dev_a.mem32.writes, 1);
    assert_int_equal(dev_a.mem32.last_offset, 0xff8);
    assert_int_equal(dev_a.mem32.last_value, 0x1122334455667788ull);
    assert_int_equal(bus_read(&mmio, 0x800000010ull, 4), 0x5a5a5a5a);
    assert_int_equal(dev_a.mem64.last_offset, 0x10);
    assert_int_equal(dev_a.mapped_events, 3);

    /* Re-programming moves the range. */
    cfg_write(devfn, 0x10, 4, 0xc100);
    assert_int_equal(bus_read(&pio, 0xc004, 1), 0xff);
    assert_int_equal(bus_read(&pio, 0xc11f, 1), 0x5a);
    assert_int_equal(dev_a.io.last_offset, 0x1f);
    /* A 64-bit BAR moves once both halves are written. */
    cfg_write(devfn, 0x1c, 4, 0x9);
    assert_int_equal(bus_read(&mmio, 0x800000010ull, 4), 0xffffffff);
    assert_int_equal(bus_read(&mmio, 0x900000010ull, 4), 0x5a5a5a5a);

    /* Decode off removes the ranges. */
    cfg_write(devfn, PCI_COMMAND, 2, 0);
    assert_int_equal(bus_read(&pio, 0xc100, 1), 0xff);
    assert_int_equal(bus_read(&mmio, 0xc0000000, 4), 0xffffffff);
    assert_int_equal(bus_read(&mmio, 0x900000010ull, 4), 0xffffffff);
    assert_int_equal(dev_a.mapped_events, 0);
    assert_int_equal(pio.count, 2); /* only 0xCF8 and 0xCFC remain */
    assert_int_equal(mmio.count, 1);
}

static void test_insane_bar_addresses_stay_unmapped(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    cfg_write(devfn, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    /* Unprogrammed (0) and sizing leftovers are not placements. */
    assert_int_equal(dev_a.mapped_events, 0);
    for (unsigned reg = 0x10; reg < 0x20; reg += 4)
        cfg_write(devfn, reg, 4, 0xffffffff);
    assert_int_equal(dev_a.mapped_events, 0);
    /* I/O past 64 KiB, memory wrapping 4 GiB. */
    cfg_write(devfn, 0x10, 4, 0xfff0);
    cfg_write(devfn, 0x10, 4, 0x10000);
    cfg_write(devfn, 0x14, 4, 0xfffff000);
    assert_int_equal(dev_a.mapped_events, 0);
    cfg_write(devfn, 0x10, 4, 0xffe0);
    assert_int_equal(bus_read(&pio, 0xffff, 1), 0x5a);
    assert_int_equal(dev_a.mapped_events, 1);
}

static void test_overlapping_bars_refused(void **state)
{
    uint8_t a = PCI_DEVFN(TEST_SLOT, 0), b = PCI_DEVFN(4, 0);
    bus_register(&pio, 0xd000, 8, &region_ops, &sentinel, "sentinel");
    program_bars(a, 0xc000, 0xc0000000, 0);
    cfg_write(a, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    program_bars(b, 0xc010, 0xc0000800, 0);
    cfg_write(b, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    assert_int_equal(dev_b.mapped_events, 0);
    bus_read(&pio, 0xc010, 1);
    assert_int_equal(dev_a.io.reads, 1);
    assert_int_equal(dev_b.io.reads, 0);
    /* Over a fixed device's range: refused, the fixed device keeps it. */
    cfg_write(b, 0x10, 4, 0xd000);
    assert_int_equal(dev_b.mapped_events, 0);
    bus_read(&pio, 0xd004, 1);
    assert_int_equal(sentinel.reads, 1);
    /* Once the conflict is gone, the next programming maps it. */
    cfg_write(b, 0x10, 4, 0xc020);
    assert_int_equal(dev_b.mapped_events, 1);
    bus_read(&pio, 0xc020, 1);
    assert_int_equal(dev_b.io.reads, 1);
}

/* A BAR refused for an overlap decodes as soon as the other range moves
 * away or stops decoding, without being programmed again (as hardware
 * does); a device whose decodes were dropped is not mapped back. */
static void test_refused_bar_maps_once_the_overlap_is_gone(void **state)
{
    uint8_t a = PCI_DEVFN(TEST_SLOT, 0), b = PCI_DEVFN(4, 0);
    program_bars(a, 0xc000, 0xc0000000, 0);
    cfg_write(a, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    program_bars(b, 0xc000, 0xc0000000, 0);
    cfg_write(b, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    assert_int_equal(dev_b.mapped_events, 0);
    /* a's memory BAR moves: b's takes the place it asked for. */
    cfg_write(a, 0x14, 4, 0xc1000000);
    assert_int_equal(dev_b.mapped_events, 1);
    bus_read(&mmio, 0xc0000010, 4);
    assert_int_equal(dev_b.mem32.reads, 1);
    bus_read(&mmio, 0xc1000010, 4);
    assert_int_equal(dev_a.mem32.reads, 1);
    /* a stops decoding I/O: b's I/O BAR is mapped. */
    cfg_write(a, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(dev_b.mapped_events, 2);
    bus_read(&pio, 0xc004, 1);
    assert_int_equal(dev_b.io.reads, 1);
    /* Refused again, then b's decodes dropped: a moving away maps nothing. */
    cfg_write(a, 0x14, 4, 0xc2000000);
    cfg_write(b, 0x14, 4, 0xc2000000);
    assert_int_equal(dev_b.mapped_events, 1);
    pci_device_drop_decodes(&dev_b.pci.dev);
    assert_int_equal(dev_b.mapped_events, 0);
    cfg_write(a, 0x14, 4, 0xc3000000);
    assert_int_equal(dev_b.mapped_events, 0);
    assert_int_equal(bus_read(&mmio, 0xc2000000, 4), 0xffffffff);
}

static void test_intx_and_disable(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    pci_set_irq(&dev_a.pci, true);
    assert_int_equal(intx_count, 1);
    assert_int_equal(intx_log[0].devfn, devfn);
    assert_int_equal(intx_log[0].pin, 0);
    assert_true(intx_log[0].level);
    assert_true(cfg_read(devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    pci_set_irq(&dev_a.pci, true); /* no duplicate edge */
    assert_int_equal(intx_count, 1);
    cfg_write(devfn, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    assert_int_equal(intx_count, 2);
    assert_false(intx_log[1].level);
    assert_true(cfg_read(devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT); /* still pending */
    cfg_write(devfn, PCI_COMMAND, 2, 0);
    assert_int_equal(intx_count, 3);
    assert_true(intx_log[2].level);
    pci_set_irq(&dev_a.pci, false);
    assert_int_equal(intx_count, 4);
    assert_false(intx_log[3].level);
    assert_false(cfg_read(devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    /* A function without an interrupt pin never reaches the router. */
    pci_set_interrupt_pin(&dev_b.pci, PCI_INTX_NONE);
    pci_set_irq(&dev_b.pci, true);
    assert_int_equal(intx_count, 4);
}

/* A function's state brings back its decodes and INTx after a reset; a
 * state from another function (other IDs) is refused. */
static void test_state_restores_decodes_and_intx(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    program_bars(devfn, 0xc000, 0xc0000000, 0x800000000ull);
    cfg_write(devfn, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    cfg_write(devfn, PCI_INTERRUPT_LINE, 1, 11);
    pci_set_irq(&dev_a.pci, true);
    struct snap_buf saved = {0};
    state_save(&dev_a.pci.dev, &saved);

    pci_device_reset(&dev_a.pci);
    assert_int_equal(bus_read(&pio, 0xc004, 2), 0xffff);
    assert_false(intx_log[intx_count - 1].level);
    char err[512] = "";
    assert_int_equal(state_load(&dev_a.pci.dev, saved.data, saved.len, err, sizeof(err)), 0);
    assert_int_equal(bus_read(&pio, 0xc004, 2), 0x5a5a);
    assert_int_equal(bus_read(&mmio, 0x800000010ull, 4), 0x5a5a5a5a);
    assert_int_equal(cfg_read(devfn, PCI_INTERRUPT_LINE, 1), 11);
    assert_true(pci_bus_master_enabled(&dev_a.pci));
    assert_true(intx_log[intx_count - 1].level);
    assert_true(cfg_read(devfn, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    assert_state_roundtrip(&dev_a.pci.dev, &dev_a.pci.dev);

    /* dev-b has another device ID: dev-a's config is not its own. */
    assert_int_equal(state_load(&dev_b.pci.dev, saved.data, saved.len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'pci.config'"));
    assert_non_null(strstr(err, "identity"));
    /* A load validates everything before it changes anything: dev-a can
     * refuse its own corrupted states and stay as it was. */
    assert_state_refusals(&dev_a.pci.dev, &dev_a.pci.dev);
    uint8_t two = 2;
    assert_state_field_refused(&dev_a.pci.dev, &dev_a.pci.dev, "pci.intx_level", &two, 1);
    assert_int_equal(bus_read(&pio, 0xc004, 2), 0x5a5a);
    snap_buf_free(&saved);
}

static void test_capabilities(void **state)
{
    struct test_dev d;
    test_dev_init(&d, "caps", 0x0009);
    int first = pci_add_capability(&d.pci, PCI_CAP_ID_MSIX, 0, 12);
    int second = pci_add_capability(&d.pci, PCI_CAP_ID_VNDR, 0, 16);
    int fixed = pci_add_capability(&d.pci, PCI_CAP_ID_PM, 0x80, 8);
    assert_int_equal(first, 0x40);
    assert_int_equal(second, 0x4c);
    assert_int_equal(fixed, 0x80);
    assert_int_equal(pci_add_capability(&d.pci, PCI_CAP_ID_PM, 0x84, 8), -1); /* overlaps */
    assert_int_equal(pci_add_capability(&d.pci, PCI_CAP_ID_PM, 0x42, 4), -1); /* unaligned */
    assert_int_equal(pci_add_capability(&d.pci, PCI_CAP_ID_PM, 0xfc, 8), -1); /* too far */
    assert_int_equal(pci_add_capability(&d.pci, PCI_CAP_ID_PM, 0, 1), -1);
    assert_int_equal(pci_bus_add(&pcibus, &d.pci, PCI_DEVFN(6, 0)), 0);
    uint8_t devfn = PCI_DEVFN(6, 0);
    assert_true(cfg_read(devfn, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(cfg_read(devfn, PCI_CAPABILITY_LIST, 1), 0x40);
    assert_int_equal(cfg_read(devfn, 0x40, 2), 0x4c00 | PCI_CAP_ID_MSIX);
    assert_int_equal(cfg_read(devfn, 0x4c, 2), 0x8000 | PCI_CAP_ID_VNDR);
    assert_int_equal(cfg_read(devfn, 0x80, 2), PCI_CAP_ID_PM);
    assert_int_equal(pci_find_capability(&d.pci, PCI_CAP_ID_PM), 0x80);
    assert_int_equal(pci_find_capability(&d.pci, PCI_CAP_ID_MSI), 0);
    /* The list is read-only; a device opens bits explicitly. */
    cfg_write(devfn, 0x40, 4, 0xffffffff);
    cfg_write(devfn, PCI_CAPABILITY_LIST, 1, 0);
    assert_int_equal(cfg_read(devfn, 0x40, 4), 0x4c00 | PCI_CAP_ID_MSIX);
    assert_int_equal(cfg_read(devfn, PCI_CAPABILITY_LIST, 1), 0x40);
    pci_set_wmask(&d.pci, 0x42, 2, 0xc000);
    cfg_write(devfn, 0x40, 4, 0xffffffff);
    assert_int_equal(cfg_read(devfn, 0x40, 4), 0xc0004c00 | PCI_CAP_ID_MSIX);
    /* Bytes no capability claims store what is written (as QEMU). */
    cfg_write(devfn, 0xf0, 4, 0x12345678);
    assert_int_equal(cfg_read(devfn, 0xf0, 4), 0x12345678);
    pci_device_destroy(&d.pci);
}

static void test_reset_restores_power_on_state(void **state)
{
    uint8_t devfn = PCI_DEVFN(TEST_SLOT, 0);
    program_bars(devfn, 0xc000, 0xc0000000, 0x800000000ull);
    cfg_write(devfn, PCI_COMMAND, 2, 0x0407);
    cfg_write(devfn, PCI_INTERRUPT_LINE, 1, 11);
    cfg_write(devfn, 0x60, 4, 0xabcdef01);
    pci_set_irq(&dev_a.pci, true);
    assert_int_equal(dev_a.mapped_events, 3);
    pci_device_reset(&dev_a.pci);
    assert_int_equal(dev_a.mapped_events, 0);
    assert_int_equal(pio.count, 2);
    assert_int_equal(mmio.count, 1);
    assert_int_equal(cfg_read(devfn, PCI_COMMAND, 4), 0);
    assert_int_equal(cfg_read(devfn, 0x10, 4), 0x1);
    assert_int_equal(cfg_read(devfn, 0x18, 4), 0xc);
    assert_int_equal(cfg_read(devfn, PCI_INTERRUPT_LINE, 1), 0);
    assert_int_equal(cfg_read(devfn, 0x60, 4), 0);
    assert_int_equal(pci_command(&dev_a.pci), 0);
    /* The router saw the line drop (INTx disable then reset: no stuck level). */
    assert_false(intx_log[(intx_count - 1) % 32].level);
    pci_bus_reset(&pcibus);
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0);
}

static void test_bad_registrations(void **state)
{
    struct test_dev d;
    memset(&d, 0, sizeof(d));
    static const struct pci_ids ids = {.vendor_id = 0x1234};
    pci_device_init(&d.pci, "bad", NULL, &ids, NULL);
    assert_int_equal(pci_register_bar(&d.pci, 0, PCI_BAR_IO, false, 24, &region_ops, &d.io), -1);
    assert_int_equal(pci_register_bar(&d.pci, 0, PCI_BAR_IO, false, 512, &region_ops, &d.io), -1);
    assert_int_equal(pci_register_bar(&d.pci, 5, PCI_BAR_MEM64, false, 4096, &region_ops, &d.io),
                     -1);
    assert_int_equal(pci_register_bar(&d.pci, 6, PCI_BAR_MEM32, false, 4096, &region_ops, &d.io),
                     -1);
    assert_int_equal(pci_register_bar(&d.pci, 0, PCI_BAR_MEM32, false, 8, &region_ops, &d.io), -1);
    assert_int_equal(pci_register_bar(&d.pci, 0, PCI_BAR_MEM64, false, 4096, &region_ops, &d.io),
                     0);
    assert_int_equal(pci_register_bar(&d.pci, 1, PCI_BAR_MEM32, false, 4096, &region_ops, &d.io),
                     -1); /* upper half of BAR 0 */
    assert_int_equal(pci_register_bar(&d.pci, 0, PCI_BAR_IO, false, 16, &region_ops, &d.io), -1);
    pci_device_destroy(&d.pci);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Every register of both config mechanisms, every size and alignment,
 * random values: nothing crashes, the fixed ranges stay in place. */
static void test_hostile_sweep(void **state)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    assert_true(bus_register(&pio, 0x3f8, 8, &region_ops, &sentinel, "sentinel"));
    assert_true(bus_register(&mmio, 0xfed00000, 0x400, &region_ops, &sentinel, "sentinel"));
    for (unsigned slot = 2; slot < 6; slot++) {
        for (unsigned reg = 0; reg < 0x100; reg++) {
            for (unsigned s = 0; s < 3; s++) {
                uint32_t v = (uint32_t)rng();
                bus_write(&pio, 0xcf8, 4, cfg_addr(PCI_DEVFN(slot, 0), reg));
                bus_write(&pio, 0xcfc + (reg & 3), sizes[s], v);
                bus_read(&pio, 0xcfc + (reg & 3), sizes[s]);
                bus_write(&pio, 0xcf8 + (reg & 7), sizes[s], v);
                bus_read(&pio, 0xcf8 + (reg & 7), sizes[s]);
            }
        }
    }
    for (unsigned i = 0; i < 200000; i++) {
        uint64_t r = rng();
        unsigned size = sizes[r & 3];
        uint8_t devfn = (r >> 8) & 1 ? PCI_DEVFN(TEST_SLOT, 0) : (uint8_t)(r >> 16);
        uint8_t busnr = (r >> 24) & 1 ? 0 : (uint8_t)(r >> 32);
        unsigned reg = (unsigned)(r >> 40) & ((r >> 9) & 1 ? 0x3f : 0xfff);
        uint64_t addr = ecam_addr(busnr, devfn, reg);
        if (addr + size > ECAM_BASE_TEST + ECAM_SIZE_TEST)
            continue;
        if ((r >> 52) & 1)
            bus_write(&mmio, addr, size, rng());
        else
            bus_read(&mmio, addr, size);
    }
    /* Fixed ranges were never displaced; the config ports still work. */
    bus_read(&pio, 0x3f8, 1);
    bus_read(&mmio, 0xfed00010, 4);
    assert_int_equal(sentinel.reads, 2);
    bus_write(&pio, 0xcf8, 4, cfg_addr(PCI_DEVFN(TEST_SLOT, 0), 0));
    assert_int_equal(bus_read(&pio, 0xcfc, 4), 0x00011234);
    /* After a reset, everything the sweep mapped is gone. */
    pci_device_reset(&dev_a.pci);
    pci_device_reset(&dev_b.pci);
    assert_int_equal(pio.count, 3);
    assert_int_equal(mmio.count, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mechanism1_byte_lanes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mechanism1_writes_by_lane, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cf8_shares_dword_with_cf9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_functions_read_all_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ecam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multifunction_header_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_w1c_and_command_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bar_mapping_follows_decode_and_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insane_bar_addresses_stay_unmapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_bars_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_bar_maps_once_the_overlap_is_gone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_intx_and_disable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_restores_decodes_and_intx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_restores_power_on_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_registrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_sweep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
