/* The snapshot loader (src/snapshot): the input is a snapshot file (a ustar
 * archive of global.json, config.toml, memory, bootrom and state
 * members). It is opened and indexed (snapshot_open), then loaded into a
 * small target (two RAM ranges, a bootrom, one vCPU, no disks), and the
 * state records it yields are walked field by field as the machine's
 * loader does. The seed is a real snapshot of that target: run the binary
 * with FUZZ_SNAPSHOT_SEED=PATH to write one. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/snap.h"
#include "config/config.h"
#include "snapshot/snapshot.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define RANGE_SIZE 0x4000u
#define ROM_SIZE 0x1000u

static struct config cfg;
static uint8_t rom[ROM_SIZE];
static uint8_t *ranges[2];
static int memfd = -1;
static char memfd_path[64];

static void target_init(struct snapshot_target *t)
{
    *t = (struct snapshot_target){.cfg = &cfg, .bootrom = rom, .bootrom_size = ROM_SIZE};
    for (unsigned i = 0; i < 2; i++)
        t->ranges[i] = (struct snapshot_range){i ? 0x100000000ull : 0, RANGE_SIZE, ranges[i]};
    t->range_count = 2;
}

static int dev_fields(void *opaque, struct snap *s)
{
    uint32_t v = 0x12345678;
    uint8_t raw[3] = {1, 2, 3};
    snap_u32(s, "reg", &v);
    snap_enter(s, "q%u", 0);
    snap_bytes(s, "raw", raw, sizeof(raw));
    snap_leave(s);
    return snap_error(s);
}

static void write_seed(const char *path)
{
    struct snap_buf state = {0};
    char err[512] = "";
    if (snap_save_record(&state, "machine", "machine", 1, dev_fields, NULL, err, sizeof(err)) ||
        snap_save_record(&state, "cpu0", "kvm-vcpu", 1, dev_fields, NULL, err, sizeof(err)) ||
        snap_save_record(&state, "com1", "uart16550", 2, dev_fields, NULL, err, sizeof(err)) ||
        snap_save_record(&state, "dev.disk0", "virtio-pci-blk", 1, dev_fields, NULL, err,
                         sizeof(err)))
        abort();
    for (unsigned i = 0; i < 2; i++) {
        memset(ranges[i] + 0x1000, 0x11 * (i + 1), 0x100);
        ranges[i][RANGE_SIZE - 1] = 0x5a;
    }
    struct snapshot_target t;
    target_init(&t);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || snapshot_write(&t, state.data, state.len, fd, err, sizeof(err)) < 0) {
        fprintf(stderr, "snapshot seed: %s\n", err);
        exit(1);
    }
    close(fd);
    snap_buf_free(&state);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    for (unsigned i = 0; i < ROM_SIZE; i++)
        rom[i] = (uint8_t)(i ^ 0x5a);
    for (unsigned i = 0; i < 2; i++) {
        ranges[i] = calloc(1, RANGE_SIZE);
        if (!ranges[i])
            abort();
    }
    static const char text[] =
        "[main]\nname = \"fuzz\"\ncpus = 1\nbootrom = \"/nonexistent/rom.bin\"\n"
        "memory = 64\n";
    if (config_parse("fuzz.toml", text, strlen(text), &cfg) < 0) {
        fprintf(stderr, "config: %s\n", cfg.error);
        abort();
    }
    const char *seed = getenv("FUZZ_SNAPSHOT_SEED");
    if (seed)
        write_seed(seed);
    memfd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
    if (memfd < 0)
        abort();
    snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
    return 0;
}

/* Walks the loaded state as the machine's loader would (records, then
 * each record's fields). */
static void walk_state(const struct snap_buf *state)
{
    size_t pos = 0;
    struct snap_record rec;
    char err[512];
    while (snap_next_record(state->data, state->len, &pos, &rec, err, sizeof(err)) == 1) {
        size_t fpos = 0;
        struct snap_field f;
        while (snap_next_field(&rec, &fpos, &f, err, sizeof(err)) == 1)
            ;
        if (fpos > rec.body_len)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    for (unsigned i = 0; i < 2; i++)
        memset(ranges[i], 0, RANGE_SIZE);
    char err[1024] = "";
    struct snapshot *s = NULL;
    if (snapshot_open(memfd_path, &s, err, sizeof(err)) < 0) {
        if (!err[0])
            abort(); /* a refusal must say why */
        return 0;
    }
    size_t len = 0;
    const char *text = snapshot_config_text(s, &len);
    if (!text || text[len] != '\0')
        abort();
    (void)snapshot_saved_realtime_ns(s);
    struct snapshot_target t;
    target_init(&t);
    struct snap_buf state = {0};
    if (snapshot_load(s, &t, &state, err, sizeof(err)) == 0)
        walk_state(&state);
    else if (!err[0])
        abort();
    snap_buf_free(&state);
    snapshot_close(s);
    return 0;
}
