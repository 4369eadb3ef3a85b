#include "devices/pvpanic.h"

#include <string.h>

static uint64_t pvpanic_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pvpanic *pv = opaque;
    if (size != 1) {
        log_limited(&pv->bad_access_log, LOG_WARNING, "%s: ignored %u-byte read", pv->dev.name,
                    size);
        return ~0ull;
    }
    return PVPANIC_EVENTS;
}

static void pvpanic_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pvpanic *pv = opaque;
    if (size != 1) {
        log_limited(&pv->bad_access_log, LOG_WARNING, "%s: ignored %u-byte write of 0x%llx",
                    pv->dev.name, size, (unsigned long long)value);
        return;
    }
    uint8_t events = (uint8_t)value;
    pthread_mutex_lock(&pv->lock);
    if (events & PVPANIC_PANICKED)
        pv->panics++;
    if (events & PVPANIC_CRASH_LOADED)
        pv->crash_loads++;
    if (events & PVPANIC_EVENTS)
        log_limited(&pv->event_log, LOG_ERROR,
                    "%s: guest panic, event bits 0x%02x (%s%s%s); %llu panics, %llu crash kernel "
                    "loads so far",
                    pv->dev.name, events & PVPANIC_EVENTS,
                    events & PVPANIC_PANICKED ? "panicked" : "",
                    (events & PVPANIC_EVENTS) == PVPANIC_EVENTS ? ", " : "",
                    events & PVPANIC_CRASH_LOADED ? "crash kernel loaded" : "",
                    (unsigned long long)pv->panics, (unsigned long long)pv->crash_loads);
    if (events & ~PVPANIC_EVENTS)
        log_limited(&pv->bad_access_log, LOG_WARNING, "%s: unknown event bits 0x%02x ignored",
                    pv->dev.name, events & ~PVPANIC_EVENTS);
    if ((events & PVPANIC_EVENTS) && pv->on_event)
        pv->on_event(pv->on_event_opaque, events & PVPANIC_EVENTS);
    pthread_mutex_unlock(&pv->lock);
}

const struct io_ops pvpanic_io_ops = {.read = pvpanic_read, .write = pvpanic_write};

static void pvpanic_reset(struct device *dev)
{
    /* Nothing guest-visible to reset. */
}

static void pvpanic_destroy(struct device *dev)
{
    struct pvpanic *pv = container_of(dev, struct pvpanic, dev);
    pthread_mutex_destroy(&pv->lock);
}

/* The counts: they describe the VM's run, which a restore continues. */
static int pvpanic_state(struct device *dev, struct snap *s)
{
    struct pvpanic *pv = container_of(dev, struct pvpanic, dev);
    pthread_mutex_lock(&pv->lock);
    snap_u64(s, "panics", &pv->panics);
    snap_u64(s, "crash_loads", &pv->crash_loads);
    pthread_mutex_unlock(&pv->lock);
    return snap_error(s);
}

static const struct device_ops pvpanic_device_ops = {
    .reset = pvpanic_reset,
    .state = pvpanic_state,
    .kind = "pvpanic",
    .state_version = 1,
    .destroy = pvpanic_destroy,
};

void pvpanic_init(struct pvpanic *pv, const char *name)
{
    memset(pv, 0, sizeof(*pv));
    pv->dev.name = name;
    pv->dev.ops = &pvpanic_device_ops;
    pthread_mutex_init(&pv->lock, NULL);
}

uint64_t pvpanic_panic_count(struct pvpanic *pv)
{
    pthread_mutex_lock(&pv->lock);
    uint64_t count = pv->panics;
    pthread_mutex_unlock(&pv->lock);
    return count;
}

uint64_t pvpanic_crash_loaded_count(struct pvpanic *pv)
{
    pthread_mutex_lock(&pv->lock);
    uint64_t count = pv->crash_loads;
    pthread_mutex_unlock(&pv->lock);
    return count;
}
