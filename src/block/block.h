/* The block back-end interface, shared by every storage device model
 * (virtio-blk, NVMe): devices turn guest requests into block_requests whose
 * buffers are host pointers already checked against guest memory, submit
 * them, and get a completion callback on a back-end worker thread. Devices
 * never know which back end they talk to. */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct config_block_dev;

enum block_op {
    BLOCK_OP_READ,
    BLOCK_OP_WRITE,
    BLOCK_OP_FLUSH,        /* make every completed write durable */
    BLOCK_OP_DISCARD,      /* offset/len: contents become unspecified (reads may return zeroes) */
    BLOCK_OP_WRITE_ZEROES, /* offset/len: reads return zeroes afterwards */
};

struct block_request;
/* status: 0, or a negative errno (-EIO, -EROFS, -ENOSPC, -EINVAL ...). Called
 * once per request, on a back-end thread (or inline from submit when the
 * request fails before queueing). */
typedef void (*block_complete_fn)(struct block_request *req, int status);

struct block_request {
    enum block_op op;
    uint64_t offset; /* bytes; a multiple of the block size */
    uint64_t len;    /* bytes; for READ/WRITE the sum of the iov lengths */
    struct iovec *iov;
    unsigned iovcnt;
    block_complete_fn complete;
    void *opaque; /* the device's own request context */
    /* Back-end private scratch space, so submit needs no allocation. */
    uint64_t backend_private[8];
};

struct block_info {
    uint64_t size;       /* bytes; a multiple of block_size */
    uint32_t block_size; /* bytes: 512, 4096, ... */
    bool read_only;
    bool can_discard;
    bool can_write_zeroes;
    bool volatile_cache; /* writes need FLUSH to be durable */
    unsigned workers;    /* parallel contexts (the config's "workers") */
};

struct block_backend;

struct block_backend_ops {
    /* Queues req; the completion may run before submit returns. Returns 0,
     * or a negative errno without calling complete (nothing queued). */
    int (*submit)(struct block_backend *be, struct block_request *req);
    /* Waits until every submitted request has completed (device reset). */
    void (*drain)(struct block_backend *be);
    void (*destroy)(struct block_backend *be);
};

struct block_backend {
    const struct block_backend_ops *ops;
    const char *name; /* the [block_dev.NAME] name */
    struct block_info info;
};

/* Opens the back end a [block_dev.*] section describes (file, mem-async,
 * cloudinit, nbd, crucible, crucible-mem). On error logs one message
 * naming the section (and the key, where one is at fault) and returns
 * NULL. */
struct block_backend *block_backend_open(const struct config_block_dev *cfg);

/* "read", "write", "flush", "discard", "write-zeroes": for messages. */
const char *block_op_name(enum block_op op);

static inline int block_submit(struct block_backend *be, struct block_request *req)
{
    return be->ops->submit(be, req);
}

/* What the file, mem-async and cloudinit back ends guarantee on top of the above:
 * - submit returns 0 and never completes inline: every request, including
 *   one refused without I/O (-EINVAL for a range past the end or iovecs not
 *   summing to len, -EROFS for WRITE/DISCARD/WRITE_ZEROES on a read-only
 *   disk, -EOPNOTSUPP for an unknown op), completes on a back-end thread.
 *   The device may submit from its completion callback, but must not call
 *   drain or destroy there.
 * - offset/len need not be block-aligned; only the range is checked.
 * - file: a WRITE completes once its data is in the page cache (it survives
 *   the VMM being killed; with direct = true, O_DIRECT, once the device
 *   took it, which may still be in its cache), a FLUSH once fdatasync
 *   returned (it survives the host crashing); with skip_flush a FLUSH
 *   completes at once. A FLUSH on a read-only disk completes at once.
 *   DISCARD punches a hole (reads return zeroes) or, where that is
 *   unsupported, does nothing and succeeds.
 * - mem-async: reads of never-written blocks return zeroes; DISCARD zeroes.
 * - cloudinit: read-only, 512-byte blocks, the volume built at open. */

static inline void block_drain(struct block_backend *be)
{
    be->ops->drain(be);
}

/* Drains, stops the back end's threads, closes and frees it. NULL is fine. */
static inline void block_backend_destroy(struct block_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

#endif
