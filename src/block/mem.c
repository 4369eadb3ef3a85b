/* mem-async: a RAM disk of `size` zeroed bytes. The memory is an anonymous
 * MAP_NORESERVE mapping, so untouched blocks cost nothing and read back as
 * zeroes. Requests are copied by `workers` threads, so completions arrive
 * off the submitting thread as with every other back end. Nothing survives
 * the process; FLUSH completes at once.
 * The same back end serves a prepared image read-only (block_mem_open_image:
 * the cloud-init volume), from the caller's heap buffer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/block_internal.h"
#include "common/log.h"
#include "config/config.h"

struct mem_backend {
    struct block_backend be;
    char *name;
    uint8_t *ram;
    bool ram_is_heap; /* an image from block_mem_open_image: free(), not munmap() */
    uint64_t size;
    size_t page_size;
    struct blk_tracker tracker;
    struct blk_pool pool;
};

/* Zeroes [off, off+len): whole pages are given back to the kernel (they
 * read as zeroes again), the partial pages at the edges are cleared. */
static void mem_zero(struct mem_backend *mb, uint64_t off, uint64_t len)
{
    uint64_t pg = mb->page_size;
    uint64_t start = (off + pg - 1) / pg * pg;
    uint64_t end = (off + len) / pg * pg;
    if (start >= end || madvise(mb->ram + start, end - start, MADV_DONTNEED) != 0) {
        memset(mb->ram + off, 0, len);
        return;
    }
    memset(mb->ram + off, 0, start - off);
    memset(mb->ram + end, 0, off + len - end);
}

static int mem_run(void *ctx, struct block_request *req)
{
    struct mem_backend *mb = ctx;
    switch (req->op) {
    case BLOCK_OP_READ:
        blk_iov_copy(req, 0, mb->ram + req->offset, req->len, true);
        return 0;
    case BLOCK_OP_WRITE:
        blk_iov_copy(req, 0, mb->ram + req->offset, req->len, false);
        return 0;
    case BLOCK_OP_DISCARD:
    case BLOCK_OP_WRITE_ZEROES:
        mem_zero(mb, req->offset, req->len);
        return 0;
    case BLOCK_OP_FLUSH:
        return 0;
    }
    return -EOPNOTSUPP;
}

static int mem_submit(struct block_backend *be, struct block_request *req)
{
    struct mem_backend *mb = (struct mem_backend *)be;
    int rc = blk_check_request(be, req);
    if (rc == 0 && req->op == BLOCK_OP_FLUSH)
        blk_set_kind(req, BLK_KIND_STATUS, 0);
    else
        blk_set_kind(req, rc ? BLK_KIND_STATUS : BLK_KIND_IO, rc);
    blk_tracker_begin(&mb->tracker);
    blk_pool_submit(&mb->pool, req);
    return 0;
}

static void mem_drain(struct block_backend *be)
{
    struct mem_backend *mb = (struct mem_backend *)be;
    blk_tracker_drain(&mb->tracker);
}

static void mem_destroy(struct block_backend *be)
{
    struct mem_backend *mb = (struct mem_backend *)be;
    blk_tracker_drain(&mb->tracker);
    blk_pool_stop(&mb->pool);
    blk_tracker_destroy(&mb->tracker);
    if (mb->ram_is_heap)
        free(mb->ram);
    else
        munmap(mb->ram, mb->size);
    free(mb->name);
    free(mb);
}

static const struct block_backend_ops mem_ops = {
    .submit = mem_submit,
    .drain = mem_drain,
    .destroy = mem_destroy,
};

/* Starts serving ram (size bytes, a multiple of bs). On failure frees
 * nothing of ram and returns NULL after logging. */
static struct block_backend *mem_start(const struct config_block_dev *cfg, uint8_t *ram,
                                       bool ram_is_heap, uint64_t size, uint32_t bs, bool read_only,
                                       unsigned workers)
{
    struct mem_backend *mb = calloc(1, sizeof(*mb));
    char *name = strdup(cfg->name);
    if (!mb || !name) {
        free(mb);
        free(name);
        log_error("block_dev.%s: out of memory", cfg->name);
        return NULL;
    }
    mb->name = name;
    mb->size = size;
    mb->ram = ram;
    mb->ram_is_heap = ram_is_heap;
    long pg = sysconf(_SC_PAGESIZE);
    mb->page_size = pg > 0 ? (size_t)pg : 4096;
    mb->be.ops = &mem_ops;
    mb->be.name = mb->name;
    mb->be.info = (struct block_info){
        .size = size,
        .block_size = bs,
        .read_only = read_only,
        .can_discard = !read_only,
        .can_write_zeroes = !read_only,
        .volatile_cache = false,
        .workers = workers,
    };
    blk_tracker_init(&mb->tracker);
    int rc = blk_pool_start(&mb->pool, workers, "blk-mem", mem_run, mb, &mb->tracker);
    if (rc < 0) {
        log_error("block_dev.%s: cannot start worker threads: %s", cfg->name, strerror(-rc));
        blk_tracker_destroy(&mb->tracker);
        free(name);
        free(mb);
        return NULL;
    }
    return &mb->be;
}

struct block_backend *block_mem_open(const struct config_block_dev *cfg)
{
    uint32_t bs = config_block_size(cfg);
    uint64_t size = cfg->mem_async.size;
    if (bs < 512 || (bs & (bs - 1)) != 0) {
        log_error("block_dev.%s: block size %u is not a power of two of at least 512", cfg->name,
                  bs);
        return NULL;
    }
    if (size == 0 || size % bs != 0 || size > (uint64_t)SIZE_MAX / 2) {
        log_error("block_dev.%s: size %llu is not a positive multiple of the block size %u",
                  cfg->name, (unsigned long long)size, bs);
        return NULL;
    }
    void *ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) {
        log_error("block_dev.%s: cannot map %llu bytes of memory: %s", cfg->name,
                  (unsigned long long)size, strerror(errno));
        return NULL;
    }
    unsigned workers = cfg->mem_async.workers ? cfg->mem_async.workers : 1;
    struct block_backend *be = mem_start(cfg, ram, false, size, bs, cfg->read_only, workers);
    if (!be) {
        munmap(ram, size);
        return NULL;
    }
    log_debug("block_dev.%s: mem-async, %llu bytes, block size %u, %u workers", cfg->name,
              (unsigned long long)size, bs, workers);
    return be;
}

struct block_backend *block_mem_open_image(const struct config_block_dev *cfg, uint8_t *image,
                                           uint64_t size)
{
    if (size == 0 || size % 512 != 0) {
        log_error("block_dev.%s: an image of %llu bytes is not a positive multiple of 512",
                  cfg->name, (unsigned long long)size);
        free(image);
        return NULL;
    }
    /* Requests are memory copies: one worker keeps up. */
    struct block_backend *be = mem_start(cfg, image, true, size, 512, true, 1);
    if (!be)
        free(image);
    return be;
}
