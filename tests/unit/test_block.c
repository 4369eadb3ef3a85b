/* Block back ends: the file back end on its engines (io_uring, threads,
 * hybrid), each also with O_DIRECT (direct = true), and mem-async. Round trips through scattered
 * iovecs, many requests from several threads, flush, discard and write-zeroes, read-only disks, a
 * file that shrinks, runs out of space (a 1 MiB tmpfs) or is deleted, a block device (a loop
 * device, a partition of one), data surviving SIGKILL, bad sizes at open, out-of-range requests,
 * drain, and the fall back to threads when io_uring is forbidden (seccomp). O_DIRECT: the
 * descriptor's flags, aligned requests without a copy and misaligned ones (address, piece length,
 * offset) through the bounce buffer, and file systems that refuse it (ramfs, older tmpfs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stderr_capture.h"
#include "support/block_req.h"
#include "support/prereq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/blkpg.h>
#include <linux/filter.h>
#include <linux/loop.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/block.h"
#include "block/block_internal.h"
#include "block/file_internal.h"
#include "common/sandbox.h"
#include "common/log.h"
#include "config/config.h"

/* The file engines, each also with direct = true (O_DIRECT), and mem-async. */
enum kind {
    FILE_URING,
    FILE_THREADS,
    FILE_HYBRID,
    MEM,
    DIRECT_URING,
    DIRECT_THREADS,
    DIRECT_HYBRID
};

static const enum kind kind_uring = FILE_URING, kind_threads = FILE_THREADS,
                       kind_hybrid = FILE_HYBRID, kind_mem = MEM, kind_direct_uring = DIRECT_URING,
                       kind_direct_threads = DIRECT_THREADS, kind_direct_hybrid = DIRECT_HYBRID;

static bool is_direct(enum kind kind)
{
    return kind >= DIRECT_URING;
}

static char tmpdir[64];

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_block.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    return rmdir(tmpdir);
}

/* ---- fixtures ---- */

struct disk {
    enum kind kind;
    char path[128];
    struct block_backend *be;
};

static struct config_block_dev file_cfg(const char *path, unsigned workers)
{
    struct config_block_dev c;
    memset(&c, 0, sizeof(c));
    c.name = (char *)"t0";
    c.type = CONFIG_BLOCK_FILE;
    c.file.path = (char *)path;
    c.file.workers = workers;
    return c;
}

static struct config_block_dev mem_cfg(uint64_t size, unsigned workers)
{
    struct config_block_dev c;
    memset(&c, 0, sizeof(c));
    c.name = (char *)"t0";
    c.type = CONFIG_BLOCK_MEM_ASYNC;
    c.mem_async.size = size;
    c.mem_async.workers = workers;
    return c;
}

static struct block_backend *open_kind(enum kind kind, struct config_block_dev *cfg)
{
    if (kind == MEM)
        return block_backend_open(cfg);
    static const enum block_file_engine engines[] = {
        [FILE_URING] = BLOCK_FILE_ENGINE_URING,       [FILE_THREADS] = BLOCK_FILE_ENGINE_THREADS,
        [FILE_HYBRID] = BLOCK_FILE_ENGINE_HYBRID,     [DIRECT_URING] = BLOCK_FILE_ENGINE_URING,
        [DIRECT_THREADS] = BLOCK_FILE_ENGINE_THREADS, [DIRECT_HYBRID] = BLOCK_FILE_ENGINE_HYBRID,
    };
    cfg->file.direct = is_direct(kind);
    return block_file_open(cfg, engines[kind]);
}

/* Opens a fresh zeroed disk of size bytes; cfg may set options. */
static void disk_open_cfg(struct disk *d, enum kind kind, uint64_t size,
                          struct config_block_dev *opts)
{
    static unsigned counter;
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    struct config_block_dev cfg;
    if (kind == MEM) {
        cfg = mem_cfg(size, 4);
    } else {
        snprintf(d->path, sizeof(d->path), "%s/disk%u", tmpdir, counter++);
        block_test_file(d->path, size);
        cfg = file_cfg(d->path, 4);
    }
    if (opts) {
        cfg.has_block_size = opts->has_block_size;
        cfg.block_size = opts->block_size;
        cfg.has_read_only = opts->has_read_only;
        cfg.read_only = opts->read_only;
        cfg.has_skip_flush = opts->has_skip_flush;
        cfg.skip_flush = opts->skip_flush;
    }
    d->be = open_kind(kind, &cfg);
    assert_non_null(d->be);
    assert_int_equal(d->be->info.size, size);
    static const char *const names[] = {
        [FILE_URING] = "uring",   [FILE_THREADS] = "threads",   [FILE_HYBRID] = "hybrid",
        [DIRECT_URING] = "uring", [DIRECT_THREADS] = "threads", [DIRECT_HYBRID] = "hybrid"};
    if (kind != MEM)
        assert_string_equal(block_file_engine_name(d->be), names[kind]);
}

static void disk_open(struct disk *d, enum kind kind, uint64_t size)
{
    disk_open_cfg(d, kind, size, NULL);
}

static void disk_close(struct disk *d)
{
    block_backend_destroy(d->be);
    if (d->path[0])
        unlink(d->path);
}

static uint8_t pattern(uint64_t pos, unsigned seed)
{
    return (uint8_t)((pos * 2654435761u) >> 13) ^ (uint8_t)(seed * 37 + 1);
}

static void fill(uint8_t *buf, uint64_t len, uint64_t pos, unsigned seed)
{
    for (uint64_t i = 0; i < len; i++)
        buf[i] = pattern(pos + i, seed);
}

static bool all_zero(const uint8_t *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (buf[i])
            return false;
    return true;
}

/* ---- round trips ---- */

static void test_roundtrip(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);

    /* Scattered, unevenly sized pieces (multiples of 512 in total). */
    static const size_t lens[] = {512, 1536, 4096, 100, 412, 8192, 3584, 1};
    size_t total = 0;
    for (unsigned i = 0; i < 8; i++)
        total += lens[i];
    total += 511; /* pad the last piece */
    uint8_t *src = malloc(total), *dst = malloc(total);
    assert_non_null(src);
    assert_non_null(dst);
    uint64_t off = 1234 * 512;
    fill(src, total, off, 1);
    struct iovec iov[8];
    size_t pos = 0;
    for (unsigned i = 0; i < 8; i++) {
        size_t l = i == 7 ? lens[i] + 511 : lens[i];
        iov[i] = (struct iovec){src + pos, l};
        pos += l;
    }
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE, off, total, iov, 8), 0);

    /* Read back through a different scatter. */
    memset(dst, 0xee, total);
    struct iovec riov[3] = {{dst, 1000}, {dst + 1000, 24}, {dst + 1024, total - 1024}};
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_READ, off, total, riov, 3), 0);
    assert_memory_equal(src, dst, total);

    /* Neighbours untouched. */
    uint8_t edge[512];
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, off - 512, edge, 512), 0);
    assert_true(all_zero(edge, 512));
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, off + total, edge, 512), 0);
    assert_true(all_zero(edge, 512));

    /* The file holds the data. */
    if (kind != MEM) {
        int fd = open(d.path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        memset(dst, 0, total);
        assert_int_equal(pread(fd, dst, total, (off_t)off), (ssize_t)total);
        assert_memory_equal(src, dst, total);
        close(fd);
    }

    /* A zero-length read and the last block of the disk. */
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_READ, 0, 0, NULL, 0), 0);
    fill(src, 512, (1 << 20) - 512, 2);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, (1 << 20) - 512, src, 512), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, (1 << 20) - 512, dst, 512), 0);
    assert_memory_equal(src, dst, 512);

    free(src);
    free(dst);
    disk_close(&d);
}

/* More iovecs than one preadv takes (IOV_MAX is 1024). */
static void test_many_iovecs(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 4 << 20);
    enum { N = 2500 };
    uint8_t *src = malloc(N * 512), *dst = malloc(N * 512);
    struct iovec *iov = calloc(N, sizeof(*iov));
    assert_non_null(src);
    assert_non_null(dst);
    assert_non_null(iov);
    fill(src, N * 512, 4096, 3);
    for (unsigned i = 0; i < N; i++)
        iov[i] = (struct iovec){src + (size_t)i * 512, 512};
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE, 4096, N * 512, iov, N), 0);
    for (unsigned i = 0; i < N; i++)
        iov[i] = (struct iovec){dst + (size_t)i * 512, 512};
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_READ, 4096, N * 512, iov, N), 0);
    assert_memory_equal(src, dst, N * 512);
    free(src);
    free(dst);
    free(iov);
    disk_close(&d);
}

/* ---- concurrency ---- */

#define CONC_THREADS 4
#define CONC_SLOTS 8
#define CONC_SLOT_BYTES (32 * 1024)
#define CONC_OPS 400

struct conc_slot {
    struct block_request req;
    struct iovec iov[4];
    uint8_t buf[CONC_SLOT_BYTES];
    bool busy, is_read;
    uint64_t off, len;
};

struct conc_thread {
    struct block_backend *be;
    unsigned index;
    uint64_t base; /* this thread's region */
    uint8_t *shadow;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned completed;
    int first_error;
    struct conc_slot slots[CONC_SLOTS];
    unsigned rng;
    unsigned mismatches;
};

static void conc_complete(struct block_request *req, int status)
{
    struct conc_thread *t = req->opaque;
    pthread_mutex_lock(&t->lock);
    for (unsigned s = 0; s < CONC_SLOTS; s++) {
        if (&t->slots[s].req == req)
            t->slots[s].busy = false;
    }
    if (status && !t->first_error)
        t->first_error = status;
    t->completed++;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static unsigned rnd(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 16;
}

/* Each slot owns its own 32 KiB of the thread's region, so requests in
 * flight never overlap and a shadow copy predicts every read. */
static void *conc_main(void *arg)
{
    struct conc_thread *t = arg;
    unsigned submitted = 0;
    pthread_mutex_lock(&t->lock);
    while (t->completed < CONC_OPS) {
        for (unsigned s = 0; s < CONC_SLOTS && submitted < CONC_OPS; s++) {
            struct conc_slot *sl = &t->slots[s];
            if (sl->busy)
                continue;
            /* Check the read that just finished in this slot. */
            if (sl->is_read && sl->len) {
                uint64_t rel = sl->off - t->base;
                if (memcmp(sl->buf, t->shadow + rel, sl->len) != 0)
                    t->mismatches++;
                sl->len = 0;
            }
            uint64_t nblocks = 1 + rnd(&t->rng) % 64;
            uint64_t first = rnd(&t->rng) % (64 - nblocks + 1);
            sl->off = t->base + (uint64_t)s * CONC_SLOT_BYTES + first * 512;
            sl->len = nblocks * 512;
            sl->is_read = rnd(&t->rng) % 2;
            uint64_t rel = sl->off - t->base;
            if (!sl->is_read) {
                fill(sl->buf, sl->len, sl->off, submitted + t->index * 1000);
                memcpy(t->shadow + rel, sl->buf, sl->len);
            }
            /* Split into up to 4 pieces. */
            unsigned n = 1 + rnd(&t->rng) % 4;
            if (n > nblocks)
                n = (unsigned)nblocks;
            uint64_t per = nblocks / n * 512, pos = 0;
            for (unsigned i = 0; i < n; i++) {
                uint64_t l = i == n - 1 ? sl->len - pos : per;
                sl->iov[i] = (struct iovec){sl->buf + pos, l};
                pos += l;
            }
            sl->req = (struct block_request){
                .op = sl->is_read ? BLOCK_OP_READ : BLOCK_OP_WRITE,
                .offset = sl->off,
                .len = sl->len,
                .iov = sl->iov,
                .iovcnt = n,
                .complete = conc_complete,
                .opaque = t,
            };
            sl->busy = true;
            submitted++;
            pthread_mutex_unlock(&t->lock);
            int rc = block_submit(t->be, &sl->req);
            pthread_mutex_lock(&t->lock);
            if (rc != 0 && !t->first_error)
                t->first_error = rc;
        }
        /* Sleep only when there is nothing to submit: a slot may have freed
         * up behind the loop above. */
        bool slot_free = false;
        for (unsigned s = 0; s < CONC_SLOTS; s++)
            slot_free |= !t->slots[s].busy;
        if (t->completed < CONC_OPS && (submitted == CONC_OPS || !slot_free))
            pthread_cond_wait(&t->cond, &t->lock);
    }
    for (unsigned s = 0; s < CONC_SLOTS; s++) {
        struct conc_slot *sl = &t->slots[s];
        if (sl->is_read && sl->len && memcmp(sl->buf, t->shadow + (sl->off - t->base), sl->len))
            t->mismatches++;
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static void test_concurrency(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    const uint64_t region = (uint64_t)CONC_SLOTS * CONC_SLOT_BYTES;
    struct disk d;
    disk_open(&d, kind, region * CONC_THREADS);
    struct conc_thread *t = calloc(CONC_THREADS, sizeof(*t));
    assert_non_null(t);
    pthread_t th[CONC_THREADS];
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        t[i].be = d.be;
        t[i].index = i;
        t[i].base = region * i;
        t[i].shadow = calloc(1, region);
        t[i].rng = 42 + i;
        pthread_mutex_init(&t[i].lock, NULL);
        pthread_cond_init(&t[i].cond, NULL);
        assert_int_equal(pthread_create(&th[i], NULL, conc_main, &t[i]), 0);
    }
    for (unsigned i = 0; i < CONC_THREADS; i++)
        pthread_join(th[i], NULL);
    uint8_t *buf = malloc(region);
    for (unsigned i = 0; i < CONC_THREADS; i++) {
        assert_int_equal(t[i].first_error, 0);
        assert_int_equal(t[i].mismatches, 0);
        assert_int_equal(t[i].completed, CONC_OPS);
        assert_int_equal(block_req(d.be, BLOCK_OP_READ, t[i].base, buf, region), 0);
        assert_memory_equal(buf, t[i].shadow, region);
        free(t[i].shadow);
        pthread_mutex_destroy(&t[i].lock);
        pthread_cond_destroy(&t[i].cond);
    }
    free(buf);
    free(t);
    disk_close(&d);
}

/* ---- drain and destroy with requests in flight ---- */

static atomic_uint drain_done;

static void count_complete(struct block_request *req, int status)
{
    if (status == 0)
        atomic_fetch_add(&drain_done, 1);
}

static void test_drain_destroy(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    enum { N = 256 };
    struct disk d;
    disk_open(&d, kind, 8 << 20);
    static uint8_t buf[N][4096];
    static struct iovec iov[N];
    static struct block_request reqs[N];
    for (unsigned round = 0; round < 2; round++) {
        atomic_store(&drain_done, 0);
        for (unsigned i = 0; i < N; i++) {
            iov[i] = (struct iovec){buf[i], 4096};
            reqs[i] = (struct block_request){
                .op = i % 3 == 0 ? BLOCK_OP_READ : (i % 17 == 0 ? BLOCK_OP_FLUSH : BLOCK_OP_WRITE),
                .offset = (uint64_t)i * 4096 * 7 % (8 << 20),
                .len = 4096,
                .iov = iov + i,
                .iovcnt = 1,
                .complete = count_complete,
            };
            if (reqs[i].op == BLOCK_OP_FLUSH) {
                reqs[i].len = 0;
                reqs[i].iovcnt = 0;
            }
            assert_int_equal(block_submit(d.be, &reqs[i]), 0);
        }
        if (round == 0) {
            block_drain(d.be);
            assert_int_equal(atomic_load(&drain_done), N);
        } else {
            block_backend_destroy(d.be); /* drains first */
            d.be = NULL;
            assert_int_equal(atomic_load(&drain_done), N);
        }
    }
    if (d.path[0])
        unlink(d.path);
}

/* ---- flush, discard, write zeroes ---- */

static void test_flush(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    uint8_t buf[4096];
    fill(buf, sizeof(buf), 0, 4);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), 0);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);
    disk_close(&d);

    struct config_block_dev opts = {.has_skip_flush = true, .skip_flush = true};
    disk_open_cfg(&d, kind, 1 << 20, &opts);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);
    disk_close(&d);
}

static void check_zeroing(struct block_backend *be, enum block_op op, bool expect_zero)
{
    enum { SIZE = 256 * 1024 };
    uint8_t *src = malloc(SIZE), *dst = malloc(SIZE);
    assert_non_null(src);
    assert_non_null(dst);
    fill(src, SIZE, 0, 5);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, src, SIZE), 0);
    /* An unaligned-to-pages range in the middle: 512 B .. 200 KiB + 1 KiB. */
    uint64_t off = 512, len = 200 * 1024 + 512;
    assert_int_equal(block_req_iov(be, op, off, len, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, dst, SIZE), 0);
    assert_memory_equal(dst, src, off);
    assert_memory_equal(dst + off + len, src + off + len, SIZE - off - len);
    if (expect_zero)
        assert_true(all_zero(dst + off, len));
    /* A zero-length one is fine too. */
    assert_int_equal(block_req_iov(be, op, 4096, 0, NULL, 0), 0);
    free(src);
    free(dst);
}

static void test_discard_write_zeroes(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    assert_true(d.be->info.can_discard);
    assert_true(d.be->info.can_write_zeroes);
    check_zeroing(d.be, BLOCK_OP_WRITE_ZEROES, true);
    check_zeroing(d.be, BLOCK_OP_DISCARD, true); /* holes read as zeroes here */
    disk_close(&d);
}

/* Without fallocate: WRITE_ZEROES writes zeroes, DISCARD does nothing. */
static void test_write_zeroes_fallback(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    block_file_test_no_fallocate(d.be);
    check_zeroing(d.be, BLOCK_OP_WRITE_ZEROES, true);
    enum { SIZE = 8192 };
    uint8_t src[SIZE], dst[SIZE];
    fill(src, SIZE, 0, 6);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 0, src, SIZE), 0);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_DISCARD, 0, SIZE, NULL, 0), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 0, dst, SIZE), 0);
    assert_memory_equal(src, dst, SIZE);
    disk_close(&d);
}

/* ---- read-only ---- */

static void test_read_only(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    struct config_block_dev opts = {.has_read_only = true, .read_only = true};
    uint8_t buf[4096];
    if (kind != MEM) {
        /* Put data in the file first. */
        struct disk w;
        disk_open(&w, kind, 1 << 20);
        fill(buf, sizeof(buf), 0, 7);
        assert_int_equal(block_req(w.be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), 0);
        block_backend_destroy(w.be);
        struct config_block_dev cfg = file_cfg(w.path, 2);
        cfg.has_read_only = true;
        cfg.read_only = true;
        memset(&d, 0, sizeof(d));
        snprintf(d.path, sizeof(d.path), "%s", w.path);
        d.be = open_kind(kind, &cfg);
        assert_non_null(d.be);
    } else {
        disk_open_cfg(&d, kind, 1 << 20, &opts);
        memset(buf, 0, sizeof(buf));
    }
    assert_true(d.be->info.read_only);
    assert_false(d.be->info.can_discard);
    uint8_t other[4096];
    fill(other, sizeof(other), 0, 8);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 0, other, sizeof(other)), -EROFS);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_DISCARD, 0, 4096, NULL, 0), -EROFS);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE_ZEROES, 0, 4096, NULL, 0), -EROFS);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);
    uint8_t got[4096];
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 0, got, sizeof(got)), 0);
    assert_memory_equal(got, buf, sizeof(got));
    disk_close(&d);
}

/* A file without write permission opens read-only unless read_only = false
 * is written, which is an error (as propolis). */
static void test_unwritable_file(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/ro", tmpdir);
    block_test_file(path, 65536);
    assert_int_equal(chmod(path, 0444), 0);
    struct config_block_dev cfg = file_cfg(path, 1);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    assert_true(be->info.read_only);
    block_backend_destroy(be);
    cfg.has_read_only = true;
    cfg.read_only = false;
    capture_stderr();
    be = block_backend_open(&cfg);
    char *log = captured_stderr();
    assert_null(be);
    assert_non_null(strstr(log, "block_dev.t0.path: "));
    assert_non_null(strstr(log, "read_only = false"));
    unlink(path);
}

/* ---- a file that shrinks, vanishes, fills up ---- */

static void test_truncated(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    static uint8_t buf[64 * 1024], got[64 * 1024];
    fill(buf, sizeof(buf), 0, 9);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 480 * 1024, buf, sizeof(buf)), 0);
    assert_int_equal(truncate(d.path, 512 * 1024), 0);

    capture_stderr();
    /* Wholly past the new end, and straddling it. */
    int past = block_req(d.be, BLOCK_OP_READ, 768 * 1024, got, 4096);
    int straddle = block_req(d.be, BLOCK_OP_READ, 480 * 1024, got, sizeof(got));
    char *log = captured_stderr();
    assert_int_equal(past, -EIO);
    assert_int_equal(straddle, -EIO);
    assert_non_null(strstr(log, "block_dev.t0: read of 4096 bytes at offset 786432"));
    assert_non_null(strstr(log, "shrank to 524288 bytes"));

    /* Below the new end all is well, and writes past it grow the file. */
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 480 * 1024, got, 32 * 1024), 0);
    assert_memory_equal(got, buf, 32 * 1024);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 900 * 1024, buf, 4096), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 900 * 1024, got, 4096), 0);
    assert_memory_equal(got, buf, 4096);
    disk_close(&d);
}

/* Linux keeps an unlinked file alive while it is open: the disk works on. */
static void test_unlinked(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    assert_int_equal(unlink(d.path), 0);
    d.path[0] = '\0';
    uint8_t buf[8192], got[8192];
    fill(buf, sizeof(buf), 4096, 10);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 4096, buf, sizeof(buf)), 0);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 4096, got, sizeof(got)), 0);
    assert_memory_equal(buf, got, sizeof(got));
    disk_close(&d);
}

static void test_enospc(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    char mnt[128], path[160];
    snprintf(mnt, sizeof(mnt), "%s/tmpfs", tmpdir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1M") != 0) {
        int err = errno;
        rmdir(mnt);
        prerequisite_missing("cannot mount a tmpfs (%s)", strerror(err));
    }
    snprintf(path, sizeof(path), "%s/disk", mnt);
    block_test_file(path, 4 << 20); /* sparse: 4 MiB of disk on 1 MiB of space */
    struct config_block_dev cfg = file_cfg(path, 2);
    struct block_backend *be = open_kind(kind, &cfg);
    assert_non_null(be);

    static uint8_t buf[64 * 1024];
    fill(buf, sizeof(buf), 0, 11);
    int ok = 0, nospc = 0, other = 0;
    capture_stderr();
    for (uint64_t off = 0; off < (4 << 20); off += sizeof(buf)) {
        int rc = block_req(be, BLOCK_OP_WRITE, off, buf, sizeof(buf));
        if (rc == 0)
            ok++;
        else if (rc == -ENOSPC)
            nospc++;
        else
            other++;
    }
    char *log = captured_stderr();
    assert_true(ok > 0);
    assert_true(nospc > 0);
    assert_int_equal(other, 0);
    assert_non_null(strstr(log, "block_dev.t0: write of 65536 bytes at offset"));
    assert_non_null(strstr(log, "No space left on device"));
    /* Still serving: what was written reads back; discarding frees space. */
    uint8_t got[4096];
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, got, sizeof(got)), 0);
    assert_memory_equal(got, buf, sizeof(got));
    assert_int_equal(block_req_iov(be, BLOCK_OP_DISCARD, 0, 512 * 1024, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 3 << 20, buf, sizeof(buf)), 0);
    block_backend_destroy(be);
    unlink(path);
    assert_int_equal(umount(mnt), 0);
    rmdir(mnt);
}

/* ---- a block device ---- */

static void test_block_device(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    char backing[128];
    snprintf(backing, sizeof(backing), "%s/loop-backing", tmpdir);
    block_test_file(backing, 2 << 20);
    int bfd = open(backing, O_RDWR | O_CLOEXEC);
    assert_true(bfd >= 0);
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int num = ctl >= 0 ? ioctl(ctl, LOOP_CTL_GET_FREE) : -1;
    char dev[64];
    snprintf(dev, sizeof(dev), "/dev/loop%d", num);
    int lfd = num >= 0 ? open(dev, O_RDWR | O_CLOEXEC) : -1;
    struct loop_config lc = {.fd = (uint32_t)bfd, .info = {.lo_flags = LO_FLAGS_AUTOCLEAR}};
    if (lfd < 0 || ioctl(lfd, LOOP_CONFIGURE, &lc) != 0) {
        int err = errno;
        if (lfd >= 0)
            close(lfd);
        if (ctl >= 0)
            close(ctl);
        close(bfd);
        unlink(backing);
        prerequisite_missing("no loop device (%s)", strerror(err));
    }
    close(ctl);
    close(bfd);
    struct config_block_dev cfg = file_cfg(dev, 2);
    capture_stderr();
    struct block_backend *be = open_kind(kind, &cfg);
    char *log = captured_stderr();
    assert_non_null(be);
    assert_null(strstr(log, "partition")); /* a whole device: no warning */
    assert_int_equal(be->info.size, 2 << 20);
    static uint8_t buf[16384], got[16384];
    fill(buf, sizeof(buf), 8192, 12);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 8192, buf, sizeof(buf)), 0);
    assert_int_equal(block_req_iov(be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8192, got, sizeof(got)), 0);
    assert_memory_equal(buf, got, sizeof(got));
    assert_int_equal(block_req_iov(be, BLOCK_OP_WRITE_ZEROES, 8192, 4096, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 8192, got, 4096), 0);
    assert_true(all_zero(got, 4096));
    block_backend_destroy(be);
    close(lfd); /* last close: the loop device detaches */
    /* The data went through to the backing file. */
    int fd = open(backing, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, 4096, 12288), 4096);
    assert_memory_equal(got, buf + 4096, 4096);
    close(fd);
    unlink(backing);
}

/* A partition is not a raw disk: opening one warns, and works. */
static void test_partition_warning(void **state)
{
    char backing[128];
    snprintf(backing, sizeof(backing), "%s/loop-parts", tmpdir);
    block_test_file(backing, 4 << 20);
    int bfd = open(backing, O_RDWR | O_CLOEXEC);
    assert_true(bfd >= 0);
    /* An MBR with one Linux partition: sectors 2048..6143. */
    uint8_t mbr[512] = {0};
    uint8_t *e = mbr + 446;
    e[4] = 0x83;
    uint32_t first = 2048, count = 4096;
    memcpy(e + 8, &first, 4);
    memcpy(e + 12, &count, 4);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    assert_int_equal(pwrite(bfd, mbr, sizeof(mbr), 0), (ssize_t)sizeof(mbr));
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int num = ctl >= 0 ? ioctl(ctl, LOOP_CTL_GET_FREE) : -1;
    char dev[64], part[160], sys_dev[96];
    snprintf(dev, sizeof(dev), "/dev/loop%d", num);
    /* The kernel lists the partition in sysfs; without udev (containers, CI)
     * nothing makes its node, so the test makes one of its own. */
    snprintf(sys_dev, sizeof(sys_dev), "/sys/block/loop%d/loop%dp1/dev", num, num);
    snprintf(part, sizeof(part), "%s/loop%dp1", tmpdir, num);
    int lfd = num >= 0 ? open(dev, O_RDWR | O_CLOEXEC) : -1;
    struct loop_config lc = {.fd = (uint32_t)bfd,
                             .info = {.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN}};
    bool ok = lfd >= 0 && ioctl(lfd, LOOP_CONFIGURE, &lc) == 0;
    int err = errno;
    if (ctl >= 0)
        close(ctl);
    close(bfd);
    for (int i = 0; ok && i < 50 && access(sys_dev, F_OK) != 0; i++)
        usleep(10000);
    if (ok && access(sys_dev, F_OK) != 0) {
        /* A kernel without the MBR parser: declare the partition directly. */
        struct blkpg_partition p1 = {
            .start = (long long)first * 512, .length = (long long)count * 512, .pno = 1};
        struct blkpg_ioctl_arg arg = {
            .op = BLKPG_ADD_PARTITION, .datalen = sizeof(p1), .data = &p1};
        if (ioctl(lfd, BLKPG, &arg) != 0) {
            ok = false;
            err = errno;
        }
    }
    unsigned major_no = 0, minor_no = 0;
    FILE *f = ok ? fopen(sys_dev, "r") : NULL;
    if (f) {
        ok = fscanf(f, "%u:%u", &major_no, &minor_no) == 2;
        fclose(f);
    } else if (ok) {
        ok = false;
        err = errno;
    }
    if (ok && mknod(part, S_IFBLK | 0600, makedev(major_no, minor_no)) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        if (lfd >= 0)
            close(lfd);
        unlink(backing);
        prerequisite_missing("no loop device with partitions (%s)", strerror(err));
    }
    struct config_block_dev cfg = file_cfg(part, 1);
    capture_stderr();
    struct block_backend *be = block_backend_open(&cfg);
    char *log = captured_stderr();
    assert_non_null(be);
    assert_int_equal(be->info.size, 2 << 20);
    assert_non_null(strstr(log, "block_dev.t0: "));
    assert_non_null(strstr(log, "is a partition rather than a raw (whole) disk device"));
    uint8_t buf[4096], got[4096];
    fill(buf, sizeof(buf), 0, 13);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, got, sizeof(got)), 0);
    assert_memory_equal(buf, got, sizeof(got));
    block_backend_destroy(be);
    close(lfd);
    unlink(part);
    unlink(backing);
}

/* Once a WRITE completed, its data is the kernel's: SIGKILL loses nothing. */
static void test_survives_kill(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    char path[128];
    snprintf(path, sizeof(path), "%s/killed", tmpdir);
    block_test_file(path, 1 << 20);
    static uint8_t buf[256 * 1024];
    fill(buf, sizeof(buf), 65536, 14);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct config_block_dev cfg = file_cfg(path, 4);
        struct block_backend *be = open_kind(kind, &cfg);
        if (!be || block_req(be, BLOCK_OP_WRITE, 65536, buf, sizeof(buf)) != 0)
            _exit(1);
        raise(SIGKILL); /* with the back end's threads still running */
        _exit(2);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    static uint8_t got[sizeof(buf)];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, sizeof(got), 65536), (ssize_t)sizeof(got));
    close(fd);
    assert_memory_equal(buf, got, sizeof(got));
    unlink(path);
}

/* ---- refused at open ---- */

static void expect_open_error(struct config_block_dev *cfg, const char *want)
{
    capture_stderr();
    struct block_backend *be = block_backend_open(cfg);
    char *log = captured_stderr();
    if (be)
        block_backend_destroy(be);
    assert_null(be);
    if (!strstr(log, want))
        print_error("log \"%s\" lacks \"%s\"\n", log, want);
    assert_non_null(strstr(log, want));
}

static void test_bad_open(void **state)
{
    char path[128], missing[128];
    snprintf(path, sizeof(path), "%s/odd", tmpdir);
    snprintf(missing, sizeof(missing), "%s/missing", tmpdir);

    struct config_block_dev cfg = file_cfg(missing, 1);
    expect_open_error(&cfg, "<config>: block_dev.t0.path: cannot open");

    block_test_file(path, 1000);
    cfg = file_cfg(path, 1);
    expect_open_error(&cfg, "block_dev.t0.path: the size of");
    expect_open_error(&cfg, "(1000 bytes) is not a multiple of the block size (512)");

    block_test_file(path, 4096 + 512);
    cfg.has_block_size = true;
    cfg.block_size = 4096;
    expect_open_error(&cfg, "(4608 bytes) is not a multiple of the block size (4096)");

    block_test_file(path, 0);
    cfg = file_cfg(path, 1);
    expect_open_error(&cfg, "block_dev.t0.path: ");
    expect_open_error(&cfg, " is empty");
    unlink(path);

    cfg = file_cfg(tmpdir, 1);
    cfg.has_read_only = true;
    cfg.read_only = true;
    expect_open_error(&cfg, "is not a regular file or block device");

    cfg = mem_cfg(1000, 1);
    expect_open_error(&cfg, "block_dev.t0: size 1000 is not a positive multiple");
    cfg = mem_cfg(0, 1);
    expect_open_error(&cfg, "block_dev.t0: size 0");

    /* crucible-mem is a RAM disk: the same checks of its size. */
    cfg = mem_cfg(4096, 1);
    cfg.type = CONFIG_BLOCK_CRUCIBLE_MEM;
    cfg.crucible_mem.size = 1000;
    expect_open_error(&cfg, "block_dev.t0: size 1000 is not a positive multiple");
}

/* ---- refused requests ---- */

static void test_bad_requests(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind, 1 << 20);
    uint8_t buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    /* Past the end, overflowing, iovecs not matching len. */
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, (1 << 20) - 512, buf, 1024), -EINVAL);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, (1 << 20), buf, 512), -EINVAL);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, UINT64_MAX - 511, buf, 1024), -EINVAL);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_DISCARD, 512, UINT64_MAX - 256, NULL, 0),
                     -EINVAL);
    struct iovec iov = {buf, 512};
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE, 0, 1024, &iov, 1), -EINVAL);
    struct iovec huge[2] = {{buf, SIZE_MAX}, {buf, 2}};
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_READ, 0, 1, huge, 2), -EINVAL);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_READ, 0, 512, NULL, 1), -EINVAL);
    assert_int_equal(block_req_iov(d.be, (enum block_op)99, 0, 0, NULL, 0), -EOPNOTSUPP);
    /* Nothing was written. */
    uint8_t got[4096];
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, (1 << 20) - 4096, got, sizeof(got)), 0);
    assert_true(all_zero(got, sizeof(got)));
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 0, got, sizeof(got)), 0);
    assert_true(all_zero(got, sizeof(got)));
    disk_close(&d);
}

/* ---- O_DIRECT ---- */

/* The open flags (/proc/self/fdinfo) of this process's descriptor for
 * path; fails the test if there is none or more than one. */
static unsigned long fd_flags_of(const char *path)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    struct dirent *e;
    int found = -1, count = 0;
    while ((e = readdir(dir))) {
        char link[300], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, path) == 0) {
            found = atoi(e->d_name);
            count++;
        }
    }
    closedir(dir);
    assert_int_equal(count, 1);
    char info[64], line[128];
    snprintf(info, sizeof(info), "/proc/self/fdinfo/%d", found);
    FILE *f = fopen(info, "re");
    assert_non_null(f);
    unsigned long flags = 0;
    bool have = false;
    while (fgets(line, sizeof(line), f))
        have |= sscanf(line, "flags: %lo", &flags) == 1;
    fclose(f);
    assert_true(have);
    return flags;
}

/* direct = true: the descriptor is O_DIRECT (and without it is not); the
 * alignment is learned; aligned guest buffers go to the file as they are
 * while misaligned ones (address, piece length, or offset) take the bounce
 * buffer, and every byte comes back, neighbours untouched; flush works;
 * ASan checks every bounce buffer is freed. */
static void test_direct_io(void **state)
{
    enum kind kind = *(const enum kind *)*state;
    struct disk d;
    disk_open(&d, kind - DIRECT_URING + FILE_URING, 1 << 20);
    assert_int_equal(fd_flags_of(d.path) & O_DIRECT, 0);
    disk_close(&d);

    disk_open(&d, kind, 4 << 20);
    assert_int_not_equal(fd_flags_of(d.path) & O_DIRECT, 0);
    const struct file_backend *fb = (const struct file_backend *)d.be;
    assert_true(fb->direct);
    assert_true(fb->dio_off_align >= 1 && (fb->dio_off_align & (fb->dio_off_align - 1)) == 0);
    assert_true(fb->dio_mem_align >= 1 && (fb->dio_mem_align & (fb->dio_mem_align - 1)) == 0);
    assert_true(fb->dio_off_align <= 512); /* else the 512-byte default block size is refused */
    assert_true(d.be->info.volatile_cache);

    enum { LEN = 64 * 1024 };
    uint8_t *aligned, *got;
    assert_int_equal(posix_memalign((void **)&aligned, 4096, LEN + 4096), 0);
    assert_int_equal(posix_memalign((void **)&got, 4096, LEN + 4096), 0);

    /* Aligned: straight to the file. */
    fill(aligned, LEN, 8192, 21);
    struct iovec iov = {aligned, LEN};
    struct block_request probe = {
        .op = BLOCK_OP_WRITE, .offset = 8192, .len = LEN, .iov = &iov, .iovcnt = 1};
    assert_false(file_needs_bounce(fb, &probe));
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 8192, aligned, LEN), 0);
    memset(got, 0, LEN);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 8192, got, LEN), 0);
    assert_memory_equal(got, aligned, LEN);

    /* Misaligned addresses: written from one, read back into another. */
    uint8_t *odd = aligned + 1, *odd_got = got + 3;
    fill(odd, LEN, 131072, 22);
    iov = (struct iovec){odd, LEN};
    probe.iov = &iov;
    assert_true(file_needs_bounce(fb, &probe));
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 131072, odd, LEN), 0);
    memset(odd_got, 0, LEN);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072, odd_got, LEN), 0);
    assert_memory_equal(odd_got, odd, LEN);
    /* ... and the aligned read of it, and the first write read misaligned. */
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072, got, LEN), 0);
    assert_memory_equal(got, odd, LEN);
    fill(aligned, LEN, 8192, 21);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 8192, odd_got, LEN), 0);
    assert_memory_equal(odd_got, aligned, LEN);

    /* Aligned addresses, piece lengths off the alignment (sum aligned). */
    fill(aligned, LEN, 262144, 23);
    struct iovec pieces[3] = {{aligned, 100}, {aligned + 100, 4000}, {aligned + 4100, LEN - 4100}};
    struct block_request split = {
        .op = BLOCK_OP_WRITE, .offset = 262144, .len = LEN, .iov = pieces, .iovcnt = 3};
    assert_true(file_needs_bounce(fb, &split));
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE, 262144, LEN, pieces, 3), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 262144, got, LEN), 0);
    assert_memory_equal(got, aligned, LEN);

    /* Offsets off the alignment (the API allows them): the partial blocks
     * around are read and rewritten with their old bytes. */
    uint8_t before[8192], after[8192], small[700];
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072, before, sizeof(before)), 0);
    fill(small, sizeof(small), 131072 + 300, 24);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 131072 + 300, small, sizeof(small)), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072, after, sizeof(after)), 0);
    memcpy(before + 300, small, sizeof(small));
    assert_memory_equal(after, before, sizeof(after));
    uint8_t small_got[700];
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072 + 300, small_got, sizeof(small_got)), 0);
    assert_memory_equal(small_got, small, sizeof(small));
    /* Inside one block, and at the very end of the disk (nothing past it). */
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, 131072 + 5, small, 10), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 131072 + 5, small_got, 10), 0);
    assert_memory_equal(small_got, small, 10);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, (4 << 20) - 7, small, 7), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, (4 << 20) - 7, small_got, 7), 0);
    assert_memory_equal(small_got, small, 7);

    /* Larger than one bounce buffer (FILE_BOUNCE_MAX), misaligned in
     * address and offset: bounced piece by piece, neighbours kept. */
    enum { BIG = 2 * FILE_BOUNCE_MAX + 5000 };
    const uint64_t big_off = (1 << 20) + 100;
    uint8_t *big = malloc(BIG + 1), *big_got = malloc(BIG + 600);
    assert_non_null(big);
    assert_non_null(big_got);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, big_off - 100, big_got, BIG + 600), 0);
    fill(big + 1, BIG, big_off, 26);
    assert_int_equal(block_req(d.be, BLOCK_OP_WRITE, big_off, big + 1, BIG), 0);
    memcpy(big_got + 100, big + 1, BIG);
    uint8_t *check = malloc(BIG + 600);
    assert_non_null(check);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, big_off - 100, check, BIG + 600), 0);
    assert_memory_equal(check, big_got, BIG + 600);
    free(big);
    free(big_got);
    free(check);

    /* Zeroes written (no fallocate) over a misaligned range. */
    block_file_test_no_fallocate(d.be);
    assert_int_equal(block_req_iov(d.be, BLOCK_OP_WRITE_ZEROES, 8192 + 100, 65000, NULL, 0), 0);
    assert_int_equal(block_req(d.be, BLOCK_OP_READ, 8192, got, LEN), 0);
    fill(aligned, LEN, 8192, 21);
    assert_memory_equal(got, aligned, 100);
    assert_true(all_zero(got + 100, 65000));
    assert_memory_equal(got + 65100, aligned + 65100, LEN - 65100);

    assert_int_equal(block_req_iov(d.be, BLOCK_OP_FLUSH, 0, 0, NULL, 0), 0);

    /* The file (read without O_DIRECT) holds what was written. */
    int fd = open(d.path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, LEN, 262144), LEN);
    fill(aligned, LEN, 262144, 23);
    assert_memory_equal(got, aligned, LEN);
    close(fd);

    free(aligned);
    free(got);
    disk_close(&d);
}

/* A file system without O_DIRECT is refused at open, naming the key, the
 * file and the problem: ramfs always; tmpfs until Linux 6.6 (since then it
 * accepts O_DIRECT but reports no alignment, so 4096 is assumed, which a
 * 512-byte block size cannot meet). */
static void test_direct_refused(void **state)
{
    static const char *const fstypes[] = {"ramfs", "tmpfs"};
    for (unsigned i = 0; i < 2; i++) {
        char mnt[128], path[160];
        snprintf(mnt, sizeof(mnt), "%s/%s", tmpdir, fstypes[i]);
        assert_int_equal(mkdir(mnt, 0700), 0);
        if (mount(fstypes[i], mnt, fstypes[i], 0, NULL) != 0) {
            int err = errno;
            rmdir(mnt);
            prerequisite_missing("cannot mount a %s (%s)", fstypes[i], strerror(err));
        }
        snprintf(path, sizeof(path), "%s/disk", mnt);
        block_test_file(path, 1 << 20);
        struct config_block_dev cfg = file_cfg(path, 2);
        cfg.file.direct = true;
        cfg.source = "vm.toml";
        cfg.line = 3;
        cfg.column = 1;
        cfg.file.direct_pos = (struct config_pos){7, 10};
        capture_stderr();
        struct block_backend *be = block_backend_open(&cfg);
        char *log = captured_stderr();
        assert_null(be);
        char want[512];
        int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
        if (fd < 0) {
            assert_int_equal(errno, EINVAL);
            snprintf(want, sizeof(want),
                     "vm.toml:7:10: block_dev.t0.direct: the file system holding %s does not "
                     "support O_DIRECT (open: Invalid argument); use direct = false or put the "
                     "disk on another file system",
                     path);
        } else {
            close(fd);
            assert_string_equal(fstypes[i], "tmpfs"); /* ramfs never has O_DIRECT */
            snprintf(want, sizeof(want),
                     "vm.toml:7:10: block_dev.t0.direct: O_DIRECT on %s needs offsets aligned to "
                     "4096 bytes (assumed: not reported), more than the block size (512); set "
                     "block_size = 4096 or use direct = false",
                     path);
        }
        if (!strstr(log, want))
            print_error("log \"%s\" lacks \"%s\"\n", log, want);
        assert_non_null(strstr(log, want));
        if (fd >= 0) {
            /* With a block size it can meet, the disk works. */
            cfg.has_block_size = true;
            cfg.block_size = 4096;
            be = block_backend_open(&cfg);
            assert_non_null(be);
            uint8_t buf[4096 + 1], got[4096 + 1];
            fill(buf, sizeof(buf), 0, 25);
            assert_int_equal(block_req(be, BLOCK_OP_WRITE, 4096, buf + 1, 4096), 0);
            assert_int_equal(block_req(be, BLOCK_OP_READ, 4096, got, 4096), 0);
            assert_memory_equal(got, buf + 1, 4096);
            block_backend_destroy(be);
        }
        unlink(path);
        assert_int_equal(umount(mnt), 0);
        rmdir(mnt);
    }
}

/* The bounce path (unaligned address, offset and piece lengths, more than
 * one bounce buffer) and the aligned path on every engine, in a child
 * under the VMM's seccomp filters: the block threads' allow-list covers
 * them (a forbidden call would end the child with SANDBOX_EXIT_CODE). */
static int direct_under_sandbox(const char *path)
{
    if (sandbox_init() < 0)
        return 77;
    static const enum block_file_engine engines[] = {
        BLOCK_FILE_ENGINE_URING, BLOCK_FILE_ENGINE_THREADS, BLOCK_FILE_ENGINE_HYBRID};
    static const char *const names[] = {"uring", "threads", "hybrid"};
    enum { LEN = FILE_BOUNCE_MAX + 8192 };
    uint8_t *src = malloc(LEN + 1), *got = malloc(LEN + 1);
    if (!src || !got)
        return 2;
    for (unsigned i = 0; i < 3; i++) {
        struct config_block_dev cfg = file_cfg(path, 2);
        cfg.file.direct = true;
        struct block_backend *be = block_file_open(&cfg, engines[i]);
        if (!be || strcmp(block_file_engine_name(be), names[i]) != 0)
            return 3;
        fill(src + 1, LEN, 1000 + i, 27 + i);
        if (block_req(be, BLOCK_OP_WRITE, 1000 + i, src + 1, LEN) != 0 ||
            block_req(be, BLOCK_OP_READ, 1000 + i, got + 1, LEN) != 0 ||
            memcmp(src + 1, got + 1, LEN))
            return 4;
        if (block_req(be, BLOCK_OP_READ, 0, got, 4096) != 0 ||
            block_req(be, BLOCK_OP_WRITE, 0, got, 4096))
            return 5;
        if (block_req_iov(be, BLOCK_OP_FLUSH, 0, 0, NULL, 0) != 0)
            return 6;
        block_backend_destroy(be);
    }
    free(src);
    free(got);
    return 0;
}

static void test_direct_under_seccomp(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/sandboxed", tmpdir);
    block_test_file(path, 4 << 20);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(direct_under_sandbox(path));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(path);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        prerequisite_missing("cannot set up the seccomp sandbox");
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- engine choice ---- */

#define BUILTIN_NAME                                                                               \
    (BLOCK_FILE_ENGINE_BUILTIN == BLOCK_FILE_ENGINE_URING    ? "uring"                             \
     : BLOCK_FILE_ENGINE_BUILTIN == BLOCK_FILE_ENGINE_HYBRID ? "hybrid"                            \
                                                             : "threads")

static void test_engine_env(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/env", tmpdir);
    block_test_file(path, 65536);
    struct config_block_dev cfg = file_cfg(path, 1);
    static const struct {
        const char *env, *want;
    } cases[] = {{"threads", "threads"},
                 {"uring", "uring"},
                 {"io_uring", "uring"},
                 {"hybrid", "hybrid"},
                 {"", BUILTIN_NAME}};
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("PROPOLIS_BLOCK_ENGINE", cases[i].env, 1);
        struct block_backend *be = block_backend_open(&cfg);
        assert_non_null(be);
        assert_string_equal(block_file_engine_name(be), cases[i].want);
        block_backend_destroy(be);
    }
    setenv("PROPOLIS_BLOCK_ENGINE", "bogus", 1);
    capture_stderr();
    struct block_backend *be = block_backend_open(&cfg);
    char *log = captured_stderr();
    assert_non_null(be);
    assert_non_null(strstr(log, "PROPOLIS_BLOCK_ENGINE=\"bogus\""));
    assert_string_equal(block_file_engine_name(be), BUILTIN_NAME);
    block_backend_destroy(be);
    unsetenv("PROPOLIS_BLOCK_ENGINE");
    unlink(path);
}

/* With io_uring_setup forbidden by seccomp, the uring engine falls back to
 * threads with an info message, and the disk works. Runs in a child. */
static void test_uring_fallback(void **state)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/fallback", tmpdir);
    block_test_file(path, 65536);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            _exit(77);
        struct config_block_dev cfg = file_cfg(path, 2);
        static const enum block_file_engine engines[] = {BLOCK_FILE_ENGINE_URING,
                                                         BLOCK_FILE_ENGINE_HYBRID};
        for (unsigned i = 0; i < 2; i++) {
            struct block_backend *be = block_file_open(&cfg, engines[i]);
            if (!be)
                _exit(1);
            if (strcmp(block_file_engine_name(be), "threads") != 0)
                _exit(2);
            uint8_t buf[4096] = {1, 2, 3}, got[4096];
            if (block_req(be, BLOCK_OP_WRITE, 0, buf, sizeof(buf)) != 0 ||
                block_req(be, BLOCK_OP_READ, 0, got, sizeof(got)) != 0 ||
                memcmp(buf, got, sizeof(buf)))
                _exit(3);
            block_backend_destroy(be);
        }
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(path);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        prerequisite_missing("cannot install a seccomp filter");
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

#define FOR_FILES(fn)                                                                              \
    cmocka_unit_test_prestate(fn, (void *)&kind_uring),                                            \
        cmocka_unit_test_prestate(fn, (void *)&kind_threads),                                      \
        cmocka_unit_test_prestate(fn, (void *)&kind_hybrid)
#define FOR_DIRECT(fn)                                                                             \
    cmocka_unit_test_prestate(fn, (void *)&kind_direct_uring),                                     \
        cmocka_unit_test_prestate(fn, (void *)&kind_direct_threads),                               \
        cmocka_unit_test_prestate(fn, (void *)&kind_direct_hybrid)
#define FOR_ALL(fn) FOR_FILES(fn), cmocka_unit_test_prestate(fn, (void *)&kind_mem), FOR_DIRECT(fn)

int main(void)
{
    log_set_level(LOG_INFO);
    const struct CMUnitTest tests[] = {
        FOR_ALL(test_roundtrip),
        FOR_ALL(test_many_iovecs),
        FOR_ALL(test_concurrency),
        FOR_ALL(test_drain_destroy),
        FOR_ALL(test_flush),
        FOR_ALL(test_discard_write_zeroes),
        FOR_FILES(test_write_zeroes_fallback),
        FOR_DIRECT(test_write_zeroes_fallback),
        FOR_FILES(test_read_only),
        cmocka_unit_test_prestate(test_read_only, (void *)&kind_mem),
        cmocka_unit_test(test_unwritable_file),
        FOR_FILES(test_truncated),
        FOR_DIRECT(test_truncated),
        FOR_FILES(test_unlinked),
        FOR_DIRECT(test_unlinked),
        FOR_FILES(test_enospc),
        FOR_FILES(test_block_device),
        cmocka_unit_test(test_partition_warning),
        FOR_FILES(test_survives_kill),
        cmocka_unit_test(test_bad_open),
        FOR_ALL(test_bad_requests),
        FOR_DIRECT(test_direct_io),
        cmocka_unit_test(test_direct_refused),
        cmocka_unit_test(test_direct_under_seccomp),
        cmocka_unit_test(test_engine_env),
        cmocka_unit_test(test_uring_fallback),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
