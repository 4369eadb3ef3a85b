#include "devices/device.h"

#include <stdio.h>

static int call_state(void *opaque, struct snap *s)
{
    struct device *dev = opaque;
    return dev->ops->state(dev, s);
}

static bool has_state(struct device *dev, char *err, size_t err_size)
{
    if (dev->ops->state && dev->ops->kind && dev->ops->state_version > 0)
        return true;
    if (err_size)
        snprintf(err, err_size, "%s: this device has no saved state", dev->name);
    return false;
}

int device_save_state(struct device *dev, struct snap_buf *out, char *err, size_t err_size)
{
    if (!has_state(dev, err, err_size))
        return -1;
    return snap_save_record(out, dev->name, dev->ops->kind, dev->ops->state_version, call_state,
                            dev, err, err_size);
}

int device_load_state(struct device *dev, const struct snap_record *rec, char *err,
                      size_t err_size)
{
    if (!has_state(dev, err, err_size))
        return -1;
    return snap_load_record(rec, dev->ops->kind, dev->ops->state_version, call_state, dev, err,
                            err_size);
}

int device_pause(struct device *dev)
{
    return dev->ops->pause ? dev->ops->pause(dev) : 0;
}

void device_resume(struct device *dev)
{
    if (dev->ops->resume)
        dev->ops->resume(dev);
}
