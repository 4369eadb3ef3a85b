/* The `file` back end: a regular file or a block device, used through the
 * page cache, or with direct = true (a Linux extension) opened O_DIRECT.
 *
 * Durability: a WRITE completes once the data is in the kernel (the page
 * cache), so it survives the VMM being killed; a FLUSH completes once
 * fdatasync returned, so everything written before it survives a host crash
 * too. With skip_flush, FLUSH completes at once and only the first promise
 * holds. The disk therefore reports a volatile write cache.
 *
 * Trouble with the file never stops the VMM: a failed request completes
 * with a negative errno (-EIO, -ENOSPC, ...) and a rate-limited log line
 * names the back end. A read that runs into the end of a file that shrank
 * fails with -EIO. A file that is deleted while open keeps working: the
 * descriptor holds it until the back end is destroyed (Linux semantics);
 * error messages then say that the file was deleted.
 *
 * Engines (PROPOLIS_BLOCK_ENGINE=threads|uring|hybrid; unset: hybrid):
 * - threads: a pool of `workers` threads making blocking calls (preadv,
 *   pwritev, fdatasync, fallocate);
 * - uring: `workers` io_uring rings, each with an owner thread
 *   (file_uring.c);
 * - hybrid: READs through the rings, everything else on the pool.
 * In both engines that use the pool, WRITEs to a regular file go to one
 * writer thread of their own: ext4 and xfs hold the inode lock exclusively
 * for a buffered write, so several writers only spin on it. With the guest
 * benchmark (bench/storage.c) one writer instead of eight raised 1 MiB
 * writes from ~60% to ~90% of host dd and 4 KiB writes by ~50%. Block
 * devices take no such lock and keep the pool.
 * Measured with bench/block_backend.c (2 vCPUs, page-cached ext4 file),
 * io_uring reads are much cheaper than the pool's (batched submission,
 * copies done inline), but its page-cache writes are slower: ext4 has no
 * non-blocking buffered write, so io_uring hands each write, fdatasync and
 * fallocate to its io-wq threads, one more thread hop than the pool. The
 * hybrid takes the better path for each op and matches the better engine
 * on every workload (within that host's noise); numbers in the benchmark.
 * When io_uring cannot be set up (old kernel, seccomp), the back end logs
 * that and runs on threads alone.
 *
 * O_DIRECT (direct = true, as QEMU's cache=none): the host page cache is
 * bypassed, but a completed write may still sit in the device's own cache,
 * so the disk still reports a volatile write cache and FLUSH still calls
 * fdatasync. The alignment O_DIRECT needs comes from statx (STATX_DIOALIGN)
 * where the kernel reports it, else the logical block size of the device
 * (BLKSSZGET, or the file system's device in sysfs), else 4096; the block
 * size must be a multiple of it. A READ/WRITE whose iovec addresses or
 * lengths (or offset, from a caller ignoring the block size) break it goes
 * through an aligned bounce buffer of the request's size, at most
 * FILE_BOUNCE_MAX at a time (a larger one is bounced piece by piece, so a
 * guest's huge misaligned request costs no more memory); the rest go
 * straight to guest memory. Offsets off the alignment are read-modify-write
 * of the blocks at either end, not atomic against a concurrent write to the
 * rest of those blocks; devices never send them. There is no writer
 * thread, because ext4 and xfs take the inode lock shared for an O_DIRECT
 * overwrite: the threads engine spreads O_DIRECT writes over the whole
 * pool (16-31k IOPS for 4 KiB random writes at QD 2x32, against 6.3-10k
 * with one writer), and the hybrid engine sends them to the rings with its
 * reads, where they are asynchronous in the kernel and need no thread hop:
 * bench/block_backend --direct (2 CPUs, 512 MiB ext4 file, 8 workers, 3
 * alternating rounds) made 33.9-35.7k IOPS at 5.5-7.5 us of CPU per
 * request on the rings against 22.4-30.7k at 24-39 us on the pool, and
 * 1 MiB writes 2.2-3.2 GB/s on both. */
#include "block/file_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "config/config.h"

/* " (the file has been deleted)" when it has, else "". */
static const char *deleted_note(const struct file_backend *fb)
{
    struct stat st;
    if (!fb->is_blockdev && fstat(fb->fd, &st) == 0 && st.st_nlink == 0)
        return " (the file has been deleted)";
    return "";
}

void file_log_error(struct file_backend *fb, const struct block_request *req, int err)
{
    if (req->op == BLOCK_OP_FLUSH)
        log_limited(&fb->ratelimit, LOG_ERROR, "block_dev.%s: flush of %s failed: %s%s", fb->name,
                    fb->path, strerror(err), deleted_note(fb));
    else
        log_limited(&fb->ratelimit, LOG_ERROR,
                    "block_dev.%s: %s of %" PRIu64 " bytes at offset %" PRIu64
                    " of %s failed: %s%s",
                    fb->name, block_op_name(req->op), req->len, req->offset, fb->path,
                    strerror(err), deleted_note(fb));
}

static uint64_t current_size(const struct file_backend *fb)
{
    struct stat st;
    uint64_t size = 0;
    if (fb->is_blockdev)
        ioctl(fb->fd, BLKGETSIZE64, &size);
    else if (fstat(fb->fd, &st) == 0)
        size = (uint64_t)st.st_size;
    return size;
}

/* ---- O_DIRECT bounce buffers ---- */

bool file_needs_bounce(const struct file_backend *fb, const struct block_request *req)
{
    if (!fb->direct || (req->op != BLOCK_OP_READ && req->op != BLOCK_OP_WRITE) || req->len == 0)
        return false;
    uint64_t off_mask = fb->dio_off_align - 1;
    uintptr_t mem_mask = fb->dio_mem_align - 1;
    if ((req->offset | req->len) & off_mask)
        return true;
    for (unsigned i = 0; i < req->iovcnt; i++) {
        if (((uintptr_t)req->iov[i].iov_base & mem_mask) || (req->iov[i].iov_len & off_mask))
            return true;
    }
    return false;
}

void file_bounce_free(struct file_bounce *b)
{
    if (b) {
        free(b->buf);
        free(b);
    }
}

/* Reads len aligned bytes at off into buf for a read-modify-write; past the
 * end of the file reads as zeroes (the write will extend it). */
static int read_for_rmw(struct file_backend *fb, const struct block_request *req, uint8_t *buf,
                        size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fb->fd, buf + done, len - done, (off_t)(off + done));
        if (r < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN)
                continue;
            file_log_error(fb, req, err);
            return -err;
        }
        if (r == 0) {
            memset(buf + done, 0, len - done);
            break;
        }
        done += (size_t)r;
    }
    return 0;
}

void file_bounce_range(const struct file_backend *fb, const struct block_request *req,
                       uint64_t *start, uint64_t *end)
{
    uint64_t mask = fb->dio_off_align - 1;
    *start = req->offset & ~mask;
    *end = (req->offset + req->len + mask) & ~mask; /* checked: within the disk */
}

struct file_bounce *file_bounce_prepare(struct file_backend *fb, struct block_request *req,
                                        uint64_t start, uint64_t end, int *status)
{
    uint64_t align = fb->dio_off_align, mask = align - 1;
    struct file_bounce *b = calloc(1, sizeof(*b));
    size_t buf_align = fb->dio_mem_align > align ? fb->dio_mem_align : (size_t)align;
    if (buf_align < sizeof(void *)) /* posix_memalign's least */
        buf_align = sizeof(void *);
    if (!b || posix_memalign(&b->buf, buf_align, (size_t)(end - start)) != 0) {
        free(b);
        log_limited(&fb->ratelimit, LOG_ERROR,
                    "block_dev.%s: no memory for a %" PRIu64 "-byte O_DIRECT bounce buffer",
                    fb->name, end - start);
        *status = -ENOMEM;
        return NULL;
    }
    b->start = start;
    b->len = (size_t)(end - start);
    b->iov = (struct iovec){b->buf, b->len};
    if (req->op == BLOCK_OP_WRITE) {
        /* The request's bytes in this range; blocks it covers only in
         * part keep their other bytes. */
        uint64_t lo = req->offset > start ? req->offset : start;
        uint64_t hi = req->offset + req->len < end ? req->offset + req->len : end;
        uint64_t head = lo & ~mask, tail = hi & ~mask;
        uint8_t *buf = b->buf;
        int rc = 0;
        if (lo & mask)
            rc = read_for_rmw(fb, req, buf + (head - start), (size_t)align, head);
        if (rc == 0 && (hi & mask) && !((lo & mask) && tail == head))
            rc = read_for_rmw(fb, req, buf + (tail - start), (size_t)align, tail);
        if (rc < 0) {
            file_bounce_free(b);
            *status = rc;
            return NULL;
        }
        blk_iov_copy(req, lo - req->offset, buf + (lo - start), hi - lo, false);
    }
    return b;
}

void file_bounce_copy_out(const struct block_request *req, const struct file_bounce *b)
{
    uint64_t end = b->start + b->len;
    uint64_t lo = req->offset > b->start ? req->offset : b->start;
    uint64_t hi = req->offset + req->len < end ? req->offset + req->len : end;
    blk_iov_copy(req, lo - req->offset, (uint8_t *)b->buf + (lo - b->start), hi - lo, true);
}

/* A READ/WRITE through bounce buffers of at most FILE_BOUNCE_MAX bytes
 * each, with blocking calls. */
static int bounce_rw(struct file_backend *fb, struct block_request *req)
{
    uint64_t start, end;
    file_bounce_range(fb, req, &start, &end);
    uint64_t chunk = fb->dio_off_align > FILE_BOUNCE_MAX ? fb->dio_off_align : FILE_BOUNCE_MAX;
    for (uint64_t pos = start; pos < end; pos += chunk) {
        int status;
        uint64_t stop = end - pos > chunk ? pos + chunk : end;
        struct file_bounce *b = file_bounce_prepare(fb, req, pos, stop, &status);
        if (!b)
            return status;
        struct block_request part = *req;
        part.offset = b->start;
        part.len = b->len;
        part.iov = &b->iov;
        part.iovcnt = 1;
        status = file_rw_from(fb, &part, 0);
        if (status == 0 && req->op == BLOCK_OP_READ)
            file_bounce_copy_out(req, b);
        file_bounce_free(b);
        if (status < 0)
            return status;
    }
    return 0;
}

int file_rw_from(struct file_backend *fb, struct block_request *req, uint64_t done)
{
    bool write = req->op == BLOCK_OP_WRITE;
    struct iovec iov[BLK_IOV_BATCH];
    while (done < req->len) {
        const struct iovec *v = req->iov;
        unsigned n = req->iovcnt;
        if (done > 0 || n > BLK_IOV_BATCH) {
            n = blk_iov_slice(req, done, iov, BLK_IOV_BATCH);
            v = iov;
        }
        off_t off = (off_t)(req->offset + done);
        ssize_t r = write ? pwritev(fb->fd, v, (int)n, off) : preadv(fb->fd, v, (int)n, off);
        if (r < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN)
                continue;
            file_log_error(fb, req, err);
            return -err;
        }
        if (r == 0) {
            if (write) {
                log_limited(&fb->ratelimit, LOG_ERROR,
                            "block_dev.%s: write at offset %" PRIu64 " of %s made no progress",
                            fb->name, req->offset + done, fb->path);
            } else {
                log_limited(&fb->ratelimit, LOG_ERROR,
                            "block_dev.%s: read of %" PRIu64 " bytes at offset %" PRIu64
                            " ran past the end of %s: the file shrank to %" PRIu64
                            " bytes (the disk has %" PRIu64 ")%s",
                            fb->name, req->len, req->offset, fb->path, current_size(fb),
                            fb->be.info.size, deleted_note(fb));
            }
            return -EIO;
        }
        done += (uint64_t)r;
    }
    return 0;
}

static bool unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOSYS || err == ENOTTY;
}

int file_discard_result(struct file_backend *fb, struct block_request *req, int err)
{
    if (err == 0)
        return 0;
    if (unsupported(err)) {
        /* Discard is advisory: the blocks simply stay allocated. */
        if (!atomic_exchange(&fb->no_punch_hole, true))
            log_info("block_dev.%s: %s cannot punch holes (%s); discards are ignored", fb->name,
                     fb->path, strerror(err));
        return 0;
    }
    file_log_error(fb, req, err);
    return -err;
}

/* O_DIRECT: zeroes written in 64 KiB writes, each aligned or bounced. */
static int write_zero_bytes_direct(struct file_backend *fb, struct block_request *req,
                                   const uint8_t *zeroes, size_t zeroes_len)
{
    for (uint64_t done = 0; done < req->len;) {
        uint64_t left = req->len - done;
        struct iovec iov = {(void *)zeroes, left < zeroes_len ? (size_t)left : zeroes_len};
        struct block_request part = *req;
        part.op = BLOCK_OP_WRITE;
        part.offset = req->offset + done;
        part.len = iov.iov_len;
        part.iov = &iov;
        part.iovcnt = 1;
        int rc = file_needs_bounce(fb, &part) ? bounce_rw(fb, &part) : file_rw_from(fb, &part, 0);
        if (rc < 0)
            return rc;
        done += iov.iov_len;
    }
    return 0;
}

static int write_zero_bytes(struct file_backend *fb, struct block_request *req)
{
    /* Page-aligned so O_DIRECT can write from it as it is. */
    static _Alignas(4096) uint8_t zeroes[64 * 1024];
    if (fb->direct)
        return write_zero_bytes_direct(fb, req, zeroes, sizeof(zeroes));
    struct iovec iov[16];
    uint64_t done = 0;
    while (done < req->len) {
        uint64_t left = req->len - done;
        unsigned n = 0;
        for (uint64_t covered = 0; n < 16 && covered < left; n++) {
            size_t chunk =
                left - covered < sizeof(zeroes) ? (size_t)(left - covered) : sizeof(zeroes);
            iov[n] = (struct iovec){zeroes, chunk};
            covered += chunk;
        }
        ssize_t r = pwritev(fb->fd, iov, (int)n, (off_t)(req->offset + done));
        if (r < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN)
                continue;
            file_log_error(fb, req, err);
            return -err;
        }
        if (r == 0) {
            file_log_error(fb, req, EIO);
            return -EIO;
        }
        done += (uint64_t)r;
    }
    return 0;
}

int file_write_zeroes(struct file_backend *fb, struct block_request *req, bool skip_zero_range)
{
    off_t off = (off_t)req->offset, len = (off_t)req->len;
    if (!skip_zero_range && !atomic_load(&fb->no_zero_range)) {
        if (fallocate(fb->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
            return 0;
        int err = errno;
        if (unsupported(err))
            atomic_store(&fb->no_zero_range, true);
        else if (err != ENOSPC) { /* ENOSPC: punching a hole needs no space */
            file_log_error(fb, req, err);
            return -err;
        }
    }
    if (!atomic_load(&fb->no_punch_hole)) {
        if (fallocate(fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
            return 0;
        int err = errno;
        if (!unsupported(err)) {
            file_log_error(fb, req, err);
            return -err;
        }
        atomic_store(&fb->no_punch_hole, true);
    }
    return write_zero_bytes(fb, req);
}

int file_exec(struct file_backend *fb, struct block_request *req)
{
    switch (req->op) {
    case BLOCK_OP_READ:
    case BLOCK_OP_WRITE:
        if (file_needs_bounce(fb, req))
            return bounce_rw(fb, req);
        return file_rw_from(fb, req, 0);
    case BLOCK_OP_FLUSH:
        if (fdatasync(fb->fd) != 0) {
            int err = errno;
            file_log_error(fb, req, err);
            return -err;
        }
        return 0;
    case BLOCK_OP_DISCARD:
        if (req->len == 0 || atomic_load(&fb->no_punch_hole))
            return 0;
        return file_discard_result(fb, req,
                                   fallocate(fb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                             (off_t)req->offset, (off_t)req->len) == 0
                                       ? 0
                                       : errno);
    case BLOCK_OP_WRITE_ZEROES:
        if (req->len == 0)
            return 0;
        return file_write_zeroes(fb, req, false);
    }
    return -EOPNOTSUPP;
}

static int pool_run(void *ctx, struct block_request *req)
{
    return file_exec(ctx, req);
}

/* ---- the back-end interface ---- */

/* Requests go to the rings (io_uring) or to the thread pool. */
static bool to_rings(const struct file_backend *fb, const struct block_request *req)
{
    switch (fb->engine) {
    case BLOCK_FILE_ENGINE_URING:
        return true;
    case BLOCK_FILE_ENGINE_HYBRID:
        return (req->op == BLOCK_OP_READ || (fb->direct && req->op == BLOCK_OP_WRITE)) &&
               blk_kind(req) == BLK_KIND_IO;
    default:
        return false;
    }
}

static int file_submit(struct block_backend *be, struct block_request *req)
{
    struct file_backend *fb = (struct file_backend *)be;
    int rc = blk_check_request(be, req);
    if (rc == 0 && req->op == BLOCK_OP_FLUSH && (fb->skip_flush || be->info.read_only))
        blk_set_kind(req, BLK_KIND_STATUS, 0);
    else
        blk_set_kind(req, rc ? BLK_KIND_STATUS : BLK_KIND_IO, rc);
    blk_tracker_begin(&fb->tracker);
    if (to_rings(fb, req))
        file_uring_submit(fb, req);
    else if (fb->write_lane.threads && req->op == BLOCK_OP_WRITE && blk_kind(req) == BLK_KIND_IO)
        blk_pool_submit(&fb->write_lane, req);
    else
        blk_pool_submit(&fb->pool, req);
    return 0;
}

static void file_drain(struct block_backend *be)
{
    struct file_backend *fb = (struct file_backend *)be;
    blk_tracker_drain(&fb->tracker);
}

static void file_free(struct file_backend *fb)
{
    if (fb->fd >= 0)
        close(fb->fd);
    free(fb->name);
    free(fb->path);
    free(fb);
}

static void file_destroy(struct block_backend *be)
{
    struct file_backend *fb = (struct file_backend *)be;
    blk_tracker_drain(&fb->tracker);
    if (fb->uring)
        file_uring_stop(fb);
    if (fb->pool.threads)
        blk_pool_stop(&fb->pool);
    if (fb->write_lane.threads)
        blk_pool_stop(&fb->write_lane);
    blk_tracker_destroy(&fb->tracker);
    file_free(fb);
}

static const struct block_backend_ops file_ops = {
    .submit = file_submit,
    .drain = file_drain,
    .destroy = file_destroy,
};

static const char *engine_name(enum block_file_engine engine)
{
    switch (engine) {
    case BLOCK_FILE_ENGINE_URING:
        return "uring";
    case BLOCK_FILE_ENGINE_HYBRID:
        return "hybrid";
    default:
        return "threads";
    }
}

const char *block_file_engine_name(const struct block_backend *be)
{
    return engine_name(((const struct file_backend *)be)->engine);
}

void block_file_test_no_fallocate(struct block_backend *be)
{
    struct file_backend *fb = (struct file_backend *)be;
    atomic_store(&fb->no_punch_hole, true);
    atomic_store(&fb->no_zero_range, true);
}

static bool is_pow2(uint64_t x)
{
    return x && (x & (x - 1)) == 0;
}

/* The logical block size sysfs gives for the block device dev (a whole
 * disk, or a partition whose disk's queue tells), or 0. */
static uint32_t sysfs_logical_block_size(dev_t dev)
{
    static const char *const forms[] = {"/sys/dev/block/%u:%u/queue/logical_block_size",
                                        "/sys/dev/block/%u:%u/../queue/logical_block_size"};
    for (unsigned i = 0; i < 2; i++) {
        char path[96];
        snprintf(path, sizeof(path), forms[i], major(dev), minor(dev));
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        unsigned size = 0;
        int n = fscanf(f, "%u", &size);
        fclose(f);
        if (n == 1 && size)
            return size;
    }
    return 0;
}

/* Learns the alignments O_DIRECT needs on fb->fd; returns where they came
 * from, for the log. */
static const char *learn_dio_alignment(struct file_backend *fb, const struct stat *st)
{
    uint32_t mem = 0, off = 0;
    const char *source = "from statx";
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fb->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN)) {
        mem = sx.stx_dio_mem_align;
        off = sx.stx_dio_offset_align;
    }
#endif
    if (!is_pow2(off)) {
        int ssz = 0;
        mem = 0;
        off = 0;
        if (fb->is_blockdev) {
            source = "from BLKSSZGET";
            if (ioctl(fb->fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
                off = (uint32_t)ssz;
        } else {
            source = "from the file system's device";
            off = sysfs_logical_block_size(st->st_dev);
        }
        if (!is_pow2(off)) {
            source = "assumed: not reported";
            off = 4096;
        }
    }
    fb->dio_off_align = off;
    fb->dio_mem_align = is_pow2(mem) ? mem : off;
    return source;
}

/* Linux has no raw (character) disk nodes as illumos does; the closest
 * thing to propolis' "standard device rather than raw" warning is a block
 * device that is only part of a disk: a partition. */
static void warn_if_not_raw(const struct config_block_dev *cfg, const struct stat *st)
{
    char sys[96];
    snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/partition", major(st->st_rdev),
             minor(st->st_rdev));
    if (access(sys, F_OK) == 0)
        log_warn("block_dev.%s: %s is a partition rather than a raw (whole) disk device; using it "
                 "anyway",
                 cfg->name, cfg->file.path);
}

static enum block_file_engine pick_engine(const struct config_block_dev *cfg,
                                          enum block_file_engine engine)
{
    if (engine != BLOCK_FILE_ENGINE_DEFAULT)
        return engine;
    const char *env = getenv("PROPOLIS_BLOCK_ENGINE");
    if (!env || !*env)
        return BLOCK_FILE_ENGINE_BUILTIN;
    if (strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0)
        return BLOCK_FILE_ENGINE_URING;
    if (strcmp(env, "threads") == 0)
        return BLOCK_FILE_ENGINE_THREADS;
    if (strcmp(env, "hybrid") == 0)
        return BLOCK_FILE_ENGINE_HYBRID;
    log_warn("block_dev.%s: PROPOLIS_BLOCK_ENGINE=\"%s\" is not \"threads\", \"uring\" or "
             "\"hybrid\"; using the default",
             cfg->name, env);
    return BLOCK_FILE_ENGINE_BUILTIN;
}

struct block_backend *block_file_open(const struct config_block_dev *cfg,
                                      enum block_file_engine engine)
{
    const char *name = cfg->name, *path = cfg->file.path;
    uint32_t bs = config_block_size(cfg);
    if (bs < 512 || (bs & (bs - 1)) != 0) {
        log_error("block_dev.%s: block size %" PRIu32 " is not a power of two of at least 512",
                  name, bs);
        return NULL;
    }
    if (!path || !*path) {
        log_error("block_dev.%s: no path given", name);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        blk_config_error(cfg, "path", cfg->file.path_pos, "cannot open %s: %s", path,
                         strerror(errno));
        return NULL;
    }
    /* As propolis: without read_only, a file nobody may write opens
     * read-only; read_only = false on such a file is an error. */
    bool no_write_bits = (st.st_mode & 0222) == 0;
    if (cfg->has_read_only && !cfg->read_only && no_write_bits) {
        blk_config_error(cfg, "path", cfg->file.path_pos,
                         "%s is not writable (mode %03o) but read_only = false", path,
                         (unsigned)(st.st_mode & 0777));
        return NULL;
    }
    bool read_only = cfg->has_read_only ? cfg->read_only : no_write_bits;

    struct file_backend *fb = calloc(1, sizeof(*fb));
    if (!fb || !(fb->name = strdup(name)) || !(fb->path = strdup(path))) {
        log_error("block_dev.%s: out of memory", name);
        if (fb) {
            fb->fd = -1;
            file_free(fb);
        }
        return NULL;
    }
    fb->direct = cfg->type == CONFIG_BLOCK_FILE && cfg->file.direct;
    fb->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (fb->direct ? O_DIRECT : 0));
    if (fb->fd < 0 && fb->direct && errno == EINVAL) {
        /* The file system (tmpfs before Linux 6.6, ramfs, some FUSE) has no
         * direct I/O: open refuses O_DIRECT. */
        blk_config_error(cfg, "direct", cfg->file.direct_pos,
                         "the file system holding %s does not support O_DIRECT (open: %s); use "
                         "direct = false or put the disk on another file system",
                         path, strerror(errno));
        file_free(fb);
        return NULL;
    }
    if (fb->fd < 0) {
        blk_config_error(cfg, "path", cfg->file.path_pos, "cannot open %s%s%s: %s", path,
                         read_only ? " read-only" : " for reading and writing",
                         fb->direct ? " with O_DIRECT" : "", strerror(errno));
        file_free(fb);
        return NULL;
    }
    uint64_t size;
    if (fstat(fb->fd, &st) != 0) {
        blk_config_error(cfg, "path", cfg->file.path_pos, "cannot stat %s: %s", path,
                         strerror(errno));
        file_free(fb);
        return NULL;
    }
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        fb->is_blockdev = true;
        if (ioctl(fb->fd, BLKGETSIZE64, &size) != 0) {
            blk_config_error(cfg, "path", cfg->file.path_pos,
                             "cannot get the size of block device %s: %s", path, strerror(errno));
            file_free(fb);
            return NULL;
        }
        warn_if_not_raw(cfg, &st);
    } else {
        blk_config_error(cfg, "path", cfg->file.path_pos,
                         "%s is not a regular file or block device", path);
        file_free(fb);
        return NULL;
    }
    if (size == 0) {
        blk_config_error(cfg, "path", cfg->file.path_pos, "%s is empty", path);
        file_free(fb);
        return NULL;
    }
    if (size % bs != 0) {
        blk_config_error(cfg, "path", cfg->file.path_pos,
                         "the size of %s (%" PRIu64
                         " bytes) is not a multiple of the block size (%" PRIu32 ")",
                         path, size, bs);
        file_free(fb);
        return NULL;
    }

    const char *align_source = NULL;
    if (fb->direct) {
        align_source = learn_dio_alignment(fb, &st);
        if (bs % fb->dio_off_align != 0) {
            blk_config_error(cfg, "direct", cfg->file.direct_pos,
                             "O_DIRECT on %s needs offsets aligned to %" PRIu32
                             " bytes (%s), more than the block size (%" PRIu32
                             "); set block_size = %" PRIu32 " or use direct = false",
                             path, fb->dio_off_align, align_source, bs, fb->dio_off_align);
            file_free(fb);
            return NULL;
        }
    }

    fb->skip_flush = cfg->skip_flush;
    atomic_init(&fb->no_punch_hole, false);
    atomic_init(&fb->no_zero_range, false);
    fb->be.ops = &file_ops;
    fb->be.name = fb->name;
    fb->be.info = (struct block_info){
        .size = size,
        .block_size = bs,
        .read_only = read_only,
        .can_discard = !read_only,
        .can_write_zeroes = !read_only,
        .volatile_cache = true,
        .workers = cfg->file.workers ? cfg->file.workers : 8,
    };
    blk_tracker_init(&fb->tracker);

    fb->engine = pick_engine(cfg, engine);
    if (fb->engine != BLOCK_FILE_ENGINE_THREADS) {
        int rc = file_uring_start(fb);
        if (rc < 0) {
            log_info("block_dev.%s: io_uring is unavailable (%s); using worker threads", name,
                     strerror(-rc));
            fb->engine = BLOCK_FILE_ENGINE_THREADS;
        }
    }
    if (fb->engine != BLOCK_FILE_ENGINE_URING) {
        int rc =
            blk_pool_start(&fb->pool, fb->be.info.workers, "blk-file", pool_run, fb, &fb->tracker);
        if (rc < 0) {
            log_error("block_dev.%s: cannot start worker threads: %s", name, strerror(-rc));
            if (fb->uring)
                file_uring_stop(fb);
            blk_tracker_destroy(&fb->tracker);
            file_free(fb);
            return NULL;
        }
    }
    if (fb->engine != BLOCK_FILE_ENGINE_URING && !fb->is_blockdev && !read_only && !fb->direct &&
        fb->be.info.workers > 1) {
        int rc = blk_pool_start(&fb->write_lane, 1, "blk-write", pool_run, fb, &fb->tracker);
        if (rc < 0) /* the pool serves writes too */
            log_warn("block_dev.%s: cannot start the writer thread: %s", name, strerror(-rc));
    }
    char direct_note[128] = "";
    if (fb->direct)
        snprintf(direct_note, sizeof(direct_note),
                 ", O_DIRECT (alignment: memory %" PRIu32 ", offset %" PRIu32 ", %s)",
                 fb->dio_mem_align, fb->dio_off_align, align_source);
    log_info("block_dev.%s: %s %s, %" PRIu64 " bytes, block size %" PRIu32
             "%s%s%s, %u workers (%s)",
             name, fb->is_blockdev ? "block device" : "file", path, size, bs,
             read_only ? ", read-only" : "", fb->skip_flush ? ", flushes skipped" : "", direct_note,
             fb->be.info.workers, engine_name(fb->engine));
    return &fb->be;
}
