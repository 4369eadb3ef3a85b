/* Block requests for back-end tests; see block_req.h. */
#include "support/block_req.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

static void completed(struct block_request *req, int status)
{
    struct pending_req *p = req->opaque;
    pthread_mutex_lock(&p->lock);
    p->done = true;
    p->status = status;
    p->completed_on = pthread_self();
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void prepare(struct pending_req *p)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
}

static void submit(struct pending_req *p, struct block_backend *be, enum block_op op,
                   uint64_t offset, uint64_t len, struct iovec *iov, unsigned iovcnt)
{
    p->req = (struct block_request){.op = op,
                                    .offset = offset,
                                    .len = len,
                                    .iov = iov,
                                    .iovcnt = iov ? iovcnt : 0,
                                    .complete = completed,
                                    .opaque = p};
    assert_int_equal(block_submit(be, &p->req), 0);
}

void block_req_start_iov(struct pending_req *p, struct block_backend *be, enum block_op op,
                         uint64_t offset, uint64_t len, struct iovec *iov, unsigned iovcnt)
{
    prepare(p);
    submit(p, be, op, offset, len, iov, iovcnt);
}

void block_req_start(struct pending_req *p, struct block_backend *be, enum block_op op,
                     uint64_t offset, void *buf, uint64_t len)
{
    bool data = op == BLOCK_OP_READ || op == BLOCK_OP_WRITE;
    prepare(p);
    p->iov = (struct iovec){buf, len};
    submit(p, be, op, offset, len, data ? &p->iov : NULL, 1);
}

int block_req_wait(struct pending_req *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->done)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    assert_false(pthread_equal(p->completed_on, pthread_self()));
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    return p->status;
}

int block_req_iov(struct block_backend *be, enum block_op op, uint64_t offset, uint64_t len,
                  struct iovec *iov, unsigned iovcnt)
{
    struct pending_req p;
    block_req_start_iov(&p, be, op, offset, len, iov, iovcnt);
    return block_req_wait(&p);
}

int block_req(struct block_backend *be, enum block_op op, uint64_t offset, void *buf, uint64_t len)
{
    struct pending_req p;
    block_req_start(&p, be, op, offset, buf, len);
    return block_req_wait(&p);
}

void block_test_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}
