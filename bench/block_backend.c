/* Micro-benchmark of the block back ends: the file back end's io_uring and
 * thread-pool engines against a page-cached file, and mem-async. Each of
 * --threads submitter threads keeps --qd requests in flight, as a device
 * queue would; a completion is handed back to its submitter through a
 * mutex and condition variable (as a device hands it to the guest), and the
 * submitter issues the next request.
 *
 * Workloads: 4 KiB random reads and writes, 1 MiB sequential reads and
 * writes (256 scattered 4 KiB iovecs, as guest pages are). Prints IOPS,
 * MiB/s and process CPU time per request.
 *
 *   block_backend [--dir DIR] [--size-mib N] [--seconds S] [--threads N]
 *                 [--qd N] [--seq-qd N] [--workers N] [--engines LIST] [--direct]
 *   LIST: comma-separated of threads, uring, hybrid (the file engines) and
 *   mem (mem-async); default all four. --direct opens the file O_DIRECT
 *   (direct = true). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "block/block_internal.h"
#include "common/log.h"
#include "config/config.h"

#define PAGE 4096u
#define BIG (1024u * 1024u)

struct opts {
    const char *dir;
    uint64_t size;
    double seconds;
    unsigned threads, qd, seq_qd, workers;
    char engines[64];
    bool direct;
};

struct workload {
    const char *name;
    enum block_op op;
    uint32_t len;
    bool sequential;
};

static const struct workload workloads[] = {
    {"4k-randread", BLOCK_OP_READ, PAGE, false},
    {"4k-randwrite", BLOCK_OP_WRITE, PAGE, false},
    {"1m-seqread", BLOCK_OP_READ, BIG, true},
    {"1m-seqwrite", BLOCK_OP_WRITE, BIG, true},
};

struct slot {
    struct block_request req;
    struct iovec *iov;
    struct submitter *owner;
    struct slot *next_done;
};

struct submitter {
    pthread_t thread;
    struct block_backend *be;
    const struct workload *w;
    uint64_t region_start, region_len, seq_pos;
    unsigned qd;
    uint8_t *buf;
    struct slot *slots;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slot *done; /* completed, not yet resubmitted */
    uint64_t ops, errors;
    uint64_t rng;
    atomic_bool *stop;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void on_complete(struct block_request *req, int status)
{
    struct slot *sl = req->opaque;
    struct submitter *s = sl->owner;
    pthread_mutex_lock(&s->lock);
    if (status)
        s->errors++;
    s->ops++;
    sl->next_done = s->done;
    s->done = sl;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void issue(struct submitter *s, struct slot *sl)
{
    uint64_t len = s->w->len, off;
    if (s->w->sequential) {
        if (s->seq_pos + len > s->region_len)
            s->seq_pos = 0;
        off = s->region_start + s->seq_pos;
        s->seq_pos += len;
    } else {
        off = next_rand(&s->rng) % (s->region_len / len) * len + s->region_start;
    }
    sl->req.offset = off;
    if (block_submit(s->be, &sl->req) != 0) {
        fprintf(stderr, "submit failed\n");
        exit(1);
    }
}

static void *submitter_main(void *arg)
{
    struct submitter *s = arg;
    for (unsigned i = 0; i < s->qd; i++)
        issue(s, &s->slots[i]);
    unsigned outstanding = s->qd;
    pthread_mutex_lock(&s->lock);
    while (outstanding > 0) {
        while (!s->done)
            pthread_cond_wait(&s->cond, &s->lock);
        struct slot *list = s->done;
        s->done = NULL;
        pthread_mutex_unlock(&s->lock);
        bool stop = atomic_load(s->stop);
        while (list) {
            struct slot *sl = list;
            list = sl->next_done;
            if (stop)
                outstanding--;
            else
                issue(s, sl);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void run(struct block_backend *be, const char *engine, const struct workload *w,
                const struct opts *o)
{
    struct submitter *subs = calloc(o->threads, sizeof(*subs));
    atomic_bool stop;
    atomic_init(&stop, false);
    unsigned qd = w->sequential ? o->seq_qd : o->qd;
    uint64_t region = be->info.size / o->threads / BIG * BIG;
    for (unsigned t = 0; t < o->threads; t++) {
        struct submitter *s = &subs[t];
        s->be = be;
        s->w = w;
        s->qd = qd;
        s->stop = &stop;
        s->rng = 0x9e3779b97f4a7c15ull * (t + 1);
        /* Random I/O spans the whole disk, sequential streams get a part each. */
        s->region_start = w->sequential ? region * t : 0;
        s->region_len = w->sequential ? region : be->info.size;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        unsigned pages = w->len / PAGE;
        s->buf = aligned_alloc(PAGE, (size_t)qd * w->len);
        memset(s->buf, 0xa5, (size_t)qd * w->len);
        s->slots = calloc(qd, sizeof(*s->slots));
        for (unsigned i = 0; i < qd; i++) {
            struct slot *sl = &s->slots[i];
            sl->owner = s;
            sl->iov = calloc(pages, sizeof(*sl->iov));
            /* Guest pages are scattered: reverse the order within each slot. */
            for (unsigned p = 0; p < pages; p++)
                sl->iov[p] = (struct iovec){
                    s->buf + (size_t)i * w->len + (size_t)(pages - 1 - p) * PAGE, PAGE};
            sl->req = (struct block_request){
                .op = w->op,
                .len = w->len,
                .iov = sl->iov,
                .iovcnt = pages,
                .complete = on_complete,
                .opaque = sl,
            };
        }
    }
    double t0 = now_s(), c0 = cpu_s();
    for (unsigned t = 0; t < o->threads; t++)
        pthread_create(&subs[t].thread, NULL, submitter_main, &subs[t]);
    struct timespec ts = {(time_t)o->seconds,
                          (long)((o->seconds - (double)(time_t)o->seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    uint64_t ops = 0, errors = 0;
    for (unsigned t = 0; t < o->threads; t++) {
        pthread_join(subs[t].thread, NULL);
        ops += subs[t].ops;
        errors += subs[t].errors;
    }
    double el = now_s() - t0, cpu = cpu_s() - c0;
    printf("%-8s %-13s qd %2ux%u  %9.0f IOPS  %8.1f MiB/s  %6.1f us CPU/req%s\n", engine, w->name,
           qd, o->threads, (double)ops / el, (double)ops * w->len / el / (1024.0 * 1024.0),
           cpu / (double)ops * 1e6, errors ? "  (ERRORS)" : "");
    fflush(stdout);
    for (unsigned t = 0; t < o->threads; t++) {
        for (unsigned i = 0; i < qd; i++)
            free(subs[t].slots[i].iov);
        free(subs[t].slots);
        free(subs[t].buf);
        pthread_mutex_destroy(&subs[t].lock);
        pthread_cond_destroy(&subs[t].cond);
    }
    free(subs);
}

static int prepare_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        return -1;
    }
    uint8_t *chunk = malloc(BIG);
    for (uint64_t off = 0; off < size; off += BIG) {
        memset(chunk, (int)(off / BIG), BIG);
        if (pwrite(fd, chunk, BIG, (off_t)off) != (ssize_t)BIG) {
            perror("pwrite");
            free(chunk);
            close(fd);
            return -1;
        }
    }
    fdatasync(fd);
    /* Read it once so that it is in the page cache. */
    for (uint64_t off = 0; off < size; off += BIG)
        if (pread(fd, chunk, BIG, (off_t)off) < 0)
            break;
    free(chunk);
    close(fd);
    return 0;
}

static bool wanted(const struct opts *o, const char *engine)
{
    char list[64];
    snprintf(list, sizeof(list), "%s", o->engines);
    for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (strcmp(tok, engine) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    struct opts o = {.dir = "/tmp",
                     .size = 512ull << 20,
                     .seconds = 3,
                     .threads = 2,
                     .qd = 32,
                     .seq_qd = 4,
                     .workers = 8};
    snprintf(o.engines, sizeof(o.engines), "threads,uring,hybrid,mem");
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"size-mib", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 'n'},
        {"qd", required_argument, NULL, 'q'},
        {"seq-qd", required_argument, NULL, 'Q'},
        {"workers", required_argument, NULL, 'w'},
        {"engines", required_argument, NULL, 'e'},
        {"direct", no_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.dir = optarg;
            break;
        case 's':
            o.size = strtoull(optarg, NULL, 0) << 20;
            break;
        case 't':
            o.seconds = strtod(optarg, NULL);
            break;
        case 'n':
            o.threads = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'q':
            o.qd = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'Q':
            o.seq_qd = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'w':
            o.workers = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'D':
            o.direct = true;
            break;
        case 'e':
            snprintf(o.engines, sizeof(o.engines), "%s", optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: %s [--dir DIR] [--size-mib N] [--seconds S] [--threads N] "
                    "[--qd N] [--seq-qd N] [--workers N] [--engines threads,uring,hybrid,mem] "
                    "[--direct]\n",
                    argv[0]);
            return 2;
        }
    }
    if (o.threads == 0 || o.qd == 0 || o.seq_qd == 0 || o.workers == 0 ||
        o.size < (uint64_t)o.threads * BIG * 2) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    log_set_level(LOG_WARNING);
    char path[512];
    snprintf(path, sizeof(path), "%s/block_backend_bench.%d", o.dir, (int)getpid());
    if (prepare_file(path, o.size) < 0)
        return 1;
    printf("%llu MiB page-cached file in %s, %u submitter threads, %u workers, %.1f s per case\n",
           (unsigned long long)(o.size >> 20), o.dir, o.threads, o.workers, o.seconds);

    static const char *const engines[] = {"threads", "uring", "hybrid", "mem"};
    static const enum block_file_engine file_engines[] = {
        BLOCK_FILE_ENGINE_THREADS, BLOCK_FILE_ENGINE_URING, BLOCK_FILE_ENGINE_HYBRID};
    for (unsigned e = 0; e < 4; e++) {
        if (!wanted(&o, engines[e]))
            continue;
        struct config_block_dev cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.name = (char *)"bench";
        struct block_backend *be;
        if (e == 3) {
            cfg.type = CONFIG_BLOCK_MEM_ASYNC;
            cfg.mem_async.size = o.size;
            cfg.mem_async.workers = o.workers;
            be = block_backend_open(&cfg);
        } else {
            cfg.type = CONFIG_BLOCK_FILE;
            cfg.file.path = path;
            cfg.file.workers = o.workers;
            cfg.file.direct = o.direct;
            be = block_file_open(&cfg, file_engines[e]);
            if (be && strcmp(block_file_engine_name(be), engines[e]) != 0)
                printf("(%s fell back to %s)\n", engines[e], block_file_engine_name(be));
        }
        if (!be) {
            unlink(path);
            return 1;
        }
        for (unsigned i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
            run(be, engines[e], &workloads[i], &o);
        block_backend_destroy(be);
    }
    unlink(path);
    return 0;
}
