/* A fake block back end for unit tests; see fake_block.h. */
#include "support/fake_block.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "support/poll.h"

/* Does what req asks of the disk; called with f->lock held. */
static int perform(struct fake_block *f, struct block_request *req)
{
    if (f->fail_status)
        return f->fail_status;
    uint64_t size = f->be.info.size;
    if (req->op != BLOCK_OP_FLUSH && (req->offset > size || req->len > size - req->offset))
        return -EINVAL;
    uint8_t *at = f->disk + req->offset;
    switch (req->op) {
    case BLOCK_OP_READ:
        for (unsigned i = 0; i < req->iovcnt; i++) {
            memcpy(req->iov[i].iov_base, at, req->iov[i].iov_len);
            at += req->iov[i].iov_len;
        }
        f->reads++;
        f->last_iovcnt = req->iovcnt;
        break;
    case BLOCK_OP_WRITE:
        for (unsigned i = 0; i < req->iovcnt; i++) {
            memcpy(at, req->iov[i].iov_base, req->iov[i].iov_len);
            at += req->iov[i].iov_len;
        }
        f->writes++;
        f->last_iovcnt = req->iovcnt;
        break;
    case BLOCK_OP_FLUSH:
        f->flushes++;
        break;
    case BLOCK_OP_DISCARD:
        memset(at, 0, req->len);
        f->discards++;
        break;
    case BLOCK_OP_WRITE_ZEROES:
        memset(at, 0, req->len);
        f->write_zeroes++;
        break;
    }
    f->last_offset = req->offset;
    f->last_len = req->len;
    return 0;
}

static int fake_submit(struct block_backend *be, struct block_request *req)
{
    struct fake_block *f = container_of(be, struct fake_block, be);
    /* The interface promises len is the sum of the iovecs: check it, as a
     * device that breaks the promise would overrun a real back end. */
    uint64_t sum = 0;
    for (unsigned i = 0; i < req->iovcnt; i++)
        sum += req->iov[i].iov_len;
    if ((req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) && sum != req->len)
        return -EINVAL;
    pthread_mutex_lock(&f->lock);
    if (f->async) {
        assert_true(f->npending < FAKE_BLOCK_MAX_PENDING);
        f->pending[f->npending++] = req;
        if (f->npending > f->max_pending)
            f->max_pending = f->npending;
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    int status = perform(f, req);
    pthread_mutex_unlock(&f->lock);
    req->complete(req, status);
    return 0;
}

static void fake_drain(struct block_backend *be)
{
    struct fake_block *f = container_of(be, struct fake_block, be);
    __atomic_fetch_add(&f->drains, 1, __ATOMIC_SEQ_CST);
    if (f->drain_completes)
        fake_block_complete_all(f);
}

static void fake_destroy(struct block_backend *be)
{
}

static const struct block_backend_ops fake_ops = {fake_submit, fake_drain, fake_destroy};

void fake_block_init(struct fake_block *f, const char *name, const struct block_info *info)
{
    memset(f, 0, sizeof(*f));
    f->disk = calloc(1, info->size);
    assert_non_null(f->disk);
    pthread_mutex_init(&f->lock, NULL);
    f->be.ops = &fake_ops;
    f->be.name = name;
    f->be.info = *info;
}

void fake_block_fini(struct fake_block *f)
{
    pthread_mutex_destroy(&f->lock);
    free(f->disk);
    f->disk = NULL;
}

void fake_block_complete_n(struct fake_block *f, unsigned n)
{
    for (; n > 0; n--) {
        pthread_mutex_lock(&f->lock);
        if (f->npending == 0) {
            pthread_mutex_unlock(&f->lock);
            return;
        }
        struct block_request *req = f->pending[--f->npending];
        int status = perform(f, req);
        pthread_mutex_unlock(&f->lock);
        /* Outside the lock: the completion may submit the next request. */
        req->complete(req, status);
    }
}

void fake_block_complete_all(struct fake_block *f)
{
    fake_block_complete_n(f, ~0u);
}

void fake_block_release(struct fake_block *f)
{
    pthread_mutex_lock(&f->lock);
    f->async = false;
    pthread_mutex_unlock(&f->lock);
    fake_block_complete_all(f);
}

unsigned fake_block_pending(struct fake_block *f)
{
    pthread_mutex_lock(&f->lock);
    unsigned n = f->npending;
    pthread_mutex_unlock(&f->lock);
    return n;
}

struct pending_target {
    struct fake_block *f;
    unsigned n;
};

static bool pending_reached(void *arg)
{
    struct pending_target *t = arg;
    return fake_block_pending(t->f) == t->n;
}

bool fake_block_wait_pending(struct fake_block *f, unsigned n)
{
    struct pending_target t = {f, n};
    return poll_until(pending_reached, &t);
}
