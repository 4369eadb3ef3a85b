/* Block requests for back-end tests (block/block.h): one submitted and
 * waited for, or several in flight at once. Every wait also checks what
 * every back end promises: the completion ran on a back-end thread, not
 * inline in submit. Include after <cmocka.h>'s prerequisites. */
#ifndef TESTS_SUPPORT_BLOCK_REQ_H
#define TESTS_SUPPORT_BLOCK_REQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"

/* A request in flight; stays in place until block_req_wait returned. */
struct pending_req {
    struct block_request req;
    struct iovec iov; /* the one piece of block_req_start's buffer */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    pthread_t completed_on;
};

/* Submits op over iov[0..iovcnt) (iov NULL: none, as for flush, discard
 * and write-zeroes); asserts submit returned 0. */
void block_req_start_iov(struct pending_req *p, struct block_backend *be, enum block_op op,
                         uint64_t offset, uint64_t len, struct iovec *iov, unsigned iovcnt);
/* The same with one buffer (NULL for ops without data). */
void block_req_start(struct pending_req *p, struct block_backend *be, enum block_op op,
                     uint64_t offset, void *buf, uint64_t len);
/* Waits for the completion; returns its status. */
int block_req_wait(struct pending_req *p);

/* Submits and waits: the request's status. */
int block_req_iov(struct block_backend *be, enum block_op op, uint64_t offset, uint64_t len,
                  struct iovec *iov, unsigned iovcnt);
int block_req(struct block_backend *be, enum block_op op, uint64_t offset, void *buf, uint64_t len);

/* A file of size bytes (zeroes) at path, in place of any earlier one. */
void block_test_file(const char *path, uint64_t size);

#endif
