/* The cloud-init volume builder (cloudinit.h) and the `cloudinit` block
 * back end: the [cloudinit] files read at open, the volume built once and
 * served read-only from memory by the mem back end. */
#include "block/cloudinit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block_internal.h"
#include "common/bytes.h"
#include "common/log.h"
#include "config/config.h"

/* ---- the volume ---- */

#define DIR_ENTRY_SIZE 32u
#define LFN_CHARS_PER_ENTRY 13u

enum {
    ATTR_VOLUME_ID = 0x08,
    ATTR_ARCHIVE = 0x20,
    ATTR_LONG_NAME = 0x0f, /* read-only | hidden | system | volume id */
    LFN_LAST_ENTRY = 0x40,
    MEDIA_FIXED_DISK = 0xf8,
};

/* 2000-01-01 00:00:00 in FAT's packed form: years since 1980 in bits 15-9,
 * month 8-5, day 4-0; the time is all zero. */
#define FIXED_DATE ((20u << 9) | (1u << 5) | 1u)
#define FIXED_TIME 0u

static const char volume_label[11] = {'c', 'i', 'd', 'a', 't', 'a', ' ', ' ', ' ', ' ', ' '};

/* The long names and the short names Windows would give them (first six
 * valid characters, upper case, "~1"): distinct, and valid 8.3 names. */
static const struct {
    const char *long_name;
    char short_name[11];
} names[CLOUDINIT_KEY_COUNT] = {
    [CLOUDINIT_USER_DATA] = {"user-data", {'U', 'S', 'E', 'R', '-', 'D', '~', '1', ' ', ' ', ' '}},
    [CLOUDINIT_META_DATA] = {"meta-data", {'M', 'E', 'T', 'A', '-', 'D', '~', '1', ' ', ' ', ' '}},
    [CLOUDINIT_NETWORK_CONFIG] = {"network-config",
                                  {'N', 'E', 'T', 'W', 'O', 'R', '~', '1', ' ', ' ', ' '}},
};

const char *cloudinit_key_name(enum cloudinit_key key)
{
    return (unsigned)key < CLOUDINIT_KEY_COUNT ? names[key].long_name : "?";
}

struct geometry {
    unsigned fat_bits;
    uint32_t sectors_per_cluster;
    uint32_t root_entries;
    uint32_t clusters;
    uint32_t fat_sectors;
    uint32_t root_sectors;
    uint32_t total_sectors;
    uint32_t first_fat, first_root, first_data; /* sector numbers */
};

static bool on_volume(const struct cloudinit_file *files, unsigned k)
{
    return k != CLOUDINIT_NETWORK_CONFIG || files[k].present;
}

static uint32_t clusters_of(size_t len, uint32_t cluster_bytes)
{
    return (uint32_t)((len + cluster_bytes - 1) / cluster_bytes);
}

static uint32_t clusters_needed(const struct cloudinit_file *files, uint32_t sectors_per_cluster)
{
    uint32_t n = 0;
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++)
        if (on_volume(files, k))
            n += clusters_of(files[k].len, sectors_per_cluster * CLOUDINIT_SECTOR_SIZE);
    return n;
}

/* Picks the FAT type and sizes as cloudinit.h describes. The content is at
 * most CLOUDINIT_MAX_CONTENT, so FAT16 always finds a cluster size. */
static void plan_geometry(const struct cloudinit_file *files, struct geometry *g)
{
    memset(g, 0, sizeof(*g));
    uint32_t need = clusters_needed(files, 1);
    if (need <= CLOUDINIT_FAT12_MAX_CLUSTERS) {
        g->fat_bits = 12;
        g->sectors_per_cluster = 1;
        g->root_entries = 16; /* one sector: the label and three files need 8 */
        g->clusters = need > CLOUDINIT_FAT12_MIN_CLUSTERS ? need : CLOUDINIT_FAT12_MIN_CLUSTERS;
    } else {
        g->fat_bits = 16;
        g->root_entries = 512; /* what the specification recommends for FAT16 */
        g->sectors_per_cluster = 1;
        while ((need = clusters_needed(files, g->sectors_per_cluster)) >
               CLOUDINIT_FAT16_MAX_CLUSTERS)
            g->sectors_per_cluster *= 2;
        g->clusters = need > CLOUDINIT_FAT16_MIN_CLUSTERS ? need : CLOUDINIT_FAT16_MIN_CLUSTERS;
    }
    /* Entries 0 and 1 of the FAT are reserved; cluster numbers start at 2. */
    uint32_t entries = g->clusters + 2;
    uint32_t fat_bytes = g->fat_bits == 12 ? (entries * 3 + 1) / 2 : entries * 2;
    g->fat_sectors = (fat_bytes + CLOUDINIT_SECTOR_SIZE - 1) / CLOUDINIT_SECTOR_SIZE;
    g->root_sectors = g->root_entries * DIR_ENTRY_SIZE / CLOUDINIT_SECTOR_SIZE;
    g->first_fat = 1; /* one reserved sector: the boot sector */
    g->first_root = g->first_fat + 2 * g->fat_sectors;
    g->first_data = g->first_root + g->root_sectors;
    g->total_sectors = g->first_data + g->clusters * g->sectors_per_cluster;
}

/* FNV-1a: a volume serial that changes with the content, the same every run. */
static uint32_t hash_bytes(uint32_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint32_t volume_serial(const struct cloudinit_file *files)
{
    uint32_t h = 2166136261u;
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        uint8_t head[9] = {on_volume(files, k)};
        le64_store(head + 1, files[k].len);
        h = hash_bytes(h, head, sizeof(head));
        if (files[k].len)
            h = hash_bytes(h, files[k].data, files[k].len);
    }
    return h;
}

static void write_boot_sector(uint8_t *bs, const struct geometry *g, uint32_t serial)
{
    static const uint8_t jump[3] = {0xeb, 0x3c, 0x90}; /* jmp short to 0x3e; nop */
    /* At 0x3e: int 0x18 (no bootable disk here: the firmware tries the next
     * one), then hlt in a loop should it return. */
    static const uint8_t boot_code[] = {0xcd, 0x18, 0xf4, 0xeb, 0xfd};
    memcpy(bs, jump, sizeof(jump));
    memcpy(bs + 3, "MSWIN4.1", 8); /* the OEM name the specification recommends */
    le16_store(bs + 11, CLOUDINIT_SECTOR_SIZE);
    bs[13] = (uint8_t)g->sectors_per_cluster;
    le16_store(bs + 14, (uint16_t)g->first_fat); /* reserved sectors */
    bs[16] = 2;                                  /* FAT copies */
    le16_store(bs + 17, (uint16_t)g->root_entries);
    if (g->total_sectors < 0x10000)
        le16_store(bs + 19, (uint16_t)g->total_sectors);
    else
        le32_store(bs + 32, g->total_sectors);
    bs[21] = MEDIA_FIXED_DISK;
    le16_store(bs + 22, (uint16_t)g->fat_sectors);
    le16_store(bs + 24, 32); /* sectors per track and heads: only for INT 13h */
    le16_store(bs + 26, 64);
    le32_store(bs + 28, 0); /* hidden sectors: the volume is the whole disk */
    bs[36] = 0x80;          /* drive number: a hard disk */
    bs[38] = 0x29;          /* extended boot signature: the next three fields exist */
    le32_store(bs + 39, serial);
    memcpy(bs + 43, volume_label, sizeof(volume_label));
    memcpy(bs + 54, g->fat_bits == 12 ? "FAT12   " : "FAT16   ", 8);
    memcpy(bs + 62, boot_code, sizeof(boot_code));
    bs[510] = 0x55;
    bs[511] = 0xaa;
}

static void fat_set(uint8_t *fat, unsigned fat_bits, uint32_t cluster, uint32_t value)
{
    if (fat_bits == 16) {
        le16_store(fat + 2 * cluster, (uint16_t)value);
        return;
    }
    /* FAT12: two entries share three bytes; an odd entry is the high 12 bits. */
    uint8_t *p = fat + cluster + cluster / 2;
    uint16_t pair = le16_load(p);
    if (cluster & 1)
        pair = (uint16_t)((pair & 0x000f) | (value << 4));
    else
        pair = (uint16_t)((pair & 0xf000) | (value & 0x0fff));
    le16_store(p, pair);
}

static uint8_t short_name_checksum(const char name[11])
{
    uint8_t sum = 0;
    for (unsigned i = 0; i < 11; i++)
        sum = (uint8_t)(((sum & 1) ? 0x80 : 0) + (sum >> 1) + (uint8_t)name[i]);
    return sum;
}

static void set_timestamps(uint8_t *e)
{
    le16_store(e + 14, FIXED_TIME); /* created */
    le16_store(e + 16, FIXED_DATE);
    le16_store(e + 18, FIXED_DATE); /* last access */
    le16_store(e + 22, FIXED_TIME); /* written */
    le16_store(e + 24, FIXED_DATE);
}

/* Writes the long-name entries of name (ASCII) for the short entry whose
 * checksum is sum, last piece first as the specification orders them;
 * returns the next free entry. */
static uint8_t *write_long_name(uint8_t *e, const char *name, uint8_t sum)
{
    static const uint8_t char_offsets[LFN_CHARS_PER_ENTRY] = {1,  3,  5,  7,  9,  14, 16,
                                                              18, 20, 22, 24, 28, 30};
    size_t len = strlen(name);
    unsigned pieces = (unsigned)((len + LFN_CHARS_PER_ENTRY - 1) / LFN_CHARS_PER_ENTRY);
    for (unsigned piece = pieces; piece >= 1; piece--, e += DIR_ENTRY_SIZE) {
        e[0] = (uint8_t)(piece | (piece == pieces ? LFN_LAST_ENTRY : 0));
        e[11] = ATTR_LONG_NAME;
        e[13] = sum;
        for (unsigned i = 0; i < LFN_CHARS_PER_ENTRY; i++) {
            size_t at = (piece - 1) * LFN_CHARS_PER_ENTRY + i;
            /* After the name: one NUL, then 0xffff padding. */
            uint16_t c = at < len ? (uint8_t)name[at] : at == len ? 0x0000 : 0xffff;
            le16_store(e + char_offsets[i], c);
        }
    }
    return e;
}

int cloudinit_build(const struct cloudinit_file files[CLOUDINIT_KEY_COUNT],
                    struct cloudinit_image *out, enum cloudinit_key *bad_key, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof(*out));
    *bad_key = CLOUDINIT_KEY_COUNT;
    size_t total = 0;
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        size_t len = on_volume(files, k) ? files[k].len : 0;
        if (len > CLOUDINIT_MAX_CONTENT - total) {
            *bad_key = (enum cloudinit_key)k;
            snprintf(err, errlen,
                     "the cloud-init files would hold more than %u MiB together (this one is "
                     "%zu bytes, the ones before it %zu)",
                     CLOUDINIT_MAX_CONTENT >> 20, len, total);
            return -1;
        }
        total += len;
    }

    struct geometry g;
    plan_geometry(files, &g);
    size_t size = (size_t)g.total_sectors * CLOUDINIT_SECTOR_SIZE;
    uint8_t *img = calloc(1, size);
    if (!img) {
        snprintf(err, errlen, "out of memory for a %zu-byte volume", size);
        return -1;
    }

    write_boot_sector(img, &g, volume_serial(files));

    uint8_t *fat = img + (size_t)g.first_fat * CLOUDINIT_SECTOR_SIZE;
    uint32_t end_of_chain = g.fat_bits == 12 ? 0xfff : 0xffff;
    /* Entry 0 holds the media byte; entry 1 end-of-chain (for FAT16 its top
     * bits also say "cleanly unmounted, no disk errors"). */
    fat_set(fat, g.fat_bits, 0, (end_of_chain & ~0xffu) | MEDIA_FIXED_DISK);
    fat_set(fat, g.fat_bits, 1, end_of_chain);

    uint8_t *e = img + (size_t)g.first_root * CLOUDINIT_SECTOR_SIZE;
    memcpy(e, volume_label, sizeof(volume_label));
    e[11] = ATTR_VOLUME_ID;
    set_timestamps(e);
    e += DIR_ENTRY_SIZE;

    uint32_t cluster_bytes = g.sectors_per_cluster * CLOUDINIT_SECTOR_SIZE;
    uint32_t next_cluster = 2;
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        if (!on_volume(files, k))
            continue;
        const char *short_name = names[k].short_name;
        e = write_long_name(e, names[k].long_name, short_name_checksum(short_name));
        memcpy(e, short_name, 11);
        e[11] = ATTR_ARCHIVE;
        set_timestamps(e);
        le32_store(e + 28, (uint32_t)files[k].len);
        uint32_t n = clusters_of(files[k].len, cluster_bytes);
        if (n > 0) {
            le16_store(e + 26, (uint16_t)next_cluster); /* the high half (20) is 0 below FAT32 */
            for (uint32_t i = 0; i < n; i++)
                fat_set(fat, g.fat_bits, next_cluster + i,
                        i + 1 < n ? next_cluster + i + 1 : end_of_chain);
            uint8_t *data =
                img + ((size_t)g.first_data + (size_t)(next_cluster - 2) * g.sectors_per_cluster) *
                          CLOUDINIT_SECTOR_SIZE;
            memcpy(data, files[k].data, files[k].len);
            next_cluster += n;
        }
        e += DIR_ENTRY_SIZE;
    }

    /* The second FAT is a copy of the first. */
    memcpy(fat + (size_t)g.fat_sectors * CLOUDINIT_SECTOR_SIZE, fat,
           (size_t)g.fat_sectors * CLOUDINIT_SECTOR_SIZE);

    *out = (struct cloudinit_image){
        .bytes = img,
        .size = size,
        .fat_bits = g.fat_bits,
        .sectors_per_cluster = g.sectors_per_cluster,
        .clusters = g.clusters,
    };
    return 0;
}

void cloudinit_image_free(struct cloudinit_image *img)
{
    free(img->bytes);
    memset(img, 0, sizeof(*img));
}

/* ---- the back end ---- */

/* The key path of item k as written: "cloudinit.user-data" or
 * "cloudinit.user-data-path". */
static void item_key_path(char *out, size_t n, unsigned k, const struct config_cloudinit_item *it)
{
    snprintf(out, n, "cloudinit.%s%s", cloudinit_key_name((enum cloudinit_key)k),
             it->path ? "-path" : "");
}

/* Reads a -path file, at most CLOUDINIT_MAX_CONTENT bytes (a FIFO or a
 * device works too: the length is what reading finds). */
static int read_item_file(const struct config_block_dev *cfg, unsigned k,
                          const struct config_cloudinit_item *it, uint8_t **data, size_t *len)
{
    char key[64];
    item_key_path(key, sizeof(key), k, it);
    int fd = open(it->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_report_at(cfg->source, it->pos, key, "cannot read %s: %s", it->path,
                         strerror(errno));
        return -1;
    }
    size_t cap = 0, n = 0;
    uint8_t *buf = NULL;
    for (;;) {
        if (n == cap) {
            size_t grown = cap ? cap * 2 : 64 * 1024;
            if (grown > (size_t)CLOUDINIT_MAX_CONTENT + 1)
                grown = (size_t)CLOUDINIT_MAX_CONTENT + 1;
            if (grown == cap) {
                config_report_at(cfg->source, it->pos, key,
                                 "%s is larger than the %u MiB a cloud-init disk holds", it->path,
                                 CLOUDINIT_MAX_CONTENT >> 20);
                goto fail;
            }
            uint8_t *more = realloc(buf, grown);
            if (!more) {
                config_report_at(cfg->source, it->pos, key, "out of memory reading %s", it->path);
                goto fail;
            }
            buf = more;
            cap = grown;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            config_report_at(cfg->source, it->pos, key, "cannot read %s: %s", it->path,
                             strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    *data = buf;
    *len = n;
    return 0;
fail:
    close(fd);
    free(buf);
    return -1;
}

struct block_backend *block_cloudinit_open(const struct config_block_dev *cfg)
{
    const struct config_cloudinit *ci = cfg->cloudinit.data;
    if (!ci) {
        log_error("block_dev.%s: type \"cloudinit\" needs a [cloudinit] section", cfg->name);
        return NULL;
    }
    const struct config_cloudinit_item *items[CLOUDINIT_KEY_COUNT] = {
        [CLOUDINIT_USER_DATA] = &ci->user_data,
        [CLOUDINIT_META_DATA] = &ci->meta_data,
        [CLOUDINIT_NETWORK_CONFIG] = &ci->network_config,
    };
    struct cloudinit_file files[CLOUDINIT_KEY_COUNT] = {{0}};
    uint8_t *read_data[CLOUDINIT_KEY_COUNT] = {NULL};
    struct block_backend *be = NULL;
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++) {
        const struct config_cloudinit_item *it = items[k];
        if (it->path) {
            size_t len;
            if (read_item_file(cfg, k, it, &read_data[k], &len) < 0)
                goto out;
            files[k] = (struct cloudinit_file){true, read_data[k], len};
        } else if (it->data) {
            files[k] = (struct cloudinit_file){true, it->data, it->len};
        }
    }
    struct cloudinit_image img;
    enum cloudinit_key bad;
    char why[256];
    if (cloudinit_build(files, &img, &bad, why, sizeof(why)) < 0) {
        if (bad < CLOUDINIT_KEY_COUNT) {
            char key[64];
            item_key_path(key, sizeof(key), bad, items[bad]);
            config_report_at(cfg->source, items[bad]->pos, key, "%s", why);
        } else {
            log_error("block_dev.%s: %s", cfg->name, why);
        }
        goto out;
    }
    be = block_mem_open_image(cfg, img.bytes, img.size);
    if (be)
        log_info(
            "block_dev.%s: cloud-init volume (NoCloud, label cidata), FAT%u, %zu bytes, read-only",
            cfg->name, img.fat_bits, img.size);
out:
    for (unsigned k = 0; k < CLOUDINIT_KEY_COUNT; k++)
        free(read_data[k]);
    return be;
}
