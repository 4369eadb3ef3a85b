#include "core/bus.h"

#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus, const char *name)
{
    memset(bus, 0, sizeof(*bus));
    bus->name = name;
    pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
    free(bus->ranges);
    pthread_rwlock_destroy(&bus->lock);
    bus->ranges = NULL;
    bus->count = bus->capacity = 0;
}

static bool overlaps(const struct bus_range *r, uint64_t base, uint64_t len)
{
    return base < r->base + r->len && r->base < base + len;
}

bool bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct io_ops *ops,
                  void *opaque, const char *owner)
{
    if (len == 0 || base + len < base) {
        log_error("%s bus: %s: invalid range 0x%llx+0x%llx", bus->name, owner,
                  (unsigned long long)base, (unsigned long long)len);
        return false;
    }
    pthread_rwlock_wrlock(&bus->lock);
    unsigned pos = 0;
    for (; pos < bus->count; pos++) {
        if (overlaps(&bus->ranges[pos], base, len)) {
            log_error("%s bus: %s at 0x%llx+0x%llx overlaps %s", bus->name, owner,
                      (unsigned long long)base, (unsigned long long)len, bus->ranges[pos].owner);
            pthread_rwlock_unlock(&bus->lock);
            return false;
        }
        if (bus->ranges[pos].base > base)
            break;
    }
    if (bus->count == bus->capacity) {
        unsigned cap = bus->capacity ? bus->capacity * 2 : 16;
        struct bus_range *grown = realloc(bus->ranges, cap * sizeof(*grown));
        if (!grown) {
            pthread_rwlock_unlock(&bus->lock);
            return false;
        }
        bus->ranges = grown;
        bus->capacity = cap;
    }
    /* Keep scanning for overlaps past the insertion point. */
    for (unsigned i = pos; i < bus->count; i++) {
        if (overlaps(&bus->ranges[i], base, len)) {
            log_error("%s bus: %s overlaps %s", bus->name, owner, bus->ranges[i].owner);
            pthread_rwlock_unlock(&bus->lock);
            return false;
        }
    }
    memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->count - pos) * sizeof(*bus->ranges));
    bus->ranges[pos] = (struct bus_range){base, len, ops, opaque, owner};
    bus->count++;
    pthread_rwlock_unlock(&bus->lock);
    return true;
}

bool bus_unregister(struct bus *bus, uint64_t base, void *opaque)
{
    pthread_rwlock_wrlock(&bus->lock);
    for (unsigned i = 0; i < bus->count; i++) {
        if (bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
            memmove(&bus->ranges[i], &bus->ranges[i + 1],
                    (bus->count - i - 1) * sizeof(*bus->ranges));
            bus->count--;
            pthread_rwlock_unlock(&bus->lock);
            return true;
        }
    }
    pthread_rwlock_unlock(&bus->lock);
    return false;
}

/* Binary search; caller holds the read lock. An access must fit wholly in one range. */
static const struct bus_range *find(const struct bus *bus, uint64_t addr, unsigned size)
{
    unsigned lo = 0, hi = bus->count;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const struct bus_range *r = &bus->ranges[mid];
        if (addr < r->base)
            hi = mid;
        else if (addr - r->base >= r->len)
            lo = mid + 1;
        else
            return (size <= r->len - (addr - r->base)) ? r : NULL;
    }
    return NULL;
}

/* Handlers run outside the lock: a handler may itself move ranges (PCI BAR
 * programming), and devices live as long as the machine. */
static bool lookup(struct bus *bus, uint64_t addr, unsigned size, struct bus_range *out)
{
    pthread_rwlock_rdlock(&bus->lock);
    const struct bus_range *r = find(bus, addr, size);
    if (r)
        *out = *r;
    pthread_rwlock_unlock(&bus->lock);
    return r != NULL;
}

uint64_t bus_read(struct bus *bus, uint64_t addr, unsigned size)
{
    struct bus_range r;
    if (lookup(bus, addr, size, &r)) {
        if (!r.ops->read)
            return size_mask(size);
        return r.ops->read(r.opaque, addr - r.base, size) & size_mask(size);
    }
    log_limited(&bus->unclaimed_log, LOG_INFO, "%s: unclaimed read of %u bytes at 0x%llx",
                bus->name, size, (unsigned long long)addr);
    return size_mask(size);
}

void bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
    struct bus_range r;
    if (lookup(bus, addr, size, &r)) {
        if (r.ops->write)
            r.ops->write(r.opaque, addr - r.base, size, value & size_mask(size));
        return;
    }
    log_limited(&bus->unclaimed_log, LOG_INFO, "%s: unclaimed write of %u bytes 0x%llx at 0x%llx",
                bus->name, size, (unsigned long long)value, (unsigned long long)addr);
}
