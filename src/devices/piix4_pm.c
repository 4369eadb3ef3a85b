#include "devices/piix4_pm.h"

#include <string.h>

#include "common/bytes.h"
#include "common/regmap.h"
#include "devices/pc_layout.h"

#define NS_PER_S 1000000000ull
#define TIMER_MASK ((1ull << PC_PM_TIMER_BITS) - 1)
#define TIMER_HALF_PERIOD (1ull << (PC_PM_TIMER_BITS - 1)) /* TMR_STS on bit 23 toggling */

#define PM1_STS_W1C                                                                                \
    (PC_PM1_STS_TMR | PC_PM1_STS_BM | PC_PM1_STS_GBL | PC_PM1_STS_PWRBTN | PC_PM1_STS_RTC |        \
     PC_PM1_STS_PWRBTNOR | PC_PM1_STS_WAK)
#define PM1_EN_WRITABLE (PC_PM1_EN_TMR | PC_PM1_EN_GBL | PC_PM1_EN_PWRBTN | PC_PM1_EN_RTC)
#define PM1_CNT_BM_RLD (1u << 1)
#define PM1_CNT_WRITABLE (PC_PM1_CNT_SCI_EN | PM1_CNT_BM_RLD | PC_PM1_CNT_SLP_TYP_MASK)

#define PMBA_IO_SPACE 0x01
#define PMBA_ADDRESS_MASK 0xffc0u

static uint64_t ns_to_ticks(uint64_t ns)
{
    return ns / NS_PER_S * PC_PM_TIMER_HZ + ns % NS_PER_S * PC_PM_TIMER_HZ / NS_PER_S;
}

static uint64_t ticks_to_ns_ceil(uint64_t ticks)
{
    uint64_t rem = ticks % PC_PM_TIMER_HZ;
    return ticks / PC_PM_TIMER_HZ * NS_PER_S +
           (rem * NS_PER_S + PC_PM_TIMER_HZ - 1) / PC_PM_TIMER_HZ;
}

static uint64_t ticks_now(struct piix4_pm *pm)
{
    uint64_t now = vm_clock_now(pm->clock);
    return ns_to_ticks(now >= pm->clock_base_ns ? now - pm->clock_base_ns : 0);
}

/* Next tick at which bit 23 of the count toggles. */
static uint64_t next_overflow(uint64_t ticks)
{
    return (ticks + TIMER_HALF_PERIOD) & ~(TIMER_HALF_PERIOD - 1);
}

static void latch_timer_status(struct piix4_pm *pm, uint64_t ticks)
{
    if (ticks >= pm->overflow_tick)
        pm->pm1_sts |= PC_PM1_STS_TMR;
}

/* Recomputes the SCI level and (re)arms the overflow timer. Locked. */
static void update_sci(struct piix4_pm *pm)
{
    uint64_t ticks = ticks_now(pm);
    latch_timer_status(pm, ticks);
    bool level = (pm->pm1_sts & pm->pm1_en & PM1_EN_WRITABLE) || (pm->gpe_sts[0] & pm->gpe_en[0]) ||
                 (pm->gpe_sts[1] & pm->gpe_en[1]);
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_line_set(&pm->sci, level);
    }
    bool want_timer =
        !pm->paused && (pm->pm1_en & PC_PM1_EN_TMR) && !(pm->pm1_sts & PC_PM1_STS_TMR);
    if (want_timer) {
        uint64_t delay = ticks_to_ns_ceil(pm->overflow_tick - ticks);
        vm_timer_arm(&pm->overflow_timer, delay ? delay : 1, 0);
    } else {
        vm_timer_disarm(&pm->overflow_timer);
    }
}

uint32_t piix4_pm_timer_value(struct piix4_pm *pm)
{
    return (uint32_t)(ticks_now(pm) & TIMER_MASK);
}

void piix4_pm_timer_tick(struct piix4_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

static void overflow_timer_fired(void *opaque)
{
    struct piix4_pm *pm = opaque;
    pthread_mutex_lock(&pm->lock);
    if (!pm->paused) /* a tick already on its way is left to resume */
        update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void piix4_pm_press_power_button(struct piix4_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    pm->pm1_sts |= PC_PM1_STS_PWRBTN;
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void piix4_pm_raise_gpe(struct piix4_pm *pm, unsigned bit)
{
    if (bit >= 16)
        return;
    pthread_mutex_lock(&pm->lock);
    pm->gpe_sts[bit / 8] |= (uint8_t)(1u << (bit % 8));
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

/* ---- PM block: any size at any offset, decoded by a register map ---- */

enum { PM_REG_STS, PM_REG_EN, PM_REG_CNT, PM_REG_TMR };

/* Bytes no register covers (0x06-0x07, 0x0c-0x3f) read as 0. */
static const struct reg_def pm_regs[] = {
    {PC_PM1_STS_OFFSET, 2, PM_REG_STS},
    {PC_PM1_EN_OFFSET, 2, PM_REG_EN},
    {PC_PM1_CNT_OFFSET, 2, PM_REG_CNT},
    {PC_PM_TMR_OFFSET, PC_PM_TMR_LEN, PM_REG_TMR},
};
static const struct regmap pm_map = {pm_regs, ARRAY_LEN(pm_regs)};

/* One guest access: the count is sampled once, so TMR_STS is latched once
 * and a read spanning PM1_STS and PM_TMR sees both at the same instant. */
struct pm_access {
    struct piix4_pm *pm;
    uint64_t ticks;
    bool ignored;   /* a write reached the read-only timer */
    int sleep_type; /* SLP_EN written: the requested SLP_TYP, else -1 */
};

static uint64_t pm_reg_read(void *opaque, uint32_t id)
{
    const struct pm_access *access = opaque;
    const struct piix4_pm *pm = access->pm;
    switch (id) {
    case PM_REG_STS:
        return pm->pm1_sts;
    case PM_REG_EN:
        return pm->pm1_en;
    case PM_REG_CNT:
        return pm->pm1_cnt;
    case PM_REG_TMR:
        return access->ticks & TIMER_MASK;
    }
    return 0;
}

static uint64_t pm_read(void *opaque, uint64_t offset, unsigned size)
{
    struct piix4_pm *pm = opaque;
    if (size > 8 || offset >= PC_PM_BLOCK_LEN)
        return ~0ull;
    struct pm_access access = {.pm = pm};
    uint64_t value;
    pthread_mutex_lock(&pm->lock);
    access.ticks = ticks_now(pm);
    latch_timer_status(pm, access.ticks);
    regmap_read(&pm_map, offset, size, pm_reg_read, &access, &value);
    pthread_mutex_unlock(&pm->lock);
    return value;
}

/* mask: the bytes the guest wrote; only those act (a byte write to one
 * lane leaves the other lane's W1C bits, enables and SLP_EN alone). */
static void pm_reg_write(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    struct pm_access *access = opaque;
    struct piix4_pm *pm = access->pm;
    switch (id) {
    case PM_REG_STS: {
        latch_timer_status(pm, access->ticks);
        uint16_t clear = (uint16_t)(value & mask & PM1_STS_W1C);
        if (clear & pm->pm1_sts & PC_PM1_STS_TMR)
            pm->overflow_tick = next_overflow(access->ticks);
        pm->pm1_sts &= (uint16_t)~clear;
        return;
    }
    case PM_REG_EN:
        pm->pm1_en = (uint16_t)((pm->pm1_en & ~mask) | (value & mask & PM1_EN_WRITABLE));
        return;
    case PM_REG_CNT: {
        uint16_t next = (uint16_t)reg_merge(pm->pm1_cnt, value, mask);
        pm->pm1_cnt = next & PM1_CNT_WRITABLE; /* SLP_EN and GBL_RLS are write-only */
        if (value & mask & PC_PM1_CNT_SLP_EN)
            access->sleep_type = (next & PC_PM1_CNT_SLP_TYP_MASK) >> PC_PM1_CNT_SLP_TYP_SHIFT;
        return;
    }
    case PM_REG_TMR:
        access->ignored = true; /* read-only */
        return;
    }
}

static void pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct piix4_pm *pm = opaque;
    if (size > 8 || offset >= PC_PM_BLOCK_LEN)
        return;
    struct pm_access access = {.pm = pm, .sleep_type = -1};
    pthread_mutex_lock(&pm->lock);
    access.ticks = ticks_now(pm);
    bool mapped = regmap_write(&pm_map, offset, size, value, pm_reg_write, &access);
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);

    int sleep_type = access.sleep_type;
    if (!mapped || access.ignored)
        log_limited(&pm->log, LOG_DEBUG, "piix4-pm: %u-byte write 0x%llx at +0x%llx: ignored part",
                    size, (unsigned long long)value, (unsigned long long)offset);
    if (sleep_type == PC_SLP_TYP_S5 || sleep_type == PC_SLP_TYP_S4) {
        log_limited(&pm->log, LOG_INFO, "piix4-pm: guest entered S%d: powering off",
                    sleep_type == PC_SLP_TYP_S5 ? 5 : 4);
        irq_line_pulse(&pm->power_off);
    } else if (sleep_type >= 0) {
        log_limited(&pm->log, LOG_WARNING,
                    "piix4-pm: sleep type %d requested; only S5 is supported, ignored", sleep_type);
    }
}

const struct io_ops piix4_pm_io_ops = {.read = pm_read, .write = pm_write};

/* Bytes past a block read as all ones, as an undecoded port would. The
 * bus never sends an access that runs past a range; a direct caller may. */
static uint64_t beyond_block_ones(uint64_t value, uint64_t offset, unsigned size, uint64_t len)
{
    for (unsigned i = 0; i < size; i++) {
        if (offset + i >= len)
            value |= 0xffull << (8 * i);
    }
    return value;
}

/* ---- GPE0: status bytes then enable bytes, each its own register as in QEMU ---- */

enum { GPE_REG_STS0, GPE_REG_STS1, GPE_REG_EN0, GPE_REG_EN1 };

static const struct reg_def gpe_regs[] = {
    {0, 1, GPE_REG_STS0},
    {1, 1, GPE_REG_STS1},
    {2, 1, GPE_REG_EN0},
    {3, 1, GPE_REG_EN1},
};
_Static_assert(PC_GPE0_LEN == 4, "two status and two enable bytes");
static const struct regmap gpe_map = {gpe_regs, ARRAY_LEN(gpe_regs)};

static uint64_t gpe_reg_read(void *opaque, uint32_t id)
{
    const struct piix4_pm *pm = opaque;
    return id <= GPE_REG_STS1 ? pm->gpe_sts[id - GPE_REG_STS0] : pm->gpe_en[id - GPE_REG_EN0];
}

static void gpe_reg_write(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    struct piix4_pm *pm = opaque;
    if (id <= GPE_REG_STS1)
        pm->gpe_sts[id - GPE_REG_STS0] &= (uint8_t)~value; /* W1C */
    else
        pm->gpe_en[id - GPE_REG_EN0] = (uint8_t)value;
}

static uint64_t gpe_read(void *opaque, uint64_t offset, unsigned size)
{
    struct piix4_pm *pm = opaque;
    size = size < 8 ? size : 8;
    uint64_t value;
    pthread_mutex_lock(&pm->lock);
    regmap_read(&gpe_map, offset, size, gpe_reg_read, pm, &value);
    pthread_mutex_unlock(&pm->lock);
    return beyond_block_ones(value, offset, size, PC_GPE0_LEN);
}

static void gpe_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct piix4_pm *pm = opaque;
    pthread_mutex_lock(&pm->lock);
    regmap_write(&gpe_map, offset, size < 8 ? size : 8, value, gpe_reg_write, pm);
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

const struct io_ops piix4_gpe_io_ops = {.read = gpe_read, .write = gpe_write};

/* ---- APM control (0xB2) and status (0xB3) ---- */

enum { APM_REG_CNT, APM_REG_STS };

static const struct reg_def apm_regs[] = {
    {0, 1, APM_REG_CNT},
    {1, 1, APM_REG_STS},
};
static const struct regmap apm_map = {apm_regs, ARRAY_LEN(apm_regs)};

static uint64_t apm_reg_read(void *opaque, uint32_t id)
{
    const struct piix4_pm *pm = opaque;
    return id == APM_REG_CNT ? pm->apm_cnt : pm->apm_sts;
}

static void apm_reg_write(void *opaque, uint32_t id, uint64_t value, uint64_t mask)
{
    struct piix4_pm *pm = opaque;
    uint8_t byte = (uint8_t)value;
    if (id == APM_REG_STS) {
        pm->apm_sts = byte;
        return;
    }
    pm->apm_cnt = byte;
    /* ACPI 3.0 4.7.2.5: the OS hands SCI_EN over through SMI_CMD. */
    if (byte == PC_ACPI_ENABLE)
        pm->pm1_cnt |= PC_PM1_CNT_SCI_EN;
    else if (byte == PC_ACPI_DISABLE)
        pm->pm1_cnt &= (uint16_t)~PC_PM1_CNT_SCI_EN;
    else
        log_limited(&pm->log, LOG_DEBUG, "piix4-pm: SMI command 0x%02x ignored (no SMM)", byte);
}

static uint64_t apm_read(void *opaque, uint64_t offset, unsigned size)
{
    struct piix4_pm *pm = opaque;
    size = size < 8 ? size : 8;
    uint64_t value;
    pthread_mutex_lock(&pm->lock);
    regmap_read(&apm_map, offset, size, apm_reg_read, pm, &value);
    pthread_mutex_unlock(&pm->lock);
    return beyond_block_ones(value, offset, size, ARRAY_LEN(apm_regs));
}

static void apm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct piix4_pm *pm = opaque;
    pthread_mutex_lock(&pm->lock);
    regmap_write(&apm_map, offset, size < 8 ? size : 8, value, apm_reg_write, pm);
    pthread_mutex_unlock(&pm->lock);
}

const struct io_ops piix4_apm_io_ops = {.read = apm_read, .write = apm_write};

/* ---- Config space: PMBA and PMREGMISC place the PM block ---- */

/* Called with the PCI lock held. */
static void unmap_pm_block(struct piix4_pm *pm)
{
    if (!pm->io_mapped)
        return;
    bus_unregister(pm->pci.bus->pio, pm->io_base, pm);
    pm->io_mapped = false;
}

/* The PM block's base in PMBA (under the PCI lock). */
static uint16_t pmba_base(struct pci_device *pdev)
{
    return (uint16_t)(pci_get_long(pdev, PIIX4_PM_PMBA) & PMBA_ADDRESS_MASK);
}

/* Called with the PCI lock held. */
static void update_pm_block(struct piix4_pm *pm)
{
    struct pci_device *pdev = &pm->pci;
    struct bus *pio = pdev->bus ? pdev->bus->pio : NULL;
    uint16_t base = pmba_base(pdev);
    bool want =
        pio && (pci_get_byte(pdev, PIIX4_PM_PMREGMISC) & PIIX4_PM_PMREGMISC_PMIOSE) && base != 0;
    if (!want || base != pm->io_base)
        unmap_pm_block(pm);
    if (!want || pm->io_mapped)
        return;
    if (!pci_range_unclaimed(pio, base, PC_PM_BLOCK_LEN) ||
        !bus_register(pio, base, PC_PM_BLOCK_LEN, &piix4_pm_io_ops, pm, "piix4-pm")) {
        log_limited(&pm->log, LOG_WARNING,
                    "piix4-pm: PM block at 0x%04x overlaps another range; left unmapped", base);
        return;
    }
    pm->io_mapped = true;
    pm->io_base = base;
    log_debug("piix4-pm: PM block at 0x%04x", base);
}

uint16_t piix4_pm_block_base(struct piix4_pm *pm)
{
    pthread_mutex_lock(&pm->pci.lock);
    uint16_t base = pmba_base(&pm->pci);
    pthread_mutex_unlock(&pm->pci.lock);
    return base;
}

static void pm_config_write(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t value)
{
    struct piix4_pm *pm = container_of(pdev, struct piix4_pm, pci);
    bool pmba = offset < PIIX4_PM_PMBA + 4 && PIIX4_PM_PMBA < offset + size;
    bool misc = offset <= PIIX4_PM_PMREGMISC && PIIX4_PM_PMREGMISC < offset + size;
    if (pmba || misc)
        update_pm_block(pm);
}

static const struct pci_device_ops pm_pci_ops = {.config_write = pm_config_write};

static void reset_registers(struct piix4_pm *pm)
{
    pthread_mutex_lock(&pm->lock);
    pm->clock_base_ns = vm_clock_now(pm->clock);
    pm->overflow_tick = next_overflow(0);
    pm->pm1_sts = pm->pm1_en = pm->pm1_cnt = 0;
    memset(pm->gpe_sts, 0, sizeof(pm->gpe_sts));
    memset(pm->gpe_en, 0, sizeof(pm->gpe_en));
    pm->apm_cnt = pm->apm_sts = 0;
    update_sci(pm); /* drops the SCI and disarms the timer */
    pthread_mutex_unlock(&pm->lock);
}

/* First reset pass: the PM block leaves wherever the guest put it, so
 * that no device's power-on decode is refused because of it; pm_reset maps
 * it again at its power-on base. */
static void pm_drop_decodes(struct device *dev)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    pci_device_drop_decodes(dev);
    pthread_mutex_lock(&pm->pci.lock);
    unmap_pm_block(pm);
    pthread_mutex_unlock(&pm->pci.lock);
}

static void pm_reset(struct device *dev)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    reset_registers(pm);
    pci_device_reset(&pm->pci);
    pthread_mutex_lock(&pm->pci.lock);
    update_pm_block(pm);
    pthread_mutex_unlock(&pm->pci.lock);
}

static void pm_destroy(struct device *dev)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    vm_timer_destroy(&pm->overflow_timer);
    pci_device_destroy(&pm->pci);
    pthread_mutex_destroy(&pm->lock);
}

/* Pause: the overflow timer stops. Its deadline is overflow_tick on the
 * clock-based count, so resume simply re-evaluates. */
static int pm_pause(struct device *dev)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    pthread_mutex_lock(&pm->lock);
    pm->paused = true;
    vm_timer_disarm(&pm->overflow_timer);
    pthread_mutex_unlock(&pm->lock);
    return 0;
}

static void pm_resume(struct device *dev)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    pthread_mutex_lock(&pm->lock);
    pm->paused = false;
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

/* Re-establishes the PM block's decode after a load: where the loaded
 * config puts it if the saved device had it mapped, nowhere otherwise (a
 * guest may have placed it over another range, which left it unmapped).
 * Loading into a machine whose guest placed ranges elsewhere needs every
 * device's decodes dropped first (as reset does); a refusal here is then a
 * state whose ranges collide, never a silently lost PM block. PCI lock
 * held. */
static void load_pm_block(struct piix4_pm *pm, bool mapped, struct snap *s)
{
    struct pci_device *pdev = &pm->pci;
    struct bus *pio = pdev->bus ? pdev->bus->pio : NULL;
    uint16_t base = (uint16_t)(pci_get_long(pdev, PIIX4_PM_PMBA) & PMBA_ADDRESS_MASK);
    bool enabled = (pci_get_byte(pdev, PIIX4_PM_PMREGMISC) & PIIX4_PM_PMREGMISC_PMIOSE) && base;
    unmap_pm_block(pm);
    if (!mapped)
        return;
    if (!snap_check(s, enabled, "io_mapped", "set, but the loaded PMBA/PMREGMISC decode nothing"))
        return;
    if (!pio || !pci_range_unclaimed(pio, base, PC_PM_BLOCK_LEN) ||
        !bus_register(pio, base, PC_PM_BLOCK_LEN, &piix4_pm_io_ops, pm, "piix4-pm")) {
        snap_fail(s, "io_mapped", "the PM block at 0x%04x overlaps another range", base);
        return;
    }
    pm->io_mapped = true;
    pm->io_base = base;
}

/* Config space (PMBA, PMREGMISC), the PM1, GPE0 and APM registers, the PM
 * timer's base and next overflow (clock time and ticks: a restore sets the
 * machine clock to the saved time, so the count continues) and whether the
 * PM block was decoded. The SCI level follows from the registers and is
 * driven again; loaded into a paused function, the overflow timer waits
 * for resume. */
static int pm_state(struct device *dev, struct snap *s)
{
    struct piix4_pm *pm = container_of(dev, struct piix4_pm, pci.dev);
    snap_enter(s, "pci");
    pci_device_state(&pm->pci, s);
    snap_leave(s);
    pthread_mutex_lock(&pm->pci.lock);
    bool mapped = pm->io_mapped;
    snap_bool(s, "io_mapped", &mapped);
    pthread_mutex_lock(&pm->lock);
    snap_u64(s, "clock_base_ns", &pm->clock_base_ns);
    snap_u64(s, "overflow_tick", &pm->overflow_tick);
    snap_u16(s, "pm1_sts", &pm->pm1_sts);
    snap_u16(s, "pm1_en", &pm->pm1_en);
    snap_u16(s, "pm1_cnt", &pm->pm1_cnt);
    snap_bytes(s, "gpe_sts", pm->gpe_sts, sizeof(pm->gpe_sts));
    snap_bytes(s, "gpe_en", pm->gpe_en, sizeof(pm->gpe_en));
    snap_u8(s, "apm_cnt", &pm->apm_cnt);
    snap_u8(s, "apm_sts", &pm->apm_sts);
    if (snap_loading(s) && !snap_error(s)) {
        snap_check(s, !(pm->pm1_sts & ~PM1_STS_W1C), "pm1_sts", "bits this block does not have");
        snap_check(s, !(pm->pm1_en & ~PM1_EN_WRITABLE), "pm1_en", "bits this block does not have");
        snap_check(s, !(pm->pm1_cnt & ~PM1_CNT_WRITABLE), "pm1_cnt",
                   "bits this block does not keep");
        /* A toggle of bit 23 of the count: a non-zero multiple of 2^23. */
        snap_check(s, pm->overflow_tick && !(pm->overflow_tick & (TIMER_HALF_PERIOD - 1)),
                   "overflow_tick", "not a toggle of bit 23 of the count");
    }
    if (snap_loading(s) && !snap_error(s))
        update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    if (snap_loading(s) && !snap_error(s))
        load_pm_block(pm, mapped, s);
    pthread_mutex_unlock(&pm->pci.lock);
    return snap_error(s);
}

static const struct device_ops pm_device_ops = {
    .drop_decodes = pm_drop_decodes,
    .reset = pm_reset,
    .pause = pm_pause,
    .resume = pm_resume,
    .state = pm_state,
    .kind = "piix4-pm",
    .state_version = 1,
    .destroy = pm_destroy,
};

int piix4_pm_init(struct piix4_pm *pm, const struct vm_clock *clock, struct irq_line sci,
                  struct irq_line power_off, struct io_loop *loop)
{
    static const struct pci_ids ids = {
        .vendor_id = PCI_VENDOR_ID_INTEL,
        .device_id = PIIX4_PM_DEVICE_ID,
        .subsystem_vendor_id = PCI_SUBVENDOR_ID_QEMU,
        .subsystem_id = PCI_SUBDEVICE_ID_QEMU,
        .class_code = 0x068000,
        .revision = PIIX4_PM_REVISION,
    };
    pci_device_init(&pm->pci, "piix4-pm", &pm_device_ops, &ids, &pm_pci_ops);
    pm->sci = sci;
    pm->power_off = power_off;
    pm->clock = clock;
    pm->paused = false;
    pm->io_mapped = false;
    pm->io_base = 0;
    pm->sci_level = false;
    memset(&pm->log, 0, sizeof(pm->log));
    pm->overflow_timer = (struct vm_timer){.fd = -1};
    pthread_mutex_init(&pm->lock, NULL);
    if (loop && vm_timer_init(&pm->overflow_timer, loop, overflow_timer_fired, pm) < 0) {
        pm_destroy(&pm->pci.dev);
        return -1;
    }

    struct pci_device *pdev = &pm->pci;
    pci_set_word(pdev, PCI_STATUS, PCI_STATUS_FAST_BACK | PCI_STATUS_DEVSEL_MEDIUM);
    /* QEMU reports INTA; the SCI itself is wired to IRQ 9, not to INTx. */
    pci_set_interrupt_pin(pdev, PCI_INTA);
    pci_set_long(pdev, PIIX4_PM_PMBA, PC_PM_BASE_DEFAULT | PMBA_IO_SPACE);
    pci_set_wmask(pdev, PIIX4_PM_PMBA, 4, PMBA_ADDRESS_MASK);
    pci_set_byte(pdev, PIIX4_PM_PMREGMISC, PIIX4_PM_PMREGMISC_PMIOSE);
    pci_set_wmask(pdev, PIIX4_PM_PMREGMISC, 1, PIIX4_PM_PMREGMISC_PMIOSE);
    pci_set_byte(pdev, 0x5b, 0x02); /* SMM "already initialised", as QEMU without SMM */
    /* DEVRES: legacy decodes QEMU reports (no LPT; COM1 and COM2 on). */
    pci_set_byte(pdev, 0x5f, 0x10);
    pci_set_byte(pdev, 0x63, 0x60);
    pci_set_byte(pdev, 0x67, 0x98);
    /* No SMBus controller: base and host configuration read-only, disabled,
     * so drivers (Linux i2c-piix4) leave it alone. */
    pci_set_long(pdev, PIIX4_PM_SMBBA, PMBA_IO_SPACE);
    pci_set_wmask(pdev, PIIX4_PM_SMBBA, 4, 0);
    pci_set_wmask(pdev, PIIX4_PM_SMBHSTCFG, 1, 0);
    reset_registers(pm);
    return 0;
}

int piix4_pm_attach(struct piix4_pm *pm, struct pci_bus *bus)
{
    if (pci_bus_add(bus, &pm->pci, PC_PIIX4_PM_DEVFN) < 0)
        return -1;
    if (!bus_register(bus->pio, PC_GPE0_BASE, PC_GPE0_LEN, &piix4_gpe_io_ops, pm, "acpi-gpe0") ||
        !bus_register(bus->pio, PC_SMI_CMD_PORT, 2, &piix4_apm_io_ops, pm, "apm")) {
        log_error("piix4-pm: cannot claim the GPE0 block or the APM ports");
        return -1;
    }
    pthread_mutex_lock(&pm->pci.lock);
    update_pm_block(pm);
    bool mapped = pm->io_mapped;
    pthread_mutex_unlock(&pm->pci.lock);
    if (!mapped) {
        log_error("piix4-pm: cannot claim the PM block at 0x%04x", PC_PM_BASE_DEFAULT);
        return -1;
    }
    return 0;
}
