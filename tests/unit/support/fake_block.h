/* A fake block back end for unit tests of the block devices: a disk in a
 * heap buffer behind the block_backend interface. Synchronous by default
 * (each request completes inside submit); with `async` set, requests wait
 * in a pending list until the test completes them, to test devices with
 * I/O in flight. Counters say what the device asked for. */
#ifndef TESTS_SUPPORT_FAKE_BLOCK_H
#define TESTS_SUPPORT_FAKE_BLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define FAKE_BLOCK_MAX_PENDING 1024

struct fake_block {
    struct block_backend be;
    uint8_t *disk;
    bool async;           /* hold requests in `pending` */
    bool drain_completes; /* drain() completes the pending requests */
    int fail_status;      /* nonzero: every request fails with it */
    pthread_mutex_t lock; /* guards pending and the counters */
    struct block_request *pending[FAKE_BLOCK_MAX_PENDING];
    unsigned npending, max_pending;
    unsigned reads, writes, flushes, discards, write_zeroes, drains;
    uint64_t last_offset, last_len; /* of the last request performed */
    unsigned last_iovcnt;           /* of the last read or write */
};

/* Sets f up with a zeroed disk of info->size bytes, named `name`. */
void fake_block_init(struct fake_block *f, const char *name, const struct block_info *info);
/* Frees the disk; the device using f must be gone. */
void fake_block_fini(struct fake_block *f);

/* Completes up to n pending requests, newest first (the out-of-order
 * completions a real back end may give). */
void fake_block_complete_n(struct fake_block *f, unsigned n);
void fake_block_complete_all(struct fake_block *f);
/* Stops holding requests, then completes those held. */
void fake_block_release(struct fake_block *f);
/* How many requests are pending now. */
unsigned fake_block_pending(struct fake_block *f);
/* Waits up to 2 s for exactly n pending requests; true when there are. */
bool fake_block_wait_pending(struct fake_block *f, unsigned n);

#endif
