/* Pieces shared by the block back ends (file, mem-async, cloudinit): request checks,
 * in-flight accounting for drain, a worker pool, iovec cursors. Not for
 * device models: they use block.h only. Tests and the benchmark include this
 * to pick a file engine explicitly. */
#ifndef BLOCK_BLOCK_INTERNAL_H
#define BLOCK_BLOCK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "block/block.h"

/* ---- per-request private words (block_request.backend_private) ---- */

enum {
    BLK_PRIV_NEXT = 0,   /* queue link (a struct block_request *) */
    BLK_PRIV_STATUS = 1, /* preset status for BLK_KIND_STATUS */
    BLK_PRIV_KIND = 2,   /* enum blk_kind */
};

enum blk_kind {
    BLK_KIND_IO,     /* perform req->op */
    BLK_KIND_STATUS, /* refused at submit: complete with the preset status, no I/O */
};

static inline struct block_request *blk_next(const struct block_request *req)
{
    return (struct block_request *)(uintptr_t)req->backend_private[BLK_PRIV_NEXT];
}

static inline void blk_set_next(struct block_request *req, struct block_request *next)
{
    req->backend_private[BLK_PRIV_NEXT] = (uint64_t)(uintptr_t)next;
}

static inline enum blk_kind blk_kind(const struct block_request *req)
{
    return (enum blk_kind)req->backend_private[BLK_PRIV_KIND];
}

static inline int blk_preset_status(const struct block_request *req)
{
    return (int)(int64_t)req->backend_private[BLK_PRIV_STATUS];
}

/* Marks req as refused with status (0 allowed: e.g. a flush with skip_flush)
 * or as real I/O (kind BLK_KIND_IO, status ignored). */
static inline void blk_set_kind(struct block_request *req, enum blk_kind kind, int status)
{
    req->backend_private[BLK_PRIV_KIND] = (uint64_t)kind;
    req->backend_private[BLK_PRIV_STATUS] = (uint64_t)(int64_t)status;
}

/* A singly linked FIFO of requests through BLK_PRIV_NEXT. */
struct blk_queue {
    struct block_request *head, *tail;
    unsigned len;
};

void blk_queue_push(struct blk_queue *q, struct block_request *req);
struct block_request *blk_queue_pop(struct blk_queue *q);

/* ---- checks ---- */

/* Checks req against the back end: a known op, offset/len within the disk
 * without overflow, for READ/WRITE iov lengths summing to len (and a
 * non-NULL iov when iovcnt > 0), no modifying op on a read-only disk.
 * Returns 0, -EINVAL, -EROFS or -EOPNOTSUPP. */
int blk_check_request(const struct block_backend *be, const struct block_request *req);

/* A problem with a disk's config key, reported at its place in the config
 * file ("FILE:LINE:COL: block_dev.NAME.KEY: message"; at the section when
 * pos has no line, as in a config built by hand). */
struct config_pos;
void blk_config_error(const struct config_block_dev *cfg, const char *key, struct config_pos pos,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- in-flight accounting ---- */

struct blk_tracker {
    atomic_ulong inflight;
    pthread_mutex_t lock;
    pthread_cond_t idle;
};

void blk_tracker_init(struct blk_tracker *t);
void blk_tracker_destroy(struct blk_tracker *t);
static inline void blk_tracker_begin(struct blk_tracker *t)
{
    atomic_fetch_add(&t->inflight, 1);
}
/* Calls req->complete(req, status), then counts the request done. req must
 * not be touched afterwards (the device may reuse it from the callback). */
void blk_finish(struct blk_tracker *t, struct block_request *req, int status);
/* Waits until nothing is in flight. Must not be called from a completion. */
void blk_tracker_drain(struct blk_tracker *t);

/* Wakes a back end's own thread through its eventfd. */
void blk_wake(int wake_fd);
/* Hands req to a back end's own thread: counts it in flight in t, pushes it
 * on q under lock, and wakes the thread if q was empty (a non-empty queue
 * has a wake-up pending). */
void blk_handoff(struct blk_tracker *t, pthread_mutex_t *lock, struct blk_queue *q, int wake_fd,
                 struct block_request *req);

/* ---- a pool of worker threads serving one FIFO ---- */

/* Performs req (kind BLK_KIND_IO) and returns its status. */
typedef int (*blk_pool_run_fn)(void *ctx, struct block_request *req);

struct blk_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct blk_queue queue;
    unsigned idle; /* workers waiting for work */
    bool stop;
    unsigned nthreads;
    pthread_t *threads;
    blk_pool_run_fn run;
    void *ctx;
    struct blk_tracker *tracker;
};

/* Starts nthreads workers named "PREFIX-N" (truncated to 15 bytes). Every
 * signal is blocked in them. Returns 0 or a negative errno (nothing left
 * running). */
int blk_pool_start(struct blk_pool *pool, unsigned nthreads, const char *prefix,
                   blk_pool_run_fn run, void *ctx, struct blk_tracker *tracker);
/* Queues req; a worker completes it. The caller did blk_tracker_begin. */
void blk_pool_submit(struct blk_pool *pool, struct block_request *req);
/* Stops and joins the workers once the queue is empty. */
void blk_pool_stop(struct blk_pool *pool);

/* ---- iovec cursors ---- */

/* Copies between a flat buffer and req's iovecs, starting skip bytes into
 * the iovecs. to_iov: buffer -> iovecs (a read), else iovecs -> buffer. */
void blk_iov_copy(const struct block_request *req, uint64_t skip, void *buf, uint64_t len,
                  bool to_iov);

/* At most this many iovecs go into one preadv/pwritev call. */
#define BLK_IOV_BATCH 1024

/* Fills out[] (capacity max) with req's iovecs from byte skip on; returns
 * how many were filled (0 when nothing is left). */
unsigned blk_iov_slice(const struct block_request *req, uint64_t skip, struct iovec *out,
                       unsigned max);

/* ---- the back ends ---- */

enum block_file_engine {
    BLOCK_FILE_ENGINE_DEFAULT, /* PROPOLIS_BLOCK_ENGINE, else BLOCK_FILE_ENGINE_BUILTIN */
    BLOCK_FILE_ENGINE_URING,   /* every request through io_uring */
    BLOCK_FILE_ENGINE_THREADS, /* every request on worker threads */
    BLOCK_FILE_ENGINE_HYBRID,  /* reads through io_uring, the rest on worker threads */
};

/* The engine used when PROPOLIS_BLOCK_ENGINE is unset: the fastest measured
 * with bench/block_backend.c on a page-cached ext4 file (see file.c). */
#define BLOCK_FILE_ENGINE_BUILTIN BLOCK_FILE_ENGINE_HYBRID

struct block_backend *block_file_open(const struct config_block_dev *cfg,
                                      enum block_file_engine engine);
/* The engine an open file back end runs: "uring", "threads" or "hybrid"
 * (after any fall back to threads). */
const char *block_file_engine_name(const struct block_backend *be);
/* Test hook: pretend fallocate is unsupported so WRITE_ZEROES writes zeroes
 * and DISCARD completes without doing anything. */
void block_file_test_no_fallocate(struct block_backend *be);

struct block_backend *block_mem_open(const struct config_block_dev *cfg);
/* The mem back end serving image (size bytes, a multiple of 512) read-only
 * with 512-byte blocks: writes, discards and write-zeroes get -EROFS. It
 * takes image over (a malloc'ed buffer), freeing it on failure too. */
struct block_backend *block_mem_open_image(const struct config_block_dev *cfg, uint8_t *image,
                                           uint64_t size);
/* type "cloudinit": reads the [cloudinit] files, builds the volume
 * (block/cloudinit.h) and serves it with block_mem_open_image. A file that
 * cannot be read, or too much content, is reported at its config key. */
struct block_backend *block_cloudinit_open(const struct config_block_dev *cfg);
/* type "nbd": connects to the configured URI (an error at that key if it
 * cannot) and serves the export through libnbd (block/nbd.c). */
struct block_backend *block_nbd_open(const struct config_block_dev *cfg);

#endif
