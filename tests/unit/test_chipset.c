/* The PC chipset functions on a real PCI bus: i440FX, PIIX3 PIRQ routing,
 * PIIX4 PM (timer, SCI, power button, S5, relocation), reset ports, the
 * machine's two-pass device reset, and a hostile sweep over every register
 * they expose. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cmocka.h>

#include "core/bus.h"
#include "core/machine.h"
#include "devices/i440fx.h"
#include "devices/pc_layout.h"
#include "devices/piix3.h"
#include "devices/piix4_pm.h"
#include "devices/reset_ports.h"
#include "pci/pci.h"
#include "support/state.h"

#define PM PC_PM_BASE_DEFAULT

struct irq_sink {
    uint32_t sources[24]; /* per GSI: bits of the sources asserting it */
    unsigned calls;
};

struct platform {
    unsigned sci_changes;
    bool sci;
    unsigned power_offs;
    unsigned resets;
    unsigned pam_calls;
    uint8_t pam[I440FX_PAM_COUNT];
    uint64_t fake_ns;
};

static struct bus pio, mmio;
static struct pci_bus pcibus;
static struct i440fx hb;
static struct piix3 isa;
static struct piix4_pm pm;
static struct reset_ports rp;
static struct pci_device nic, disk, multi_fn1;
static struct irq_sink sink;
static struct platform plat;

/* One per PIRQ: the bank it drives names the sink and the source bit. */
struct pirq_tap {
    struct irq_sink *sink;
    uint32_t source_bit;
};
static struct pirq_tap pirq_taps[PC_PIRQ_COUNT];

static void sink_set_irq(void *opaque, unsigned irq, bool level)
{
    const struct pirq_tap *tap = opaque;
    struct irq_sink *s = tap->sink;
    uint32_t source_bit = tap->source_bit;
    assert_true(irq < 24);
    s->calls++;
    if (level)
        s->sources[irq] |= source_bit;
    else
        s->sources[irq] &= ~source_bit;
}

static void set_sci(void *opaque, bool level)
{
    struct platform *p = opaque;
    p->sci_changes++;
    p->sci = level;
}

static void power_off(void *opaque, bool level)
{
    if (level)
        ((struct platform *)opaque)->power_offs++;
}

static void request_reset(void *opaque, bool level)
{
    if (level)
        ((struct platform *)opaque)->resets++;
}

static void pam_changed(void *opaque, const uint8_t pam[I440FX_PAM_COUNT])
{
    struct platform *p = opaque;
    p->pam_calls++;
    memcpy(p->pam, pam, I440FX_PAM_COUNT);
}

static uint64_t fake_now(void *opaque)
{
    return ((struct platform *)opaque)->fake_ns;
}

/* The machine's clock: CLOCK_MONOTONIC, or plat's fake time. */
static struct vm_clock mono_clock;
static struct vm_clock fake_clock = {.source = fake_now, .opaque = &plat};

/* A plain PCI function whose state is its config space and INTx. */
static int endpoint_state(struct device *dev, struct snap *s)
{
    snap_enter(s, "pci");
    pci_device_state(container_of(dev, struct pci_device, dev), s);
    snap_leave(s);
    return snap_error(s);
}

static const struct device_ops endpoint_ops = {
    .state = endpoint_state,
    .kind = "test-endpoint",
    .state_version = 1,
};

static void add_endpoint_on(struct pci_bus *bus, struct pci_device *pdev, const char *name,
                            uint8_t devfn, enum pci_intx_pin pin)
{
    static const struct pci_ids ids = {.vendor_id = 0x1af4, .device_id = 0x1000};
    pci_device_init(pdev, name, &endpoint_ops, &ids, NULL);
    pci_set_interrupt_pin(pdev, pin);
    assert_int_equal(pci_bus_add(bus, pdev, devfn), 0);
}

static void add_endpoint(struct pci_device *pdev, const char *name, uint8_t devfn,
                         enum pci_intx_pin pin)
{
    add_endpoint_on(&pcibus, pdev, name, devfn, pin);
}

/* One chipset as the VMM wires it, on its own buses, sink and platform. */
struct chipset {
    struct bus *pio, *mmio;
    struct pci_bus *pcibus;
    struct i440fx *hb;
    struct piix3 *isa;
    struct piix4_pm *pm;
    struct reset_ports *rp;
    struct irq_sink *sink;
    struct platform *plat;
    struct pirq_tap *taps; /* PC_PIRQ_COUNT */
    const struct vm_clock *clock;
};

static void build_chipset(const struct chipset *c)
{
    memset(c->sink, 0, sizeof(*c->sink));
    memset(c->plat, 0, sizeof(*c->plat));
    bus_init(c->pio, "pio");
    bus_init(c->mmio, "mmio");
    pci_bus_init(c->pcibus, c->pio, c->mmio);
    i440fx_init(c->hb, (struct i440fx_hooks){pam_changed, c->plat});
    struct irq_bank pirq_out[PC_PIRQ_COUNT];
    for (unsigned n = 0; n < PC_PIRQ_COUNT; n++) {
        c->taps[n] = (struct pirq_tap){c->sink, PC_IRQ_SOURCE_PIRQ(n)};
        pirq_out[n] = (struct irq_bank){sink_set_irq, &c->taps[n]};
    }
    piix3_init(c->isa, pirq_out);
    assert_int_equal(piix4_pm_init(c->pm, c->clock, (struct irq_line){set_sci, c->plat},
                                   (struct irq_line){power_off, c->plat}, NULL),
                     0);
    reset_ports_init(c->rp, (struct irq_line){request_reset, c->plat});
    assert_int_equal(i440fx_attach(c->hb, c->pcibus), 0);
    assert_int_equal(piix3_attach(c->isa, c->pcibus), 0);
    assert_int_equal(piix4_pm_attach(c->pm, c->pcibus), 0);
    pci_bus_set_cf9_handler(c->pcibus, &reset_ports_cf9_io_ops, c->rp);
    assert_true(bus_register(c->pio, PC_FAST_A20_PORT, 1, &reset_ports_port92_io_ops, c->rp, "92"));
}

static void destroy_chipset(const struct chipset *c)
{
    c->pm->pci.dev.ops->destroy(&c->pm->pci.dev);
    c->isa->pci.dev.ops->destroy(&c->isa->pci.dev);
    c->hb->pci.dev.ops->destroy(&c->hb->pci.dev);
    pci_bus_destroy(c->pcibus);
    bus_destroy(c->pio);
    bus_destroy(c->mmio);
}

static int setup(void **state)
{
    vm_clock_init(&mono_clock);
    build_chipset(&(struct chipset){&pio, &mmio, &pcibus, &hb, &isa, &pm, &rp, &sink, &plat,
                                    pirq_taps, &mono_clock});
    add_endpoint(&nic, "nic", PCI_DEVFN(2, 0), PCI_INTA);
    add_endpoint(&disk, "disk", PCI_DEVFN(6, 0), PCI_INTA);
    add_endpoint(&multi_fn1, "fn1", PCI_DEVFN(6, 1), PCI_INTB);
    return 0;
}

static int teardown(void **state)
{
    pci_device_destroy(&nic);
    pci_device_destroy(&disk);
    pci_device_destroy(&multi_fn1);
    destroy_chipset(&(struct chipset){&pio, &mmio, &pcibus, &hb, &isa, &pm, &rp, &sink, &plat,
                                      pirq_taps, &mono_clock});
    return 0;
}

static uint32_t cfg_read(uint8_t devfn, unsigned reg, unsigned size)
{
    bus_write(&pio, 0xcf8, 4, 0x80000000u | (uint32_t)devfn << 8 | (reg & 0xfc));
    return (uint32_t)bus_read(&pio, 0xcfc + (reg & 3), size);
}

static void cfg_write(uint8_t devfn, unsigned reg, unsigned size, uint32_t value)
{
    bus_write(&pio, 0xcf8, 4, 0x80000000u | (uint32_t)devfn << 8 | (reg & 0xfc));
    bus_write(&pio, 0xcfc + (reg & 3), size, value);
}

static void reset_all(void)
{
    struct device *devs[] = {&hb.pci.dev, &isa.pci.dev, &pm.pci.dev, &rp.dev};
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
        devs[i]->ops->reset(devs[i]);
    pci_device_reset(&nic);
    pci_device_reset(&disk);
    pci_device_reset(&multi_fn1);
}

static void test_identities(void **state)
{
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, 0, 4), 0x12378086);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, 8, 4), 0x06000002);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, PCI_HEADER_TYPE, 1), 0x00);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, I440FX_SMRAM, 1), 0x02);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0, 4), 0x70008086);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 8, 4), 0x06010000);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, PCI_HEADER_TYPE, 1), 0x80); /* 0.1.3 exists */
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, PCI_COMMAND, 4), 0x02000007);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0x60, 4), 0x80808080);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0x4c, 1), 0x4d);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0x69, 1), 0x02);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, 0, 4), 0x71138086);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, 8, 4), 0x06800003);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PCI_INTERRUPT_PIN, 1), 1);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4), 0xb001);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMREGMISC, 1), 1);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_SMBHSTCFG, 1), 0);
    /* Functions 0.1.1 and 0.1.2 do not exist. */
    assert_int_equal(cfg_read(PCI_DEVFN(1, 1), 0, 4), 0xffffffff);
    /* ECAM reaches the same functions. */
    assert_int_equal(bus_read(&mmio, PC_ECAM_BASE + ((uint64_t)PC_PIIX4_PM_DEVFN << 12), 4),
                     0x71138086);
}

static void test_host_bridge_registers(void **state)
{
    cfg_write(PC_I440FX_DEVFN, 0x58, 4, 0x33333300);
    assert_int_equal(plat.pam_calls, 1);
    assert_int_equal(plat.pam[0], 0x33);
    assert_int_equal(plat.pam[2], 0x33);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, 0x58, 4), 0x33333300);
    cfg_write(PC_I440FX_DEVFN, I440FX_SMRAM, 1, 0xff);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, I440FX_SMRAM, 1), 0x7a);
    cfg_write(PC_I440FX_DEVFN, 0, 4, 0);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, 0, 4), 0x12378086);
    reset_all();
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, 0x58, 4), 0);
    assert_int_equal(cfg_read(PC_I440FX_DEVFN, I440FX_SMRAM, 1), 0x02);
    assert_int_equal(plat.pam[0], 0);
}

static void test_swizzle(void **state)
{
    assert_int_equal(pc_pirq_for(1, 0), 0); /* slot 1 INTA -> PIRQA */
    assert_int_equal(pc_pirq_for(0, 0), 3); /* slot 0 INTA -> PIRQD */
    assert_int_equal(pc_pirq_for(2, 0), 1);
    assert_int_equal(pc_pirq_for(6, 1), 2);
    assert_int_equal(pc_pirq_for(31, 3), 1);
}

static void test_pirq_routing_reaches_isa_irq(void **state)
{
    /* nic: slot 2 INTA -> PIRQB. Route disabled at reset: no ISA IRQ, only
     * the IOAPIC path (GSI 17). */
    pci_set_irq(&nic, true);
    assert_int_equal(sink.calls, 1);
    assert_int_equal(sink.sources[PC_PCI_GSI_BASE + 1], PC_IRQ_SOURCE_PIRQ(1));
    for (unsigned irq = 0; irq < 16; irq++)
        assert_int_equal(sink.sources[irq], 0);
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 10);
    assert_int_equal(piix3_pirq_irq(&isa, 1), 10);
    assert_int_equal(sink.sources[10], PC_IRQ_SOURCE_PIRQ(1));
    /* Rerouting moves the asserted level. */
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 11);
    assert_int_equal(sink.sources[10], 0);
    assert_int_equal(sink.sources[11], PC_IRQ_SOURCE_PIRQ(1));
    /* Disable bit, and reserved IRQs, disconnect. */
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 0x8b);
    assert_int_equal(sink.sources[11], 0);
    assert_int_equal(piix3_pirq_irq(&isa, 1), -1);
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 2);
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 13);
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 0x1b);
    assert_int_equal(piix3_pirq_irq(&isa, 1), -1);
    for (unsigned irq = 0; irq < 16; irq++)
        assert_int_equal(sink.sources[irq], 0);
    /* A dword write sets all four routes at once, as firmware does. */
    cfg_write(PC_PIIX3_DEVFN, 0x60, 4, 0x0b0b0a0a);
    assert_int_equal(sink.sources[10], PC_IRQ_SOURCE_PIRQ(1));
    assert_int_equal(sink.sources[PC_PCI_GSI_BASE + 1], PC_IRQ_SOURCE_PIRQ(1));
    pci_set_irq(&nic, false);
    assert_int_equal(sink.sources[10], 0);
    assert_int_equal(sink.sources[PC_PCI_GSI_BASE + 1], 0);
    /* INTx disable in the device's command register also drops it. */
    pci_set_irq(&nic, true);
    cfg_write(PCI_DEVFN(2, 0), PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
    assert_int_equal(sink.sources[10], 0);
    assert_int_equal(sink.sources[PC_PCI_GSI_BASE + 1], 0);
    cfg_write(PCI_DEVFN(2, 0), PCI_COMMAND, 2, 0);
    assert_int_equal(sink.sources[10], PC_IRQ_SOURCE_PIRQ(1));
}

static void test_shared_pirq_is_wired_or(void **state)
{
    /* disk: slot 6 INTA -> PIRQB; its function 1 (INTB) -> PIRQC. Route B
     * and C to the same IRQ: two sources on one line. */
    cfg_write(PC_PIIX3_DEVFN, 0x61, 2, 0x0b0b);
    pci_set_irq(&disk, true);
    pci_set_irq(&multi_fn1, true);
    assert_int_equal(sink.sources[11], PC_IRQ_SOURCE_PIRQ(1) | PC_IRQ_SOURCE_PIRQ(2));
    assert_int_equal(sink.sources[17], PC_IRQ_SOURCE_PIRQ(1));
    assert_int_equal(sink.sources[18], PC_IRQ_SOURCE_PIRQ(2));
    pci_set_irq(&disk, false);
    assert_int_equal(sink.sources[11], PC_IRQ_SOURCE_PIRQ(2));
    pci_set_irq(&multi_fn1, false);
    assert_int_equal(sink.sources[11], 0);
    /* Two devices on one PIRQ: nic (slot 2 INTA) and slot 7 INTD. */
    struct pci_device other;
    static const struct pci_ids ids = {.vendor_id = 0x1af4, .device_id = 0x1001};
    pci_device_init(&other, "other", NULL, &ids, NULL);
    pci_set_interrupt_pin(&other, PCI_INTD); /* slot 7 INTD -> (7+3+3)&3 = PIRQB */
    assert_int_equal(pci_bus_add(&pcibus, &other, PCI_DEVFN(7, 0)), 0);
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 5);
    pci_set_irq(&nic, true);
    pci_set_irq(&other, true);
    pci_set_irq(&nic, false);
    assert_int_equal(sink.sources[5], PC_IRQ_SOURCE_PIRQ(1)); /* still held by other */
    pci_set_irq(&other, false);
    assert_int_equal(sink.sources[5], 0);
    pci_device_destroy(&other);
}

static uint32_t pm_read(unsigned offset, unsigned size)
{
    return (uint32_t)bus_read(&pio, PM + offset, size);
}

static void pm_write(unsigned offset, unsigned size, uint32_t value)
{
    bus_write(&pio, PM + offset, size, value);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_pm_timer_frequency(void **state)
{
    uint64_t t0 = mono_ns();
    uint32_t a = pm_read(PC_PM_TMR_OFFSET, 4);
    uint64_t t1 = mono_ns();
    struct timespec ten_ms = {0, 10000000};
    nanosleep(&ten_ms, NULL);
    uint64_t t2 = mono_ns();
    uint32_t b = pm_read(PC_PM_TMR_OFFSET, 4);
    uint64_t t3 = mono_ns();
    assert_int_equal(a >> 24, 0);
    assert_int_equal(b >> 24, 0);
    uint32_t ticks = (b - a) & 0xffffff;
    /* The reads bracket an interval between t2-t1 and t3-t0. */
    uint64_t low = (t2 - t1) * PC_PM_TIMER_HZ / 1000000000ull;
    uint64_t high = (t3 - t0) * PC_PM_TIMER_HZ / 1000000000ull + 2;
    print_message("PM timer: %u ticks over ~%.3f ms (expect ~35795 for 10 ms)\n", ticks,
                  (double)(t2 - t1) / 1e6);
    assert_true(ticks >= 35795);
    assert_true(ticks >= low && ticks <= high);
    /* Byte reads of the timer and its read-only-ness. */
    pm_write(PC_PM_TMR_OFFSET, 4, 0);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0);
}

static void test_pm_timer_overflow_with_fake_clock(void **state)
{
    pm.clock = &fake_clock;
    plat.fake_ns = 1000;
    pm.pci.dev.ops->reset(&pm.pci.dev);
    assert_int_equal(piix4_pm_timer_value(&pm), 0);
    plat.fake_ns += 1000000000ull; /* one second */
    assert_int_equal(piix4_pm_timer_value(&pm), PC_PM_TIMER_HZ & 0xffffff);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_TMR, 0);
    pm_write(PC_PM1_EN_OFFSET, 2, PC_PM1_EN_TMR);
    assert_false(plat.sci);
    /* Bit 23 toggles at 2^23 ticks (~2.34 s). */
    plat.fake_ns = 1000 + (0x800000ull * 1000000000ull + PC_PM_TIMER_HZ - 1) / PC_PM_TIMER_HZ;
    piix4_pm_timer_tick(&pm);
    assert_true(plat.sci);
    assert_true(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_TMR);
    /* W1C clears it and the SCI; the next toggle is 2^23 ticks later. */
    pm_write(PC_PM1_STS_OFFSET, 2, PC_PM1_STS_TMR);
    assert_false(plat.sci);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_TMR, 0);
    plat.fake_ns += 2000000000ull;
    piix4_pm_timer_tick(&pm);
    assert_false(plat.sci);
    plat.fake_ns += 400000000ull;
    piix4_pm_timer_tick(&pm);
    assert_true(plat.sci);
    /* The count wraps at 24 bits. */
    plat.fake_ns += 10ull * 1000000000ull;
    assert_true(piix4_pm_timer_value(&pm) <= 0xffffff);
}

static void test_power_button_raises_sci(void **state)
{
    piix4_pm_press_power_button(&pm);
    assert_true(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_PWRBTN);
    assert_false(plat.sci); /* not enabled */
    pm_write(PC_PM1_STS_OFFSET, 2, PC_PM1_STS_PWRBTN);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_PWRBTN, 0);
    pm_write(PC_PM1_EN_OFFSET, 2, PC_PM1_EN_PWRBTN);
    assert_int_equal(pm_read(PC_PM1_EN_OFFSET, 2), PC_PM1_EN_PWRBTN);
    piix4_pm_press_power_button(&pm);
    assert_true(plat.sci);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET + 1, 1), PC_PM1_STS_PWRBTN >> 8);
    /* Writing 0 or other bits does not clear it; a byte W1C on the high lane does. */
    pm_write(PC_PM1_STS_OFFSET, 2, 0);
    pm_write(PC_PM1_STS_OFFSET, 1, 0xff);
    assert_true(plat.sci);
    pm_write(PC_PM1_STS_OFFSET + 1, 1, PC_PM1_STS_PWRBTN >> 8);
    assert_false(plat.sci);
    /* Masking the enable also drops the line. */
    piix4_pm_press_power_button(&pm);
    assert_true(plat.sci);
    pm_write(PC_PM1_EN_OFFSET, 2, 0);
    assert_false(plat.sci);
}

static void test_s5_powers_off(void **state)
{
    /* Linux: SLP_TYP first, then SLP_TYP | SLP_EN. */
    pm_write(PC_PM1_CNT_OFFSET, 2, PC_PM1_CNT_SCI_EN | (PC_SLP_TYP_S5 << 10));
    assert_int_equal(plat.power_offs, 0);
    pm_write(PC_PM1_CNT_OFFSET, 2, PC_PM1_CNT_SCI_EN | (PC_SLP_TYP_S5 << 10) | PC_PM1_CNT_SLP_EN);
    assert_int_equal(plat.power_offs, 1);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2), PC_PM1_CNT_SCI_EN); /* SLP_EN reads 0 */
    /* S3 (1) is not supported: ignored. */
    pm_write(PC_PM1_CNT_OFFSET, 2, (1 << 10) | PC_PM1_CNT_SLP_EN);
    assert_int_equal(plat.power_offs, 1);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2), 1 << 10);
    /* S4 (QEMU's s4_val 2) also powers off; a byte write to the high lane works. */
    pm_write(PC_PM1_CNT_OFFSET + 1, 1, (PC_SLP_TYP_S4 << 2) | (PC_PM1_CNT_SLP_EN >> 8));
    assert_int_equal(plat.power_offs, 2);
}

/* Accesses that span registers: each register takes only its own bytes,
 * reads see every register at one instant, reserved bytes read 0. */
static void test_pm_accesses_spanning_registers(void **state)
{
    pm.clock = &fake_clock;
    plat.fake_ns = 1000;
    pm.pci.dev.ops->reset(&pm.pci.dev);
    uint16_t s5 = PC_SLP_TYP_S5 << PC_PM1_CNT_SLP_TYP_SHIFT;

    /* PM1_EN and PM1_CNT in one 4-byte write; SLP_TYP alone sleeps nowhere. */
    pm_write(PC_PM1_EN_OFFSET, 4, PC_PM1_EN_PWRBTN | (uint32_t)(PC_PM1_CNT_SCI_EN | s5) << 16);
    assert_int_equal(pm_read(PC_PM1_EN_OFFSET, 2), PC_PM1_EN_PWRBTN);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2), PC_PM1_CNT_SCI_EN | s5);
    assert_int_equal(pm_read(PC_PM1_EN_OFFSET, 4),
                     PC_PM1_EN_PWRBTN | (uint32_t)(PC_PM1_CNT_SCI_EN | s5) << 16);
    assert_int_equal(plat.power_offs, 0);

    /* PM1_STS's high byte (W1C) and PM1_EN's low byte in one 2-byte write. */
    piix4_pm_press_power_button(&pm);
    assert_true(plat.sci);
    pm_write(PC_PM1_STS_OFFSET + 1, 2, (PC_PM1_STS_PWRBTN >> 8) | PC_PM1_EN_TMR << 8);
    assert_false(plat.sci);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_PWRBTN, 0);
    assert_int_equal(pm_read(PC_PM1_EN_OFFSET, 2), PC_PM1_EN_PWRBTN | PC_PM1_EN_TMR);

    /* 8 bytes from 0: PM1_STS, PM1_EN, PM1_CNT, then reserved zeros. */
    uint64_t head = bus_read(&pio, PM + PC_PM1_STS_OFFSET, 8);
    assert_int_equal(head & 0xffff, pm_read(PC_PM1_STS_OFFSET, 2));
    assert_int_equal((head >> 16) & 0xffff, PC_PM1_EN_PWRBTN | PC_PM1_EN_TMR);
    assert_int_equal((head >> 32) & 0xffff, PC_PM1_CNT_SCI_EN | s5);
    assert_int_equal(head >> 48, 0);
    /* 8 bytes from PM1_CNT: PM1_CNT, reserved zeros, the count now. */
    plat.fake_ns += 1000000000ull;
    uint64_t tail = bus_read(&pio, PM + PC_PM1_CNT_OFFSET, 8);
    assert_int_equal(tail & 0xffffffff, PC_PM1_CNT_SCI_EN | s5);
    assert_int_equal(tail >> 32, PC_PM_TIMER_HZ & 0xffffff);
    assert_int_equal(tail >> 32, piix4_pm_timer_value(&pm));

    /* Reserved bytes and the read-only timer ignore a write over them. */
    pm_write(PC_PM1_CNT_OFFSET + 2, 4, ~0u);
    assert_int_equal(bus_read(&pio, PM + PC_PM1_CNT_OFFSET, 8), tail);
    assert_int_equal(plat.power_offs, 0);

    /* SLP_EN in the third byte of a write starting at PM1_EN's high byte:
     * PM1_EN's high lane cleared, PM1_CNT written whole, S5 entered. */
    pm_write(PC_PM1_EN_OFFSET + 1, 4, (uint32_t)(PC_PM1_CNT_SLP_EN | s5) << 8);
    assert_int_equal(plat.power_offs, 1);
    assert_int_equal(pm_read(PC_PM1_EN_OFFSET, 2), PC_PM1_EN_TMR);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2), s5); /* SLP_EN reads 0; SCI_EN written 0 */
    /* A byte write to PM1_CNT's low lane leaves SLP_EN (high lane) unwritten. */
    pm_write(PC_PM1_CNT_OFFSET, 1, 0xff);
    assert_int_equal(plat.power_offs, 1);
}

static void test_smi_command_toggles_sci_en(void **state)
{
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2) & PC_PM1_CNT_SCI_EN, 0);
    bus_write(&pio, PC_SMI_CMD_PORT, 1, PC_ACPI_ENABLE);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2) & PC_PM1_CNT_SCI_EN, PC_PM1_CNT_SCI_EN);
    assert_int_equal(bus_read(&pio, PC_SMI_CMD_PORT, 1), PC_ACPI_ENABLE);
    bus_write(&pio, PC_SMI_CMD_PORT, 1, PC_ACPI_DISABLE);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2) & PC_PM1_CNT_SCI_EN, 0);
    bus_write(&pio, PC_SMI_CMD_PORT + 1, 1, 0x5a);
    assert_int_equal(bus_read(&pio, PC_SMI_CMD_PORT, 2), 0x5af0);
}

static void test_gpe_block(void **state)
{
    piix4_pm_raise_gpe(&pm, 9);
    assert_false(plat.sci);
    assert_int_equal(bus_read(&pio, PC_GPE0_BASE, 2), 0x0200);
    bus_write(&pio, PC_GPE0_BASE + 3, 1, 0x02);
    assert_true(plat.sci);
    assert_int_equal(bus_read(&pio, PC_GPE0_BASE, 4), 0x02000200);
    bus_write(&pio, PC_GPE0_BASE, 2, 0x0200);
    assert_false(plat.sci);
    assert_int_equal(bus_read(&pio, PC_GPE0_BASE, 4), 0x02000000);
}

static void test_pm_block_relocation(void **state)
{
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4, 0xffffffff);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4), 0xffc1);
    /* 0xFFC0-0xFFFF is free: the block moved. */
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0xff);
    assert_int_equal(bus_read(&pio, 0xffc0 + PC_PM_TMR_OFFSET + 3, 1), 0);
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 2, 0x6001);
    assert_int_equal(bus_read(&pio, 0x6000 + PC_PM_TMR_OFFSET + 3, 1), 0);
    assert_int_equal(bus_read(&pio, 0xffc0 + PC_PM_TMR_OFFSET + 3, 1), 0xff);
    assert_int_equal(piix4_pm_block_base(&pm), 0x6000); /* what the FADT will name */
    /* PMREGMISC.PMIOSE off: gone, but PMBA still says where it would be. */
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMREGMISC, 1, 0xfe);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMREGMISC, 1), 0);
    assert_int_equal(bus_read(&pio, 0x6000 + PC_PM_TMR_OFFSET + 3, 1), 0xff);
    assert_int_equal(piix4_pm_block_base(&pm), 0x6000);
    /* Onto the GPE block: refused, GPE intact. */
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4, 0xafc1);
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMREGMISC, 1, 1);
    assert_int_equal(bus_read(&pio, 0xafc0, 1), 0xff);
    assert_int_equal(bus_read(&pio, PC_GPE0_BASE, 1), 0);
    /* Reset puts it back at 0xB000. */
    reset_all();
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4), 0xb001);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0);
    assert_int_equal(piix4_pm_block_base(&pm), 0xb000);
}

static void test_reset_ports(void **state)
{
    assert_int_equal(bus_read(&pio, 0xcf9, 1), 0);
    bus_write(&pio, 0xcf9, 1, 0x02);
    assert_int_equal(plat.resets, 0);
    assert_int_equal(bus_read(&pio, 0xcf9, 1), 0x02);
    bus_write(&pio, 0xcf9, 1, PC_RESET_VALUE);
    assert_int_equal(plat.resets, 1);
    bus_write(&pio, 0xcf9, 1, 0x04); /* soft reset too */
    assert_int_equal(plat.resets, 2);
    /* The config address register is untouched by all this. */
    bus_write(&pio, 0xcf8, 4, 0x80000800);
    bus_write(&pio, 0xcf9, 1, 0x02);
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0x80000800);

    assert_int_equal(bus_read(&pio, 0x92, 1), PORT92_A20);
    bus_write(&pio, 0x92, 1, 0x00);
    assert_int_equal(bus_read(&pio, 0x92, 1), 0);
    bus_write(&pio, 0x92, 1, PORT92_A20);
    assert_int_equal(plat.resets, 2);
    bus_write(&pio, 0x92, 1, PORT92_A20 | PORT92_INIT);
    assert_int_equal(plat.resets, 3);
    bus_write(&pio, 0x92, 1, PORT92_A20 | PORT92_INIT); /* no new rising edge */
    assert_int_equal(plat.resets, 3);
    bus_write(&pio, 0x92, 1, PORT92_A20);
    bus_write(&pio, 0x92, 1, 0xff);
    assert_int_equal(plat.resets, 4);
    reset_all();
    assert_int_equal(bus_read(&pio, 0x92, 1), PORT92_A20);
    assert_int_equal(bus_read(&pio, 0xcf9, 1), 0);
}

static void test_reset_returns_power_on_state(void **state)
{
    cfg_write(PC_PIIX3_DEVFN, 0x60, 4, 0x0b0b0a0a);
    pci_set_irq(&nic, true);
    pm_write(PC_PM1_EN_OFFSET, 2, PC_PM1_EN_PWRBTN);
    piix4_pm_press_power_button(&pm);
    bus_write(&pio, PC_SMI_CMD_PORT, 1, PC_ACPI_ENABLE);
    assert_true(plat.sci);
    assert_int_equal(sink.sources[10], PC_IRQ_SOURCE_PIRQ(1));
    reset_all();
    assert_int_equal(bus_read(&pio, 0xcf8, 4), 0);
    assert_false(plat.sci);
    for (unsigned irq = 0; irq < 24; irq++)
        assert_int_equal(sink.sources[irq], 0);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0x60, 4), 0x80808080);
    assert_int_equal(pm_read(PC_PM1_STS_OFFSET, 4), 0);
    assert_int_equal(pm_read(PC_PM1_CNT_OFFSET, 2), 0);
    /* And the routing works from scratch afterwards. */
    cfg_write(PC_PIIX3_DEVFN, 0x61, 1, 11);
    pci_set_irq(&nic, true);
    assert_int_equal(sink.sources[11], PC_IRQ_SOURCE_PIRQ(1));
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void sweep_ports(uint16_t first, unsigned len)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    for (unsigned port = first; port < first + len; port++) {
        for (unsigned s = 0; s < 4; s++) {
            bus_read(&pio, port, sizes[s]);
            bus_write(&pio, port, sizes[s], rng());
            bus_write(&pio, port, sizes[s], ~0ull);
            bus_write(&pio, port, sizes[s], 0);
            bus_read(&pio, port, sizes[s]);
        }
    }
}

/* Every port and config register of the chipset, every size and alignment,
 * random values. Reset and power-off requests are expected; crashes,
 * lost fixed ranges or sanitizer reports are not. */
static void test_hostile_sweep(void **state)
{
    static const struct io_ops no_ops = {0};
    struct pci_device *victim = &disk;
    assert_true(bus_register(&pio, 0x3f8, 8, &no_ops, &sink, "com1"));
    for (unsigned round = 0; round < 4; round++) {
        sweep_ports(0xcf8, 8);
        sweep_ports(0x92, 1);
        sweep_ports(PC_SMI_CMD_PORT, 2);
        sweep_ports(PC_GPE0_BASE, PC_GPE0_LEN);
        sweep_ports(PM, PC_PM_BLOCK_LEN);
        static const uint8_t chipset[] = {PC_I440FX_DEVFN, PC_PIIX3_DEVFN, PC_PIIX4_PM_DEVFN};
        for (unsigned f = 0; f < 3; f++) {
            for (unsigned reg = 0; reg < 0x100; reg++) {
                static const unsigned sizes[] = {1, 2, 4};
                unsigned size = sizes[rng() % 3];
                cfg_write(chipset[f], reg, size, (uint32_t)rng());
                cfg_read(chipset[f], reg, size);
                uint64_t ecam = PC_ECAM_BASE + ((uint64_t)chipset[f] << 12) + reg;
                bus_write(&mmio, ecam, 1u << (rng() % 4), rng());
                bus_read(&mmio, ecam, 1u << (rng() % 4));
            }
        }
        /* INTx traffic while the routes change under it. */
        for (unsigned i = 0; i < 1000; i++) {
            pci_set_irq(victim, rng() & 1);
            cfg_write(PC_PIIX3_DEVFN, 0x60 + (unsigned)(rng() & 3), 1, (uint32_t)rng());
        }
        piix4_pm_press_power_button(&pm);
        piix4_pm_raise_gpe(&pm, (unsigned)(rng() % 20));
        piix4_pm_timer_tick(&pm);
    }
    print_message("sweep: %u reset requests, %u power-offs\n", plat.resets, plat.power_offs);
    /* Fixed ranges are where they were; the config mechanism still works. */
    assert_int_equal(bus_read(&pio, 0x3f8, 1), 0xff); /* claimed, no read op */
    bus_write(&pio, 0xcf8, 4, 0x80000000u | (uint32_t)PC_PIIX4_PM_DEVFN << 8);
    assert_int_equal(bus_read(&pio, 0xcfc, 4), 0x71138086);
    /* Whatever state the sweep left, a reset restores the machine. */
    pci_set_irq(victim, false);
    reset_all();
    assert_false(plat.sci);
    for (unsigned irq = 0; irq < 24; irq++)
        assert_int_equal(sink.sources[irq], 0);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0);
    assert_int_equal(cfg_read(PC_PIIX3_DEVFN, 0x60, 4), 0x80808080);
}

static uint64_t iodev_read(void *opaque, uint64_t offset, unsigned size)
{
    return 0x5a;
}

static void iodev_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
}

static const struct io_ops iodev_io_ops = {.read = iodev_read, .write = iodev_write};

static void iodev_reset(struct device *dev)
{
    pci_device_reset(container_of(dev, struct pci_device, dev));
}

static int iodev_state(struct device *dev, struct snap *s)
{
    snap_enter(s, "pci");
    pci_device_state(container_of(dev, struct pci_device, dev), s);
    snap_leave(s);
    return snap_error(s);
}

static const struct device_ops iodev_device_ops = {
    .drop_decodes = pci_device_drop_decodes,
    .reset = iodev_reset,
    .state = iodev_state,
    .kind = "test-iodev",
    .state_version = 1,
};

/* The guest moved the PM block away and put an I/O BAR at its power-on
 * base. The PM function comes first in the inventory (as in the VMM, where
 * the platform is added before [dev.*]), yet after machine_reset_devices the
 * PM block is back at 0xB000: every device dropped its decodes before any
 * claimed its power-on ones. */
static void test_two_pass_reset_frees_power_on_base(void **state)
{
    static struct machine m;
    static struct pci_device iodev;
    memset(&m, 0, sizeof(m));
    m.vm_fd = -1;
    static const struct pci_ids ids = {.vendor_id = 0x1af4, .device_id = 0x1001};
    pci_device_init(&iodev, "iodev", &iodev_device_ops, &ids, NULL);
    assert_int_equal(pci_register_bar(&iodev, 0, PCI_BAR_IO, false, 256, &iodev_io_ops, NULL), 0);
    assert_int_equal(pci_bus_add(&pcibus, &iodev, PCI_DEVFN(4, 0)), 0);
    struct device *devs[] = {&hb.pci.dev, &isa.pci.dev, &pm.pci.dev, &rp.dev, &iodev.dev};
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
        assert_int_equal(machine_add_device(&m, devs[i]), 0);

    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4, 0x6001);
    cfg_write(PCI_DEVFN(4, 0), PCI_BASE_ADDRESS_0, 4, PM);
    cfg_write(PCI_DEVFN(4, 0), PCI_COMMAND, 2, PCI_COMMAND_IO);
    assert_int_equal(bus_read(&pio, 0x6000 + PC_PM_TMR_OFFSET + 3, 1), 0);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0x5a); /* the BAR */

    machine_reset_devices(&m);
    assert_int_equal(cfg_read(PCI_DEVFN(4, 0), PCI_BASE_ADDRESS_0, 4), PCI_BAR_SPACE_IO);
    assert_int_equal(cfg_read(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4), 0xb001);
    assert_int_equal(bus_read(&pio, 0x6000 + PC_PM_TMR_OFFSET + 3, 1), 0xff);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0); /* the PM timer again */
    pm_write(PC_PM1_CNT_OFFSET, 2, (PC_SLP_TYP_S5 << 10) | PC_PM1_CNT_SLP_EN);
    assert_int_equal(plat.power_offs, 1);
    pci_device_destroy(&iodev);
}

/* The restore target: a second chipset with the same endpoints, on another
 * host's clock, which the restore sets to the saved machine's time. */
static struct bus pio_b, mmio_b;
static struct pci_bus pcibus_b;
static struct i440fx hb_b;
static struct piix3 isa_b;
static struct piix4_pm pm_b;
static struct reset_ports rp_b;
static struct pci_device nic_b, disk_b, multi_fn1_b;
static struct irq_sink sink_b;
static struct platform plat_b;
static struct pirq_tap pirq_taps_b[PC_PIRQ_COUNT];
static uint64_t other_host_now;

static uint64_t other_host_source(void *opaque)
{
    return other_host_now;
}

static struct vm_clock other_clock = {.source = other_host_source};

static const struct chipset chipset_b = {&pio_b,  &mmio_b,     &pcibus_b,   &hb_b,
                                         &isa_b,  &pm_b,       &rp_b,       &sink_b,
                                         &plat_b, pirq_taps_b, &other_clock};

static void build_target(void)
{
    other_host_now = 42 * 1000000000ull;
    other_clock.offset_ns = 0;
    build_chipset(&chipset_b);
    add_endpoint_on(&pcibus_b, &nic_b, "nic", PCI_DEVFN(2, 0), PCI_INTA);
    add_endpoint_on(&pcibus_b, &disk_b, "disk", PCI_DEVFN(6, 0), PCI_INTA);
    add_endpoint_on(&pcibus_b, &multi_fn1_b, "fn1", PCI_DEVFN(6, 1), PCI_INTB);
    vm_clock_set(&other_clock, vm_clock_now(&fake_clock));
}

static void destroy_target(void)
{
    pci_device_destroy(&nic_b);
    pci_device_destroy(&disk_b);
    pci_device_destroy(&multi_fn1_b);
    destroy_chipset(&chipset_b);
}

static void load_into(struct device *from, struct device *to)
{
    struct snap_buf b = {0};
    char err[512] = "";
    state_save(from, &b);
    if (state_load(to, b.data, b.len, err, sizeof(err)) != 0)
        fail_msg("loading %s: %s", from->name, err);
    snap_buf_free(&b);
}

/* A chipset the guest has programmed: PAM and SMRAM set, CONFADD latched
 * on the PM function's PMBA, PIRQ routes set with two functions asserting
 * INTx, the PM block moved to 0x6000 with the power button pending, SCI
 * up, ACPI enabled, the PM timer overflow interrupt enabled, reset ports
 * written. */
static void program_chipset(void)
{
    pm.clock = &fake_clock;
    plat.fake_ns = 5000000000ull;
    pm.pci.dev.ops->reset(&pm.pci.dev);
    cfg_write(PC_I440FX_DEVFN, 0x58, 4, 0x33333300);
    cfg_write(PC_I440FX_DEVFN, I440FX_SMRAM, 1, 0x4a);
    cfg_write(PC_PIIX3_DEVFN, 0x60, 4, 0x0b0b0a0a);
    pci_set_irq(&nic, true);       /* PIRQB: IRQ 10, GSI 17 */
    pci_set_irq(&multi_fn1, true); /* PIRQC: IRQ 11, GSI 18 */
    cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMBA, 4, 0x6001);
    bus_write(&pio, 0x6000 + PC_PM1_EN_OFFSET, 2, PC_PM1_EN_PWRBTN | PC_PM1_EN_TMR);
    piix4_pm_press_power_button(&pm);
    bus_write(&pio, PC_SMI_CMD_PORT, 1, PC_ACPI_ENABLE);
    bus_write(&pio, PC_GPE0_BASE + 2, 1, 0x04);
    bus_write(&pio, 0xcf9, 1, 0x02);
    bus_write(&pio, 0x92, 1, PORT92_A20 | PORT92_INIT);
    plat.fake_ns += 1000000000ull;
    bus_write(&pio, 0xcf8, 4, 0x80000000u | (uint32_t)PC_PIIX4_PM_DEVFN << 8 | PIIX4_PM_PMBA);
    assert_true(plat.sci);
}

/* Every chipset function saved and loaded into the target in inventory
 * order (chipset, then the endpoints): the target reads and behaves the
 * same, its interrupt lines are the source's, and a function dropping INTx
 * leaves nothing asserted (no level counted twice). */
static void test_state_roundtrip_and_refusals(void **state)
{
    program_chipset();
    build_target();
    assert_state_roundtrip(&hb.pci.dev, &hb_b.pci.dev);
    assert_state_roundtrip(&isa.pci.dev, &isa_b.pci.dev);
    assert_state_roundtrip(&pm.pci.dev, &pm_b.pci.dev);
    assert_state_roundtrip(&rp.dev, &rp_b.dev);
    assert_state_roundtrip(&nic.dev, &nic_b.dev);
    assert_state_roundtrip(&disk.dev, &disk_b.dev);
    assert_state_roundtrip(&multi_fn1.dev, &multi_fn1_b.dev);

    assert_memory_equal(sink_b.sources, sink.sources, sizeof(sink.sources));
    assert_int_equal(sink_b.sources[10], PC_IRQ_SOURCE_PIRQ(1));
    assert_int_equal(sink_b.sources[18], PC_IRQ_SOURCE_PIRQ(2));
    assert_true(plat_b.sci);
    assert_int_equal(plat_b.pam[0], 0x33);
    /* The latched CONFADD still selects PMBA. */
    assert_int_equal(bus_read(&pio_b, 0xcf8, 4),
                     0x80000000u | (uint32_t)PC_PIIX4_PM_DEVFN << 8 | PIIX4_PM_PMBA);
    assert_int_equal(bus_read(&pio_b, 0xcfc, 4), 0x6001);
    assert_int_equal(pci_bus_config_read(&pcibus_b, 0, PC_I440FX_DEVFN, I440FX_SMRAM, 1), 0x4a);
    /* The PM block is at 0x6000 only, with the registers the guest left. */
    assert_int_equal(bus_read(&pio_b, PM + PC_PM_TMR_OFFSET + 3, 1), 0xff);
    assert_int_equal(bus_read(&pio_b, 0x6000 + PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_PWRBTN,
                     PC_PM1_STS_PWRBTN);
    assert_int_equal(bus_read(&pio_b, 0x6000 + PC_PM1_CNT_OFFSET, 2), PC_PM1_CNT_SCI_EN);
    assert_int_equal(bus_read(&pio_b, PC_GPE0_BASE, 4), 0x00040000);
    assert_int_equal(piix4_pm_timer_value(&pm_b), piix4_pm_timer_value(&pm));
    assert_int_equal(bus_read(&pio_b, 0x92, 1), PORT92_A20 | PORT92_INIT);
    assert_int_equal(bus_read(&pio_b, 0xcf9, 1), 0x02);
    /* The PM timer's bit 23 toggles when it would have on the source. */
    uint64_t to_overflow =
        (0x800000ull * 1000000000ull + PC_PM_TIMER_HZ - 1) / PC_PM_TIMER_HZ - 1000000000ull;
    bus_write(&pio_b, 0x6000 + PC_PM1_STS_OFFSET, 2, PC_PM1_STS_PWRBTN);
    other_host_now += to_overflow - 1000;
    piix4_pm_timer_tick(&pm_b);
    assert_false(plat_b.sci);
    other_host_now += 1000;
    piix4_pm_timer_tick(&pm_b);
    assert_true(plat_b.sci);
    assert_true(bus_read(&pio_b, 0x6000 + PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_TMR);
    /* Dropping INTx clears the lines: each level was counted once. */
    pci_set_irq(&nic_b, false);
    pci_set_irq(&multi_fn1_b, false);
    for (unsigned irq = 0; irq < 24; irq++)
        assert_int_equal(sink_b.sources[irq], 0);

    assert_state_refusals(&hb.pci.dev, &hb_b.pci.dev);
    assert_state_refusals(&isa.pci.dev, &isa_b.pci.dev);
    assert_state_refusals(&pm.pci.dev, &pm_b.pci.dev);
    assert_state_refusals(&rp.dev, &rp_b.dev);
    const uint32_t bad_address = 0x80000001u;
    assert_state_field_refused(&hb.pci.dev, &hb_b.pci.dev, "config_address", &bad_address, 4);
    uint8_t other_identity[PCI_CONFIG_SPACE_SIZE];
    memcpy(other_identity, isa.pci.config, sizeof(other_identity));
    other_identity[PCI_DEVICE_ID] ^= 1;
    assert_state_field_refused(&isa.pci.dev, &isa_b.pci.dev, "pci.config", other_identity,
                               sizeof(other_identity));
    const uint16_t bad_en = 0x8000;
    const uint64_t bad_tick = 5;
    assert_state_field_refused(&pm.pci.dev, &pm_b.pci.dev, "pm1_en", &bad_en, 2);
    assert_state_field_refused(&pm.pci.dev, &pm_b.pci.dev, "overflow_tick", &bad_tick, 8);
    const uint8_t bad_port92 = 0x04;
    assert_state_field_refused(&rp.dev, &rp_b.dev, "port92", &bad_port92, 1);
    assert_state_field_refused(&rp.dev, &rp_b.dev, "reset_control", &bad_port92, 1);
    destroy_target();
}

/* Load order: the endpoints before the PIIX3 ends the same way, and a PM
 * block whose saved place is taken is refused, naming the field. */
static void test_state_load_order_and_pm_overlap(void **state)
{
    program_chipset();
    build_target();
    load_into(&nic.dev, &nic_b.dev);
    load_into(&multi_fn1.dev, &multi_fn1_b.dev);
    load_into(&hb.pci.dev, &hb_b.pci.dev);
    load_into(&isa.pci.dev, &isa_b.pci.dev);
    assert_memory_equal(sink_b.sources, sink.sources, sizeof(sink.sources));
    static const struct io_ops no_ops = {0};
    assert_true(bus_register(&pio_b, 0x6010, 4, &no_ops, &sink_b, "squatter"));
    struct snap_buf b = {0};
    char err[512] = "";
    state_save(&pm.pci.dev, &b);
    assert_int_not_equal(state_load(&pm_b.pci.dev, b.data, b.len, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "piix4-pm"));
    assert_non_null(strstr(err, "io_mapped"));
    snap_buf_free(&b);
    destroy_target();
}

static bool timer_armed(const struct vm_timer *t)
{
    struct itimerspec spec;
    assert_int_equal(timerfd_gettime(t->fd, &spec), 0);
    return spec.it_value.tv_sec || spec.it_value.tv_nsec;
}

/* A PM function with its overflow timer on an event loop: pause disarms
 * it and a tick already on its way changes nothing; resume re-evaluates
 * from the clock-based count (the toggle passed while paused: TMR_STS and
 * the SCI now). */
static void test_pm_pause_and_resume(void **state)
{
    struct io_loop loop;
    assert_int_equal(io_loop_init(&loop, "test"), 0);
    struct platform p = {.fake_ns = 1000};
    struct vm_clock clock = {.source = fake_now, .opaque = &p};
    struct piix4_pm live;
    assert_int_equal(piix4_pm_init(&live, &clock, (struct irq_line){set_sci, &p},
                                   (struct irq_line){power_off, &p}, &loop),
                     0);
    piix4_pm_io_ops.write(&live, PC_PM1_EN_OFFSET, 2, PC_PM1_EN_TMR);
    assert_true(timer_armed(&live.overflow_timer));
    assert_int_equal(live.pci.dev.ops->pause(&live.pci.dev), 0);
    assert_false(timer_armed(&live.overflow_timer));
    p.fake_ns += 3000000000ull; /* past the first toggle of bit 23 */
    live.overflow_timer.fn(live.overflow_timer.opaque);
    assert_false(p.sci);
    assert_false(timer_armed(&live.overflow_timer));
    live.pci.dev.ops->resume(&live.pci.dev);
    assert_true(p.sci);
    assert_true(piix4_pm_io_ops.read(&live, PC_PM1_STS_OFFSET, 2) & PC_PM1_STS_TMR);
    live.pci.dev.ops->destroy(&live.pci.dev);
    io_loop_destroy(&loop);
}

struct racer {
    unsigned id;
    uint64_t seed;
};

/* What vCPU threads and device threads do at once: config cycles through
 * both mechanisms, INTx toggling while routes change, PM register traffic. */
static void *race(void *opaque)
{
    struct racer *r = opaque;
    for (unsigned i = 0; i < 20000; i++) {
        r->seed = r->seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t v = (uint32_t)(r->seed >> 33);
        switch (r->id) {
        case 0:
            bus_write(&mmio, PC_ECAM_BASE + ((uint64_t)PC_PIIX3_DEVFN << 12) + 0x60 + (v & 3), 1,
                      (v >> 8) & 1 ? 10 : 11);
            bus_write(&mmio, PC_ECAM_BASE + ((uint64_t)PCI_DEVFN(2, 0) << 12) + PCI_COMMAND, 2,
                      (v >> 9) & 1 ? PCI_COMMAND_INTX_DISABLE : 0);
            break;
        case 1:
            pci_set_irq(&nic, v & 1);
            pci_set_irq(&disk, (v >> 1) & 1);
            break;
        case 2:
            bus_read(&pio, PM + PC_PM_TMR_OFFSET, 4);
            bus_write(&pio, PM + PC_PM1_EN_OFFSET, 2, v & PC_PM1_EN_PWRBTN);
            piix4_pm_press_power_button(&pm);
            bus_write(&pio, PM + PC_PM1_STS_OFFSET, 2, PC_PM1_STS_PWRBTN);
            break;
        default:
            /* Mechanism #1 is one global latch: racing users read garbage
             * (as on hardware), but only ever valid functions' bytes. */
            bus_write(&pio, 0xcf8, 4, 0x80000000u | (v & 0xfffc));
            bus_read(&pio, 0xcfc, 4);
            if ((v >> 20) & 1)
                cfg_write(PC_PIIX4_PM_DEVFN, PIIX4_PM_PMREGMISC, 1, (v >> 21) & 1);
            break;
        }
    }
    return NULL;
}

static void test_concurrent_access(void **state)
{
    pthread_t threads[5];
    struct racer racers[5];
    for (unsigned i = 0; i < 5; i++) {
        racers[i] = (struct racer){i, 0x1234 + i};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (unsigned i = 0; i < 5; i++)
        pthread_join(threads[i], NULL);
    pci_set_irq(&nic, false);
    pci_set_irq(&disk, false);
    reset_all();
    for (unsigned irq = 0; irq < 24; irq++)
        assert_int_equal(sink.sources[irq], 0);
    assert_int_equal(pm_read(PC_PM_TMR_OFFSET + 3, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_bridge_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swizzle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pirq_routing_reaches_isa_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_pirq_is_wired_or, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_timer_frequency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_timer_overflow_with_fake_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_button_raises_sci, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_accesses_spanning_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smi_command_toggles_sci_en, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpe_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_block_relocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_ports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_returns_power_on_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_pass_reset_frees_power_on_base, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_access, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_load_order_and_pm_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pm_pause_and_resume, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
