/* PCI helpers of the test guest, at CPL0: configuration mechanism #1, the
 * functions the drivers look for, BAR assignment in the BENCH_MMIO window,
 * virtio capability lookup. Used by the drivers (storage_bench.c,
 * net_test.c), the device fuzzer and main.c. */
#ifndef TESTGUEST_PCI_H
#define TESTGUEST_PCI_H

/* The PIIX4 power-management function and where the tests move its
 * I/O block (PMBA) to: 64-byte aligned, free on the VMM's I/O bus. */
#define PIIX4_PM_DEVFN 0x0B /* 0:1.3 */
#define PIIX4_PM_PMBA 0x40
#define PM_BASE_POWER_ON 0xB000
#define PM_BASE_MOVED 0x6000

#include <stdbool.h>
#include <stdint.h>

uint32_t pci_cfg_read(unsigned bus, unsigned dev, unsigned reg);
void pci_cfg_write(unsigned bus, unsigned dev, unsigned reg, uint32_t v);

/* What a function is, from its vendor:device id (config dword 0) and its
 * class code and revision (dword 8); an absent function reads all ones. */
bool pci_is_virtio_blk(uint32_t id, uint32_t class_rev); /* 1af4:1001, 1af4:1042 */
bool pci_is_virtio_net(uint32_t id, uint32_t class_rev); /* 1af4:1000, 1af4:1041 */
bool pci_is_nvme(uint32_t id, uint32_t class_rev);       /* class 01:08:02 */

/* The first function 0 on bus want_bus (0 if negative) that match()
 * accepts, from device 0, or only device want_dev when that is not
 * negative; false when there is none. */
bool pci_find(int want_bus, int want_dev, bool (*match)(uint32_t id, uint32_t class_rev),
              unsigned *bus, unsigned *dev);

/* Turns memory decoding and bus mastering off (INTx stays disabled): the
 * function is left quiet, and a later command may place another device's
 * BARs at the same addresses. */
void pci_disable(unsigned bus, unsigned dev);

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
