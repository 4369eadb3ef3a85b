#include "devices/debug_port.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define DEBUG_PORT_READBACK 0xe9

static uint64_t debug_read(void *opaque, uint64_t offset, unsigned size)
{
    return DEBUG_PORT_READBACK;
}

static void debug_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct debug_port *dp = opaque;
    uint8_t byte = (uint8_t)value;
    if (dp->fd < 0)
        return;
    uint64_t n = atomic_fetch_add(&dp->written, 1);
    if (n >= dp->max_bytes) {
        if (n == dp->max_bytes)
            log_warn("debug port: the output file reached %llu bytes; further output is dropped",
                     (unsigned long long)dp->max_bytes);
        atomic_store(&dp->written, dp->max_bytes + 1); /* no wrap-around */
        return;
    }
    /* Unbuffered: the file is a live log, and bytes must survive a kill. */
    if (write(dp->fd, &byte, 1) < 0) {
        static struct log_ratelimit rl;
        log_limited(&rl, LOG_WARNING, "debug port: write failed: %s", strerror(errno));
    }
}

const struct io_ops debug_port_io_ops = {.read = debug_read, .write = debug_write};

static void debug_destroy(struct device *dev)
{
    struct debug_port *dp = container_of(dev, struct debug_port, dev);
    if (dp->fd >= 0)
        close(dp->fd);
    dp->fd = -1;
}

/* How much of the output cap the guest has used: the cap bounds a VM's
 * whole run, restores included. */
static int debug_state(struct device *dev, struct snap *s)
{
    struct debug_port *dp = container_of(dev, struct debug_port, dev);
    uint64_t written = atomic_load(&dp->written);
    snap_u64(s, "written", &written);
    if (snap_loading(s) && !snap_error(s) &&
        snap_check(s, written <= dp->max_bytes + 1, "written", "beyond the output cap"))
        atomic_store(&dp->written, written);
    return snap_error(s);
}

static const struct device_ops debug_device_ops = {
    .state = debug_state,
    .kind = "debug-port",
    .state_version = 1,
    .destroy = debug_destroy,
};

int debug_port_init(struct debug_port *dp, const char *path)
{
    dp->dev.name = "debug-port";
    dp->dev.ops = &debug_device_ops;
    atomic_init(&dp->written, 0);
    dp->max_bytes = DEBUG_PORT_MAX_BYTES;
    /* O_NOFOLLOW: a symlink planted at the path would have us truncate and
     * fill its target. Only a regular file is emptied; anything else (a
     * FIFO someone reads) is written as it is. */
    dp->fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (dp->fd < 0) {
        if (errno == ELOOP)
            log_error("debug port: %s is a symbolic link; refusing to write through it (remove "
                      "it)",
                      path);
        else
            log_error("debug port: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(dp->fd, &st) < 0 || (S_ISREG(st.st_mode) && ftruncate(dp->fd, 0) < 0)) {
        log_error("debug port: %s: %s", path, strerror(errno));
        close(dp->fd);
        dp->fd = -1;
        return -1;
    }
    return 0;
}

static uint64_t post_read(void *opaque, uint64_t offset, unsigned size)
{
    struct post_port *pp = opaque;
    return atomic_load(&pp->last_code);
}

static void post_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct post_port *pp = opaque;
    if (atomic_exchange(&pp->last_code, (uint8_t)value) != (uint8_t)value)
        log_limited(&pp->log, LOG_DEBUG, "POST code 0x%02x", (unsigned)(uint8_t)value);
}

const struct io_ops post_port_io_ops = {.read = post_read, .write = post_write};

static void post_reset(struct device *dev)
{
    struct post_port *pp = container_of(dev, struct post_port, dev);
    atomic_store(&pp->last_code, 0);
}

/* The last POST code, which reads back. */
static int post_state(struct device *dev, struct snap *s)
{
    struct post_port *pp = container_of(dev, struct post_port, dev);
    uint8_t code = atomic_load(&pp->last_code);
    snap_u8(s, "last_code", &code);
    if (snap_loading(s) && !snap_error(s))
        atomic_store(&pp->last_code, code);
    return snap_error(s);
}

static const struct device_ops post_device_ops = {
    .reset = post_reset,
    .state = post_state,
    .kind = "post-port",
    .state_version = 1,
};

void post_port_init(struct post_port *pp)
{
    pp->dev.name = "post-port";
    pp->dev.ops = &post_device_ops;
    atomic_store(&pp->last_code, 0);
}
