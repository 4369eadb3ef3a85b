#include "pci/pci.h"

#include <string.h>

#include "common/bytes.h"

#define CONFIG_ADDRESS_PORT 0xcf8
#define CONFIG_DATA_PORT 0xcfc
#define CONFIG_ADDRESS_ENABLE 0x80000000u
/* Bus, device, function and dword register; reserved bits read as zero. */
#define CONFIG_ADDRESS_MASK 0x80fffffcu

#define COMMAND_WRITABLE                                                                           \
    (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |               \
     PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)

#define IO_SPACE_END 0x10000ull
#define MEM32_SPACE_END 0x100000000ull
#define MEM64_SPACE_END (1ull << 52) /* the architectural physical-address limit */

#define CAP_LIST_MAX_HOPS 64

static bool ranges_overlap(unsigned a, unsigned a_len, unsigned b, unsigned b_len)
{
    return a < b + b_len && b < a + a_len;
}

/* ---- Raw config space helpers ---- */

static bool in_config(unsigned offset, unsigned size)
{
    return offset < PCIE_CONFIG_SPACE_SIZE && size <= PCIE_CONFIG_SPACE_SIZE - offset;
}

uint8_t pci_get_byte(const struct pci_device *pdev, unsigned offset)
{
    return in_config(offset, 1) ? pdev->config[offset] : 0;
}

uint16_t pci_get_word(const struct pci_device *pdev, unsigned offset)
{
    return in_config(offset, 2) ? le16_load(pdev->config + offset) : 0;
}

uint32_t pci_get_long(const struct pci_device *pdev, unsigned offset)
{
    return in_config(offset, 4) ? le32_load(pdev->config + offset) : 0;
}

void pci_set_byte(struct pci_device *pdev, unsigned offset, uint8_t value)
{
    if (in_config(offset, 1))
        pdev->config[offset] = value;
}

void pci_set_word(struct pci_device *pdev, unsigned offset, uint16_t value)
{
    if (in_config(offset, 2))
        le16_store(pdev->config + offset, value);
}

void pci_set_long(struct pci_device *pdev, unsigned offset, uint32_t value)
{
    if (in_config(offset, 4))
        le32_store(pdev->config + offset, value);
}

void pci_set_wmask(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t mask)
{
    if (size <= 4 && in_config(offset, size))
        le_store(pdev->wmask + offset, size, mask);
}

void pci_set_w1cmask(struct pci_device *pdev, unsigned offset, unsigned size, uint32_t mask)
{
    if (size <= 4 && in_config(offset, size))
        le_store(pdev->w1cmask + offset, size, mask);
}

/* ---- Device ---- */

void pci_device_init(struct pci_device *pdev, const char *name, const struct device_ops *dev_ops,
                     const struct pci_ids *ids, const struct pci_device_ops *pci_ops)
{
    memset(pdev, 0, sizeof(*pdev));
    pdev->dev.name = name;
    pdev->dev.ops = dev_ops;
    pdev->pci_ops = pci_ops;
    pthread_mutex_init(&pdev->lock, NULL);

    pci_set_word(pdev, PCI_VENDOR_ID, ids->vendor_id);
    pci_set_word(pdev, PCI_DEVICE_ID, ids->device_id);
    pci_set_byte(pdev, PCI_REVISION_ID, ids->revision);
    pci_set_byte(pdev, PCI_CLASS_PROG, (uint8_t)ids->class_code);
    pci_set_word(pdev, PCI_CLASS_PROG + 1, (uint16_t)(ids->class_code >> 8));
    pci_set_word(pdev, PCI_SUBSYSTEM_VENDOR_ID, ids->subsystem_vendor_id);
    pci_set_word(pdev, PCI_SUBSYSTEM_ID, ids->subsystem_id);

    pci_set_wmask(pdev, PCI_COMMAND, 2, COMMAND_WRITABLE);
    pci_set_w1cmask(pdev, PCI_STATUS, 2, PCI_STATUS_W1C);
    pci_set_wmask(pdev, PCI_CACHE_LINE_SIZE, 1, 0xff);
    pci_set_wmask(pdev, PCI_LATENCY_TIMER, 1, 0xff);
    pci_set_wmask(pdev, PCI_INTERRUPT_LINE, 1, 0xff);
    /* Device-specific space stores what firmware writes, as in QEMU. */
    memset(pdev->wmask + PCI_HEADER_END, 0xff, PCI_CONFIG_SPACE_SIZE - PCI_HEADER_END);
    memcpy(pdev->power_on_config, pdev->config, sizeof(pdev->config));
}

void pci_device_destroy(struct pci_device *pdev)
{
    pthread_mutex_destroy(&pdev->lock);
}

uint16_t pci_command(struct pci_device *pdev)
{
    return atomic_load(&pdev->command);
}

bool pci_bus_master_enabled(struct pci_device *pdev)
{
    return pci_command(pdev) & PCI_COMMAND_MASTER;
}

/* ---- INTx ---- */

static void update_intx(struct pci_device *pdev)
{
    uint8_t pin = pdev->config[PCI_INTERRUPT_PIN];
    bool want = pdev->intx_level && pin >= PCI_INTA && pin <= PCI_INTD &&
                !(pci_get_word(pdev, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE);
    if (want == pdev->intx_asserted)
        return;
    pdev->intx_asserted = want;
    if (pdev->bus && pdev->bus->router.set_intx)
        pdev->bus->router.set_intx(pdev->bus->router.opaque, pdev->devfn, pin - 1u, want);
}

void pci_set_interrupt_pin(struct pci_device *pdev, enum pci_intx_pin pin)
{
    pci_set_byte(pdev, PCI_INTERRUPT_PIN, (uint8_t)pin);
}

void pci_set_irq_locked(struct pci_device *pdev, bool level)
{
    pdev->intx_level = level;
    update_intx(pdev);
}

void pci_set_irq(struct pci_device *pdev, bool level)
{
    pthread_mutex_lock(&pdev->lock);
    pci_set_irq_locked(pdev, level);
    pthread_mutex_unlock(&pdev->lock);
}

/* ---- BARs ---- */

static unsigned bar_offset(unsigned index)
{
    return PCI_BASE_ADDRESS_0 + 4 * index;
}

static unsigned bar_span(const struct pci_bar *bar)
{
    return bar->type == PCI_BAR_MEM64 ? 8 : 4;
}

static bool is_power_of_two(uint64_t v)
{
    return v && !(v & (v - 1));
}

int pci_register_bar(struct pci_device *pdev, unsigned index, enum pci_bar_type type,
                     bool prefetchable, uint64_t size, const struct io_ops *ops, void *opaque)
{
    const char *name = pdev->dev.name ? pdev->dev.name : "pci";
    bool size_ok;
    switch (type) {
    case PCI_BAR_IO:
        size_ok = size >= 4 && size <= 256 && !prefetchable;
        break;
    case PCI_BAR_MEM32:
        size_ok = size >= 16 && size <= (2ull << 30);
        break;
    case PCI_BAR_MEM64:
        size_ok = size >= 16 && size <= MEM64_SPACE_END / 2;
        break;
    default:
        size_ok = false;
        break;
    }
    unsigned span = type == PCI_BAR_MEM64 ? 2 : 1;
    bool slot_free = index + span <= PCI_BAR_COUNT && pdev->bars[index].type == PCI_BAR_UNUSED &&
                     (span == 1 || pdev->bars[index + 1].type == PCI_BAR_UNUSED) &&
                     !(index > 0 && pdev->bars[index - 1].type == PCI_BAR_MEM64);
    if (!size_ok || !is_power_of_two(size) || !slot_free || !ops) {
        log_error("%s: invalid BAR %u (type %d, size 0x%llx)", name, index, (int)type,
                  (unsigned long long)size);
        return -1;
    }
    struct pci_bar *bar = &pdev->bars[index];
    memset(bar, 0, sizeof(*bar));
    bar->type = type;
    bar->prefetchable = prefetchable;
    bar->size = size;
    bar->ops = ops;
    bar->opaque = opaque;

    uint64_t address_mask = ~(size - 1);
    uint32_t flags;
    if (type == PCI_BAR_IO) {
        flags = PCI_BAR_SPACE_IO;
        pci_set_wmask(pdev, bar_offset(index), 4, (uint32_t)address_mask & ~3u);
    } else {
        flags = (type == PCI_BAR_MEM64 ? PCI_BAR_MEM_TYPE_64 : 0) |
                (prefetchable ? PCI_BAR_MEM_PREFETCH : 0);
        pci_set_wmask(pdev, bar_offset(index), 4, (uint32_t)address_mask & ~0xfu);
        if (type == PCI_BAR_MEM64)
            pci_set_wmask(pdev, bar_offset(index + 1), 4, (uint32_t)(address_mask >> 32));
    }
    pci_set_long(pdev, bar_offset(index), flags);
    if (type == PCI_BAR_MEM64)
        pci_set_long(pdev, bar_offset(index + 1), 0);
    memcpy(pdev->power_on_config, pdev->config, sizeof(pdev->config));
    return 0;
}

static uint64_t bar_address(const struct pci_device *pdev, unsigned index)
{
    const struct pci_bar *bar = &pdev->bars[index];
    uint32_t low = pci_get_long(pdev, bar_offset(index));
    switch (bar->type) {
    case PCI_BAR_IO:
        return low & ~3u;
    case PCI_BAR_MEM32:
        return low & ~0xfu;
    case PCI_BAR_MEM64:
        return (low & ~0xfull) | ((uint64_t)pci_get_long(pdev, bar_offset(index + 1)) << 32);
    default:
        return 0;
    }
}

/* Placements the bus can honour: not at 0 (unprogrammed), inside the
 * address space, not wrapping. A 32-bit BAR may not reach the last byte
 * below 4 GiB (what a sizing probe leaves behind), as in QEMU. */
static bool bar_address_sane(const struct pci_bar *bar, uint64_t base)
{
    uint64_t end = base + bar->size;
    if (base == 0 || end < base)
        return false;
    switch (bar->type) {
    case PCI_BAR_IO:
        return end <= IO_SPACE_END;
    case PCI_BAR_MEM32:
        return end < MEM32_SPACE_END;
    case PCI_BAR_MEM64:
        return end <= MEM64_SPACE_END;
    default:
        return false;
    }
}

static struct bus *bar_bus(const struct pci_device *pdev, const struct pci_bar *bar)
{
    if (!pdev->bus)
        return NULL;
    return bar->type == PCI_BAR_IO ? pdev->bus->pio : pdev->bus->mmio;
}

/* bus_register logs every refusal at error level; a guest can program
 * overlapping BARs at will, so callers check first and log with a rate
 * limit. (A racing claim still fails safely inside bus_register.) */
bool pci_range_unclaimed(struct bus *bus, uint64_t base, uint64_t len)
{
    bool free_range = true;
    pthread_rwlock_rdlock(&bus->lock);
    for (unsigned i = 0; i < bus->count; i++) {
        const struct bus_range *r = &bus->ranges[i];
        if (base < r->base + r->len && r->base < base + len) {
            free_range = false;
            break;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    return free_range;
}

/* Takes the BAR off its bus; true when it was mapped (a range given up). */
static bool unmap_bar(struct pci_device *pdev, unsigned index)
{
    struct pci_bar *bar = &pdev->bars[index];
    if (!bar->mapped)
        return false;
    struct bus *bus = bar_bus(pdev, bar);
    if (bus)
        bus_unregister(bus, bar->mapped_base, bar->opaque);
    bar->mapped = false;
    if (pdev->pci_ops && pdev->pci_ops->bar_mapped)
        pdev->pci_ops->bar_mapped(pdev, index, false, bar->mapped_base);
    return true;
}

/* Maps, moves or unmaps the BAR as its address and the command register
 * say; true when a range was given up. */
static bool update_bar(struct pci_device *pdev, unsigned index)
{
    struct pci_bar *bar = &pdev->bars[index];
    if (bar->type == PCI_BAR_UNUSED)
        return false;
    uint16_t command = pci_get_word(pdev, PCI_COMMAND);
    bool decoded = command & (bar->type == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY);
    uint64_t base = bar_address(pdev, index);
    struct bus *bus = bar_bus(pdev, bar);
    bool want = bus && decoded && bar_address_sane(bar, base);
    bool released = false;

    if (bar->mapped && (!want || bar->mapped_base != base))
        released = unmap_bar(pdev, index);
    if (!want) {
        bar->refused = false;
        return released;
    }
    if (bar->mapped)
        return released;
    if (!pci_range_unclaimed(bus, base, bar->size) ||
        !bus_register(bus, base, bar->size, bar->ops, bar->opaque, pdev->dev.name)) {
        /* Said once per placement: retries after other BARs move are quiet. */
        if (!bar->refused || bar->refused_base != base)
            log_limited(&bar->refused_log, LOG_WARNING,
                        "%s: BAR %u at 0x%llx+0x%llx overlaps another range on the %s bus; "
                        "left unmapped until that range moves",
                        pdev->dev.name, index, (unsigned long long)base,
                        (unsigned long long)bar->size, bus->name);
        bar->refused = true;
        bar->refused_base = base;
        return released;
    }
    bar->refused = false;
    bar->mapped = true;
    bar->mapped_base = base;
    if (pdev->pci_ops && pdev->pci_ops->bar_mapped)
        pdev->pci_ops->bar_mapped(pdev, index, true, base);
    return released;
}

static bool update_all_bars(struct pci_device *pdev)
{
    bool released = false;
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++)
        released |= update_bar(pdev, i);
    return released;
}

/* A range was given up: BARs refused for an overlap get another chance, as
 * a real device decodes its address as soon as nothing else claims it.
 * Called with no device lock held (one device lock at a time). */
static void retry_refused_bars(struct pci_bus *bus)
{
    for (unsigned devfn = 0; devfn < PCI_DEVFN_COUNT; devfn++) {
        pthread_mutex_lock(&bus->lock);
        struct pci_device *pdev = bus->devices[devfn];
        pthread_mutex_unlock(&bus->lock);
        if (!pdev)
            continue;
        pthread_mutex_lock(&pdev->lock);
        for (unsigned i = 0; i < PCI_BAR_COUNT; i++)
            if (pdev->bars[i].refused)
                update_bar(pdev, i);
        pthread_mutex_unlock(&pdev->lock);
    }
}

/* ---- Capabilities ---- */

int pci_add_capability(struct pci_device *pdev, uint8_t cap_id, unsigned offset, unsigned size)
{
    const char *name = pdev->dev.name ? pdev->dev.name : "pci";
    if (size < 2 || size > PCI_CONFIG_SPACE_SIZE - PCI_HEADER_END) {
        log_error("%s: capability 0x%02x: bad size %u", name, cap_id, size);
        return -1;
    }
    unsigned first = offset ? offset : PCI_HEADER_END;
    unsigned last = offset ? offset : PCI_CONFIG_SPACE_SIZE - size;
    int found = -1;
    for (unsigned at = first; at <= last && found < 0; at += 4) {
        if (at % 4 || at < PCI_HEADER_END || at + size > PCI_CONFIG_SPACE_SIZE)
            break;
        bool free_bytes = true;
        for (unsigned i = 0; i < size && free_bytes; i++)
            free_bytes = !pdev->cap_used[at + i];
        if (free_bytes)
            found = (int)at;
    }
    if (found < 0) {
        log_error("%s: no room for capability 0x%02x (%u bytes at 0x%x)", name, cap_id, size,
                  offset);
        return -1;
    }
    unsigned at = (unsigned)found;
    for (unsigned i = 0; i < size; i++) {
        pdev->cap_used[at + i] = true;
        pdev->config[at + i] = 0;
        pdev->wmask[at + i] = 0;
        pdev->w1cmask[at + i] = 0;
    }
    pdev->config[at] = cap_id;

    /* Append at the tail of the list. */
    uint8_t *link = &pdev->config[PCI_CAPABILITY_LIST];
    for (unsigned hops = 0; *link && hops < CAP_LIST_MAX_HOPS; hops++)
        link = &pdev->config[*link + 1];
    *link = (uint8_t)at;
    pci_set_word(pdev, PCI_STATUS, pci_get_word(pdev, PCI_STATUS) | PCI_STATUS_CAP_LIST);
    memcpy(pdev->power_on_config, pdev->config, sizeof(pdev->config));
    return found;
}

unsigned pci_find_capability(struct pci_device *pdev, uint8_t cap_id)
{
    unsigned at = pdev->config[PCI_CAPABILITY_LIST];
    for (unsigned hops = 0; at && hops < CAP_LIST_MAX_HOPS; hops++) {
        if (pdev->config[at] == cap_id)
            return at;
        at = pdev->config[at + 1];
    }
    return 0;
}

/* ---- Config accesses ---- */

static bool access_ok(unsigned offset, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && (offset & 3) + size <= 4 &&
           offset < PCIE_CONFIG_SPACE_SIZE;
}

static unsigned config_limit(const struct pci_device *pdev)
{
    return pdev->express ? PCIE_CONFIG_SPACE_SIZE : PCI_CONFIG_SPACE_SIZE;
}

uint32_t pci_device_config_read(struct pci_device *pdev, unsigned offset, unsigned size)
{
    if (!access_ok(offset, size))
        return (uint32_t)size_mask(size > 4 ? 4 : size);
    if (offset >= config_limit(pdev))
        return 0; /* no extended capabilities */
    pthread_mutex_lock(&pdev->lock);
    uint32_t value = (uint32_t)le_load(pdev->config + offset, size);
    if (ranges_overlap(offset, size, PCI_STATUS, 1) && pdev->intx_level)
        value |= (uint32_t)PCI_STATUS_INTERRUPT << (8 * (PCI_STATUS - offset));
    if (pdev->pci_ops && pdev->pci_ops->config_read)
        value = pdev->pci_ops->config_read(pdev, offset, size, value);
    pthread_mutex_unlock(&pdev->lock);
    return value & (uint32_t)size_mask(size);
}

void pci_device_config_write(struct pci_device *pdev, unsigned offset, unsigned size,
                             uint32_t value)
{
    if (!access_ok(offset, size) || offset >= config_limit(pdev))
        return;
    bool released = false;
    pthread_mutex_lock(&pdev->lock);
    uint16_t old_command = pci_get_word(pdev, PCI_COMMAND);
    for (unsigned i = 0; i < size; i++) {
        unsigned at = offset + i;
        uint8_t byte = (uint8_t)(value >> (8 * i));
        uint8_t wmask = pdev->wmask[at], w1c = pdev->w1cmask[at];
        uint8_t next = (uint8_t)((pdev->config[at] & ~wmask) | (byte & wmask));
        pdev->config[at] = (uint8_t)(next & ~(byte & w1c));
    }
    if (ranges_overlap(offset, size, PCI_COMMAND, 2)) {
        uint16_t command = pci_get_word(pdev, PCI_COMMAND);
        atomic_store(&pdev->command, command);
        if ((command ^ old_command) & (PCI_COMMAND_IO | PCI_COMMAND_MEMORY))
            released |= update_all_bars(pdev);
        if ((command ^ old_command) & PCI_COMMAND_INTX_DISABLE)
            update_intx(pdev);
    }
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        const struct pci_bar *bar = &pdev->bars[i];
        if (bar->type != PCI_BAR_UNUSED &&
            ranges_overlap(offset, size, bar_offset(i), bar_span(bar)))
            released |= update_bar(pdev, i);
    }
    if (pdev->pci_ops && pdev->pci_ops->config_write)
        pdev->pci_ops->config_write(pdev, offset, size, value & (uint32_t)size_mask(size));
    pthread_mutex_unlock(&pdev->lock);
    if (released && pdev->bus)
        retry_refused_bars(pdev->bus);
}

void pci_device_drop_decodes(struct device *dev)
{
    struct pci_device *pdev = container_of(dev, struct pci_device, dev);
    pthread_mutex_lock(&pdev->lock);
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        unmap_bar(pdev, i);
        pdev->bars[i].refused = false; /* off the bus: no retry maps it back */
    }
    pthread_mutex_unlock(&pdev->lock);
}

void pci_device_reset(struct pci_device *pdev)
{
    pthread_mutex_lock(&pdev->lock);
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        unmap_bar(pdev, i);
        pdev->bars[i].refused = false; /* off the bus: no retry maps it back */
    }
    pdev->intx_level = false;
    update_intx(pdev);
    if (pdev->bus)
        memcpy(pdev->config, pdev->power_on_config, sizeof(pdev->config));
    atomic_store(&pdev->command, pci_get_word(pdev, PCI_COMMAND));
    /* A device whose power-on command enables decoding maps its BARs now. */
    update_all_bars(pdev);
    pthread_mutex_unlock(&pdev->lock);
}

/* The identity bytes: a state whose differ was saved from another device. */
static const struct {
    unsigned offset, size;
} identity_fields[] = {
    {PCI_VENDOR_ID, 4},           {PCI_REVISION_ID, 4},   {PCI_HEADER_TYPE, 1},
    {PCI_SUBSYSTEM_VENDOR_ID, 4}, {PCI_INTERRUPT_PIN, 1},
};

int pci_device_state(struct pci_device *pdev, struct snap *s)
{
    unsigned limit = config_limit(pdev);
    pthread_mutex_lock(&pdev->lock);
    if (!snap_loading(s)) {
        snap_bytes(s, "config", pdev->config, limit);
        snap_bool(s, "intx_level", &pdev->intx_level);
        pthread_mutex_unlock(&pdev->lock);
        return snap_error(s);
    }
    uint8_t config[PCIE_CONFIG_SPACE_SIZE];
    bool intx_level = false;
    snap_bytes(s, "config", config, limit);
    snap_bool(s, "intx_level", &intx_level);
    for (unsigned i = 0; i < ARRAY_LEN(identity_fields) && !snap_error(s); i++) {
        unsigned at = identity_fields[i].offset, size = identity_fields[i].size;
        if (memcmp(config + at, pdev->power_on_config + at, size) != 0)
            snap_fail(s, "config",
                      "identity bytes 0x%02x-0x%02x differ from this device's (saved from "
                      "another device?)",
                      at, at + size - 1);
    }
    if (snap_error(s)) {
        pthread_mutex_unlock(&pdev->lock);
        return -1;
    }
    for (unsigned i = 0; i < PCI_BAR_COUNT; i++) {
        unmap_bar(pdev, i);
        pdev->bars[i].refused = false; /* off the bus: no retry maps it back */
    }
    memcpy(pdev->config, config, limit);
    atomic_store(&pdev->command, pci_get_word(pdev, PCI_COMMAND));
    update_all_bars(pdev);
    pdev->intx_level = intx_level;
    update_intx(pdev);
    pthread_mutex_unlock(&pdev->lock);
    return 0;
}

/* ---- Bus ---- */

void pci_bus_init(struct pci_bus *bus, struct bus *pio, struct bus *mmio)
{
    memset(bus, 0, sizeof(*bus));
    bus->pio = pio;
    bus->mmio = mmio;
    pthread_mutex_init(&bus->lock, NULL);
}

void pci_bus_destroy(struct pci_bus *bus)
{
    pthread_mutex_destroy(&bus->lock);
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *pdev, uint8_t devfn)
{
    if (pdev->bus) {
        log_error("%s: already on a PCI bus", pdev->dev.name);
        return -1;
    }
    /* The bus lock is never held while taking a device lock (hooks run under
     * the device lock and may look devices up). */
    pthread_mutex_lock(&bus->lock);
    struct pci_device *present = bus->devices[devfn];
    if (!present)
        bus->devices[devfn] = pdev;
    pthread_mutex_unlock(&bus->lock);
    if (present) {
        log_error("PCI 0.%u.%u: %s: slot already holds %s", PCI_SLOT(devfn), PCI_FUNC(devfn),
                  pdev->dev.name, present->dev.name);
        return -1;
    }
    pthread_mutex_lock(&pdev->lock);
    pdev->bus = bus;
    pdev->devfn = devfn;
    memcpy(pdev->power_on_config, pdev->config, sizeof(pdev->config));
    atomic_store(&pdev->command, pci_get_word(pdev, PCI_COMMAND));
    update_all_bars(pdev);
    pthread_mutex_unlock(&pdev->lock);
    return 0;
}

struct pci_device *pci_bus_device(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn)
{
    if (bus_number != 0)
        return NULL;
    pthread_mutex_lock(&bus->lock);
    struct pci_device *pdev = bus->devices[devfn];
    pthread_mutex_unlock(&bus->lock);
    return pdev;
}

void pci_bus_set_intx_router(struct pci_bus *bus, struct pci_intx_router router)
{
    pthread_mutex_lock(&bus->lock);
    bus->router = router;
    pthread_mutex_unlock(&bus->lock);
}

void pci_bus_set_cf9_handler(struct pci_bus *bus, const struct io_ops *ops, void *opaque)
{
    pthread_mutex_lock(&bus->lock);
    bus->cf9_ops = ops;
    bus->cf9_opaque = opaque;
    pthread_mutex_unlock(&bus->lock);
}

void pci_bus_reset(struct pci_bus *bus)
{
    pthread_mutex_lock(&bus->lock);
    bus->config_address = 0;
    pthread_mutex_unlock(&bus->lock);
}

static bool slot_has_other_functions(struct pci_bus *bus, uint8_t devfn)
{
    bool found = false;
    pthread_mutex_lock(&bus->lock);
    for (unsigned fn = 1; fn < 8 && !found; fn++)
        found = bus->devices[(devfn & ~7u) | fn] != NULL;
    pthread_mutex_unlock(&bus->lock);
    return found;
}

uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn, unsigned reg,
                             unsigned size)
{
    if (!access_ok(reg, size)) {
        log_limited(&bus->log, LOG_WARNING,
                    "PCI config read of %u bytes at 0x%x (%02x:%02x.%x) crosses a dword or "
                    "has a bad size",
                    size, reg, bus_number, PCI_SLOT(devfn), PCI_FUNC(devfn));
        return (uint32_t)size_mask(size > 4 ? 4 : size);
    }
    struct pci_device *pdev = pci_bus_device(bus, bus_number, devfn);
    if (!pdev)
        return (uint32_t)size_mask(size);
    uint32_t value = pci_device_config_read(pdev, reg, size);
    if (PCI_FUNC(devfn) == 0 && ranges_overlap(reg, size, PCI_HEADER_TYPE, 1) &&
        slot_has_other_functions(bus, devfn))
        value |= (uint32_t)PCI_HEADER_TYPE_MULTI_FUNCTION << (8 * (PCI_HEADER_TYPE - reg));
    return value;
}

void pci_bus_config_write(struct pci_bus *bus, uint8_t bus_number, uint8_t devfn, unsigned reg,
                          unsigned size, uint32_t value)
{
    if (!access_ok(reg, size)) {
        log_limited(&bus->log, LOG_WARNING,
                    "PCI config write of %u bytes at 0x%x (%02x:%02x.%x) crosses a dword or "
                    "has a bad size; dropped",
                    size, reg, bus_number, PCI_SLOT(devfn), PCI_FUNC(devfn));
        return;
    }
    struct pci_device *pdev = pci_bus_device(bus, bus_number, devfn);
    if (pdev)
        pci_device_config_write(pdev, reg, size, value);
}

/* ---- Configuration mechanism #1 ---- */

static uint64_t config_address_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_bus *bus = opaque;
    if (offset == 0 && size == 4) {
        pthread_mutex_lock(&bus->lock);
        uint32_t value = bus->config_address;
        pthread_mutex_unlock(&bus->lock);
        return value;
    }
    if (offset == 1 && size == 1) {
        const struct io_ops *ops = bus->cf9_ops;
        return ops && ops->read ? ops->read(bus->cf9_opaque, 0, 1) : 0xff;
    }
    /* Only dword accesses reach CONFADD; the rest is plain I/O nobody claims. */
    log_limited(&bus->log, LOG_DEBUG, "pio: %u-byte read at 0x%llx ignored", size,
                (unsigned long long)(CONFIG_ADDRESS_PORT + offset));
    return size_mask(size);
}

static void config_address_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_bus *bus = opaque;
    if (offset == 0 && size == 4) {
        pthread_mutex_lock(&bus->lock);
        bus->config_address = (uint32_t)value & CONFIG_ADDRESS_MASK;
        pthread_mutex_unlock(&bus->lock);
        return;
    }
    if (offset == 1 && size == 1) {
        const struct io_ops *ops = bus->cf9_ops;
        if (ops && ops->write)
            ops->write(bus->cf9_opaque, 0, 1, value & 0xff);
        return;
    }
    log_limited(&bus->log, LOG_DEBUG, "pio: %u-byte write 0x%llx at 0x%llx ignored", size,
                (unsigned long long)value, (unsigned long long)(CONFIG_ADDRESS_PORT + offset));
}

/* Latched address, or false if configuration cycles are disabled. */
static bool config_target(struct pci_bus *bus, uint8_t *bus_number, uint8_t *devfn, unsigned *reg)
{
    pthread_mutex_lock(&bus->lock);
    uint32_t address = bus->config_address;
    pthread_mutex_unlock(&bus->lock);
    *bus_number = (uint8_t)(address >> 16);
    *devfn = (uint8_t)(address >> 8);
    *reg = address & 0xfc;
    return address & CONFIG_ADDRESS_ENABLE;
}

static uint64_t config_data_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_bus *bus = opaque;
    uint8_t bus_number, devfn;
    unsigned reg;
    if (size > 4 || offset >= 4 || !config_target(bus, &bus_number, &devfn, &reg))
        return size_mask(size);
    return pci_bus_config_read(bus, bus_number, devfn, reg + (unsigned)offset, size);
}

static void config_data_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_bus *bus = opaque;
    uint8_t bus_number, devfn;
    unsigned reg;
    if (size > 4 || offset >= 4 || !config_target(bus, &bus_number, &devfn, &reg))
        return;
    pci_bus_config_write(bus, bus_number, devfn, reg + (unsigned)offset, size, (uint32_t)value);
}

const struct io_ops pci_config_address_io_ops = {.read = config_address_read,
                                                 .write = config_address_write};
const struct io_ops pci_config_data_io_ops = {.read = config_data_read, .write = config_data_write};

/* ---- ECAM: bus << 20 | devfn << 12 | register ---- */

static void ecam_decode(uint64_t offset, uint8_t *bus_number, uint8_t *devfn, unsigned *reg)
{
    *bus_number = (uint8_t)(offset >> 20);
    *devfn = (uint8_t)(offset >> 12);
    *reg = (unsigned)(offset & 0xfff);
}

static uint64_t ecam_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_bus *bus = opaque;
    uint8_t bus_number, devfn;
    unsigned reg;
    ecam_decode(offset, &bus_number, &devfn, &reg);
    if (size == 8 && reg % 8 == 0) {
        /* Not a PCIe transaction, but split sanely into two dwords. */
        uint64_t low = pci_bus_config_read(bus, bus_number, devfn, reg, 4);
        uint64_t high = pci_bus_config_read(bus, bus_number, devfn, reg + 4, 4);
        return low | high << 32;
    }
    if (size > 4 || (reg & 3) + size > 4) {
        log_limited(&bus->log, LOG_WARNING,
                    "ECAM: %u-byte read at offset 0x%llx crosses a dword; reads all-ones", size,
                    (unsigned long long)offset);
        return size_mask(size);
    }
    return pci_bus_config_read(bus, bus_number, devfn, reg, size);
}

static void ecam_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_bus *bus = opaque;
    uint8_t bus_number, devfn;
    unsigned reg;
    ecam_decode(offset, &bus_number, &devfn, &reg);
    if (size == 8 && reg % 8 == 0) {
        pci_bus_config_write(bus, bus_number, devfn, reg, 4, (uint32_t)value);
        pci_bus_config_write(bus, bus_number, devfn, reg + 4, 4, (uint32_t)(value >> 32));
        return;
    }
    if (size > 4 || (reg & 3) + size > 4) {
        log_limited(&bus->log, LOG_WARNING,
                    "ECAM: %u-byte write at offset 0x%llx crosses a dword; dropped", size,
                    (unsigned long long)offset);
        return;
    }
    pci_bus_config_write(bus, bus_number, devfn, reg, size, (uint32_t)value);
}

const struct io_ops pci_ecam_io_ops = {.read = ecam_read, .write = ecam_write};

bool pci_bus_map_config_space(struct pci_bus *bus, uint64_t ecam_base, uint64_t ecam_size)
{
    if (!bus_register(bus->pio, CONFIG_ADDRESS_PORT, 4, &pci_config_address_io_ops, bus,
                      "pci-config-address"))
        return false;
    if (!bus_register(bus->pio, CONFIG_DATA_PORT, 4, &pci_config_data_io_ops, bus,
                      "pci-config-data")) {
        bus_unregister(bus->pio, CONFIG_ADDRESS_PORT, bus);
        return false;
    }
    if (ecam_size &&
        !bus_register(bus->mmio, ecam_base, ecam_size, &pci_ecam_io_ops, bus, "pci-ecam")) {
        bus_unregister(bus->pio, CONFIG_DATA_PORT, bus);
        bus_unregister(bus->pio, CONFIG_ADDRESS_PORT, bus);
        return false;
    }
    bus->ecam_base = ecam_base;
    bus->ecam_size = ecam_size;
    bus->ports_mapped = true;
    return true;
}
