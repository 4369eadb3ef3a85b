#include "pci/msix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/snap.h"
#include "core/machine.h"
#include "pci/pci.h"

/* ---- Machine sink ---- */

static int machine_route_add(void *opaque, uint64_t address, uint32_t data)
{
    return machine_msi_route_add(opaque, address, data);
}

static int machine_route_update(void *opaque, int gsi, uint64_t address, uint32_t data)
{
    return machine_msi_route_update(opaque, gsi, address, data);
}

static void machine_route_remove(void *opaque, int gsi)
{
    machine_msi_route_remove(opaque, gsi);
}

static int machine_bind_irqfd(void *opaque, int event_fd, int gsi, bool assign)
{
    struct machine *m = opaque;
    /* Without a VM (teardown, or between VMs on reset) there is no binding
     * to make, and none left to undo. */
    if (m->vm_fd < 0)
        return assign ? -1 : 0;
    return machine_irqfd(m, event_fd, gsi, assign);
}

static void machine_send_msi(void *opaque, uint64_t address, uint32_t data)
{
    machine_signal_msi(opaque, address, data);
}

struct msix_sink msix_machine_sink(struct machine *m)
{
    return (struct msix_sink){
        .route_add = machine_route_add,
        .route_update = machine_route_update,
        .route_remove = machine_route_remove,
        .irqfd = machine_bind_irqfd,
        .signal_msi = machine_send_msi,
        .opaque = m,
    };
}

/* ---- Helpers ---- */

static uint32_t pba_size(unsigned nvec)
{
    return (nvec + 63) / 64 * 8;
}

static uint64_t vec_address(const struct msix_vector *v)
{
    return (uint64_t)v->addr_hi << 32 | v->addr_lo;
}

static bool vec_masked_locked(const struct msix *x, const struct msix_vector *v)
{
    return x->function_masked || (v->ctrl & MSIX_ENTRY_CTRL_MASKBIT);
}

static bool irqfd_path(const struct msix *x)
{
    return x->sink.route_add && x->sink.irqfd;
}

static void drain_eventfd(int fd)
{
    uint64_t count;
    while (read(fd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        ;
}

/* Unbinds the vector's eventfd; signals of an external engine stay in it. */
static void unbind_irqfd_locked(struct msix *x, struct msix_vector *v)
{
    if (!v->irqfd_assigned)
        return;
    x->sink.irqfd(x->sink.opaque, v->event_fd, v->gsi, false);
    v->irqfd_assigned = false;
    if (!v->external)
        drain_eventfd(v->event_fd);
}

/* Releases a vector's irqfd binding and route. */
static void release_route_locked(struct msix *x, struct msix_vector *v)
{
    unbind_irqfd_locked(x, v);
    if (v->gsi >= 0 && x->sink.route_remove)
        x->sink.route_remove(x->sink.opaque, v->gsi);
    v->gsi = -1;
    v->route_stale = false;
    v->route_refused = false;
}

/* Makes sure the vector's eventfd reaches its current message through an
 * irqfd. Returns the eventfd, or -1 to deliver directly instead. */
static int irqfd_prepare_locked(struct msix *x, unsigned index)
{
    struct msix_vector *v = &x->vec[index];
    if (!irqfd_path(x))
        return -1;
    if (v->event_fd < 0) {
        v->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (v->event_fd < 0) {
            log_limited(&x->log, LOG_WARNING, "%s: MSI-X vector %u: eventfd: %s", x->name, index,
                        strerror(errno));
            return -1;
        }
    }
    if (v->gsi >= 0 && v->route_stale) {
        if (!x->sink.route_update ||
            x->sink.route_update(x->sink.opaque, v->gsi, vec_address(v), v->data) < 0)
            release_route_locked(x, v);
        else
            v->route_stale = false;
    }
    if (v->gsi < 0) {
        /* Asking again on every interrupt would cost the machine a search
         * of its routes, under its lock, each time. */
        if (v->route_refused)
            return -1;
        v->gsi = x->sink.route_add(x->sink.opaque, vec_address(v), v->data);
        v->route_stale = false;
        if (v->gsi < 0) {
            v->route_refused = true;
            log_limited(&x->log, LOG_WARNING,
                        "%s: MSI-X vector %u: no MSI route free; its interrupts are sent "
                        "directly until the guest reprograms it",
                        x->name, index);
            return -1;
        }
    }
    if (!v->irqfd_assigned) {
        if (!v->external)
            drain_eventfd(v->event_fd);
        if (x->sink.irqfd(x->sink.opaque, v->event_fd, v->gsi, true) < 0) {
            release_route_locked(x, v);
            return -1;
        }
        v->irqfd_assigned = true;
    }
    return v->event_fd;
}

/* Sends the vector's message now (the caller checked it is deliverable). */
static void deliver_locked(struct msix *x, unsigned index)
{
    struct msix_vector *v = &x->vec[index];
    int fd = irqfd_prepare_locked(x, index);
    if (fd >= 0) {
        uint64_t one = 1;
        if (write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            return;
        /* Counter saturated or fd trouble: fall through to direct delivery. */
    }
    if (x->sink.signal_msi)
        x->sink.signal_msi(x->sink.opaque, vec_address(v), v->data);
}

/* An external engine's vector after the guest changed it: bound to its
 * current message while deliverable, unbound otherwise. */
static void external_sync_locked(struct msix *x, unsigned index)
{
    struct msix_vector *v = &x->vec[index];
    if (!v->external)
        return;
    if (x->enabled && !vec_masked_locked(x, v)) {
        if (irqfd_prepare_locked(x, index) < 0)
            log_limited(&x->log, LOG_WARNING,
                        "%s: MSI-X vector %u: no irqfd for its engine; its interrupts wait",
                        x->name, index);
    } else {
        unbind_irqfd_locked(x, v);
    }
}

/* Delivers every pending vector that is no longer masked. */
static void flush_pending_locked(struct msix *x)
{
    for (unsigned i = 0; i < x->nvec; i++)
        external_sync_locked(x, i);
    if (!x->enabled || x->function_masked)
        return;
    for (unsigned i = 0; i < x->nvec; i++) {
        struct msix_vector *v = &x->vec[i];
        if (v->pending && !(v->ctrl & MSIX_ENTRY_CTRL_MASKBIT)) {
            v->pending = false;
            deliver_locked(x, i);
        }
    }
}

/* ---- Lifecycle ---- */

int msix_init(struct msix *x, struct pci_device *pdev, unsigned nvec, unsigned bar,
              uint32_t table_offset, uint32_t pba_offset, struct msix_sink sink)
{
    memset(x, 0, sizeof(*x));
    const char *name = pdev->dev.name ? pdev->dev.name : "pci";
    uint64_t table_end = (uint64_t)table_offset + (uint64_t)nvec * MSIX_ENTRY_SIZE;
    uint64_t pba_end = (uint64_t)pba_offset + pba_size(nvec);
    if (nvec == 0 || nvec > MSIX_MAX_VECTORS || bar >= PCI_BAR_COUNT || table_offset % 8 ||
        pba_offset % 8 || (table_offset < pba_end && pba_offset < table_end)) {
        log_error("%s: invalid MSI-X layout (%u vectors, BAR %u, table 0x%x, PBA 0x%x)", name, nvec,
                  bar, table_offset, pba_offset);
        return -1;
    }
    x->vec = calloc(nvec, sizeof(*x->vec));
    if (!x->vec) {
        log_error("%s: out of memory for MSI-X", name);
        return -1;
    }
    int cap = pci_add_capability(pdev, PCI_CAP_ID_MSIX, 0, MSIX_CAP_SIZE);
    if (cap < 0) {
        free(x->vec);
        x->vec = NULL;
        return -1;
    }
    x->pdev = pdev;
    x->name = name;
    x->nvec = nvec;
    x->cap = (unsigned)cap;
    x->bar = bar;
    x->table_offset = table_offset;
    x->pba_offset = pba_offset;
    x->sink = sink;
    pthread_mutex_init(&x->lock, NULL);
    for (unsigned i = 0; i < nvec; i++) {
        x->vec[i].ctrl = MSIX_ENTRY_CTRL_MASKBIT;
        x->vec[i].event_fd = -1;
        x->vec[i].gsi = -1;
    }
    pci_set_word(pdev, x->cap + MSIX_CAP_CONTROL, (uint16_t)(nvec - 1));
    pci_set_long(pdev, x->cap + MSIX_CAP_TABLE, table_offset | bar);
    pci_set_long(pdev, x->cap + MSIX_CAP_PBA, pba_offset | bar);
    pci_set_wmask(pdev, x->cap + MSIX_CAP_CONTROL, 2, MSIX_CONTROL_ENABLE | MSIX_CONTROL_MASKALL);
    memcpy(pdev->power_on_config, pdev->config, sizeof(pdev->config));
    return 0;
}

void msix_reset(struct msix *x)
{
    if (!x->vec)
        return;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < x->nvec; i++) {
        struct msix_vector *v = &x->vec[i];
        v->external = false;
        release_route_locked(x, v);
        v->addr_lo = v->addr_hi = v->data = 0;
        v->ctrl = MSIX_ENTRY_CTRL_MASKBIT;
        v->pending = false;
    }
    x->enabled = false;
    x->function_masked = false;
    atomic_store(&x->enabled_hint, false);
    pthread_mutex_unlock(&x->lock);
}

void msix_destroy(struct msix *x)
{
    if (!x->vec)
        return;
    msix_reset(x);
    for (unsigned i = 0; i < x->nvec; i++)
        if (x->vec[i].event_fd >= 0)
            close(x->vec[i].event_fd);
    free(x->vec);
    x->vec = NULL;
    pthread_mutex_destroy(&x->lock);
}

int msix_state(struct msix *x, struct snap *s)
{
    uint32_t nvec = x->nvec;
    snap_u32(s, "vectors", &nvec);
    if (!snap_check(s, nvec == x->nvec, "vectors", "not this function's vector count"))
        return -1;
    uint32_t *table = calloc(4 * (size_t)x->nvec, sizeof(uint32_t));
    uint8_t *pending = calloc(x->nvec, 1);
    if (!table || !pending) {
        free(table);
        free(pending);
        snap_fail(s, "table", "out of memory");
        return -1;
    }
    pthread_mutex_lock(&x->lock);
    bool enabled = x->enabled, function_masked = x->function_masked;
    for (unsigned i = 0; i < x->nvec; i++) {
        const struct msix_vector *v = &x->vec[i];
        uint32_t *entry = table + 4 * i;
        entry[0] = v->addr_lo;
        entry[1] = v->addr_hi;
        entry[2] = v->data;
        entry[3] = v->ctrl;
        pending[i] = v->pending;
    }
    snap_bool(s, "enabled", &enabled);
    snap_bool(s, "function_masked", &function_masked);
    snap_u32_array(s, "table", table, 4 * (size_t)x->nvec);
    snap_bytes(s, "pending", pending, x->nvec);
    for (unsigned i = 0; snap_loading(s) && !snap_error(s) && i < x->nvec; i++) {
        const uint32_t *entry = table + 4 * i;
        snap_check(s, (entry[0] & 3) == 0 && (entry[3] & ~MSIX_ENTRY_CTRL_MASKBIT) == 0, "table",
                   "a vector has reserved bits set");
        snap_check(s, pending[i] <= 1, "pending", "a pending bit is not 0 or 1");
    }
    if (snap_loading(s) && !snap_error(s)) {
        /* Routes are made again on first delivery. */
        for (unsigned i = 0; i < x->nvec; i++) {
            struct msix_vector *v = &x->vec[i];
            const uint32_t *entry = table + 4 * i;
            release_route_locked(x, v);
            v->addr_lo = entry[0];
            v->addr_hi = entry[1];
            v->data = entry[2];
            v->ctrl = entry[3];
            v->pending = pending[i];
        }
        x->enabled = enabled;
        x->function_masked = function_masked;
        atomic_store(&x->enabled_hint, enabled);
    }
    pthread_mutex_unlock(&x->lock);
    free(table);
    free(pending);
    return snap_error(s);
}

/* ---- Table and PBA ---- */

static bool in_range(uint64_t offset, unsigned size, uint64_t base, uint64_t len)
{
    return offset >= base && offset - base < len && size <= len - (offset - base);
}

static uint32_t table_read_dword(const struct msix *x, uint64_t rel)
{
    const struct msix_vector *v = &x->vec[rel / MSIX_ENTRY_SIZE];
    switch (rel % MSIX_ENTRY_SIZE) {
    case MSIX_ENTRY_ADDR_LO:
        return v->addr_lo;
    case MSIX_ENTRY_ADDR_HI:
        return v->addr_hi;
    case MSIX_ENTRY_DATA:
        return v->data;
    default:
        return v->ctrl;
    }
}

static void table_write_dword(struct msix *x, uint64_t rel, uint32_t value)
{
    unsigned index = (unsigned)(rel / MSIX_ENTRY_SIZE);
    struct msix_vector *v = &x->vec[index];
    switch (rel % MSIX_ENTRY_SIZE) {
    case MSIX_ENTRY_ADDR_LO:
        v->route_refused &= v->addr_lo == (value & ~3u);
        v->route_stale |= v->addr_lo != (value & ~3u);
        v->addr_lo = value & ~3u; /* bits 1:0 are reserved */
        break;
    case MSIX_ENTRY_ADDR_HI:
        v->route_refused &= v->addr_hi == value;
        v->route_stale |= v->addr_hi != value;
        v->addr_hi = value;
        break;
    case MSIX_ENTRY_DATA:
        v->route_refused &= v->data == value;
        v->route_stale |= v->data != value;
        v->data = value;
        break;
    default: {
        bool was_masked = v->ctrl & MSIX_ENTRY_CTRL_MASKBIT;
        v->ctrl = value & MSIX_ENTRY_CTRL_MASKBIT;
        if (was_masked && !vec_masked_locked(x, v) && x->enabled && v->pending) {
            v->pending = false;
            deliver_locked(x, index);
        }
        break;
    }
    }
    external_sync_locked(x, index);
}

static bool access_ok(struct msix *x, uint64_t offset, unsigned size, const char *what)
{
    if ((size == 4 || size == 8) && offset % size == 0)
        return true;
    log_limited(&x->log, LOG_WARNING,
                "%s: MSI-X %s: %u-byte access at BAR offset 0x%llx is not a naturally aligned "
                "dword or qword; ignored",
                x->name, what, size, (unsigned long long)offset);
    return false;
}

static uint64_t pba_read_locked(const struct msix *x, uint64_t rel, unsigned size)
{
    uint64_t value = 0;
    for (unsigned bit = 0; bit < size * 8; bit++) {
        uint64_t index = rel * 8 + bit;
        if (index < x->nvec && x->vec[index].pending)
            value |= 1ull << bit;
    }
    return value;
}

bool msix_bar_read(struct msix *x, uint64_t offset, unsigned size, uint64_t *value)
{
    uint64_t table_len = (uint64_t)x->nvec * MSIX_ENTRY_SIZE;
    bool table = in_range(offset, 1, x->table_offset, table_len);
    bool pba = in_range(offset, 1, x->pba_offset, pba_size(x->nvec));
    if (!table && !pba)
        return false;
    *value = 0;
    if (!access_ok(x, offset, size, table ? "table" : "PBA"))
        return true;
    pthread_mutex_lock(&x->lock);
    if (table) {
        uint64_t rel = offset - x->table_offset;
        *value = table_read_dword(x, rel);
        if (size == 8)
            *value |= (uint64_t)table_read_dword(x, rel + 4) << 32;
    } else {
        *value = pba_read_locked(x, offset - x->pba_offset, size);
    }
    pthread_mutex_unlock(&x->lock);
    return true;
}

bool msix_bar_write(struct msix *x, uint64_t offset, unsigned size, uint64_t value)
{
    uint64_t table_len = (uint64_t)x->nvec * MSIX_ENTRY_SIZE;
    bool table = in_range(offset, 1, x->table_offset, table_len);
    bool pba = in_range(offset, 1, x->pba_offset, pba_size(x->nvec));
    if (!table && !pba)
        return false;
    if (!access_ok(x, offset, size, table ? "table" : "PBA"))
        return true;
    if (pba) {
        log_limited(&x->log, LOG_DEBUG, "%s: write to the read-only MSI-X PBA ignored", x->name);
        return true;
    }
    uint64_t rel = offset - x->table_offset;
    pthread_mutex_lock(&x->lock);
    table_write_dword(x, rel, (uint32_t)value);
    if (size == 8)
        table_write_dword(x, rel + 4, (uint32_t)(value >> 32));
    pthread_mutex_unlock(&x->lock);
    return true;
}

static uint64_t msix_io_read(void *opaque, uint64_t offset, unsigned size)
{
    uint64_t value = 0;
    msix_bar_read(opaque, offset, size, &value);
    return value;
}

static void msix_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    msix_bar_write(opaque, offset, size, value);
}

const struct io_ops msix_bar_io_ops = {.read = msix_io_read, .write = msix_io_write};

/* ---- Capability and delivery ---- */

void msix_config_write(struct msix *x, unsigned offset, unsigned size)
{
    if (!x->vec)
        return;
    unsigned control_at = x->cap + MSIX_CAP_CONTROL;
    if (offset >= control_at + 2 || offset + size <= control_at)
        return;
    uint16_t control = pci_get_word(x->pdev, control_at);
    pthread_mutex_lock(&x->lock);
    x->enabled = control & MSIX_CONTROL_ENABLE;
    x->function_masked = control & MSIX_CONTROL_MASKALL;
    atomic_store(&x->enabled_hint, x->enabled);
    flush_pending_locked(x);
    pthread_mutex_unlock(&x->lock);
}

bool msix_enabled(struct msix *x)
{
    return x->vec && atomic_load(&x->enabled_hint);
}

bool msix_notify(struct msix *x, unsigned vector)
{
    if (!x->vec)
        return false;
    pthread_mutex_lock(&x->lock);
    if (!x->enabled) {
        pthread_mutex_unlock(&x->lock);
        return false;
    }
    if (vector >= x->nvec) {
        pthread_mutex_unlock(&x->lock);
        log_limited(&x->log, LOG_WARNING, "%s: MSI-X vector %u out of range (%u vectors); dropped",
                    x->name, vector, x->nvec);
        return true;
    }
    struct msix_vector *v = &x->vec[vector];
    if (vec_masked_locked(x, v))
        v->pending = true;
    else
        deliver_locked(x, vector);
    pthread_mutex_unlock(&x->lock);
    return true;
}

int msix_vector_eventfd(struct msix *x, unsigned vector)
{
    if (!x->vec || vector >= x->nvec || !irqfd_path(x))
        return -1;
    pthread_mutex_lock(&x->lock);
    struct msix_vector *v = &x->vec[vector];
    int fd = -1;
    if (x->enabled && !vec_masked_locked(x, v)) {
        fd = irqfd_prepare_locked(x, vector);
    } else if (v->event_fd >= 0 || (v->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0) {
        fd = v->event_fd; /* bound once the guest unmasks or enables */
    }
    v->external = fd >= 0;
    pthread_mutex_unlock(&x->lock);
    return fd;
}

bool msix_is_pending(struct msix *x, unsigned vector)
{
    pthread_mutex_lock(&x->lock);
    bool pending = vector < x->nvec && x->vec[vector].pending;
    pthread_mutex_unlock(&x->lock);
    return pending;
}

bool msix_is_masked(struct msix *x, unsigned vector)
{
    pthread_mutex_lock(&x->lock);
    bool masked = vector >= x->nvec || vec_masked_locked(x, &x->vec[vector]);
    pthread_mutex_unlock(&x->lock);
    return masked;
}
