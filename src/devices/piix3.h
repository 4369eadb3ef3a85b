/* PIIX3 PCI-to-ISA bridge (0.1.0, 8086:7000, class 0x060100, multi-function
 * with the PM function at 0.1.3). It is the PCI bus's INTx router: PIRQ n
 * reaches the ISA IRQ its route control register (0x60 + n) names, and
 * always IOAPIC GSI 16 + n too; see devices/pc_layout.h. Its other
 * registers store what firmware writes, with QEMU's reset values. */
#ifndef DEVICES_PIIX3_H
#define DEVICES_PIIX3_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/pc_layout.h"
#include "pci/pci.h"

#define PIIX3_DEVICE_ID 0x7000
#define PIIX3_PIRQ_ROUTE 0x60 /* PIRQRC[A-D], one byte each */

/* Drives an interrupt line: ISA IRQs 0-15 (PIC and IOAPIC) and GSIs
 * 16-19: machine_set_irq(m, irq, source_bit, level). */
struct piix3_irq_sink {
    void (*set_irq)(void *opaque, unsigned irq, uint32_t source_bit, bool level);
    void *opaque;
};

struct piix3 {
    struct pci_device pci;
    struct piix3_irq_sink sink;
    pthread_mutex_t lock;                                       /* routing state below */
    uint64_t pirq_sources[PC_PIRQ_COUNT][PCI_DEVFN_COUNT / 64]; /* devfns asserting */
    int routed_irq[PC_PIRQ_COUNT];                              /* -1: disabled */
    bool line_driven[PC_PIRQ_COUNT];                            /* we hold routed_irq high */
    bool gsi_driven[PC_PIRQ_COUNT]; /* we hold PC_PCI_GSI_BASE + n high */
    struct log_ratelimit log;
};

void piix3_init(struct piix3 *piix3, struct piix3_irq_sink sink);
/* Places the bridge at 0.1.0 and makes it the bus's INTx router. */
int piix3_attach(struct piix3 *piix3, struct pci_bus *bus);
/* The ISA IRQ a PIRQ (0 = A) reaches now, or -1 if disabled. */
int piix3_pirq_irq(struct piix3 *piix3, unsigned pirq);

#endif
