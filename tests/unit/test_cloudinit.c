/* Cloud-init disks: the FAT volume builder checked by tools no one here
 * wrote (fsck.fat -n and mtools from dosfstools and mtools, blkid from
 * util-linux) on small content, content past propolis' 512 sectors (FAT12
 * with more clusters, FAT16 with 1 and 4 sectors per cluster), binary
 * content with NULs, an absent network-config, the size limit naming its
 * key; the same bytes every run; and the `cloudinit` block back end: what
 * it reads equals the builder's image, writes get -EROFS, files named by
 * -path are read and a missing one is an error at its key. The tools must
 * be installed (tools/install-deps.sh): without them these tests fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stderr_capture.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/block.h"
#include "block/cloudinit.h"
#include "support/block_req.h"
#include "common/bytes.h"
#include "common/log.h"
#include "config/config.h"

extern char **environ;

static char tmpdir[64];

static int group_setup(void **state)
{
    /* mtools refuses volumes whose geometry does not match a floppy's
     * unless told not to check it. */
    setenv("MTOOLS_SKIP_CHECK", "1", 1);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_cloudinit.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    return rmdir(tmpdir);
}

/* ---- running the tools ---- */

/* The tool's full path: PATH, then the sbin directories a user's PATH may
 * lack. Fails the test when it is not installed. */
static const char *find_tool(const char *name, const char *package)
{
    static char found[4][256];
    static unsigned next;
    char *slot = found[next++ % ARRAY_LEN(found)];
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
    for (char *save = NULL, *dir = strtok_r(dirs, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        snprintf(slot, sizeof(found[0]), "%s/%s", dir, name);
        if (access(slot, X_OK) == 0)
            return slot;
    }
    print_error("%s is not installed (Debian package %s; tools/install-deps.sh installs it)\n",
                name, package);
    fail();
    return NULL;
}

struct tool_output {
    uint8_t *bytes; /* stdout; NUL-terminated for convenience */
    size_t len;
    int status; /* exit status, or -1 when killed */
};

/* Runs argv[0] (a full path) with stdout captured and stderr passed on. */
static void run_tool(char *const argv[], struct tool_output *out)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/stdout", tmpdir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, STDOUT_FILENO);
    pid_t pid;
    fflush(stderr);
    assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    out->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    out->len = (size_t)st.st_size;
    out->bytes = malloc(out->len + 1);
    assert_non_null(out->bytes);
    assert_int_equal(pread(fd, out->bytes, out->len, 0), (ssize_t)out->len);
    out->bytes[out->len] = '\0';
    close(fd);
    unlink(path);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ---- content ---- */

static const char user_data[] = "#cloud-config\n"
                                "users:\n"
                                "  - default\n"
                                "runcmd:\n"
                                "  - [sh, -c, 'echo hello > /run/hello']\n";
static const char meta_data[] = "instance-id: iid-propolis-0\nlocal-hostname: guest\n";
static const char network_config[] = "version: 2\n"
                                     "ethernets:\n"
                                     "  eth0:\n"
                                     "    dhcp4: true\n";

static struct cloudinit_file file_of(const void *data, size_t len)
{
    return (struct cloudinit_file){.present = true, .data = data, .len = len};
}

/* Bytes that differ per file and position, with NULs and every byte value. */
static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 2654435761u >> 11) + seed * 97 + i / 4096);
    return p;
}

static void build(const struct cloudinit_file files[CLOUDINIT_KEY_COUNT],
                  struct cloudinit_image *img)
{
    enum cloudinit_key bad;
    char err[256] = "";
    int rc = cloudinit_build(files, img, &bad, err, sizeof(err));
    if (rc != 0)
        print_error("cloudinit_build: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(img->size % CLOUDINIT_SECTOR_SIZE, 0);
    assert_non_null(img->bytes);
}

/* ---- checking an image with the tools ---- */

/* Writes img out and checks it with fsck.fat, mdir, mtype and blkid: a
 * clean file system labelled cidata holding exactly files (network-config
 * only when present). */
static void check_with_tools(const struct cloudinit_image *img,
                             const struct cloudinit_file files[CLOUDINIT_KEY_COUNT])
{
    char image[128];
    snprintf(image, sizeof(image), "%s/cidata.img", tmpdir);
    write_file(image, img->bytes, img->size);
    struct tool_output out;

    /* -n: check only, never write. Exit status 0 means no errors, but
     * some findings (a wrong long-name checksum) are only printed: nothing
     * may be printed but the banner and the summary. */
    char *fsck[] = {(char *)find_tool("fsck.fat", "dosfstools"), "-n", image, NULL};
    run_tool(fsck, &out);
    char summary[192];
    snprintf(summary, sizeof(summary), "\n%s: %u files, ", image,
             1 + 2 + files[CLOUDINIT_NETWORK_CONFIG].present); /* the label counts */
    const char *second_line = strchr((char *)out.bytes, '\n');
    bool clean = out.status == 0 && strncmp((char *)out.bytes, "fsck.fat ", 9) == 0 &&
                 second_line && strncmp(second_line, summary, strlen(summary)) == 0 &&
                 strchr(second_line + 1, '\n') == (char *)out.bytes + out.len - 1;
    if (!clean)
        print_error("fsck.fat (exit status %d) said:\n%s\n", out.status, (char *)out.bytes);
    assert_true(clean);
    free(out.bytes);

    char *mdir[] = {(char *)find_tool("mdir", "mtools"), "-i", image, "::", NULL};
    run_tool(mdir, &out);
    if (out.status != 0 || !strstr((char *)out.bytes, "Volume in drive : is cidata"))
        print_error("mdir said:\n%s\n", (char *)out.bytes);
    assert_int_equal(out.status, 0);
    assert_non_null(strstr((char *)out.bytes, "Volume in drive : is cidata"));
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        bool listed = strstr((char *)out.bytes, cloudinit_key_name(k)) != NULL;
        assert_int_equal(listed, k != CLOUDINIT_NETWORK_CONFIG || files[k].present);
    }
    free(out.bytes);

    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        char name[64];
        snprintf(name, sizeof(name), "::%s", cloudinit_key_name(k));
        char *mtype[] = {(char *)find_tool("mtype", "mtools"), "-i", image, name, NULL};
        run_tool(mtype, &out);
        if (k == CLOUDINIT_NETWORK_CONFIG && !files[k].present) {
            assert_int_not_equal(out.status, 0); /* no such file */
        } else {
            assert_int_equal(out.status, 0);
            assert_int_equal(out.len, files[k].len);
            if (files[k].len)
                assert_memory_equal(out.bytes, files[k].data, files[k].len);
        }
        free(out.bytes);
    }

    /* -p: probe the file itself rather than consult the blkid cache. */
    char *blkid[] = {
        (char *)find_tool("blkid", "util-linux"), "-p", "-o", "value", "-s", "LABEL", image, NULL};
    run_tool(blkid, &out);
    assert_int_equal(out.status, 0);
    assert_string_equal((char *)out.bytes, "cidata\n");
    free(out.bytes);
    char *blkid_type[] = {blkid[0], "-p", "-o", "value", "-s", "TYPE", image, NULL};
    run_tool(blkid_type, &out);
    assert_int_equal(out.status, 0);
    assert_string_equal((char *)out.bytes, "vfat\n");
    free(out.bytes);

    assert_int_equal(unlink(image), 0);
}

/* ---- the builder ---- */

static void test_small_content(void **state)
{
    (void)state;
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {
        file_of(user_data, strlen(user_data)),
        file_of(meta_data, strlen(meta_data)),
        file_of(network_config, strlen(network_config)),
    };
    struct cloudinit_image img;
    build(files, &img);
    /* propolis' volume: FAT12, 512 one-sector clusters of data. */
    assert_int_equal(img.fat_bits, 12);
    assert_int_equal(img.sectors_per_cluster, 1);
    assert_int_equal(img.clusters, CLOUDINIT_FAT12_MIN_CLUSTERS);
    assert_memory_equal(img.bytes + 54, "FAT12   ", 8);
    assert_memory_equal(img.bytes + 43, "cidata     ", 11);
    assert_int_equal(img.bytes[510], 0x55);
    assert_int_equal(img.bytes[511], 0xaa);
    check_with_tools(&img, files);
    cloudinit_image_free(&img);
}

static void test_absent_items(void **state)
{
    (void)state;
    /* Only user-data: meta-data is there and empty, network-config absent. */
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {file_of(user_data, strlen(user_data))};
    struct cloudinit_image img;
    build(files, &img);
    check_with_tools(&img, files);
    cloudinit_image_free(&img);

    /* Nothing at all, and an empty network-config that is present. */
    struct cloudinit_file none[CLOUDINIT_KEY_COUNT] = {{0}};
    build(none, &img);
    check_with_tools(&img, none);
    cloudinit_image_free(&img);
    none[CLOUDINIT_NETWORK_CONFIG] = file_of("", 0);
    build(none, &img);
    check_with_tools(&img, none);
    cloudinit_image_free(&img);
}

static void test_binary_content(void **state)
{
    (void)state;
    /* NULs and every byte value; lengths one short of, exactly and one past
     * a sector. */
    static const size_t lens[][3] = {{511, 512, 513}, {1, 0, 1025}, {4096, 1, 0}};
    for (unsigned t = 0; t < ARRAY_LEN(lens); t++) {
        uint8_t *data[3];
        struct cloudinit_file files[CLOUDINIT_KEY_COUNT];
        for (unsigned k = 0; k < 3; k++) {
            data[k] = pattern(lens[t][k], t * 3 + k);
            files[k] = file_of(data[k], lens[t][k]);
        }
        struct cloudinit_image img;
        build(files, &img);
        assert_int_equal(img.fat_bits, 12);
        check_with_tools(&img, files);
        cloudinit_image_free(&img);
        for (unsigned k = 0; k < 3; k++)
            free(data[k]);
    }
}

/* Content past propolis' 512 sectors: FAT12 with more clusters, then FAT16
 * with one sector per cluster just past the FAT12 limit. */
static void test_content_past_512_sectors(void **state)
{
    (void)state;
    static const struct {
        size_t lens[3];
        unsigned fat_bits, sectors_per_cluster;
        uint32_t clusters;
    } cases[] = {
        /* 700 + 1 + 1 clusters */
        {{700 * 512, 100, 7}, 12, 1, 702},
        /* the most FAT12 holds */
        {{CLOUDINIT_FAT12_MAX_CLUSTERS * 512 - 1024, 512, 512},
         12,
         1,
         CLOUDINIT_FAT12_MAX_CLUSTERS},
        /* one cluster more: FAT16, padded to its minimum */
        {{CLOUDINIT_FAT12_MAX_CLUSTERS * 512 - 1024, 512, 513},
         16,
         1,
         CLOUDINIT_FAT16_MIN_CLUSTERS},
        /* 3 MiB */
        {{3 << 20, 5000, 100}, 16, 1, 6144 + 10 + 1},
    };
    for (unsigned t = 0; t < ARRAY_LEN(cases); t++) {
        uint8_t *data[3];
        struct cloudinit_file files[CLOUDINIT_KEY_COUNT];
        for (unsigned k = 0; k < 3; k++) {
            data[k] = pattern(cases[t].lens[k], t + k);
            files[k] = file_of(data[k], cases[t].lens[k]);
        }
        struct cloudinit_image img;
        build(files, &img);
        assert_int_equal(img.fat_bits, cases[t].fat_bits);
        assert_int_equal(img.sectors_per_cluster, cases[t].sectors_per_cluster);
        assert_int_equal(img.clusters, cases[t].clusters);
        assert_memory_equal(img.bytes + 54, img.fat_bits == 12 ? "FAT12   " : "FAT16   ", 8);
        check_with_tools(&img, files);
        cloudinit_image_free(&img);
        for (unsigned k = 0; k < 3; k++)
            free(data[k]);
    }
}

/* The most the volume holds: 64 MiB together, which needs 4-sector
 * clusters; one byte more is refused naming the key that went past. */
static void test_size_limit(void **state)
{
    (void)state;
    size_t third = CLOUDINIT_MAX_CONTENT / 3;
    size_t lens[3] = {third, third, CLOUDINIT_MAX_CONTENT - 2 * third};
    uint8_t *data = pattern(CLOUDINIT_MAX_CONTENT + 1, 5);
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT];
    size_t at = 0;
    for (unsigned k = 0; k < 3; k++) {
        files[k] = file_of(data + at, lens[k]);
        at += lens[k];
    }
    struct cloudinit_image img;
    build(files, &img);
    assert_int_equal(img.fat_bits, 16);
    assert_int_equal(img.sectors_per_cluster, 4);
    assert_in_range(img.clusters, CLOUDINIT_FAT16_MIN_CLUSTERS, CLOUDINIT_FAT16_MAX_CLUSTERS);
    check_with_tools(&img, files);
    cloudinit_image_free(&img);

    enum cloudinit_key bad;
    char err[256];
    files[CLOUDINIT_META_DATA].len++;
    assert_int_equal(cloudinit_build(files, &img, &bad, err, sizeof(err)), -1);
    assert_int_equal(bad, CLOUDINIT_NETWORK_CONFIG);
    assert_null(img.bytes);
    assert_non_null(strstr(err, "more than 64 MiB"));

    files[CLOUDINIT_USER_DATA].len = CLOUDINIT_MAX_CONTENT + 1;
    assert_int_equal(cloudinit_build(files, &img, &bad, err, sizeof(err)), -1);
    assert_int_equal(bad, CLOUDINIT_USER_DATA);

    /* An absent network-config does not count, whatever its length says. */
    files[CLOUDINIT_USER_DATA].len = third;
    files[CLOUDINIT_NETWORK_CONFIG].present = false;
    build(files, &img);
    cloudinit_image_free(&img);
    free(data);
}

static void test_deterministic(void **state)
{
    (void)state;
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {
        file_of(user_data, strlen(user_data)),
        file_of(meta_data, strlen(meta_data)),
    };
    struct cloudinit_image a, b;
    build(files, &a);
    build(files, &b);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.bytes, b.bytes, a.size);
    cloudinit_image_free(&b);

    /* Other content: another volume serial (boot sector offset 39). */
    files[CLOUDINIT_META_DATA] = file_of(meta_data, strlen(meta_data) - 1);
    build(files, &b);
    assert_int_equal(a.size, b.size);
    assert_int_not_equal(le32_load(a.bytes + 39), le32_load(b.bytes + 39));
    cloudinit_image_free(&a);
    cloudinit_image_free(&b);
}

/* The long-name entries carry the checksum of the short name they belong
 * to; recomputed here from the specification's definition. */
static void test_long_name_entries(void **state)
{
    (void)state;
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {
        file_of(user_data, strlen(user_data)),
        file_of(meta_data, strlen(meta_data)),
        file_of(network_config, strlen(network_config)),
    };
    struct cloudinit_image img;
    build(files, &img);
    uint32_t fat_sectors = le16_load(img.bytes + 22);
    const uint8_t *root = img.bytes + (1 + 2 * fat_sectors) * 512;
    /* label, then (long-name pieces, short entry) per file */
    assert_memory_equal(root, "cidata     ", 11);
    assert_int_equal(root[11], 0x08);
    static const unsigned pieces[3] = {1, 1, 2};
    const uint8_t *e = root + 32;
    for (unsigned k = 0; k < 3; k++) {
        const uint8_t *short_entry = e + 32 * pieces[k];
        uint8_t sum = 0;
        for (unsigned i = 0; i < 11; i++)
            sum = (uint8_t)(((sum & 1) ? 0x80 : 0) + (sum >> 1) + short_entry[i]);
        for (unsigned p = 0; p < pieces[k]; p++) {
            assert_int_equal(e[32 * p + 11], 0x0f);
            assert_int_equal(e[32 * p + 13], sum);
            assert_int_equal(e[32 * p] & 0x3f, pieces[k] - p);
            assert_int_equal(!!(e[32 * p] & 0x40), p == 0);
        }
        assert_int_equal(le32_load(short_entry + 28), files[k].len);
        e = short_entry + 32;
    }
    assert_int_equal(e[0], 0); /* end of the directory */
    cloudinit_image_free(&img);
}

/* ---- the back end ---- */

static struct config_block_dev cloudinit_cfg(const struct config_cloudinit *ci)
{
    struct config_block_dev c;
    memset(&c, 0, sizeof(c));
    c.name = (char *)"seed";
    c.type = CONFIG_BLOCK_CLOUDINIT;
    c.cloudinit.data = ci;
    c.source = "t.toml";
    return c;
}

static void test_backend_serves_image(void **state)
{
    (void)state;
    uint8_t *big = pattern(300 * 1024, 9); /* past 512 sectors */
    struct config_cloudinit ci = {
        .user_data = {.data = (char *)big, .len = 300 * 1024},
        .meta_data = {.data = (char *)meta_data, .len = strlen(meta_data)},
    };
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {
        file_of(big, 300 * 1024),
        file_of(meta_data, strlen(meta_data)),
    };
    struct cloudinit_image img;
    build(files, &img);

    struct config_block_dev cfg = cloudinit_cfg(&ci);
    struct block_backend *be = block_backend_open(&cfg);
    assert_non_null(be);
    assert_int_equal(be->info.size, img.size);
    assert_int_equal(be->info.block_size, 512);
    assert_true(be->info.read_only);
    assert_false(be->info.can_discard);
    assert_false(be->info.can_write_zeroes);

    /* Every sector, in uneven runs. */
    uint8_t *got = malloc(img.size);
    assert_non_null(got);
    memset(got, 0xee, img.size);
    for (uint64_t off = 0; off < img.size;) {
        uint64_t len = ((off / 512) % 7 + 1) * 512;
        if (len > img.size - off)
            len = img.size - off;
        assert_int_equal(block_req(be, BLOCK_OP_READ, off, got + off, len), 0);
        off += len;
    }
    assert_memory_equal(got, img.bytes, img.size);

    /* Read-only: nothing changes it; a flush succeeds. */
    uint8_t sector[512];
    memset(sector, 0x5a, sizeof(sector));
    assert_int_equal(block_req(be, BLOCK_OP_WRITE, 0, sector, 512), -EROFS);
    assert_int_equal(block_req(be, BLOCK_OP_DISCARD, 0, NULL, 4096), -EROFS);
    assert_int_equal(block_req(be, BLOCK_OP_WRITE_ZEROES, 512, NULL, 512), -EROFS);
    assert_int_equal(block_req(be, BLOCK_OP_FLUSH, 0, NULL, 0), 0);
    assert_int_equal(block_req(be, BLOCK_OP_READ, img.size, sector, 512), -EINVAL);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, sector, 512), 0);
    assert_memory_equal(sector, img.bytes, 512);

    block_backend_destroy(be);
    cloudinit_image_free(&img);
    free(got);
    free(big);
}

/* From a config file: inline data and -path files, as the VMM opens it. */
static void test_backend_from_config(void **state)
{
    (void)state;
    char ud_path[128], nc_path[128];
    snprintf(ud_path, sizeof(ud_path), "%s/user-data", tmpdir);
    snprintf(nc_path, sizeof(nc_path), "%s/network-config", tmpdir);
    uint8_t *ud = pattern(70000, 3); /* binary, NULs */
    write_file(ud_path, ud, 70000);
    write_file(nc_path, network_config, strlen(network_config));
    char text[1024];
    snprintf(text, sizeof(text),
             "[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n"
             "[block_dev.seed]\ntype = \"cloudinit\"\n"
             "[cloudinit]\nuser-data-path = \"%s\"\nmeta-data = \"instance-id: x\\n\"\n"
             "network-config-path = \"%s\"\n",
             ud_path, nc_path);
    struct config cfg;
    assert_int_equal(config_parse("t.toml", text, strlen(text), &cfg), 0);
    struct block_backend *be = block_backend_open(&cfg.block_devs[0]);
    assert_non_null(be);

    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {
        file_of(ud, 70000),
        file_of("instance-id: x\n", 15),
        file_of(network_config, strlen(network_config)),
    };
    struct cloudinit_image img;
    build(files, &img);
    assert_int_equal(be->info.size, img.size);
    uint8_t *got = malloc(img.size);
    assert_non_null(got);
    assert_int_equal(block_req(be, BLOCK_OP_READ, 0, got, img.size), 0);
    assert_memory_equal(got, img.bytes, img.size);
    block_backend_destroy(be);

    /* What the guest reads is what the tools accept. */
    struct cloudinit_image served = {.bytes = got, .size = img.size};
    check_with_tools(&served, files);

    free(got);
    cloudinit_image_free(&img);
    config_free(&cfg);
    free(ud);
    unlink(ud_path);
    unlink(nc_path);
}

/* A -path file that cannot be read, or holds too much, is reported at its
 * key in the config file; nothing is opened. */
static void test_backend_file_errors(void **state)
{
    (void)state;
    char big_path[128], text[1024];
    snprintf(big_path, sizeof(big_path), "%s/big", tmpdir);
    struct {
        const char *cloudinit;
        const char *want;
    } cases[] = {
        {"meta-data-path = \"/nonexistent/meta-data\"\n",
         "t.toml:9:18: cloudinit.meta-data-path: cannot read /nonexistent/meta-data: No such "
         "file or directory\n"},
        {"user-data = \"x\"\nnetwork-config-path = \"/\"\n",
         "t.toml:10:23: cloudinit.network-config-path: cannot read /: Is a directory\n"},
        {"user-data-path = \"BIG\"\n", "t.toml:9:18: cloudinit.user-data-path: BIG is larger "
                                       "than the 64 MiB a cloud-init disk holds\n"},
    };
    /* A sparse file one byte past the limit. */
    int fd = open(big_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)CLOUDINIT_MAX_CONTENT + 1), 0);
    close(fd);
    for (unsigned t = 0; t < ARRAY_LEN(cases); t++) {
        char section[256], want[512];
        /* BIG stands for the big file's path (its column is the same). */
        const char *at = strstr(cases[t].cloudinit, "BIG");
        if (at)
            snprintf(section, sizeof(section), "%.*s%s%s", (int)(at - cases[t].cloudinit),
                     cases[t].cloudinit, big_path, at + 3);
        else
            snprintf(section, sizeof(section), "%s", cases[t].cloudinit);
        at = strstr(cases[t].want, "BIG");
        if (at)
            snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - cases[t].want), cases[t].want,
                     big_path, at + 3);
        else
            snprintf(want, sizeof(want), "%s", cases[t].want);
        snprintf(text, sizeof(text),
                 "[main]\nname = \"vm\"\ncpus = 1\nbootrom = \"/x\"\nmemory = 16\n"
                 "[block_dev.seed]\ntype = \"cloudinit\"\n[cloudinit]\n%s",
                 section);
        struct config cfg;
        assert_int_equal(config_parse("t.toml", text, strlen(text), &cfg), 0);
        capture_stderr();
        struct block_backend *be = block_backend_open(&cfg.block_devs[0]);
        char *printed = captured_stderr();
        assert_null(be);
        assert_string_equal(printed, want);
        config_free(&cfg);
    }
    unlink(big_path);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_content),       cmocka_unit_test(test_absent_items),
        cmocka_unit_test(test_binary_content),      cmocka_unit_test(test_content_past_512_sectors),
        cmocka_unit_test(test_size_limit),          cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_long_name_entries),   cmocka_unit_test(test_backend_serves_image),
        cmocka_unit_test(test_backend_from_config), cmocka_unit_test(test_backend_file_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
