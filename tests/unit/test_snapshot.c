/* Snapshots without KVM: the ustar writer and reader, the JSON form of
 * state records, a whole snapshot written from and loaded into a
 * hand-made target (memory ranges, bootrom, a file disk, state records),
 * every refusal naming its member, and damaged snapshots (bit flips and
 * truncations at many offsets) that must be refused or loaded, never
 * crash (this binary runs under ASan). */
#include <fcntl.h>
#include <pthread.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "common/snap.h"
#include "config/config.h"
#include "snapshot/snapshot.h"
#include "snapshot/state_json.h"
#include "snapshot/tar.h"

#define RANGE_SIZE (256u * 1024)
#define ROM_SIZE 8192u

static char dir[] = "/tmp/test_snapshot_XXXXXX";
static char snap_path[256], bad_path[256], disk_path[256];
static struct config cfg;
static uint8_t rom[ROM_SIZE];
/* [block_dev.ram0] (index 1): the saved VM's and the loaded one's. */
#define RAM_DISK_SIZE (1u << 20)
static struct block_backend *saved_disks[2], *loaded_disks[2];

/* ---- Helpers ---- */

static uint8_t *file_bytes(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *data = malloc((size_t)st.st_size + 1);
    assert_non_null(data);
    assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return data;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

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

static void disk_io(struct block_backend *be, enum block_op op, void *buf, size_t len)
{
    struct sync_io io = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct iovec iov = {buf, len};
    struct block_request req = {
        .op = op, .len = len, .iov = &iov, .iovcnt = 1, .complete = sync_complete, .opaque = &io};
    assert_int_equal(block_submit(be, &req), 0);
    pthread_mutex_lock(&io.lock);
    while (!io.done)
        pthread_cond_wait(&io.cond, &io.lock);
    pthread_mutex_unlock(&io.lock);
    assert_int_equal(io.status, 0);
}

static void ram_disk_pattern(uint8_t *buf)
{
    memset(buf, 0, RAM_DISK_SIZE);
    for (size_t i = 0; i < 4096; i++)
        buf[65536 + i] = (uint8_t)(i * 13 + 1);
    buf[RAM_DISK_SIZE - 1] = 0x77;
}

static void target_init(struct snapshot_target *t, bool fill)
{
    *t = (struct snapshot_target){.cfg = &cfg,
                                  .bootrom = rom,
                                  .bootrom_size = ROM_SIZE,
                                  .backends = fill ? saved_disks : loaded_disks};
    for (unsigned i = 0; i < 2; i++) {
        uint8_t *p =
            mmap(NULL, RANGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(p != MAP_FAILED);
        t->ranges[i] = (struct snapshot_range){i ? 0x100000000ull : 0, RANGE_SIZE, p};
        if (!fill)
            continue;
        /* A few non-zero pages among zero ones, one non-zero byte at a
         * page's end, and the last page. */
        for (unsigned page = 3; page < 9; page++)
            memset(p + page * 4096, (int)(0x11 * (page + i)), 4096);
        p[20 * 4096 - 1] = 0x5a;
        memset(p + RANGE_SIZE - 4096, 0xee, 4096);
    }
    t->range_count = 2;
}

static void target_free(struct snapshot_target *t)
{
    for (unsigned i = 0; i < t->range_count; i++)
        munmap(t->ranges[i].hva, t->ranges[i].size);
}

struct dev_state {
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    uint8_t raw[5];
    uint8_t var[16];
    size_t var_len;
};

static int dev_fields(void *opaque, struct snap *s)
{
    struct dev_state *d = opaque;
    snap_u8(s, "a", &d->a);
    snap_u16(s, "b", &d->b);
    snap_enter(s, "q%u", 0);
    snap_u32(s, "c", &d->c);
    snap_u64(s, "d", &d->d);
    snap_leave(s);
    snap_bytes(s, "raw", d->raw, sizeof(d->raw));
    snap_var_bytes(s, "var", d->var, &d->var_len, sizeof(d->var));
    return snap_error(s);
}

/* A machine state as machine_save_state lays it out: machine, kvm, cpu0,
 * then two devices. */
static void make_state(struct snap_buf *out)
{
    struct dev_state d = {.a = 0xa1,
                          .b = 0xb2b3,
                          .c = 0xc4c5c6c7,
                          .d = 0xfedcba9876543210ull,
                          .raw = {1, 2, 3, 4, 5},
                          .var_len = 0};
    char err[512];
    assert_int_equal(
        snap_save_record(out, "machine", "machine", 1, dev_fields, &d, err, sizeof(err)), 0);
    assert_int_equal(snap_save_record(out, "kvm", "kvm-vm", 1, dev_fields, &d, err, sizeof(err)),
                     0);
    assert_int_equal(snap_save_record(out, "cpu0", "kvm-vcpu", 1, dev_fields, &d, err, sizeof(err)),
                     0);
    d.var_len = 3;
    assert_int_equal(
        snap_save_record(out, "com1", "uart16550", 2, dev_fields, &d, err, sizeof(err)), 0);
    assert_int_equal(
        snap_save_record(out, "dev/odd name", "pvpanic", 1, dev_fields, &d, err, sizeof(err)), 0);
}

static void write_snapshot(const char *path)
{
    struct snapshot_target t;
    target_init(&t, true);
    struct snap_buf state = {0};
    make_state(&state);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char err[512] = "";
    int r = snapshot_write(&t, state.data, state.len, fd, err, sizeof(err));
    if (r)
        fprintf(stderr, "snapshot_write: %s\n", err);
    assert_int_equal(r, 0);
    close(fd);
    snap_buf_free(&state);
    target_free(&t);
}

/* Opens and loads path into a fresh target; returns the result and the
 * error, and checks a success reproduces the original exactly. */
static int try_load(const char *path, char *err, size_t err_size, bool check_equal)
{
    struct snapshot *s = NULL;
    if (snapshot_open(path, &s, err, err_size) < 0)
        return -1;
    struct snapshot_target t, orig;
    target_init(&t, false);
    struct snap_buf state = {0};
    int r = snapshot_load(s, &t, &state, err, err_size);
    if (r == 0 && check_equal) {
        uint8_t *pattern = malloc(RAM_DISK_SIZE), *got = malloc(RAM_DISK_SIZE);
        ram_disk_pattern(pattern);
        disk_io(loaded_disks[1], BLOCK_OP_READ, got, RAM_DISK_SIZE);
        assert_memory_equal(got, pattern, RAM_DISK_SIZE);
        free(pattern);
        free(got);
        target_init(&orig, true);
        for (unsigned i = 0; i < 2; i++)
            assert_memory_equal(t.ranges[i].hva, orig.ranges[i].hva, RANGE_SIZE);
        struct snap_buf want = {0};
        make_state(&want);
        assert_int_equal(state.len, want.len);
        assert_memory_equal(state.data, want.data, want.len);
        snap_buf_free(&want);
        target_free(&orig);
    }
    snap_buf_free(&state);
    target_free(&t);
    snapshot_close(s);
    return r;
}

static void assert_refused(const char *path, const char *needle)
{
    char err[1024] = "";
    assert_int_equal(try_load(path, err, sizeof(err), false), -1);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

/* Copies snap_path to bad_path member by member through edit (NULL: drop). */
typedef uint8_t *(*member_edit)(const char *name, uint8_t *data, size_t *len);

static void rewrite(member_edit edit)
{
    struct tar_reader r;
    char err[512];
    assert_int_equal(tar_reader_open(&r, snap_path, err, sizeof(err)), 0);
    int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    struct tar_writer w;
    tar_writer_init(&w, fd);
    for (size_t i = 0; i < r.count; i++) {
        uint8_t *data;
        size_t len;
        assert_int_equal(tar_read_member(&r, &r.members[i], 1 << 30, &data, &len, err, sizeof(err)),
                         0);
        data = edit(r.members[i].name, data, &len);
        if (data)
            assert_int_equal(tar_write_member(&w, r.members[i].name, data, len), 0);
        free(data);
    }
    assert_int_equal(tar_writer_finish(&w), 0);
    close(fd);
    tar_reader_close(&r);
}

static const char *edit_target;
static const char *edit_key;
static json_t *edit_value;

/* Replaces edit_key in the JSON member edit_target (a dotted path of
 * object keys and array indexes). */
static uint8_t *edit_json(const char *name, uint8_t *data, size_t *len)
{
    if (strcmp(name, edit_target) != 0)
        return data;
    json_t *root = json_loadb((const char *)data, *len, 0, NULL);
    assert_non_null(root);
    free(data);
    char path[128];
    snprintf(path, sizeof(path), "%s", edit_key);
    json_t *at = root;
    char *save, *part = strtok_r(path, ".", &save), *next;
    while ((next = strtok_r(NULL, ".", &save))) {
        at = json_is_array(at) ? json_array_get(at, strtoul(part, NULL, 10))
                               : json_object_get(at, part);
        assert_non_null(at);
        part = next;
    }
    if (json_is_array(at))
        json_array_set(at, strtoul(part, NULL, 10), edit_value);
    else
        json_object_set(at, part, edit_value);
    char *text = json_dumps(root, 0);
    json_decref(root);
    *len = strlen(text);
    return (uint8_t *)text;
}

static void refuse_json_edit(const char *member, const char *key, json_t *value, const char *needle)
{
    edit_target = member;
    edit_key = key;
    edit_value = value;
    rewrite(edit_json);
    json_decref(value);
    assert_refused(bad_path, needle);
}

static uint8_t *drop_member(const char *name, uint8_t *data, size_t *len)
{
    if (strcmp(name, edit_target) == 0) {
        free(data);
        return NULL;
    }
    return data;
}

static uint8_t *not_json(const char *name, uint8_t *data, size_t *len)
{
    if (strcmp(name, edit_target) == 0 && *len > 10)
        *len -= 10;
    return data;
}

/* ---- Fixture ---- */

static int setup(void **state)
{
    assert_non_null(mkdtemp(dir));
    snprintf(snap_path, sizeof(snap_path), "%s/unit.tar", dir);
    snprintf(bad_path, sizeof(bad_path), "%s/bad.tar", dir);
    snprintf(disk_path, sizeof(disk_path), "%s/disk0.img", dir);
    uint8_t disk[64 * 1024];
    for (size_t i = 0; i < sizeof(disk); i++)
        disk[i] = (uint8_t)(i * 7);
    write_file(disk_path, disk, sizeof(disk));
    for (size_t i = 0; i < ROM_SIZE; i++)
        rom[i] = (uint8_t)(i ^ 0x5a);
    char text[1024];
    snprintf(text, sizeof(text),
             "[main]\nname = \"unit\"\ncpus = 1\nbootrom = \"%s/rom.bin\"\nmemory = 64\n\n"
             "[block_dev.disk0]\ntype = \"file\"\npath = \"%s\"\n\n"
             "[block_dev.ram0]\ntype = \"mem-async\"\nsize = %u\n",
             dir, disk_path, RAM_DISK_SIZE);
    if (config_parse("unit.toml", text, strlen(text), &cfg) < 0)
        fail_msg("config: %s", cfg.error);
    saved_disks[1] = block_backend_open(&cfg.block_devs[1]);
    loaded_disks[1] = block_backend_open(&cfg.block_devs[1]);
    assert_non_null(saved_disks[1]);
    assert_non_null(loaded_disks[1]);
    uint8_t *pattern = malloc(RAM_DISK_SIZE);
    ram_disk_pattern(pattern);
    disk_io(saved_disks[1], BLOCK_OP_WRITE, pattern, RAM_DISK_SIZE);
    free(pattern);
    return 0;
}

static int teardown(void **state)
{
    block_backend_destroy(saved_disks[1]);
    block_backend_destroy(loaded_disks[1]);
    config_free(&cfg);
    unlink(snap_path);
    unlink(bad_path);
    unlink(disk_path);
    rmdir(dir);
    return 0;
}

/* ---- Tar ---- */

static void test_tar_roundtrip_sparse(void **state)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/t.tar", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    struct tar_writer w;
    tar_writer_init(&w, fd);
    char long_name[200];
    memset(long_name, 'x', sizeof(long_name));
    memcpy(long_name, "devices/", 8);
    long_name[120] = '/';
    long_name[199] = '\0';
    assert_int_equal(tar_write_member(&w, "a.txt", "hello", 5), 0);
    assert_int_equal(tar_write_member(&w, long_name, "long", 4), 0);
    assert_int_equal(tar_write_member(&w, "empty", "", 0), 0);
    /* 4 MiB, zero but for a page in the middle and the last 100 bytes. */
    size_t big = 4u << 20;
    uint8_t *mem = calloc(1, big);
    assert_non_null(mem);
    memset(mem + (2u << 20), 0x42, 4096);
    memset(mem + big - 100, 0x43, 100);
    assert_int_equal(tar_member_begin(&w, "memory/0-400000.bin", big), 0);
    assert_int_equal(tar_member_data(&w, mem, big / 2, true), 0);
    assert_int_equal(tar_member_data(&w, mem + big / 2, big / 2, true), 0);
    assert_int_equal(tar_member_end(&w), 0);
    assert_int_equal(tar_writer_finish(&w), 0);
    close(fd);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    /* Holes: far less than the 4 MiB is allocated. */
    assert_true((uint64_t)st.st_blocks * 512 < big / 4);

    struct tar_reader r;
    char err[512];
    assert_int_equal(tar_reader_open(&r, path, err, sizeof(err)), 0);
    assert_int_equal(r.count, 4);
    const struct tar_member *m = tar_find(&r, long_name);
    assert_non_null(m);
    uint8_t *data;
    size_t len;
    assert_int_equal(tar_read_member(&r, m, 100, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "long", 4);
    free(data);
    m = tar_find(&r, "memory/0-400000.bin");
    assert_non_null(m);
    assert_int_equal(tar_read_member(&r, m, big, &data, &len, err, sizeof(err)), 0);
    assert_int_equal(len, big);
    assert_memory_equal(data, mem, big);
    free(data);
    /* A member bigger than asked for is refused, naming it. */
    assert_int_equal(tar_read_member(&r, m, 100, &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "memory/0-400000.bin"));
    assert_null(tar_find(&r, "nope"));
    tar_reader_close(&r);
    free(mem);
    unlink(path);
}

/* A header for name with a valid checksum, for hand-made archives. */
static void make_header(uint8_t *h, const char *name, char type, const char *size_octal)
{
    memset(h, 0, 512);
    memcpy(h, name, strlen(name));
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 124, size_octal, strlen(size_octal));
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

static void assert_tar_refused(const uint8_t *data, size_t len, const char *needle)
{
    char path[300], err[512] = "";
    snprintf(path, sizeof(path), "%s/r.tar", dir);
    write_file(path, data, len);
    struct tar_reader r;
    assert_int_equal(tar_reader_open(&r, path, err, sizeof(err)), -1);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    unlink(path);
}

static void test_tar_refusals(void **state)
{
    uint8_t a[512 * 4] = {0};
    make_header(a, "ok.txt", '0', "00000000005");
    memcpy(a + 512, "hello", 5);
    char path[300], err[512];
    snprintf(path, sizeof(path), "%s/ok.tar", dir);
    write_file(path, a, sizeof(a));
    struct tar_reader r;
    assert_int_equal(tar_reader_open(&r, path, err, sizeof(err)), 0);
    tar_reader_close(&r);
    unlink(path);

    uint8_t b[sizeof(a)];
    memcpy(b, a, sizeof(a));
    b[3] ^= 1; /* the name, under the checksum */
    assert_tar_refused(b, sizeof(b), "bad header checksum");
    /* No end-of-archive block; data cut short. */
    assert_tar_refused(a, 1024, "no end-of-archive block");
    assert_tar_refused(a, 600, "ok.txt");
    assert_tar_refused(a, 100, "no end-of-archive block");
    make_header(b, "../evil", '0', "00000000005");
    assert_tar_refused(b, sizeof(b), "name refused");
    make_header(b, "/etc/evil", '0', "00000000005");
    assert_tar_refused(b, sizeof(b), "name refused");
    make_header(b, "a/./b", '0', "00000000005");
    assert_tar_refused(b, sizeof(b), "name refused");
    make_header(b, "dir", '5', "00000000000");
    assert_tar_refused(b, sizeof(b), "not a regular file");
    make_header(b, "x", '0', "0000000009a");
    assert_tar_refused(b, sizeof(b), "bad size field");
    make_header(b, "huge", '0', "77777777777");
    assert_tar_refused(b, sizeof(b), "huge': truncated");
    make_header(b, "x", '0', "00000000005");
    memcpy(b + 257, "nope!", 5);
    make_header(b + 1024, "x", '0', "00000000005"); /* unused */
    memcpy(b + 257, "nope!", 5);
    assert_tar_refused(b, sizeof(b), "bad header checksum");
    /* The same member twice. */
    uint8_t c[512 * 6] = {0};
    make_header(c, "twice", '0', "00000000001");
    make_header(c + 1024, "twice", '0', "00000000001");
    assert_tar_refused(c, sizeof(c), "appears twice");
}

/* ---- JSON form of a record ---- */

static void test_json_roundtrip_and_refusals(void **state)
{
    struct snap_buf buf = {0};
    make_state(&buf);
    size_t pos = 0;
    struct snap_record rec;
    char err[512];
    int n = 0;
    while (snap_next_record(buf.data, buf.len, &pos, &rec, err, sizeof(err)) == 1) {
        json_t *j = state_record_to_json(&rec, err, sizeof(err));
        assert_non_null(j);
        char *text = json_dumps(j, 0);
        json_decref(j);
        json_t *back = json_loads(text, 0, NULL);
        struct snap_buf out = {0};
        assert_int_equal(state_record_from_json(back, &out, err, sizeof(err)), 0);
        size_t p2 = 0;
        struct snap_record rec2;
        assert_int_equal(snap_next_record(out.data, out.len, &p2, &rec2, err, sizeof(err)), 1);
        assert_string_equal(rec2.name, rec.name);
        assert_int_equal(rec2.body_len, rec.body_len);
        assert_memory_equal(rec2.body, rec.body, rec.body_len);
        if (n == 3) {
            /* How the fields look. */
            assert_non_null(strstr(text, "{\"name\": \"a\", \"u8\": 161}"));
            assert_non_null(strstr(text, "{\"name\": \"b\", \"u16\": 45747}"));
            assert_non_null(strstr(text, "{\"name\": \"q0.c\", \"u32\": 3301295815}"));
            assert_non_null(strstr(text, "{\"name\": \"q0.d\", \"u64\": \"0xfedcba9876543210\"}"));
            assert_non_null(strstr(text, "{\"name\": \"raw\", \"hex\": \"0102030405\"}"));
        }
        free(text);
        json_decref(back);
        snap_buf_free(&out);
        n++;
    }
    assert_int_equal(n, 5);
    snap_buf_free(&buf);

    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"[]", "must be a JSON object"},
        {"{\"kind\":\"k\",\"version\":1,\"fields\":[]}", "\"name\" missing"},
        {"{\"name\":\"d\",\"version\":1,\"fields\":[]}", "\"kind\" missing"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":-1,\"fields\":[]}", "\"version\""},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1}", "\"fields\" missing"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[],\"x\":1}", "unknown keys"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"u8\":256}]}",
         "field 'f': u8 must be an integer 0..255"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"u32\":-1}]}",
         "field 'f': u32"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"u64\":5}]}",
         "field 'f': u64"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"u64\":"
         "\"0x12345678123456789\"}]}",
         "field 'f': u64"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"hex\":\"abc\"}"
         "]}",
         "field 'f': hex"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"hex\":\"zz\"}]"
         "}",
         "not a hex digit"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"f\",\"x\":1}]}",
         "no value"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"u8\":1,\"x\":1}]}",
         "field 0: no name"},
        {"{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[7]}", "field 0: not an object"},
        {"{\"name\":\"d\\u0000x\",\"kind\":\"k\",\"version\":1,\"fields\":[]}", "\"name\" missing"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_loads(bad[i].json, JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        struct snap_buf out = {0};
        err[0] = '\0';
        assert_int_equal(state_record_from_json(j, &out, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].needle))
            fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, bad[i].needle);
        json_decref(j);
        snap_buf_free(&out);
    }
    /* A field name over 255 bytes. */
    char long_json[700];
    char name[300];
    memset(name, 'n', 256);
    name[256] = '\0';
    snprintf(
        long_json, sizeof(long_json),
        "{\"name\":\"d\",\"kind\":\"k\",\"version\":1,\"fields\":[{\"name\":\"%s\",\"u8\":1}]}",
        name);
    json_t *j = json_loads(long_json, 0, NULL);
    struct snap_buf out = {0};
    assert_int_equal(state_record_from_json(j, &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "field 0: no name"));
    json_decref(j);
    snap_buf_free(&out);
}

/* ---- Whole snapshots ---- */

static void test_snapshot_roundtrip(void **state)
{
    write_snapshot(snap_path);
    char err[1024] = "";
    int r = try_load(snap_path, err, sizeof(err), true);
    if (r)
        fail_msg("load: %s", err);
    /* The layout. */
    struct tar_reader tr;
    assert_int_equal(tar_reader_open(&tr, snap_path, err, sizeof(err)), 0);
    static const char *const names[] = {"config.toml",        "global.json",
                                        "devices/com1.json",  "devices/dev%2Fodd%20name.json",
                                        "memory/0-40000.bin", "memory/100000000-100040000.bin",
                                        "disks/ram0.bin"};
    assert_int_equal(tr.count, sizeof(names) / sizeof(names[0]));
    for (size_t i = 0; i < tr.count; i++)
        if (!tar_find(&tr, names[i]))
            fail_msg("member %s missing", names[i]);
    uint8_t *data;
    size_t len;
    assert_int_equal(
        tar_read_member(&tr, tar_find(&tr, "config.toml"), 1 << 20, &data, &len, err, sizeof(err)),
        0);
    assert_string_equal((char *)data, cfg.source_text);
    free(data);
    tar_reader_close(&tr);
    struct snapshot *s;
    assert_int_equal(snapshot_open(snap_path, &s, err, sizeof(err)), 0);
    size_t text_len;
    assert_string_equal(snapshot_config_text(s, &text_len), cfg.source_text);
    assert_true(snapshot_saved_realtime_ns(s) > 1700000000ull * 1000000000ull);
    snapshot_close(s);
}

static void test_snapshot_refusals(void **state)
{
    write_snapshot(snap_path);
    size_t len;
    uint8_t *data = file_bytes(snap_path, &len);

    /* Cut short, and a header's checksum. */
    write_file(bad_path, data, len - 1024);
    assert_refused(bad_path, "no end-of-archive block");
    write_file(bad_path, data, 700);
    assert_refused(bad_path, "config.toml");
    data[1] ^= 0x20;
    write_file(bad_path, data, len);
    data[1] ^= 0x20;
    assert_refused(bad_path, "bad header checksum");
    free(data);

    /* A member missing. */
    static const char *const members[] = {"global.json", "config.toml", "devices/com1.json",
                                          "memory/100000000-100040000.bin", "disks/ram0.bin"};
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        edit_target = members[i];
        rewrite(drop_member);
        char needle[128];
        snprintf(needle, sizeof(needle), "member %s: missing", members[i]);
        assert_refused(bad_path, needle);
    }

    /* Another format version, format, shape. */
    refuse_json_edit("global.json", "format_version", json_integer(2),
                     "member global.json: format_version 2");
    refuse_json_edit("global.json", "format", json_string("other"), "member global.json: format");
    refuse_json_edit("global.json", "cpus", json_integer(2), "member global.json: cpus");
    refuse_json_edit("global.json", "bootrom.hash", json_string("0x1"), "bootrom");
    /* Memory ranges that do not match. */
    refuse_json_edit("global.json", "memory.1.end", json_string("0x100080000"),
                     "member memory/100000000-100040000.bin: the snapshot's memory range "
                     "0x100000000-0x100080000 does not match");
    refuse_json_edit("global.json", "memory.0.start", json_string("0x1000"),
                     "member memory/0-40000.bin");
    refuse_json_edit("global.json", "memory.1", json_null(),
                     "member memory/100000000-100040000.bin");
    refuse_json_edit("global.json", "ram_disks.0.hash", json_string("0x1"),
                     "member disks/ram0.bin: corrupt");
    refuse_json_edit("global.json", "ram_disks.0.size", json_integer(4096),
                     "member disks/ram0.bin: ");
    /* Device records: another kind, a corrupt field, the wrong device. */
    refuse_json_edit("devices/com1.json", "fields.0.u8", json_integer(999),
                     "member devices/com1.json: com1 (uart16550): field 'a'");
    refuse_json_edit("devices/com1.json", "name", json_string("com2"),
                     "member devices/com1.json: the record is not of device com1");
    refuse_json_edit("global.json", "machine_state.2.fields.1.hex", json_string("0"),
                     "member global.json");

    /* Not JSON. */
    edit_target = "devices/com1.json";
    rewrite(not_json);
    assert_refused(bad_path, "member devices/com1.json: not valid JSON");
    char err[512];

    /* Corrupt memory: the hash. */
    struct snapshot_target t;
    target_init(&t, true);
    t.ranges[1].hva[5 * 4096 + 17] ^= 4;
    struct snap_buf st = {0};
    make_state(&st);
    int fd = open(bad_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(snapshot_write(&t, st.data, st.len, fd, err, sizeof(err)), 0);
    close(fd);
    snap_buf_free(&st);
    target_free(&t);
    /* Put the changed range's member into the original's archive. */
    struct tar_reader good, other;
    assert_int_equal(tar_reader_open(&good, snap_path, err, sizeof(err)), 0);
    assert_int_equal(tar_reader_open(&other, bad_path, err, sizeof(err)), 0);
    const struct tar_member *gm = tar_find(&good, "memory/100000000-100040000.bin");
    const struct tar_member *om = tar_find(&other, "memory/100000000-100040000.bin");
    uint8_t *mem;
    size_t mem_len;
    assert_int_equal(tar_read_member(&other, om, RANGE_SIZE, &mem, &mem_len, err, sizeof(err)), 0);
    uint64_t at = gm->offset;
    tar_reader_close(&good);
    tar_reader_close(&other);
    data = file_bytes(snap_path, &len);
    memcpy(data + at, mem, mem_len);
    write_file(bad_path, data, len);
    free(data);
    free(mem);
    assert_refused(bad_path, "member memory/100000000-100040000.bin: corrupt");

    /* The wrong disk: contents, then size. */
    uint8_t byte = 0x99;
    int dfd = open(disk_path, O_WRONLY);
    struct stat before;
    assert_int_equal(fstat(dfd, &before), 0);
    assert_int_equal(pwrite(dfd, &byte, 1, 0), 1);
    close(dfd);
    assert_refused(snap_path, "block_dev.disk0");
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, disk_path, times, 0), 0);
    assert_refused(snap_path, "block_dev.disk0: ");
    assert_refused(snap_path, "its contents (sampled blocks) differ");
    assert_int_equal(truncate(disk_path, 32 * 1024), 0);
    assert_refused(snap_path, "its size differs");
    unlink(disk_path);
    assert_refused(snap_path, "block_dev.disk0");
    uint8_t fresh[4096] = {0};
    write_file(disk_path, fresh, sizeof(fresh)); /* for the next test's snapshot */
}

/* Damaged snapshots: every outcome is a refusal or a load, never a crash.
 * Truncations and flips in memory data are always refused. */
static void test_damaged_snapshots_never_crash(void **state)
{
    write_snapshot(snap_path);
    size_t len;
    uint8_t *data = file_bytes(snap_path, &len);
    write_file(bad_path, data, len);
    int fd = open(bad_path, O_WRONLY);
    assert_true(fd >= 0);
    struct tar_reader tr;
    char err[1024];
    assert_int_equal(tar_reader_open(&tr, snap_path, err, sizeof(err)), 0);
    const struct tar_member *mem = tar_find(&tr, "memory/0-40000.bin");
    uint64_t mem_start = mem->offset, mem_end = mem->offset + mem->size;
    tar_reader_close(&tr);

    unsigned refused = 0, loaded = 0;
    uint64_t rng = 0x1234567;
    for (size_t off = 0; off < len; off += 1 + (off < 8192 ? 13 : 4093)) {
        for (unsigned k = 0; k < 2; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint8_t bit = (uint8_t)(1u << ((rng >> 33) % 8));
            uint8_t flipped = data[off] ^ bit;
            assert_int_equal(pwrite(fd, &flipped, 1, (off_t)off), 1);
            int r = try_load(bad_path, err, sizeof(err), false);
            assert_int_equal(pwrite(fd, &data[off], 1, (off_t)off), 1);
            /* Guest RAM is covered by its hash. */
            if (off >= mem_start && off < mem_end)
                assert_int_equal(r, -1);
            if (r == 0)
                loaded++;
            else
                refused++;
        }
    }
    /* Flips inside the first range's pages that hold data. */
    for (unsigned page = 3; page < 9; page++) {
        uint64_t off = mem_start + page * 4096 + 100;
        uint8_t flipped = data[off] ^ 1;
        assert_int_equal(pwrite(fd, &flipped, 1, (off_t)off), 1);
        assert_int_equal(try_load(bad_path, err, sizeof(err), false), -1);
        assert_non_null(strstr(err, "memory/0-40000.bin: corrupt"));
        assert_int_equal(pwrite(fd, &data[off], 1, (off_t)off), 1);
    }
    /* A flip inside a zero page of RAM makes it non-zero: refused too. */
    uint64_t zero_off = mem_start + 12 * 4096 + 5;
    uint8_t one = 1;
    assert_int_equal(pwrite(fd, &one, 1, (off_t)zero_off), 1);
    assert_int_equal(try_load(bad_path, err, sizeof(err), false), -1);
    assert_int_equal(pwrite(fd, &data[zero_off], 1, (off_t)zero_off), 1);
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < len; cut += 1 + (cut < 8192 ? 97 : 8191)) {
        assert_int_equal(ftruncate(fd, (off_t)cut), 0);
        assert_int_equal(try_load(bad_path, err, sizeof(err), false), -1);
        refused++;
    }
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
    close(fd);
    /* The undamaged copy still loads, and exactly. */
    assert_int_equal(try_load(bad_path, err, sizeof(err), true), 0);
    assert_true(refused > 100);
    assert_true(loaded > 0); /* flips in padding and JSON whitespace load */
    printf("damaged snapshots: %u refused, %u loaded\n", refused, loaded);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tar_roundtrip_sparse),
        cmocka_unit_test(test_tar_refusals),
        cmocka_unit_test(test_json_roundtrip_and_refusals),
        cmocka_unit_test(test_snapshot_roundtrip),
        cmocka_unit_test(test_snapshot_refusals),
        cmocka_unit_test(test_damaged_snapshots_never_crash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
