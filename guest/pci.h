/* PCI helpers of the test guest, at CPL0: configuration mechanism #1, BAR
 * assignment in the BENCH_MMIO window, virtio capability lookup. Used by
 * the storage benchmark and the device fuzzer. */
#ifndef TESTGUEST_PCI_H
#define TESTGUEST_PCI_H

#include <stdint.h>

uint32_t pci_cfg_read(unsigned bus, unsigned dev, unsigned reg);
void pci_cfg_write(unsigned bus, unsigned dev, unsigned reg, uint32_t v);

/* Assigns the function's memory BARs from *next up to BENCH_MMIO_END
 * (bar_addr[i] = 0 for a BAR left alone: I/O, absent, 64-bit of 4 GiB or
 * more, or no room; bar_size[i], when bar_size is not NULL, gets the size),
 * then enables memory decoding and bus mastering with INTx disabled; I/O
 * decoding stays off. */
void pci_assign_bars(unsigned bus, unsigned dev, uint64_t bar_addr[6], uint64_t *bar_size,
                     uint64_t *next);

/* The first virtio vendor capability (PCI cap id 9) of cfg_type, mapped
 * through bar_addr; NULL when absent or its BAR is unassigned. *extra (if
 * not NULL) gets the capability's dword at +16 (the notify multiplier). */
volatile uint8_t *pci_virtio_cap(unsigned bus, unsigned dev, const uint64_t bar_addr[6],
                                 unsigned cfg_type, uint32_t *extra);

#endif
