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
    /* O_DIRECT (direct = true): requests whose file offset, length or
     * iovecs break these alignments (powers of two) go through a bounce
     * buffer; the rest reach guest memory with no copy. */
    bool direct;
    uint32_t dio_mem_align;        /* of each iovec's address */
    uint32_t dio_off_align;        /* of the offset, the length and each iovec's length */
    enum block_file_engine engine; /* URING or THREADS once open */
    /* Set once fallocate turned out unsupported, to stop asking. */
    atomic_bool no_punch_hole;
    atomic_bool no_zero_range;
    struct log_ratelimit ratelimit; /* I/O error messages */
    struct blk_tracker tracker;
    struct blk_pool pool; /* THREADS */
    /* Buffered writes to a regular file: one thread, because the file
     * system takes the inode lock exclusively for a buffered write, so
     * parallel writers only spin on it (measured: 8 writers made 1 MiB
     * writes 35% slower and 4 KiB writes 40% slower than one). Not started
     * for O_DIRECT (see file.c). */
    struct blk_pool write_lane;
    struct file_uring *uring; /* URING */
};

/* backend_private word holding a READ/WRITE's bounce buffer (struct
 * file_bounce *) while the io_uring engine has it in flight. */
enum { FILE_PRIV_BOUNCE = 3 };

/* An aligned copy of (part of) a request's range for O_DIRECT: file bytes
 * [start, start + len) at buf; iov covers all len bytes. */
struct file_bounce {
    void *buf;
    uint64_t start; /* a multiple of dio_off_align */
    size_t len;     /* a multiple of dio_off_align, at most FILE_BOUNCE_MAX (or one alignment) */
    struct iovec iov;
};

/* The largest bounce buffer: bigger requests are bounced piece by piece,
 * synchronously. */
#define FILE_BOUNCE_MAX (1024 * 1024)

/* True when req (READ/WRITE on a direct back end) cannot go to the file as
 * it is and needs a bounce buffer. */
bool file_needs_bounce(const struct file_backend *fb, const struct block_request *req);
/* req's range rounded out to dio_off_align. */
void file_bounce_range(const struct file_backend *fb, const struct block_request *req,
                       uint64_t *start, uint64_t *end);
/* Allocates a bounce buffer for [start, end) (aligned, inside
 * file_bounce_range); for a WRITE copies req's bytes of that range in,
 * first reading the blocks they cover only in part. NULL with *status
 * (-ENOMEM, or the read's error) on failure. */
struct file_bounce *file_bounce_prepare(struct file_backend *fb, struct block_request *req,
                                        uint64_t start, uint64_t end, int *status);
/* After the bounce buffer's READ transferred everything: copies req's
 * bytes of its range out to req's iovecs. */
void file_bounce_copy_out(const struct block_request *req, const struct file_bounce *b);
void file_bounce_free(struct file_bounce *b);

/* Performs req (checked, kind BLK_KIND_IO) with blocking system calls and
 * returns its status. */
int file_exec(struct file_backend *fb, struct block_request *req);
/* READ/WRITE of req from byte done on, looping over partial transfers.
 * No bounce buffer: the caller checked file_needs_bounce. */
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
