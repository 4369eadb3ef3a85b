/* block_backend_open and what every back end shares: request checks,
 * in-flight accounting, the worker pool, iovec helpers. */
#include "block/block_internal.h"
#include "block/crucible/upstairs.h"
#include "common/iov.h"
#include "common/thread.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"

struct block_backend *block_backend_open(const struct config_block_dev *cfg)
{
    switch (cfg->type) {
    case CONFIG_BLOCK_FILE:
        return block_file_open(cfg, BLOCK_FILE_ENGINE_DEFAULT);
    case CONFIG_BLOCK_MEM_ASYNC:
        return block_mem_open(cfg);
    case CONFIG_BLOCK_CLOUDINIT:
        return block_cloudinit_open(cfg);
    case CONFIG_BLOCK_NBD:
        return block_nbd_open(cfg);
    case CONFIG_BLOCK_CRUCIBLE:
        return block_crucible_open(cfg);
    case CONFIG_BLOCK_CRUCIBLE_MEM:
        return block_crucible_mem_open(cfg);
    }
    log_error("block_dev.%s: unknown block device type \"%s\"", cfg->name,
              config_block_type_name(cfg->type));
    return NULL;
}

void blk_config_error(const struct config_block_dev *cfg, const char *key, struct config_pos pos,
                      const char *fmt, ...)
{
    char key_path[CONFIG_NAME_MAX + 32], msg[768];
    snprintf(key_path, sizeof(key_path), "block_dev.%s.%s", cfg->name, key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (pos.line == 0)
        pos = (struct config_pos){cfg->line, cfg->column};
    config_report_at(cfg->source, pos, key_path, "%s", msg);
}

/* ---- checks ---- */

int blk_check_request(const struct block_backend *be, const struct block_request *req)
{
    bool modifies;
    switch (req->op) {
    case BLOCK_OP_READ:
        modifies = false;
        break;
    case BLOCK_OP_FLUSH:
        return 0; /* offset/len are meaningless */
    case BLOCK_OP_WRITE:
    case BLOCK_OP_DISCARD:
    case BLOCK_OP_WRITE_ZEROES:
        modifies = true;
        break;
    default:
        return -EOPNOTSUPP;
    }
    if (req->offset > be->info.size || req->len > be->info.size - req->offset)
        return -EINVAL;
    if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) {
        if (req->iovcnt > 0 && req->iov == NULL)
            return -EINVAL;
        uint64_t sum = 0;
        for (unsigned i = 0; i < req->iovcnt; i++) {
            if (req->iov[i].iov_len > req->len - sum)
                return -EINVAL; /* more than len: also catches overflow */
            sum += req->iov[i].iov_len;
        }
        if (sum != req->len)
            return -EINVAL;
    }
    if (modifies && be->info.read_only)
        return -EROFS;
    return 0;
}

/* ---- request FIFO ---- */

void blk_queue_push(struct blk_queue *q, struct block_request *req)
{
    blk_set_next(req, NULL);
    if (q->tail)
        blk_set_next(q->tail, req);
    else
        q->head = req;
    q->tail = req;
    q->len++;
}

void blk_wake(int wake_fd)
{
    uint64_t one = 1;
    ssize_t n = write(wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already wakes the thread */
}

void blk_handoff(struct blk_tracker *t, pthread_mutex_t *lock, struct blk_queue *q, int wake_fd,
                 struct block_request *req)
{
    blk_tracker_begin(t);
    pthread_mutex_lock(lock);
    bool was_empty = q->head == NULL;
    blk_queue_push(q, req);
    pthread_mutex_unlock(lock);
    if (was_empty)
        blk_wake(wake_fd);
}

struct block_request *blk_queue_pop(struct blk_queue *q)
{
    struct block_request *req = q->head;
    if (req) {
        q->head = blk_next(req);
        if (!q->head)
            q->tail = NULL;
        q->len--;
    }
    return req;
}

/* ---- in-flight accounting ---- */

void blk_tracker_init(struct blk_tracker *t)
{
    atomic_init(&t->inflight, 0);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->idle, NULL);
}

void blk_tracker_destroy(struct blk_tracker *t)
{
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->idle);
}

void blk_finish(struct blk_tracker *t, struct block_request *req, int status)
{
    req->complete(req, status);
    if (atomic_fetch_sub(&t->inflight, 1) == 1) {
        /* Broadcast under the lock: a drainer that saw inflight > 0 is then
         * already waiting. */
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->idle);
        pthread_mutex_unlock(&t->lock);
    }
}

void blk_tracker_drain(struct blk_tracker *t)
{
    pthread_mutex_lock(&t->lock);
    while (atomic_load(&t->inflight) != 0)
        pthread_cond_wait(&t->idle, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static void *pool_main(void *arg)
{
    struct blk_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct block_request *req = blk_queue_pop(&pool->queue);
        if (!req) {
            if (pool->stop)
                break;
            pool->idle++;
            pthread_cond_wait(&pool->work, &pool->lock);
            pool->idle--;
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        int status =
            blk_kind(req) == BLK_KIND_STATUS ? blk_preset_status(req) : pool->run(pool->ctx, req);
        blk_finish(pool->tracker, req, status);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int blk_pool_start(struct blk_pool *pool, unsigned nthreads, const char *prefix,
                   blk_pool_run_fn run, void *ctx, struct blk_tracker *tracker)
{
    memset(pool, 0, sizeof(*pool));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pool->run = run;
    pool->ctx = ctx;
    pool->tracker = tracker;
    pool->threads = calloc(nthreads, sizeof(*pool->threads));
    if (!pool->threads) {
        blk_pool_stop(pool);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%s-%u", prefix, i);
        int rc = thread_start(&pool->threads[i], name, THREAD_BLOCK, 0, pool_main, pool);
        if (rc < 0) {
            blk_pool_stop(pool);
            return rc;
        }
        pool->nthreads++;
    }
    return 0;
}

void blk_pool_submit(struct blk_pool *pool, struct block_request *req)
{
    pthread_mutex_lock(&pool->lock);
    blk_queue_push(&pool->queue, req);
    if (pool->idle > 0)
        pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
}

void blk_pool_stop(struct blk_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pool->threads = NULL;
    pool->nthreads = 0;
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
}

/* ---- iovec helpers ---- */

void blk_iov_copy(const struct block_request *req, uint64_t skip, void *buf, uint64_t len,
                  bool to_iov)
{
    iov_copy(req->iov, req->iovcnt, (size_t)skip, buf, (size_t)len, to_iov);
}

unsigned blk_iov_slice(const struct block_request *req, uint64_t skip, struct iovec *out,
                       unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < req->iovcnt && n < max; i++) {
        size_t ilen = req->iov[i].iov_len;
        if (skip >= ilen) {
            skip -= ilen;
            continue;
        }
        out[n].iov_base = (uint8_t *)req->iov[i].iov_base + skip;
        out[n].iov_len = ilen - (size_t)skip;
        n++;
        skip = 0;
    }
    return n;
}

const char *block_op_name(enum block_op op)
{
    switch (op) {
    case BLOCK_OP_READ:
        return "read";
    case BLOCK_OP_WRITE:
        return "write";
    case BLOCK_OP_FLUSH:
        return "flush";
    case BLOCK_OP_DISCARD:
        return "discard";
    case BLOCK_OP_WRITE_ZEROES:
        return "write-zeroes";
    }
    return "?";
}
