#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/text.h"
#include "block/block.h"
#include "common/bytes.h"
#include "common/log.h"
#include "config/config.h"
#include "core/kvm_state.h"
#include "core/machine.h"
#include "snapshot/state_json.h"
#include "snapshot/tar.h"

#define PAGE 4096u
#define CHUNK (16u << 20)              /* memory moves in 16 MiB reads and writes */
#define CONFIG_MAX (16u << 20)         /* config.toml */
#define JSON_MEMBER_MAX (512ull << 20) /* a state record in hex, with room */
#define DISK_SAMPLES 8                 /* 4 KiB blocks hashed per disk */
#define HASH_SEED 0x9e3779b97f4a7c15ull

struct snapshot {
    char *path;
    struct tar_reader tar;
    json_t *global;
    uint8_t *config_text;
    size_t config_len;
    uint64_t saved_realtime_ns;
};

/* ---- Hashes (integrity against damage, not an adversary) ---- */

static uint64_t rotl64(uint64_t x, unsigned r)
{
    return x << r | x >> (64 - r);
}

#define HASH_PRIME 0x100000001b3ull

/* Four independent lanes over 32-byte blocks (one serial multiply chain
 * was half of a save's CPU), folded together, then the tail. */
static uint64_t hash_words(uint64_t h, const uint8_t *p, size_t len)
{
    uint64_t lane[4] = {h, h ^ 0x9e3779b97f4a7c15ull, h ^ 0xc2b2ae3d27d4eb4full,
                        h ^ 0x165667b19e3779f9ull};
    size_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (unsigned k = 0; k < 4; k++)
            lane[k] = rotl64((lane[k] ^ le64_load(p + i + 8 * k)) * HASH_PRIME, 29);
    h = lane[0] ^ rotl64(lane[1], 16) ^ rotl64(lane[2], 32) ^ rotl64(lane[3], 48);
    for (; i + 8 <= len; i += 8)
        h = rotl64((h ^ le64_load(p + i)) * HASH_PRIME, 29);
    for (; i < len; i++)
        h = rotl64((h ^ p[i]) * HASH_PRIME, 29);
    return h;
}

/* A page's part in a range's hash: all-zero pages have none, so holes in
 * the file and untouched guest RAM agree. */
static uint64_t hash_page(uint64_t h, uint64_t index, const uint8_t *p)
{
    if (tar_all_zero(p, PAGE))
        return h;
    h = rotl64((h ^ index) * 0xff51afd7ed558ccdull, 31);
    return hash_words(h, p, PAGE);
}

static json_t *json_hex64(uint64_t v)
{
    char text[24];
    snprintf(text, sizeof(text), "0x%" PRIx64, v);
    return json_string(text);
}

static bool parse_hex64(const json_t *j, uint64_t *out)
{
    const char *s = json_string_value(j);
    if (!s || s[0] != '0' || s[1] != 'x' || !s[2] || strlen(s) > 18)
        return false;
    uint64_t v = 0;
    for (const char *c = s + 2; *c; c++) {
        int d = (*c >= '0' && *c <= '9') ? *c - '0' : (*c >= 'a' && *c <= 'f') ? *c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

static bool get_u64(const json_t *obj, const char *key, uint64_t *out)
{
    const json_t *j = json_object_get(obj, key);
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return false;
    *out = (uint64_t)json_integer_value(j);
    return true;
}

/* ---- Names ---- */

/* A device or VM name as one file name: [A-Za-z0-9_.-] kept (not a
 * leading dot), anything else as %XX. */
static void escape_name(const char *name, char *out, size_t size)
{
    size_t at = 0;
    for (const char *c = name; *c && at + 4 < size; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || (*c == '.' && c != name);
        if (plain)
            out[at++] = *c;
        else
            at += (size_t)snprintf(out + at, size - at, "%%%02X", (unsigned char)*c);
    }
    out[at] = '\0';
}

/* False if the escaped name does not fit (a tar name holds 256 bytes). */
static bool device_member(const char *device, char *out, size_t size)
{
    char escaped[3 * SNAP_NAME_MAX + 1];
    escape_name(device, escaped, sizeof(escaped));
    int n = snprintf(out, size, "devices/%s.json", escaped);
    return n >= 0 && (size_t)n < size;
}

static void memory_member(const struct snapshot_range *r, char *out, size_t size)
{
    snprintf(out, size, "memory/%" PRIx64 "-%" PRIx64 ".bin", r->gpa, r->gpa + r->size);
}

/* ---- Disk and bootrom identity ---- */

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct disk_identity {
    uint64_t size, mtime_ns, sample_hash;
};

/* Size, mtime and a hash of DISK_SAMPLES blocks spread over the disk. */
static int disk_identity(const char *path, struct disk_identity *id, char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        text_error(why, why_size, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    id->size = end > 0 ? (uint64_t)end : 0;
    id->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    uint64_t h = HASH_SEED;
    uint8_t block[PAGE];
    for (unsigned i = 0; i < DISK_SAMPLES && id->size; i++) {
        uint64_t blocks = (id->size + PAGE - 1) / PAGE;
        uint64_t at = blocks * i / DISK_SAMPLES * PAGE;
        ssize_t n = pread(fd, block, sizeof(block), (off_t)at);
        if (n < 0) {
            text_error(why, why_size, "read: %s", strerror(errno));
            close(fd);
            return -1;
        }
        h = hash_words(rotl64(h ^ at, 17), block, (size_t)n);
    }
    close(fd);
    id->sample_hash = h;
    return 0;
}

/* ---- RAM disks (mem-async): their contents travel in disks/NAME.bin ---- */

struct sync_io {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
};

static void sync_complete(struct block_request *req, int status)
{
    struct sync_io *io = req->opaque;
    pthread_mutex_lock(&io->lock);
    io->done = true;
    io->status = status;
    pthread_cond_signal(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

/* One request through the back end, waited for. Returns 0 or -errno. */
static int block_sync(struct block_backend *be, enum block_op op, uint64_t offset, void *buf,
                      size_t len)
{
    struct sync_io io = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct iovec iov = {buf, len};
    struct block_request req = {.op = op,
                                .offset = offset,
                                .len = len,
                                .iov = &iov,
                                .iovcnt = 1,
                                .complete = sync_complete,
                                .opaque = &io};
    int r = block_submit(be, &req);
    if (r == 0) {
        pthread_mutex_lock(&io.lock);
        while (!io.done)
            pthread_cond_wait(&io.cond, &io.lock);
        pthread_mutex_unlock(&io.lock);
        r = io.status;
    }
    pthread_cond_destroy(&io.cond);
    pthread_mutex_destroy(&io.lock);
    return r;
}

static bool ram_disk_member(const char *block_dev, char *out, size_t size)
{
    char escaped[3 * SNAP_NAME_MAX + 1];
    escape_name(block_dev, escaped, sizeof(escaped));
    int n = snprintf(out, size, "disks/%s.bin", escaped);
    return n >= 0 && (size_t)n < size;
}

static struct block_backend *ram_disk_backend(const struct snapshot_target *t, size_t i, char *err,
                                              size_t err_size)
{
    struct block_backend *be = t->backends ? t->backends[i] : NULL;
    if (!be)
        text_error(err, err_size, "block_dev.%s: no back end to move its contents through",
                   t->cfg->block_devs[i].name);
    return be;
}

/* Every mem-async disk to a sparse member; their list for global.json. */
static json_t *write_ram_disks(struct tar_writer *w, const struct snapshot_target *t, char *err,
                               size_t err_size)
{
    json_t *list = json_array();
    uint8_t *buf = malloc(CHUNK);
    if (!list || !buf) {
        text_error(err, err_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < t->cfg->block_dev_count; i++) {
        const struct config_block_dev *bd = &t->cfg->block_devs[i];
        if (bd->type != CONFIG_BLOCK_MEM_ASYNC)
            continue;
        struct block_backend *be = ram_disk_backend(t, i, err, err_size);
        if (!be)
            goto fail;
        char member[TAR_NAME_MAX + 1];
        if (!ram_disk_member(bd->name, member, sizeof(member))) {
            text_error(err, err_size, "block_dev.%s: name too long for a member name", bd->name);
            goto fail;
        }
        uint64_t size = be->info.size, h = HASH_SEED;
        if (tar_member_begin(w, member, size) < 0) {
            text_error(err, err_size, "%s", w->error);
            goto fail;
        }
        for (uint64_t off = 0; off < size; off += CHUNK) {
            size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
            int r = block_sync(be, BLOCK_OP_READ, off, buf, n);
            if (r < 0) {
                text_error(err, err_size, "block_dev.%s: read at %llu: %s", bd->name,
                           (unsigned long long)off, strerror(-r));
                goto fail;
            }
            for (size_t p = 0; p + PAGE <= n; p += PAGE)
                h = hash_page(h, (off + p) / PAGE, buf + p);
            if (tar_member_data(w, buf, n, true) < 0) {
                text_error(err, err_size, "%s", w->error);
                goto fail;
            }
        }
        if (tar_member_end(w) < 0) {
            text_error(err, err_size, "%s", w->error);
            goto fail;
        }
        json_array_append_new(list,
                              json_pack("{s:s, s:I, s:s, s:o}", "block_dev", bd->name, "size",
                                        (json_int_t)size, "member", member, "hash", json_hex64(h)));
    }
    free(buf);
    return list;
fail:
    free(buf);
    json_decref(list);
    return NULL;
}

/* ---- Writing ---- */

void snapshot_target_of_machine(struct machine *m, const struct config *cfg,
                                struct block_backend *const *backends, struct snapshot_target *t)
{
    *t = (struct snapshot_target){
        .cfg = cfg, .backends = backends, .bootrom = m->bootrom, .bootrom_size = m->bootrom_size};
    t->ranges[t->range_count++] = (struct snapshot_range){0, m->lowmem_size, m->lowmem};
    if (m->highmem_size)
        t->ranges[t->range_count++] =
            (struct snapshot_range){HIGHMEM_BASE, m->highmem_size, m->highmem};
}

static int write_json_member(struct tar_writer *w, const char *name, json_t *j, char *err,
                             size_t err_size)
{
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    if (!text) {
        text_error(err, err_size, "%s: out of memory", name);
        return -1;
    }
    int r = tar_write_member(w, name, text, strlen(text));
    free(text);
    if (r < 0)
        text_error(err, err_size, "%s", w->error);
    return r;
}

/* One range: a sparse member, and its hash for global.json. */
static int write_memory(struct tar_writer *w, const struct snapshot_range *r, uint64_t *hash,
                        char *err, size_t err_size)
{
    char name[64];
    memory_member(r, name, sizeof(name));
    if (tar_member_begin(w, name, r->size) < 0) {
        text_error(err, err_size, "%s", w->error);
        return -1;
    }
    uint64_t h = HASH_SEED;
    for (uint64_t off = 0; off < r->size; off += CHUNK) {
        size_t n = r->size - off < CHUNK ? (size_t)(r->size - off) : CHUNK;
        for (size_t p = 0; p + PAGE <= n; p += PAGE)
            h = hash_page(h, (off + p) / PAGE, r->hva + off + p);
        if (tar_member_data(w, r->hva + off, n, true) < 0) {
            text_error(err, err_size, "%s", w->error);
            return -1;
        }
    }
    *hash = h;
    if (tar_member_end(w) < 0) {
        text_error(err, err_size, "%s", w->error);
        return -1;
    }
    return 0;
}

static json_t *disks_json(const struct config *cfg, char *err, size_t err_size)
{
    json_t *disks = json_array();
    for (size_t i = 0; disks && i < cfg->block_dev_count; i++) {
        const struct config_block_dev *bd = &cfg->block_devs[i];
        if (bd->type != CONFIG_BLOCK_FILE)
            continue;
        struct disk_identity id;
        char why[256];
        if (disk_identity(bd->file.path, &id, why, sizeof(why)) < 0) {
            text_error(err, err_size, "block_dev.%s: %s: %s", bd->name, bd->file.path, why);
            json_decref(disks);
            return NULL;
        }
        json_array_append_new(disks, json_pack("{s:s, s:s, s:I, s:I, s:o}", "block_dev", bd->name,
                                               "path", bd->file.path, "size", (json_int_t)id.size,
                                               "mtime_ns", (json_int_t)id.mtime_ns, "sample_hash",
                                               json_hex64(id.sample_hash)));
    }
    return disks;
}

int snapshot_write(const struct snapshot_target *t, const uint8_t *state, size_t state_len, int fd,
                   char *err, size_t err_size)
{
    const struct config *cfg = t->cfg;
    struct tar_writer w;
    tar_writer_init(&w, fd);
    int rc = -1;
    json_t *global = json_object(), *machine_state = json_array(), *devices = json_array();
    json_t *memory = json_array();
    uint64_t saved_realtime = realtime_ns(), saved_monotonic = monotonic_ns();
    if (!global || !machine_state || !devices || !memory) {
        text_error(err, err_size, "out of memory");
        goto out;
    }
    const char *text = cfg->source_text ? cfg->source_text : "";
    if (tar_write_member(&w, "config.toml", text, strlen(text)) < 0) {
        text_error(err, err_size, "%s", w.error);
        goto out;
    }
    /* The machine, kvm and vCPU records go to global.json, the rest to
     * one member per device. */
    size_t pos = 0;
    unsigned index = 0;
    struct snap_record rec;
    int r;
    while ((r = snap_next_record(state, state_len, &pos, &rec, err, err_size)) == 1) {
        json_t *j = state_record_to_json(&rec, err, err_size);
        if (!j)
            goto out;
        if (index++ < 2 + cfg->main.cpus) {
            json_array_append_new(machine_state, j);
            continue;
        }
        char member[TAR_NAME_MAX + 1];
        if (!device_member(rec.name, member, sizeof(member))) {
            text_error(err, err_size, "%s: name too long for a member name", rec.name);
            json_decref(j);
            goto out;
        }
        int wr = write_json_member(&w, member, j, err, err_size);
        json_decref(j);
        if (wr < 0)
            goto out;
        json_array_append_new(devices,
                              json_pack("{s:s, s:s, s:I, s:s}", "name", rec.name, "kind", rec.kind,
                                        "version", (json_int_t)rec.version, "member", member));
    }
    if (r < 0)
        goto out;
    for (unsigned i = 0; i < t->range_count; i++) {
        const struct snapshot_range *range = &t->ranges[i];
        uint64_t hash;
        if (write_memory(&w, range, &hash, err, err_size) < 0)
            goto out;
        char member[64];
        memory_member(range, member, sizeof(member));
        json_array_append_new(memory,
                              json_pack("{s:o, s:o, s:s, s:o}", "start", json_hex64(range->gpa),
                                        "end", json_hex64(range->gpa + range->size), "member",
                                        member, "hash", json_hex64(hash)));
    }
    uint64_t bootrom_hash = hash_words(HASH_SEED, t->bootrom, t->bootrom_size);
    json_t *ram_disks = write_ram_disks(&w, t, err, err_size);
    if (!ram_disks)
        goto out;
    json_object_set_new(global, "ram_disks", ram_disks);
    json_t *disks = disks_json(cfg, err, err_size);
    if (!disks)
        goto out;
    json_object_set_new(global, "format", json_string(SNAPSHOT_FORMAT));
    json_object_set_new(global, "format_version", json_integer(SNAPSHOT_FORMAT_VERSION));
    json_object_set_new(global, "writer", json_string(SNAPSHOT_WRITER));
    json_object_set_new(global, "name", json_string(cfg->main.name));
    json_object_set_new(global, "cpus", json_integer(cfg->main.cpus));
    json_object_set_new(global, "memory_bytes",
                        json_integer((json_int_t)(cfg->main.memory_mib * MIB)));
    json_object_set_new(global, "saved_at",
                        json_pack("{s:I, s:I}", "realtime_ns", (json_int_t)saved_realtime,
                                  "monotonic_ns", (json_int_t)saved_monotonic));
    json_object_set_new(global, "memory", memory);
    memory = NULL;
    json_object_set_new(global, "bootrom",
                        json_pack("{s:I, s:o}", "size", (json_int_t)t->bootrom_size, "hash",
                                  json_hex64(bootrom_hash)));
    json_object_set_new(global, "disks", disks);
    json_object_set_new(global, "devices", devices);
    devices = NULL;
    json_object_set_new(global, "machine_state", machine_state);
    machine_state = NULL;
    if (write_json_member(&w, "global.json", global, err, err_size) < 0)
        goto out;
    if (tar_writer_finish(&w) < 0) {
        text_error(err, err_size, "%s", w.error);
        goto out;
    }
    rc = 0;
out:
    json_decref(global);
    json_decref(machine_state);
    json_decref(devices);
    json_decref(memory);
    return rc;
}

/* ".NAME.partial" in path's directory: complete files only under path. */
static char *partial_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path + 1) : 0;
    size_t size = strlen(path) + sizeof("..partial");
    char *partial = malloc(size);
    if (partial)
        snprintf(partial, size, "%.*s.%s.partial", dir, path, path + dir);
    return partial;
}

/* rename() that refuses to replace what is at to. */
static int rename_new(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* A filesystem without RENAME_NOREPLACE: link() refuses likewise. */
    if (link(from, to) < 0)
        return -1;
    unlink(from);
    return 0;
}

int snapshot_save_to(struct machine *m, const struct config *cfg,
                     struct block_backend *const *backends, const char *path, char *err,
                     size_t err_size)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        text_error(err, err_size, "%s exists; not replacing it", path);
        return -1;
    }
    struct snap_buf state = {0};
    if (machine_save_state(m, &state, err, err_size) < 0) {
        snap_buf_free(&state);
        return -1;
    }
    char *partial = partial_name(path);
    int fd = partial ? open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        text_error(err, err_size, "%s: %s", partial ? partial : path,
                   partial ? strerror(errno) : "out of memory");
        snap_buf_free(&state);
        free(partial);
        return -1;
    }
    struct snapshot_target t;
    snapshot_target_of_machine(m, cfg, backends, &t);
    uint64_t start = monotonic_ns();
    int r = snapshot_write(&t, state.data, state.len, fd, err, err_size);
    snap_buf_free(&state);
    if (r == 0 && fsync(fd) < 0) {
        text_error(err, err_size, "%s: fsync: %s", partial, strerror(errno));
        r = -1;
    }
    if (close(fd) < 0 && r == 0) {
        text_error(err, err_size, "%s: close: %s", partial, strerror(errno));
        r = -1;
    }
    if (r == 0 && rename_new(partial, path) < 0) {
        text_error(err, err_size, "%s: rename: %s", path, strerror(errno));
        r = -1;
    }
    if (r < 0)
        unlink(partial);
    free(partial);
    if (r == 0)
        log_info("snapshot: wrote %s (%.2f s)", path, (double)(monotonic_ns() - start) / 1e9);
    return r;
}

int snapshot_save(struct machine *m, const struct config *cfg,
                  struct block_backend *const *backends, char *path, size_t path_size, char *err,
                  size_t err_size)
{
    char name[3 * 64 + 1];
    escape_name(cfg->main.name, name, sizeof(name));
    snprintf(path, path_size, "%s-%" PRIu64 ".tar", name, realtime_ns() / 1000000);
    return snapshot_save_to(m, cfg, backends, path, err, err_size);
}

/* ---- Reading ---- */

void snapshot_close(struct snapshot *s)
{
    if (!s)
        return;
    tar_reader_close(&s->tar);
    json_decref(s->global);
    free(s->config_text);
    free(s->path);
    free(s);
}

const char *snapshot_config_text(const struct snapshot *s, size_t *len)
{
    *len = s->config_len;
    return (const char *)s->config_text;
}

uint64_t snapshot_saved_realtime_ns(const struct snapshot *s)
{
    return s->saved_realtime_ns;
}

static json_t *read_json_member(const struct snapshot *s, const char *name, char *err,
                                size_t err_size)
{
    const struct tar_member *m = tar_find(&s->tar, name);
    if (!m) {
        text_error(err, err_size, "member %s: missing", name);
        return NULL;
    }
    uint8_t *data;
    size_t len;
    if (tar_read_member(&s->tar, m, JSON_MEMBER_MAX, &data, &len, err, err_size) < 0)
        return NULL;
    json_error_t je;
    json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    free(data);
    if (!j) {
        text_error(err, err_size, "member %s: not valid JSON (line %d: %s)", name, je.line,
                   je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        text_error(err, err_size, "member %s: not a JSON object", name);
        json_decref(j);
        return NULL;
    }
    return j;
}

int snapshot_open(const char *path, struct snapshot **out, char *err, size_t err_size)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    char why[TAR_ERROR_SIZE];
    *out = NULL;
    if (!s || !(s->path = strdup(path))) {
        free(s);
        text_error(err, err_size, "out of memory");
        return -1;
    }
    if (tar_reader_open(&s->tar, path, why, sizeof(why)) < 0) {
        text_error(err, err_size, "%s", why);
        goto fail;
    }
    s->global = read_json_member(s, "global.json", err, err_size);
    if (!s->global)
        goto fail;
    const char *format = json_string_value(json_object_get(s->global, "format"));
    uint64_t version = 0;
    if (!format || strcmp(format, SNAPSHOT_FORMAT) != 0) {
        text_error(err, err_size, "member global.json: format is not \"%s\"", SNAPSHOT_FORMAT);
        goto fail;
    }
    if (!get_u64(s->global, "format_version", &version) || version != SNAPSHOT_FORMAT_VERSION) {
        text_error(err, err_size,
                   "member global.json: format_version %llu; this VMM reads version %u only",
                   (unsigned long long)version, SNAPSHOT_FORMAT_VERSION);
        goto fail;
    }
    if (!get_u64(json_object_get(s->global, "saved_at"), "realtime_ns", &s->saved_realtime_ns)) {
        text_error(err, err_size, "member global.json: saved_at.realtime_ns missing");
        goto fail;
    }
    const struct tar_member *cm = tar_find(&s->tar, "config.toml");
    if (!cm) {
        text_error(err, err_size, "member config.toml: missing");
        goto fail;
    }
    if (tar_read_member(&s->tar, cm, CONFIG_MAX, &s->config_text, &s->config_len, err, err_size) <
        0)
        goto fail;
    if (strlen((const char *)s->config_text) != s->config_len) {
        text_error(err, err_size, "member config.toml: holds a NUL byte");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    snapshot_close(s);
    return -1;
}

static int check_shape(const struct snapshot *s, const struct snapshot_target *t, char *err,
                       size_t err_size)
{
    uint64_t cpus, memory_bytes;
    if (!get_u64(s->global, "cpus", &cpus) || cpus != t->cfg->main.cpus) {
        text_error(err, err_size, "member global.json: cpus does not match config.toml's %u",
                   t->cfg->main.cpus);
        return -1;
    }
    if (!get_u64(s->global, "memory_bytes", &memory_bytes) ||
        memory_bytes != t->cfg->main.memory_mib * MIB) {
        text_error(err, err_size,
                   "member global.json: memory_bytes does not match config.toml's %llu MiB",
                   (unsigned long long)t->cfg->main.memory_mib);
        return -1;
    }
    const json_t *bootrom = json_object_get(s->global, "bootrom");
    uint64_t size, hash;
    if (!get_u64(bootrom, "size", &size) || !parse_hex64(json_object_get(bootrom, "hash"), &hash)) {
        text_error(err, err_size, "member global.json: bootrom size or hash missing");
        return -1;
    }
    if (size != t->bootrom_size || hash != hash_words(HASH_SEED, t->bootrom, t->bootrom_size)) {
        text_error(err, err_size,
                   "bootrom %s: not the bootrom the snapshot was taken with (size %llu, "
                   "was %llu, or its contents differ)",
                   t->cfg->main.bootrom, (unsigned long long)t->bootrom_size,
                   (unsigned long long)size);
        return -1;
    }
    return 0;
}

static int check_disks(const struct snapshot *s, const struct config *cfg, char *err,
                       size_t err_size)
{
    const json_t *disks = json_object_get(s->global, "disks");
    if (!json_is_array(disks)) {
        text_error(err, err_size, "member global.json: disks missing");
        return -1;
    }
    size_t file_disks = 0;
    for (size_t i = 0; i < cfg->block_dev_count; i++) {
        const struct config_block_dev *bd = &cfg->block_devs[i];
        if (bd->type != CONFIG_BLOCK_FILE)
            continue;
        file_disks++;
        const json_t *d = NULL, *cand;
        size_t k;
        json_array_foreach(disks, k, cand)
        {
            const char *n = json_string_value(json_object_get(cand, "block_dev"));
            if (n && strcmp(n, bd->name) == 0)
                d = cand;
        }
        uint64_t size, mtime, hash;
        if (!d || !get_u64(d, "size", &size) || !get_u64(d, "mtime_ns", &mtime) ||
            !parse_hex64(json_object_get(d, "sample_hash"), &hash)) {
            text_error(err, err_size, "member global.json: no identity recorded for block_dev.%s",
                       bd->name);
            return -1;
        }
        struct disk_identity id;
        char why[256];
        if (disk_identity(bd->file.path, &id, why, sizeof(why)) < 0) {
            text_error(err, err_size, "block_dev.%s: %s: %s", bd->name, bd->file.path, why);
            return -1;
        }
        const char *what = id.size != size          ? "its size"
                           : id.mtime_ns != mtime   ? "its modification time"
                           : id.sample_hash != hash ? "its contents (sampled blocks)"
                                                    : NULL;
        if (what) {
            text_error(err, err_size,
                       "block_dev.%s: %s is not the disk the snapshot was taken with: %s differs "
                       "(size %llu, was %llu)",
                       bd->name, bd->file.path, what, (unsigned long long)id.size,
                       (unsigned long long)size);
            return -1;
        }
    }
    if (json_array_size(disks) != file_disks) {
        text_error(err, err_size, "member global.json: disks lists %zu file disks, the config %zu",
                   json_array_size(disks), file_disks);
        return -1;
    }
    return 0;
}

/* The memory list must be t's ranges exactly, each with its member. */
static int check_ranges(const struct snapshot *s, const struct snapshot_target *t,
                        const struct tar_member **members, uint64_t *hashes, char *err,
                        size_t err_size)
{
    const json_t *memory = json_object_get(s->global, "memory");
    if (!json_is_array(memory)) {
        text_error(err, err_size, "member global.json: memory missing");
        return -1;
    }
    for (unsigned i = 0; i < t->range_count; i++) {
        const struct snapshot_range *r = &t->ranges[i];
        char name[64];
        memory_member(r, name, sizeof(name));
        const json_t *e = json_array_get(memory, i);
        uint64_t start, end;
        const char *member = json_string_value(json_object_get(e, "member"));
        if (!e || !parse_hex64(json_object_get(e, "start"), &start) ||
            !parse_hex64(json_object_get(e, "end"), &end) || !member ||
            !parse_hex64(json_object_get(e, "hash"), &hashes[i])) {
            text_error(err, err_size,
                       "member %s: the config's memory range 0x%" PRIx64 "-0x%" PRIx64
                       " is not in global.json's memory list",
                       name, r->gpa, r->gpa + r->size);
            return -1;
        }
        if (start != r->gpa || end != r->gpa + r->size || strcmp(member, name) != 0) {
            text_error(err, err_size,
                       "member %s: the snapshot's memory range 0x%" PRIx64 "-0x%" PRIx64
                       " does not match the config's 0x%" PRIx64 "-0x%" PRIx64,
                       member, start, end, r->gpa, r->gpa + r->size);
            return -1;
        }
        members[i] = tar_find(&s->tar, name);
        if (!members[i]) {
            text_error(err, err_size, "member %s: missing", name);
            return -1;
        }
        if (members[i]->size != r->size) {
            text_error(err, err_size, "member %s: %llu bytes, the range has %llu", name,
                       (unsigned long long)members[i]->size, (unsigned long long)r->size);
            return -1;
        }
    }
    if (json_array_size(memory) != t->range_count) {
        text_error(err, err_size, "member global.json: %zu memory ranges, the config has %u",
                   json_array_size(memory), t->range_count);
        return -1;
    }
    return 0;
}

/* Reads a member's data extents (holes stay untouched, so zero pages cost
 * no RAM) into r, hashing the pages as they complete. */
static int load_range(const struct snapshot *s, const struct tar_member *m,
                      const struct snapshot_range *r, uint64_t *hash, char *err, size_t err_size)
{
    const uint64_t none = UINT64_MAX;
    uint64_t h = HASH_SEED, pending = none, pages = r->size / PAGE;
    uint64_t off = 0;
    while (off < m->size) {
        off_t data = lseek(s->tar.fd, (off_t)(m->offset + off), SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break; /* only a hole is left */
        uint64_t a = data < 0 ? off : (uint64_t)data - m->offset, b = m->size;
        if (a >= m->size)
            break;
        if (data >= 0) {
            off_t hole = lseek(s->tar.fd, data, SEEK_HOLE);
            if (hole >= 0 && (uint64_t)hole - m->offset < b)
                b = (uint64_t)hole - m->offset;
        }
        for (uint64_t at = a; at < b;) {
            size_t n = b - at < CHUNK ? (size_t)(b - at) : CHUNK;
            ssize_t got = pread(s->tar.fd, r->hva + at, n, (off_t)(m->offset + at));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                text_error(err, err_size, "member %s: read error at %llu: %s", m->name,
                           (unsigned long long)at, got < 0 ? strerror(errno) : "end of file");
                return -1;
            }
            at += (uint64_t)got;
        }
        uint64_t first = a / PAGE;
        if (pending != none && pending < first) {
            h = hash_page(h, pending, r->hva + pending * PAGE);
            pending = none;
        }
        if (pending == first)
            pending = none;
        for (uint64_t p = first; p < b / PAGE && p < pages; p++)
            h = hash_page(h, p, r->hva + p * PAGE);
        if (b % PAGE)
            pending = b / PAGE;
        off = b;
    }
    if (pending != none && pending < pages)
        h = hash_page(h, pending, r->hva + pending * PAGE);
    *hash = h;
    return 0;
}

/* Every mem-async disk's contents (apply: written to its back end and
 * checked against the hash as read; all-zero chunks are skipped, the disk
 * starts zero-filled), or (!apply) only the entries and members checked. */
static int load_ram_disks(const struct snapshot *s, const struct snapshot_target *t, bool apply,
                          char *err, size_t err_size)
{
    const json_t *list = json_object_get(s->global, "ram_disks");
    if (!json_is_array(list)) {
        text_error(err, err_size, "member global.json: ram_disks missing");
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < t->cfg->block_dev_count; i++) {
        const struct config_block_dev *bd = &t->cfg->block_devs[i];
        if (bd->type != CONFIG_BLOCK_MEM_ASYNC)
            continue;
        count++;
        char name[TAR_NAME_MAX + 1];
        if (!ram_disk_member(bd->name, name, sizeof(name))) {
            text_error(err, err_size, "block_dev.%s: name too long for a member name", bd->name);
            return -1;
        }
        const json_t *e = NULL, *cand;
        size_t k;
        json_array_foreach(list, k, cand)
        {
            const char *n = json_string_value(json_object_get(cand, "block_dev"));
            if (n && strcmp(n, bd->name) == 0)
                e = cand;
        }
        uint64_t size, hash;
        const char *member = json_string_value(json_object_get(e, "member"));
        if (!e || !get_u64(e, "size", &size) || !parse_hex64(json_object_get(e, "hash"), &hash) ||
            !member || strcmp(member, name) != 0) {
            text_error(err, err_size, "member global.json: ram_disks has no entry for block_dev.%s",
                       bd->name);
            return -1;
        }
        struct block_backend *be = ram_disk_backend(t, i, err, err_size);
        if (!be)
            return -1;
        const struct tar_member *m = tar_find(&s->tar, name);
        if (!m) {
            text_error(err, err_size, "member %s: missing", name);
            return -1;
        }
        if (size != be->info.size || m->size != size) {
            text_error(err, err_size, "member %s: %llu bytes, block_dev.%s has %llu", name,
                       (unsigned long long)m->size, bd->name, (unsigned long long)be->info.size);
            return -1;
        }
        if (!apply)
            continue;
        uint8_t *buf = malloc(CHUNK);
        if (!buf) {
            text_error(err, err_size, "out of memory");
            return -1;
        }
        uint64_t h = HASH_SEED;
        int r = 0;
        for (uint64_t off = 0; r == 0 && off < size; off += CHUNK) {
            size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
            if (tar_read_at(&s->tar, buf, n, m->offset + off) < 0) {
                text_error(err, err_size, "member %s: read error", name);
                r = -1;
                break;
            }
            for (size_t p = 0; p + PAGE <= n; p += PAGE)
                h = hash_page(h, (off + p) / PAGE, buf + p);
            if (tar_all_zero(buf, n))
                continue;
            int w = block_sync(be, BLOCK_OP_WRITE, off, buf, n);
            if (w < 0) {
                text_error(err, err_size, "block_dev.%s: write at %llu: %s", bd->name,
                           (unsigned long long)off, strerror(-w));
                r = -1;
            }
        }
        free(buf);
        if (r < 0)
            return -1;
        if (h != hash) {
            text_error(err, err_size,
                       "member %s: corrupt (its contents do not match the hash in global.json)",
                       name);
            return -1;
        }
    }
    if (json_array_size(list) != count) {
        text_error(err, err_size, "member global.json: ram_disks lists %zu disks, the config %zu",
                   json_array_size(list), count);
        return -1;
    }
    return 0;
}

/* Appends the record member names to state. */
static int append_record(const json_t *rec, const char *member, struct snap_buf *state, char *err,
                         size_t err_size)
{
    char why[512];
    if (state_record_from_json(rec, state, why, sizeof(why)) < 0) {
        text_error(err, err_size, "member %s: %s", member, why);
        return -1;
    }
    return 0;
}

static int read_state(const struct snapshot *s, const struct snapshot_target *t,
                      struct snap_buf *state, char *err, size_t err_size)
{
    const json_t *machine_state = json_object_get(s->global, "machine_state");
    if (!json_is_array(machine_state) || json_array_size(machine_state) != 2 + t->cfg->main.cpus) {
        text_error(err, err_size,
                   "member global.json: machine_state must hold the machine, kvm and %u vCPU "
                   "records",
                   t->cfg->main.cpus);
        return -1;
    }
    size_t i;
    const json_t *rec;
    json_array_foreach(machine_state, i, rec)
    {
        if (append_record(rec, "global.json", state, err, err_size) < 0)
            return -1;
    }
    const json_t *devices = json_object_get(s->global, "devices");
    if (!json_is_array(devices) || json_array_size(devices) > MACHINE_MAX_DEVICES) {
        text_error(err, err_size, "member global.json: devices missing or too long");
        return -1;
    }
    const json_t *d;
    json_array_foreach(devices, i, d)
    {
        const char *name = json_string_value(json_object_get(d, "name"));
        if (!name) {
            text_error(err, err_size, "member global.json: devices[%zu] has no name", i);
            return -1;
        }
        char member[TAR_NAME_MAX + 1];
        if (!device_member(name, member, sizeof(member))) {
            text_error(err, err_size, "member global.json: devices[%zu]: name too long", i);
            return -1;
        }
        json_t *j = read_json_member(s, member, err, err_size);
        if (!j)
            return -1;
        const char *inner = json_string_value(json_object_get(j, "name"));
        int r = 0;
        if (!inner || strcmp(inner, name) != 0) {
            text_error(err, err_size, "member %s: the record is not of device %s", member, name);
            r = -1;
        }
        if (r == 0)
            r = append_record(j, member, state, err, err_size);
        json_decref(j);
        if (r < 0)
            return -1;
    }
    return 0;
}

int snapshot_load(struct snapshot *s, const struct snapshot_target *t, struct snap_buf *state,
                  char *err, size_t err_size)
{
    const struct tar_member *members[SNAPSHOT_MAX_RANGES];
    uint64_t hashes[SNAPSHOT_MAX_RANGES];
    if (check_shape(s, t, err, err_size) < 0 || check_disks(s, t->cfg, err, err_size) < 0 ||
        check_ranges(s, t, members, hashes, err, err_size) < 0 ||
        load_ram_disks(s, t, false, err, err_size) < 0 ||
        read_state(s, t, state, err, err_size) < 0)
        return -1;
    for (unsigned i = 0; i < t->range_count; i++) {
        uint64_t hash;
        if (load_range(s, members[i], &t->ranges[i], &hash, err, err_size) < 0)
            return -1;
        if (hash != hashes[i]) {
            text_error(err, err_size,
                       "member %s: corrupt (its contents do not match the hash in global.json)",
                       members[i]->name);
            return -1;
        }
    }
    return load_ram_disks(s, t, true, err, err_size);
}

/* A machine state error starts with the record's name: prefix the member
 * that record came from. */
static void name_state_member(struct machine *m, char *err, size_t err_size)
{
    char member[TAR_NAME_MAX + 1] = "global.json";
    for (unsigned i = 0; i < m->device_count; i++) {
        size_t n = strlen(m->devices[i]->name);
        if (strncmp(err, m->devices[i]->name, n) == 0 && (err[n] == ' ' || err[n] == ':') &&
            !device_member(m->devices[i]->name, member, sizeof(member)))
            snprintf(member, sizeof(member), "global.json");
    }
    char *copy = strdup(err);
    if (copy) {
        text_error(err, err_size, "member %s: %s", member, copy);
        free(copy);
    }
}

int snapshot_restore(struct snapshot *s, struct machine *m, const struct config *cfg,
                     struct block_backend *const *backends, char *err, size_t err_size)
{
    struct snapshot_target t;
    snapshot_target_of_machine(m, cfg, backends, &t);
    struct snap_buf state = {0};
    uint64_t start = monotonic_ns();
    int r = snapshot_load(s, &t, &state, err, err_size);
    if (r == 0 && state.failed) {
        text_error(err, err_size, "out of memory reading the device state");
        r = -1;
    }
    if (r == 0)
        r = machine_pause(m, err, err_size);
    if (r == 0 && machine_load_state(m, state.data, state.len, err, err_size) < 0) {
        name_state_member(m, err, err_size);
        r = -1;
    }
    snap_buf_free(&state);
    if (r == 0)
        log_info("snapshot: restored %s (%.2f s)", s->path, (double)(monotonic_ns() - start) / 1e9);
    return r;
}

int snapshot_catch_up(struct machine *m, uint64_t saved_realtime_ns, char *err, size_t err_size)
{
    uint64_t now = realtime_ns();
    uint64_t away = now > saved_realtime_ns ? now - saved_realtime_ns : 0;
    log_info("snapshot: the guest's clocks move forward %.3f s (the time it was away)",
             (double)away / 1e9);
    return kvm_state_advance(m, away, err, err_size);
}
