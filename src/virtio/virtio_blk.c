#include "virtio/virtio_blk.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/bytes.h"
#include "common/iov.h"
#include "common/sync.h"

#define SECTOR_SIZE 512ull
#define BLK_HEADER_SIZE 16
#define BLK_SEGMENT_SIZE 16
#define VIRTIO_BLK_MAX_QUEUES 16
#define CLASS_STORAGE_SCSI 0x010000

struct vblk_req {
    struct block_request breq;
    struct virtio_blk *blk;
    unsigned queue;
    uint16_t head;
    uint8_t *status; /* host pointer to the chain's last writable byte */
    uint32_t used_len;
    struct vblk_req *next_free;
    struct iovec iov[VIRTIO_BLK_MAX_BUFS];
};

struct vblk_queue {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    struct vblk_req *pool; /* queue-size entries while the queue runs */
    struct vblk_req *free;
    unsigned inflight;
    bool starved; /* the worker stopped for want of a free request */
};

struct virtio_blk {
    struct virtio_device vdev;
    struct block_backend *be;
    char serial[VIRTIO_BLK_ID_BYTES];
    uint64_t size; /* bytes */
    uint32_t block_size;
    bool read_only, discard, write_zeroes;
    struct vblk_queue queues[VIRTIO_BLK_MAX_QUEUES];
};

static struct virtio_blk *blk_of(struct virtio_device *vdev)
{
    return container_of(vdev, struct virtio_blk, vdev);
}

/* ---- Request pool ---- */

static struct vblk_req *req_get(struct vblk_queue *bq)
{
    pthread_mutex_lock(&bq->lock);
    struct vblk_req *r = bq->free;
    if (r) {
        bq->free = r->next_free;
        bq->inflight++;
    } else {
        bq->starved = true;
    }
    pthread_mutex_unlock(&bq->lock);
    return r;
}

void (*virtio_blk_wake_hook)(void); /* test seam, see virtio_blk.h */

/* Returns r to the pool and wakes a starved worker. Neither r nor the
 * device may be touched after the unlock: once the count drops to zero a
 * quiescing thread may free the pool, and a destroy the whole device. So
 * the wake-up happens under the lock, before the count drops (the kick is
 * an eventfd write and takes no lock). */
static void req_put(struct virtio_blk *blk, unsigned queue, struct vblk_req *r)
{
    struct vblk_queue *bq = &blk->queues[queue];
    pthread_mutex_lock(&bq->lock);
    r->next_free = bq->free;
    bq->free = r;
    if (bq->starved) {
        bq->starved = false;
        if (virtio_blk_wake_hook)
            virtio_blk_wake_hook();
        virtio_queue_kick(&blk->vdev, queue);
    }
    if (--bq->inflight == 0)
        pthread_cond_broadcast(&bq->idle);
    pthread_mutex_unlock(&bq->lock);
}

/* Status byte last, then the used ring (whose release barrier orders the
 * two), then the request goes back to the pool. */
static void req_finish(struct vblk_req *r, uint8_t status)
{
    struct virtio_blk *blk = r->blk;
    unsigned queue = r->queue;
    if (r->status)
        __atomic_store_n(r->status, status, __ATOMIC_RELAXED);
    virtio_queue_complete(&blk->vdev, queue, r->head, r->used_len);
    req_put(blk, queue, r);
}

static void req_complete(struct block_request *breq, int status)
{
    struct vblk_req *r = breq->opaque;
    uint8_t code = VIRTIO_BLK_S_OK;
    if (status == -EOPNOTSUPP)
        code = VIRTIO_BLK_S_UNSUPP;
    else if (status < 0)
        code = VIRTIO_BLK_S_IOERR;
    if (status < 0)
        log_limited(&r->blk->vdev.dev_log, LOG_WARNING,
                    "%s: request (op %d, offset 0x%llx, %llu bytes) failed: %s", r->blk->vdev.name,
                    (int)breq->op, (unsigned long long)breq->offset, (unsigned long long)breq->len,
                    strerror(-status));
    req_finish(r, code);
}

static void req_submit(struct vblk_req *r, enum block_op op, uint64_t offset, uint64_t len,
                       struct iovec *iov, unsigned iovcnt)
{
    r->breq = (struct block_request){
        .op = op,
        .offset = offset,
        .len = len,
        .iov = iov,
        .iovcnt = iovcnt,
        .complete = req_complete,
        .opaque = r,
    };
    int err = block_submit(r->blk->be, &r->breq);
    if (err < 0)
        req_complete(&r->breq, err); /* not queued: complete here */
}

/* ---- Request parsing ---- */

/* A byte range of the disk: inside it, aligned to the block size. */
static bool range_ok(struct virtio_blk *blk, uint64_t sector, uint64_t len, const char *what)
{
    uint64_t sectors = blk->size / SECTOR_SIZE;
    bool ok = sector <= sectors && len <= blk->size - sector * SECTOR_SIZE &&
              (sector * SECTOR_SIZE) % blk->block_size == 0 && len % blk->block_size == 0;
    if (!ok)
        log_limited(&blk->vdev.dev_log, LOG_WARNING,
                    "%s: %s at sector %llu, %llu bytes: outside the disk (%llu sectors) or not "
                    "aligned to %u bytes; IOERR",
                    blk->vdev.name, what, (unsigned long long)sector, (unsigned long long)len,
                    (unsigned long long)sectors, blk->block_size);
    return ok;
}

/* Drops the last byte of iov[0..*cnt) (the status byte), in place. */
static void iov_drop_last_byte(struct iovec *iov, unsigned *cnt)
{
    if (*cnt == 0)
        return;
    if (--iov[*cnt - 1].iov_len == 0)
        (*cnt)--;
}

static void handle_discard_wz(struct virtio_blk *blk, struct vblk_req *r,
                              const struct virtq_chain *c, uint32_t type)
{
    bool discard = type == VIRTIO_BLK_T_DISCARD;
    const char *what = discard ? "discard" : "write-zeroes";
    if (!(discard ? blk->discard : blk->write_zeroes)) {
        req_finish(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    if (blk->read_only) {
        req_finish(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    uint64_t bytes = c->out_bytes - BLK_HEADER_SIZE;
    if (bytes == 0 || bytes % BLK_SEGMENT_SIZE || bytes / BLK_SEGMENT_SIZE > 1) {
        log_limited(&blk->vdev.dev_log, LOG_WARNING,
                    "%s: %s with %llu bytes of segments (one 16-byte segment allowed); UNSUPP",
                    blk->vdev.name, what, (unsigned long long)bytes);
        req_finish(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    uint8_t seg[BLK_SEGMENT_SIZE];
    iov_to_buf(c->iov, c->nout, BLK_HEADER_SIZE, seg, sizeof(seg));
    uint64_t sector = le64_load(seg);
    uint32_t nsectors = le32_load(seg + 8), flags = le32_load(seg + 12);
    if ((flags & ~(uint32_t)VIRTIO_BLK_WZ_F_UNMAP) || (discard && flags)) {
        log_limited(&blk->vdev.dev_log, LOG_WARNING, "%s: %s with flags 0x%x; UNSUPP",
                    blk->vdev.name, what, flags);
        req_finish(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    uint64_t len = (uint64_t)nsectors * SECTOR_SIZE;
    if (nsectors > VIRTIO_BLK_MAX_DISCARD_SECTORS || !range_ok(blk, sector, len, what)) {
        req_finish(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (len == 0) {
        req_finish(r, VIRTIO_BLK_S_OK);
        return;
    }
    req_submit(r, discard ? BLOCK_OP_DISCARD : BLOCK_OP_WRITE_ZEROES, sector * SECTOR_SIZE, len,
               NULL, 0);
}

static void handle_request(struct virtio_blk *blk, struct vblk_req *r, struct virtq_chain *c)
{
    r->head = c->head;
    r->status = NULL;
    r->used_len = c->in_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)c->in_bytes;
    if (c->nin == 0) {
        log_limited(&blk->vdev.dev_log, LOG_WARNING,
                    "%s: request without a writable status byte; returned unanswered",
                    blk->vdev.name);
        r->used_len = 0;
        req_finish(r, 0);
        return;
    }
    struct iovec *last = &c->iov[c->nout + c->nin - 1];
    r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
    if (c->out_bytes < BLK_HEADER_SIZE) {
        log_limited(&blk->vdev.dev_log, LOG_WARNING,
                    "%s: request header of %llu bytes (16 needed); IOERR", blk->vdev.name,
                    (unsigned long long)c->out_bytes);
        req_finish(r, VIRTIO_BLK_S_IOERR);
        return;
    }
    uint8_t hdr[BLK_HEADER_SIZE];
    iov_to_buf(c->iov, c->nout, 0, hdr, sizeof(hdr));
    uint32_t type = le32_load(hdr);
    uint64_t sector = le64_load(hdr + 8);

    switch (type) {
    case VIRTIO_BLK_T_IN: {
        unsigned cnt = c->nin;
        struct iovec *iov = &c->iov[c->nout];
        iov_drop_last_byte(iov, &cnt);
        uint64_t len = c->in_bytes - 1;
        if (!range_ok(blk, sector, len, "read")) {
            req_finish(r, VIRTIO_BLK_S_IOERR);
        } else if (len == 0) {
            req_finish(r, VIRTIO_BLK_S_OK);
        } else {
            req_submit(r, BLOCK_OP_READ, sector * SECTOR_SIZE, len, iov, cnt);
        }
        return;
    }
    case VIRTIO_BLK_T_OUT: {
        unsigned cnt = c->nout;
        struct iovec *iov = iov_skip(c->iov, &cnt, BLK_HEADER_SIZE);
        uint64_t len = c->out_bytes - BLK_HEADER_SIZE;
        if (blk->read_only) {
            log_limited(&blk->vdev.dev_log, LOG_WARNING, "%s: write to a read-only disk; IOERR",
                        blk->vdev.name);
            req_finish(r, VIRTIO_BLK_S_IOERR);
        } else if (!range_ok(blk, sector, len, "write")) {
            req_finish(r, VIRTIO_BLK_S_IOERR);
        } else if (len == 0) {
            req_finish(r, VIRTIO_BLK_S_OK);
        } else {
            req_submit(r, BLOCK_OP_WRITE, sector * SECTOR_SIZE, len, iov, cnt);
        }
        return;
    }
    case VIRTIO_BLK_T_FLUSH:
        req_submit(r, BLOCK_OP_FLUSH, 0, 0, NULL, 0);
        return;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t room = c->in_bytes - 1;
        size_t n = room < VIRTIO_BLK_ID_BYTES ? (size_t)room : VIRTIO_BLK_ID_BYTES;
        iov_from_buf(&c->iov[c->nout], c->nin, 0, blk->serial, n);
        req_finish(r, VIRTIO_BLK_S_OK);
        return;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        handle_discard_wz(blk, r, c, type);
        return;
    default:
        log_limited(&blk->vdev.dev_log, LOG_DEBUG, "%s: unsupported request type %u; UNSUPP",
                    blk->vdev.name, type);
        req_finish(r, VIRTIO_BLK_S_UNSUPP);
        return;
    }
}

/* ---- Device ops ---- */

static int blk_activate(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_blk *blk = blk_of(vdev);
    struct vblk_queue *bq = &blk->queues[queue];
    unsigned n = virtio_queue_ring(vdev, queue)->size;
    struct vblk_req *pool = calloc(n, sizeof(*pool));
    if (!pool) {
        log_error("%s: out of memory for queue %u", vdev->name, queue);
        return -1;
    }
    pthread_mutex_lock(&bq->lock);
    bq->pool = pool;
    bq->free = NULL;
    for (unsigned i = n; i-- > 0;) {
        pool[i].blk = blk;
        pool[i].queue = queue;
        pool[i].next_free = bq->free;
        bq->free = &pool[i];
    }
    bq->inflight = 0;
    bq->starved = false;
    pthread_mutex_unlock(&bq->lock);
    return 0;
}

/* Waits for this queue's requests only: draining the whole back end would
 * also wait for the other queues, which the guest can keep busy for as
 * long as it likes while a reset holds the device lock. */
static void wait_idle(struct vblk_queue *bq)
{
    while (bq->inflight > 0)
        pthread_cond_wait(&bq->idle, &bq->lock);
}

static void blk_drain(struct virtio_device *vdev, unsigned queue)
{
    struct vblk_queue *bq = &blk_of(vdev)->queues[queue];
    pthread_mutex_lock(&bq->lock);
    wait_idle(bq);
    pthread_mutex_unlock(&bq->lock);
}

static void blk_quiesce(struct virtio_device *vdev, unsigned queue)
{
    struct vblk_queue *bq = &blk_of(vdev)->queues[queue];
    pthread_mutex_lock(&bq->lock);
    wait_idle(bq);
    free(bq->pool);
    bq->pool = NULL;
    bq->free = NULL;
    bq->starved = false;
    pthread_mutex_unlock(&bq->lock);
}

static void blk_queue_notify(struct virtio_device *vdev, unsigned queue)
{
    struct virtio_blk *blk = blk_of(vdev);
    struct vblk_queue *bq = &blk->queues[queue];
    struct virtq *vq = virtio_queue_ring(vdev, queue);
    for (;;) {
        virtq_disable_notify(vq);
        for (;;) {
            if (!virtio_queue_running(vdev, queue))
                return;
            struct vblk_req *r = req_get(bq);
            if (!r)
                return; /* every request is in flight: a completion kicks us */
            struct virtq_chain chain = {.iov = r->iov, .iov_cap = VIRTIO_BLK_MAX_BUFS};
            enum virtq_pop_result res = virtq_pop(vq, &chain);
            if (res != VIRTQ_CHAIN) {
                r->status = NULL;
                req_put(blk, queue, r);
                if (res == VIRTQ_ERROR) {
                    virtio_device_needs_reset(vdev, "malformed virtqueue (see above)");
                    return;
                }
                break;
            }
            handle_request(blk, r, &chain);
        }
        if (!virtq_enable_notify(vq))
            return;
    }
}

static void blk_describe_queue(struct virtio_device *vdev, unsigned queue, char *buf, size_t cap)
{
    struct vblk_queue *q = &blk_of(vdev)->queues[queue];
    if (!mutex_lock_within(&q->lock, 100)) {
        snprintf(buf, cap, "requests: lock busy");
        return;
    }
    snprintf(buf, cap, "%u requests at the back end%s", q->inflight,
             q->starved ? ", worker waiting for a free request" : "");
    pthread_mutex_unlock(&q->lock);
}

/* The configuration is the disk's geometry and limits, which the guest
 * cannot write (no CONFIG_WCE): a state is refused for another disk. The
 * requests in flight are none (the device drained before the save). */
static int blk_state(struct virtio_device *vdev, struct snap *s)
{
    uint8_t config[VIRTIO_BLK_CONFIG_SIZE];
    pthread_mutex_lock(&vdev->config_lock);
    memcpy(config, vdev->config, sizeof(config));
    pthread_mutex_unlock(&vdev->config_lock);
    uint8_t saved[VIRTIO_BLK_CONFIG_SIZE];
    memcpy(saved, config, sizeof(saved));
    snap_bytes(s, "config", saved, sizeof(saved));
    if (snap_loading(s))
        snap_check(s, memcmp(saved, config, sizeof(config)) == 0, "config",
                   "another disk (capacity, block size, queues or limits differ)");
    return snap_error(s);
}

static void blk_destroy(struct virtio_device *vdev)
{
    struct virtio_blk *blk = blk_of(vdev);
    for (unsigned i = 0; i < VIRTIO_BLK_MAX_QUEUES; i++) {
        pthread_mutex_destroy(&blk->queues[i].lock);
        pthread_cond_destroy(&blk->queues[i].idle);
    }
    free(blk);
}

static const struct virtio_device_ops blk_ops = {
    .kind = "blk",
    .activate = blk_activate,
    .queue_notify = blk_queue_notify,
    .drain = blk_drain,
    .quiesce = blk_quiesce,
    .state = blk_state,
    .describe_queue = blk_describe_queue,
    .destroy = blk_destroy,
};

/* ---- Setup ---- */

static void build_config(const struct virtio_blk *blk, unsigned num_queues, uint8_t *cfg)
{
    memset(cfg, 0, VIRTIO_BLK_CONFIG_SIZE);
    uint32_t align_sectors = blk->block_size / SECTOR_SIZE;
    le64_store(cfg + VIRTIO_BLK_CFG_CAPACITY, blk->size / SECTOR_SIZE);
    le32_store(cfg + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
    le32_store(cfg + VIRTIO_BLK_CFG_BLK_SIZE, blk->block_size);
    le16_store(cfg + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)num_queues);
    if (blk->discard) {
        le32_store(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
        le32_store(cfg + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1);
        le32_store(cfg + VIRTIO_BLK_CFG_DISCARD_ALIGN, align_sectors);
    }
    if (blk->write_zeroes) {
        le32_store(cfg + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
        le32_store(cfg + VIRTIO_BLK_CFG_MAX_WZ_SEG, 1);
        cfg[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 0;
    }
}

struct virtio_device *virtio_blk_create(const struct virtio_blk_params *p)
{
    const char *name = p->name ? p->name : "virtio-blk";
    struct block_backend *be = p->backend;
    unsigned nq = p->num_queues ? p->num_queues : VIRTIO_BLK_DEFAULT_QUEUES;
    if (!be || !p->mem || nq > VIRTIO_BLK_MAX_QUEUES || be->info.block_size < SECTOR_SIZE ||
        be->info.block_size % SECTOR_SIZE || be->info.size % be->info.block_size) {
        log_error("%s: invalid virtio-blk parameters", name);
        return NULL;
    }
    struct virtio_blk *blk = calloc(1, sizeof(*blk));
    if (!blk) {
        log_error("%s: out of memory", name);
        return NULL;
    }
    blk->be = be;
    blk->size = be->info.size;
    blk->block_size = be->info.block_size;
    blk->read_only = be->info.read_only;
    blk->discard = be->info.can_discard && !blk->read_only;
    blk->write_zeroes = be->info.can_write_zeroes && !blk->read_only;
    /* The serial is the block_dev name, NUL padded (strncpy semantics). */
    const char *serial = be->name ? be->name : "";
    size_t serial_len = strnlen(serial, VIRTIO_BLK_ID_BYTES);
    memcpy(blk->serial, serial, serial_len);

    uint64_t features = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                        (1ull << VIRTIO_BLK_F_FLUSH);
    if (blk->read_only)
        features |= 1ull << VIRTIO_BLK_F_RO;
    if (nq > 1)
        features |= 1ull << VIRTIO_BLK_F_MQ;
    if (blk->discard)
        features |= 1ull << VIRTIO_BLK_F_DISCARD;
    if (blk->write_zeroes)
        features |= 1ull << VIRTIO_BLK_F_WRITE_ZEROES;

    struct virtio_device_params vdp = {
        .name = name,
        .device_type = VIRTIO_ID_BLOCK,
        .num_queues = nq,
        .queue_size = VIRTIO_BLK_QUEUE_SIZE,
        .features = features,
        .config_size = VIRTIO_BLK_CONFIG_SIZE,
        .ops = &blk_ops,
        .mem = p->mem,
    };
    if (virtio_device_init(&blk->vdev, &vdp) < 0) {
        free(blk);
        return NULL;
    }
    for (unsigned i = 0; i < VIRTIO_BLK_MAX_QUEUES; i++) {
        pthread_mutex_init(&blk->queues[i].lock, NULL);
        pthread_cond_init(&blk->queues[i].idle, NULL);
    }
    build_config(blk, nq, blk->vdev.config);
    return &blk->vdev;
}
