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

#include "core/irq_line.h"
#include "devices/pc_layout.h"
#include "pci/pci.h"

#define PIIX3_DEVICE_ID 0x7000
#define PIIX3_PIRQ_ROUTE 0x60 /* PIRQRC[A-D], one byte each */

struct piix3 {
    struct pci_device pci;
    struct irq_bank pirq_out[PC_PIRQ_COUNT]; /* by PIRQ; line n: ISA IRQ or GSI n */
    pthread_mutex_t lock;                    /* routing state below */
    uint64_t pirq_sources[PC_PIRQ_COUNT][PCI_DEVFN_COUNT / 64]; /* devfns asserting */
    int routed_irq[PC_PIRQ_COUNT];                              /* -1: disabled */
    bool line_driven[PC_PIRQ_COUNT];                            /* we hold routed_irq high */
    bool gsi_driven[PC_PIRQ_COUNT]; /* we hold PC_PCI_GSI_BASE + n high */
    struct log_ratelimit log;
};

/* pirq_out[n]: what PIRQ n drives, its routed ISA IRQ (0-15, PIC and
 * IOAPIC) and GSI PC_PCI_GSI_BASE + n, as one source:
 * machine_irq_bank(m, PC_IRQ_SOURCE_PIRQ(n)). */
void piix3_init(struct piix3 *piix3, const struct irq_bank pirq_out[PC_PIRQ_COUNT]);
/* Places the bridge at 0.1.0 and makes it the bus's INTx router. */
int piix3_attach(struct piix3 *piix3, struct pci_bus *bus);
/* The ISA IRQ a PIRQ (0 = A) reaches now, or -1 if disabled. */
int piix3_pirq_irq(struct piix3 *piix3, unsigned pirq);

#endif
