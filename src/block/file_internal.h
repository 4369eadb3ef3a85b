/* The `file` back end's state, shared by its two engines (file.c: opening,
 * synchronous operations, the thread pool; file_uring.c: io_uring). */
#ifndef BLOCK_FILE_INTERNAL_H
#define BLOCK_FILE_INTERNAL_H

#include <stdatomic.h>

#include "block/block_internal.h"
#include "common/log.h"

struct file_uring;
struct io_uring;

struct file_backend {
    struct block_backend be;
    char *name; /* the [block_dev.NAME] name */
    char *path;
    int fd;
    bool skip_flush;
    bool is_blockdev;
    enum block_file_engine engine; /* URING or THREADS once open */
    /* Set once fallocate turned out unsupported, to stop asking. */
    atomic_bool no_punch_hole;
    atomic_bool no_zero_range;
    struct log_ratelimit ratelimit; /* I/O error messages */
    struct blk_tracker tracker;
    struct blk_pool pool; /* THREADS */
    /* Writes to a regular file: one thread, because the file system takes
     * the inode lock exclusively for a buffered write, so parallel writers
     * only spin on it (measured: 8 writers made 1 MiB writes 35% slower
     * and 4 KiB writes 40% slower than one). */
    struct blk_pool write_lane;
    struct file_uring *uring; /* URING */
};

/* Performs req (checked, kind BLK_KIND_IO) with blocking system calls and
 * returns its status. */
int file_exec(struct file_backend *fb, struct block_request *req);
/* READ/WRITE of req from byte done on, looping over partial transfers. */
int file_rw_from(struct file_backend *fb, struct block_request *req, uint64_t done);
/* WRITE_ZEROES without FALLOC_FL_ZERO_RANGE when skip_zero_range. */
int file_write_zeroes(struct file_backend *fb, struct block_request *req, bool skip_zero_range);
/* Interprets the result of fallocate(PUNCH_HOLE) for a DISCARD. */
int file_discard_result(struct file_backend *fb, struct block_request *req, int err);
/* Logs (rate-limited) that req failed with errno err. */
void file_log_error(struct file_backend *fb, const struct block_request *req, int err);

/* io_uring engine. start returns 0 or a negative errno (nothing running). */
int file_uring_start(struct file_backend *fb);
void file_uring_submit(struct file_backend *fb, struct block_request *req);
void file_uring_stop(struct file_backend *fb);
/* Sets up one ring as the engine does: restricted to the opcodes it submits
 * (others complete with -EACCES). 0 or a negative errno. */
int file_uring_ring_setup(struct io_uring *ring);

#endif
