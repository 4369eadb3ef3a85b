#include "devices/piix3.h"

#include <string.h>

#include "common/bytes.h"

/* QEMU's reset values of the bridge's own registers (hw/isa/piix.c). */
static const struct {
    uint8_t offset, value;
} power_on_registers[] = {
    {0x4c, 0x4d}, /* IORT: ISA I/O recovery timer */
    {0x4e, 0x03}, /* XBCS: X-bus chip select */
    {0x60, PC_PIRQ_ROUTE_DISABLED},
    {0x61, PC_PIRQ_ROUTE_DISABLED},
    {0x62, PC_PIRQ_ROUTE_DISABLED},
    {0x63, PC_PIRQ_ROUTE_DISABLED},
    {0x69, 0x02}, /* TOM: top of memory */
    {0x70, 0x80}, /* MBIRQ0: motherboard IRQ route, disabled */
    {0x76, 0x0c}, /* MBDMA0/1 */
    {0x77, 0x0c},
    {0x78, 0x02}, /* PCSC: programmable chip select */
    {0xa0, 0x08}, /* SMICNTL */
    {0xa8, 0x0f}, /* FTMR: fast off timer */
};

static void drive(struct piix3 *p, unsigned pirq, bool level)
{
    if (p->routed_irq[pirq] < 0 || p->line_driven[pirq] == level)
        return;
    p->line_driven[pirq] = level;
    irq_bank_set(&p->pirq_out[pirq], (unsigned)p->routed_irq[pirq], level);
}

/* The IOAPIC path: PIRQ n is also wired to GSI 16 + n, whatever its
 * routing register says (as QEMU's ICH9 does for its PIRQs). */
static void drive_gsi(struct piix3 *p, unsigned pirq, bool level)
{
    if (p->gsi_driven[pirq] == level)
        return;
    p->gsi_driven[pirq] = level;
    irq_bank_set(&p->pirq_out[pirq], PC_PCI_GSI_BASE + pirq, level);
}

static bool pirq_level(const struct piix3 *p, unsigned pirq)
{
    for (unsigned i = 0; i < PCI_DEVFN_COUNT / 64; i++)
        if (p->pirq_sources[pirq][i])
            return true;
    return false;
}

static int decode_route(uint8_t value)
{
    if (value >= 16 || !(PC_PIRQ_VALID_IRQ_MASK & (1u << value)))
        return -1;
    return value;
}

/* Moves a PIRQ to the IRQ its register now names, carrying its level over. */
static void reroute(struct piix3 *p, unsigned pirq, uint8_t value)
{
    int irq = decode_route(value);
    if (irq < 0 && !(value & PC_PIRQ_ROUTE_DISABLED))
        log_limited(&p->log, LOG_WARNING,
                    "PIIX3: PIRQ%c routed to reserved value 0x%02x; treated as disabled",
                    'A' + pirq, value);
    if (irq == p->routed_irq[pirq])
        return;
    drive(p, pirq, false);
    p->routed_irq[pirq] = irq;
    drive(p, pirq, pirq_level(p, pirq));
}

static void piix3_set_intx(void *opaque, uint8_t devfn, unsigned pin, bool level)
{
    struct piix3 *p = opaque;
    unsigned pirq = pc_pirq_for(PCI_SLOT(devfn), pin & 3);
    uint64_t bit = 1ull << (devfn % 64);
    pthread_mutex_lock(&p->lock);
    if (level)
        p->pirq_sources[pirq][devfn / 64] |= bit;
    else
        p->pirq_sources[pirq][devfn / 64] &= ~bit;
    bool pirq_asserted = pirq_level(p, pirq);
    drive(p, pirq, pirq_asserted);
    drive_gsi(p, pirq, pirq_asserted);
    pthread_mutex_unlock(&p->lock);
}

static void piix3_config_write(struct pci_device *pdev, unsigned offset, unsigned size,
                               uint32_t value)
{
    struct piix3 *p = container_of(pdev, struct piix3, pci);
    pthread_mutex_lock(&p->lock);
    for (unsigned pirq = 0; pirq < PC_PIRQ_COUNT; pirq++) {
        unsigned reg = PIIX3_PIRQ_ROUTE + pirq;
        if (reg >= offset && reg < offset + size)
            reroute(p, pirq, pdev->config[reg]);
    }
    pthread_mutex_unlock(&p->lock);
}

static const struct pci_device_ops piix3_pci_ops = {.config_write = piix3_config_write};

int piix3_pirq_irq(struct piix3 *p, unsigned pirq)
{
    if (pirq >= PC_PIRQ_COUNT)
        return -1;
    pthread_mutex_lock(&p->lock);
    int irq = p->routed_irq[pirq];
    pthread_mutex_unlock(&p->lock);
    return irq;
}

static void piix3_reset(struct device *dev)
{
    struct piix3 *p = container_of(dev, struct piix3, pci.dev);
    pthread_mutex_lock(&p->lock);
    for (unsigned pirq = 0; pirq < PC_PIRQ_COUNT; pirq++) {
        drive(p, pirq, false);
        drive_gsi(p, pirq, false);
        p->routed_irq[pirq] = -1;
    }
    memset(p->pirq_sources, 0, sizeof(p->pirq_sources));
    pthread_mutex_unlock(&p->lock);
    pci_device_reset(&p->pci);
}

static void piix3_destroy(struct device *dev)
{
    struct piix3 *p = container_of(dev, struct piix3, pci.dev);
    pci_device_destroy(&p->pci);
    pthread_mutex_destroy(&p->lock);
}

/* What INTx function devfn asserts now, as the router last heard it. */
static bool function_asserts(struct pci_bus *bus, uint8_t devfn, unsigned *pin)
{
    struct pci_device *pdev = pci_bus_device(bus, 0, devfn);
    if (!pdev)
        return false;
    pthread_mutex_lock(&pdev->lock);
    bool asserted = pdev->intx_asserted;
    *pin = pdev->config[PCI_INTERRUPT_PIN] - 1u;
    pthread_mutex_unlock(&pdev->lock);
    return asserted;
}

/* The routing registers live in config space, so the state is the PCI
 * function's. The router's view of who asserts which PIRQ is not saved:
 * it is what the functions on the bus assert, which their own loads put
 * back (pci_device_state drives INTx as saved). A function reports only
 * changes of its asserted level, and the router keeps one bit per devfn,
 * so nothing is counted twice. On load the PIIX3 therefore takes the
 * sources from the functions as they stand: those loaded before it are
 * already at their saved level, those loaded after report their change
 * through set_intx as at run time. Either order ends with the routes and
 * levels the saved machine had; the machine loads in inventory order,
 * where the chipset comes before the [dev.*] functions. */
static int piix3_state(struct device *dev, struct snap *s)
{
    struct piix3 *p = container_of(dev, struct piix3, pci.dev);
    snap_enter(s, "pci");
    pci_device_state(&p->pci, s);
    snap_leave(s);
    if (!snap_loading(s) || snap_error(s))
        return snap_error(s);
    uint64_t sources[PC_PIRQ_COUNT][PCI_DEVFN_COUNT / 64] = {{0}};
    for (unsigned devfn = 0; p->pci.bus && devfn < PCI_DEVFN_COUNT; devfn++) {
        unsigned pin;
        if (function_asserts(p->pci.bus, (uint8_t)devfn, &pin))
            sources[pc_pirq_for(PCI_SLOT(devfn), pin & 3)][devfn / 64] |= 1ull << (devfn % 64);
    }
    uint8_t routes[PC_PIRQ_COUNT];
    pthread_mutex_lock(&p->pci.lock);
    memcpy(routes, &p->pci.config[PIIX3_PIRQ_ROUTE], sizeof(routes));
    pthread_mutex_unlock(&p->pci.lock);
    pthread_mutex_lock(&p->lock);
    memcpy(p->pirq_sources, sources, sizeof(sources));
    for (unsigned pirq = 0; pirq < PC_PIRQ_COUNT; pirq++) {
        int irq = decode_route(routes[pirq]);
        if (irq != p->routed_irq[pirq]) {
            drive(p, pirq, false);
            p->routed_irq[pirq] = irq;
        }
        bool level = pirq_level(p, pirq);
        drive(p, pirq, level);
        drive_gsi(p, pirq, level);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static const struct device_ops piix3_device_ops = {
    .drop_decodes = pci_device_drop_decodes,
    .reset = piix3_reset,
    .state = piix3_state,
    .kind = "piix3",
    .state_version = 1,
    .destroy = piix3_destroy,
};

void piix3_init(struct piix3 *p, const struct irq_bank pirq_out[PC_PIRQ_COUNT])
{
    static const struct pci_ids ids = {
        .vendor_id = PCI_VENDOR_ID_INTEL,
        .device_id = PIIX3_DEVICE_ID,
        .subsystem_vendor_id = PCI_SUBVENDOR_ID_QEMU,
        .subsystem_id = PCI_SUBDEVICE_ID_QEMU,
        .class_code = 0x060100,
    };
    pci_device_init(&p->pci, "piix3", &piix3_device_ops, &ids, &piix3_pci_ops);
    memcpy(p->pirq_out, pirq_out, sizeof(p->pirq_out));
    pthread_mutex_init(&p->lock, NULL);
    memset(p->pirq_sources, 0, sizeof(p->pirq_sources));
    memset(&p->log, 0, sizeof(p->log));
    for (unsigned pirq = 0; pirq < PC_PIRQ_COUNT; pirq++) {
        p->routed_irq[pirq] = -1;
        p->line_driven[pirq] = false;
        p->gsi_driven[pirq] = false;
    }
    /* I/O, memory and bus master on; DEVSEL medium (QEMU's reset values). */
    pci_set_word(&p->pci, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    pci_set_word(&p->pci, PCI_STATUS, PCI_STATUS_DEVSEL_MEDIUM);
    for (size_t i = 0; i < ARRAY_LEN(power_on_registers); i++)
        pci_set_byte(&p->pci, power_on_registers[i].offset, power_on_registers[i].value);
}

int piix3_attach(struct piix3 *p, struct pci_bus *bus)
{
    if (pci_bus_add(bus, &p->pci, PC_PIIX3_DEVFN) < 0)
        return -1;
    pci_bus_set_intx_router(bus, (struct pci_intx_router){piix3_set_intx, p});
    return 0;
}
