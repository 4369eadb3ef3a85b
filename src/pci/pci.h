/* The PCI layer: a device model every PCI function builds on (config space
 * with write masks, BARs mapped on the PIO/MMIO buses while decoded,
 * capabilities, INTx) and a bus reached through configuration mechanism #1
 * (0xCF8/0xCFC) and ECAM.
 *
 * Locking: each function has its own lock, held while the bus runs a config
 * access on it and while its BARs move; the device's pci_device_ops hooks run
 * with it held (use the *_locked helpers there). Its BAR handlers run
 * without it, like every bus handler. Devices are added before the VM runs
 * and never removed. */
#ifndef PCI_PCI_H
#define PCI_PCI_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "devices/device.h"

#define PCI_CONFIG_SPACE_SIZE 256
#define PCIE_CONFIG_SPACE_SIZE 4096
#define PCI_BAR_COUNT 6
#define PCI_DEVFN_COUNT 256

#define PCI_DEVFN(slot, func) ((uint8_t)(((slot) << 3) | (func)))
#define PCI_SLOT(devfn) (((devfn) >> 3) & 0x1f)
#define PCI_FUNC(devfn) ((devfn)&7)

/* Type 0 header. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER 0x0d
#define PCI_HEADER_TYPE 0x0e
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_HEADER_END 0x40 /* device-specific space and capabilities follow */

#define PCI_COMMAND_IO 0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_PARITY 0x0040
#define PCI_COMMAND_SERR 0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400

#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_STATUS_FAST_BACK 0x0080
#define PCI_STATUS_DEVSEL_MEDIUM 0x0200
#define PCI_STATUS_W1C 0xf900 /* parity/abort/SERR error bits */

#define PCI_HEADER_TYPE_MULTI_FUNCTION 0x80

#define PCI_BAR_SPACE_IO 0x1
#define PCI_BAR_MEM_TYPE_64 0x4
#define PCI_BAR_MEM_PREFETCH 0x8

#define PCI_CAP_ID_PM 0x01
#define PCI_CAP_ID_MSI 0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11

#define PCI_VENDOR_ID_INTEL 0x8086
/* What QEMU puts in its devices' subsystem IDs. */
#define PCI_SUBVENDOR_ID_QEMU 0x1af4
#define PCI_SUBDEVICE_ID_QEMU 0x1100

/* INTx pins as in PCI_INTERRUPT_PIN. */
enum pci_intx_pin { PCI_INTX_NONE = 0, PCI_INTA = 1, PCI_INTB, PCI_INTC, PCI_INTD };

enum pci_bar_type { PCI_BAR_UNUSED = 0, PCI_BAR_IO, PCI_BAR_MEM32, PCI_BAR_MEM64 };

struct pci_device;
struct pci_bus;

struct pci_bar {
    enum pci_bar_type type;
    bool prefetchable;
    uint64_t size;            /* power of two */
    const struct io_ops *ops; /* offsets relative to the BAR's base */
    void *opaque;
    bool mapped;
    uint64_t mapped_base;
    /* Wanted at refused_base but left unmapped: another range held the
     * place. Retried whenever a BAR on the bus gives a range up. */
    bool refused;
    uint64_t refused_base;
    struct log_ratelimit refused_log;
};

struct pci_device_ops {
    /* After the generic write of bytes [offset, offset+size) of config space
     * (masks applied, BARs and command handled). value holds the bytes the
     * guest wrote. Device lock held. */
    void (*config_write)(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t value);
    /* May replace the value the generic read produced. Device lock held. */
    uint32_t (*config_read)(struct pci_device *pdev, unsigned offset, unsigned size,
                            uint32_t value);
    /* A BAR was mapped at base or unmapped (e.g. to move ioeventfds).
     * Device lock held. */
    void (*bar_mapped)(struct pci_device *pdev, unsigned bar, bool mapped, uint64_t base);
};

struct pci_ids {
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code; /* base class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
};

struct pci_device {
    struct device dev; /* name and lifecycle ops, filled by the owner */
    const struct pci_device_ops *pci_ops;
    struct pci_bus *bus; /* set by pci_bus_add */
    uint8_t devfn;
    bool express; /* 4 KiB config space through ECAM (else the extension reads 0) */

    pthread_mutex_t lock;
    uint8_t config[PCIE_CONFIG_SPACE_SIZE];
    uint8_t wmask[PCIE_CONFIG_SPACE_SIZE];           /* bits the guest may write */
    uint8_t w1cmask[PCIE_CONFIG_SPACE_SIZE];         /* bits cleared by writing 1 */
    uint8_t power_on_config[PCIE_CONFIG_SPACE_SIZE]; /* captured by pci_bus_add */
    bool cap_used[PCI_CONFIG_SPACE_SIZE];

    struct pci_bar bars[PCI_BAR_COUNT];
    _Atomic uint16_t command; /* mirror of PCI_COMMAND for lock-free checks */
    bool intx_level;          /* what the device asks for */
    bool intx_asserted;       /* what the router sees (level && !INTX_DISABLE) */
};

/* Routes a function's INTx to an interrupt controller (the PIIX3). pin is
 * 0 (INTA) to 3 (INTD). Called with the function's lock held. */
struct pci_intx_router {
    void (*set_intx)(void *opaque, uint8_t devfn, unsigned pin, bool level);
    void *opaque;
};

struct pci_bus {
    struct bus *pio, *mmio;
    pthread_mutex_t lock; /* config address latch and device table */
    uint32_t config_address;
    struct pci_device *devices[PCI_DEVFN_COUNT]; /* bus 0 */
    struct pci_intx_router router;
    /* 0xCF9 shares the dword at 0xCF8: byte accesses there go here. */
    const struct io_ops *cf9_ops;
    void *cf9_opaque;
    uint64_t ecam_base, ecam_size; /* size 0: no ECAM window */
    bool ports_mapped;
    struct log_ratelimit log;
};

/* ---- Device side ---- */

/* Fills the header (IDs, class, type 0, default masks: command, cache line,
 * latency timer, interrupt line, and bytes 0x40-0xFF writable as QEMU does
 * until a capability claims them). dev_ops may be NULL. */
void pci_device_init(struct pci_device *pdev, const char *name, const struct device_ops *dev_ops,
                     const struct pci_ids *ids, const struct pci_device_ops *pci_ops);
void pci_device_destroy(struct pci_device *pdev);
/* Power-on state: config space as at pci_bus_add, BARs off the buses, INTx
 * deasserted, then the BARs that power-on config decodes mapped. Call from
 * the device's reset op. */
void pci_device_reset(struct pci_device *pdev);
/* The first reset pass (device_ops.drop_decodes) of a function whose
 * struct device is its pci_device's dev: its BARs leave the buses; config
 * space is left for the reset op to restore. Every PCI function's ops set
 * it (or call it from their own drop_decodes). */
void pci_device_drop_decodes(struct device *dev);

/* Saves or loads the function's config space and INTx level (the caller
 * wraps it in snap_enter(s, "pci")). A load refuses a config space whose
 * identity (IDs, class, header type, pin) is not this function's, then
 * maps the BARs the loaded config decodes and drives INTx as saved. Takes
 * the function's lock. */
int pci_device_state(struct pci_device *pdev, struct snap *s);

/* Declares BAR index (0-5; MEM64 uses index and index+1). Size: a power of
 * two, I/O 4 B-256 B, memory 16 B-2 GiB (32-bit) or more (64-bit). The range
 * reaches ops/opaque while decoded. Returns 0, or -1 (logged) on bad input. */
int pci_register_bar(struct pci_device *pdev, unsigned index, enum pci_bar_type type,
                     bool prefetchable, uint64_t size, const struct io_ops *ops, void *opaque);

/* Appends a capability of size bytes (>= 2) with the given ID to the list, at
 * offset (dword-aligned, >= 0x40) or, if offset is 0, at the first
 * dword-aligned spot no other capability uses (a device with private
 * registers above 0x40 passes explicit offsets). Its bytes become read-only
 * but for the masks the caller sets afterwards. Call before pci_bus_add.
 * Returns the offset or -1. */
int pci_add_capability(struct pci_device *pdev, uint8_t cap_id, unsigned offset, unsigned size);
/* Offset of the first capability with cap_id, or 0. */
unsigned pci_find_capability(struct pci_device *pdev, uint8_t cap_id);

/* Sets PCI_INTERRUPT_PIN (read-only to the guest). */
void pci_set_interrupt_pin(struct pci_device *pdev, enum pci_intx_pin pin);
/* Drives the function's INTx; reaches the router unless INTX_DISABLE is set.
 * Any thread; the _locked form from inside a pci_device_ops hook. */
void pci_set_irq(struct pci_device *pdev, bool level);
void pci_set_irq_locked(struct pci_device *pdev, bool level);

/* DMA-capable devices check this before touching guest memory. */
bool pci_bus_master_enabled(struct pci_device *pdev);
uint16_t pci_command(struct pci_device *pdev);

/* Config space helpers for device code (init, or with the lock held). */
uint8_t pci_get_byte(const struct pci_device *pdev, unsigned offset);
uint16_t pci_get_word(const struct pci_device *pdev, unsigned offset);
uint32_t pci_get_long(const struct pci_device *pdev, unsigned offset);
void pci_set_byte(struct pci_device *pdev, unsigned offset, uint8_t value);
void pci_set_word(struct pci_device *pdev, unsigned offset, uint16_t value);
void pci_set_long(struct pci_device *pdev, unsigned offset, uint32_t value);
/* Write and write-1-to-clear masks of size bytes at offset (little endian). */
void pci_set_wmask(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t mask);
void pci_set_w1cmask(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t mask);

/* A config access as the bus performs it: size 1, 2 or 4, not crossing a
 * dword. Takes the device lock. Out-of-range reads give 0, writes are
 * dropped. */
uint32_t pci_device_config_read(struct pci_device *pdev, unsigned offset, unsigned size);
void pci_device_config_write(struct pci_device *pdev, unsigned offset, unsigned size,
                             uint32_t value);

/* True if no range of bus intersects [base, base+len): lets guest-driven
 * relocations (BARs, PMBA) refuse overlaps quietly instead of through
 * bus_register's unconditional error message. */
bool pci_range_unclaimed(struct bus *bus, uint64_t base, uint64_t len);

/* ---- Bus side ---- */

void pci_bus_init(struct pci_bus *bus, struct bus *pio, struct bus *mmio);
void pci_bus_destroy(struct pci_bus *bus);
/* Places a configured device at bus 0, devfn; captures its power-on config.
 * Fails (-1, logged) if occupied. */
int pci_bus_add(struct pci_bus *bus, struct pci_device *pdev, uint8_t devfn);
struct pci_device *pci_bus_device(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn);
void pci_bus_set_intx_router(struct pci_bus *bus, struct pci_intx_router router);
void pci_bus_set_cf9_handler(struct pci_bus *bus, const struct io_ops *ops, void *opaque);

/* Claims 0xCF8 (4 bytes: the address register for dword accesses, 0xCF9
 * bytes forwarded to the CF9 handler), 0xCFC (4 bytes of data) and, if
 * ecam_size is non-zero, the ECAM window. Returns false if a range is taken. */
bool pci_bus_map_config_space(struct pci_bus *bus, uint64_t ecam_base, uint64_t ecam_size);
/* Resets the address latch (host bridge reset). */
void pci_bus_reset(struct pci_bus *bus);

/* Config read/write by bus number, devfn and register. Absent functions read
 * all-ones; header type bit 7 is reported for function 0 of a slot with
 * more functions. size 1, 2 or 4, not crossing a dword. */
uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn, unsigned reg,
                             unsigned size);
void pci_bus_config_write(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn, unsigned reg,
                          unsigned size, uint32_t value);

/* Bus handlers: opaque is the struct pci_bus. */
extern const struct io_ops pci_config_address_io_ops; /* 0xCF8, length 4 */
extern const struct io_ops pci_config_data_io_ops;    /* 0xCFC, length 4 */
extern const struct io_ops pci_ecam_io_ops;           /* ECAM window */

#endif
