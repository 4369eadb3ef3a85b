/* crucible-ds: the test downstairs (tests/unit/support/crucible_ds.c) as a
 * program, for the VM tests and the benchmark: serves one region in DIR
 * on 127.0.0.1:PORT until killed (SIGTERM or SIGINT stop it cleanly).
 *
 *   crucible-ds --dir DIR --port PORT [--block-size 512] [--extent-size 4096]
 *               [--extent-count 16] [--uuid-byte N] [--encrypted] [--read-only]
 *               [--lag-ms N] [--corrupt-reads] [--min-generation N]
 *               [--bench-fill SEED] [--ready-file PATH]
 *               [--tls-cert PEM --tls-key PEM --tls-root PEM]
 *
 * --bench-fill stores the guest storage bench's pattern for SEED in every
 * 4 KiB of the region (guest/storage_bench.c, data_prepare), as the host
 * fills a disk file before a bench run.
 * --ready-file is written (with the pid) once the port is listening. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/crucible_ds.h"

/* The bench's block content (guest/storage_bench.c sb_base, SB_STEP). */
static void bench_block(uint64_t seed, uint64_t block, uint64_t words[512])
{
    uint64_t base = (seed ^ (block * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL;
    words[0] = seed;
    words[1] = block;
    for (unsigned i = 2; i < 512; i++)
        words[i] = base + i * 0x94D049BB133111EBULL;
}

static int bench_fill(struct crucible_ds *ds, const struct crucible_ds_config *cfg, uint64_t seed)
{
    uint64_t bytes = cfg->extent_size * cfg->extent_count * cfg->block_size;
    static uint64_t chunk[(1u << 20) / 8];
    for (uint64_t off = 0; off < bytes; off += sizeof(chunk)) {
        uint64_t n = bytes - off < sizeof(chunk) ? bytes - off : sizeof(chunk);
        for (uint64_t k = 0; k < n / 4096; k++)
            bench_block(seed, off / 4096 + k, chunk + k * 512);
        if (crucible_ds_store(ds, off / cfg->block_size, (const uint8_t *)chunk,
                              n / cfg->block_size) < 0)
            return -1;
    }
    return 0;
}

static unsigned long long number(const char *opt, const char *text, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || *end || end == text || v > max) {
        fprintf(stderr, "crucible-ds: --%s: not a number up to %llu: %s\n", opt, max, text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct crucible_ds_config cfg = {.block_size = 512, .extent_size = 4096, .extent_count = 16};
    unsigned long long port = 0, uuid_byte = 0x40;
    const char *ready_file = NULL;
    bool fill = false;
    unsigned long long fill_seed = 0;
    static const struct option opts[] = {
        {"dir", required_argument, 0, 'd'},
        {"port", required_argument, 0, 'p'},
        {"block-size", required_argument, 0, 'b'},
        {"extent-size", required_argument, 0, 's'},
        {"extent-count", required_argument, 0, 'c'},
        {"uuid-byte", required_argument, 0, 'u'},
        {"encrypted", no_argument, 0, 'e'},
        {"read-only", no_argument, 0, 'r'},
        {"lag-ms", required_argument, 0, 'l'},
        {"corrupt-reads", no_argument, 0, 'x'},
        {"min-generation", required_argument, 0, 'g'},
        {"ready-file", required_argument, 0, 'f'},
        {"bench-fill", required_argument, 0, 'F'},
        {"tls-cert", required_argument, 0, 'C'},
        {"tls-key", required_argument, 0, 'K'},
        {"tls-root", required_argument, 0, 'R'},
        {0, 0, 0, 0},
    };
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (o) {
        case 'd':
            cfg.dir = optarg;
            break;
        case 'p':
            port = number("port", optarg, 65535);
            break;
        case 'b':
            cfg.block_size = (uint32_t)number("block-size", optarg, 65536);
            break;
        case 's':
            cfg.extent_size = number("extent-size", optarg, 1u << 24);
            break;
        case 'c':
            cfg.extent_count = (uint32_t)number("extent-count", optarg, 1u << 20);
            break;
        case 'u':
            uuid_byte = number("uuid-byte", optarg, 255);
            break;
        case 'e':
            cfg.encrypted = true;
            break;
        case 'r':
            cfg.read_only = true;
            break;
        case 'l':
            cfg.lag_ms = (unsigned)number("lag-ms", optarg, 60000);
            break;
        case 'x':
            cfg.corrupt_reads = true;
            break;
        case 'g':
            cfg.min_generation = number("min-generation", optarg, UINT64_MAX);
            break;
        case 'f':
            ready_file = optarg;
            break;
        case 'C':
            cfg.tls_cert = optarg;
            break;
        case 'K':
            cfg.tls_key = optarg;
            break;
        case 'R':
            cfg.tls_root = optarg;
            break;
        case 'F':
            fill = true;
            fill_seed = number("bench-fill", optarg, UINT64_MAX);
            break;
        default:
            return 2;
        }
    }
    if (!cfg.tls_cert != !cfg.tls_key || !cfg.tls_cert != !cfg.tls_root) {
        fprintf(stderr, "crucible-ds: --tls-cert, --tls-key and --tls-root go together\n");
        return 2;
    }
    if (!cfg.dir || (cfg.block_size & (cfg.block_size - 1)) || cfg.block_size < 512 ||
        !cfg.extent_size || !cfg.extent_count) {
        fprintf(stderr, "crucible-ds: needs --dir, and a power-of-two --block-size of at least "
                        "512 and non-zero extents\n");
        return 2;
    }
    memset(cfg.region_uuid.b, (int)uuid_byte, sizeof(cfg.region_uuid.b));

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the serving thread inherits it */
    struct crucible_ds *ds = crucible_ds_start(&cfg, (uint16_t)port);
    if (!ds)
        return 1;
    if (fill &&
        ((cfg.extent_size * cfg.block_size) % 4096 || bench_fill(ds, &cfg, fill_seed) < 0)) {
        fprintf(stderr, "crucible-ds: --bench-fill needs an unencrypted region of whole 4 KiB "
                        "extents\n");
        return 1;
    }
    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (!f || fprintf(f, "%d %u\n", (int)getpid(), crucible_ds_port(ds)) < 0 || fclose(f)) {
            fprintf(stderr, "crucible-ds: %s: %s\n", ready_file, strerror(errno));
            return 1;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    crucible_ds_stop(ds);
    return 0;
}
