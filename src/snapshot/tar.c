#include "snapshot/tar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/text.h"

#define PAGE 4096u
#define NAME_FIELD 100
#define PREFIX_FIELD 155
#define OCTAL_SIZE_LIMIT (1ull << 33) /* 11 octal digits */

/* The ustar header's fields, by offset. */
enum {
    H_NAME = 0,
    H_MODE = 100,
    H_UID = 108,
    H_GID = 116,
    H_SIZE = 124,
    H_MTIME = 136,
    H_CHKSUM = 148,
    H_TYPE = 156,
    H_MAGIC = 257,
    H_VERSION = 263,
    H_PREFIX = 345,
};

bool tar_all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    /* Word-wise: this runs over every page of guest RAM. */
    while (len >= 8 && ((uintptr_t)b & 7)) {
        if (*b)
            return false;
        b++, len--;
    }
    const uint64_t *w = (const uint64_t *)(const void *)b;
    size_t words = len / 8;
    for (size_t i = 0; i + 4 <= words; i += 4)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
            return false;
    for (size_t i = words & ~(size_t)3; i < words; i++)
        if (w[i])
            return false;
    for (size_t i = words * 8; i < len; i++)
        if (b[i])
            return false;
    return true;
}

static uint64_t padded(uint64_t size)
{
    return (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
}

/* ---- Writing ---- */

void tar_writer_init(struct tar_writer *w, int fd)
{
    *w = (struct tar_writer){.fd = fd};
}

static int write_at(struct tar_writer *w, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)w->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(w->error, sizeof(w->error), "%s: write: %s", w->member ? w->member : "archive",
                     n < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        p += n;
        len -= (size_t)n;
        w->pos += (uint64_t)n;
    }
    return 0;
}

static void put_octal(uint8_t *field, size_t width, uint64_t v)
{
    /* width - 1 digits and a NUL. */
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%0*llo", (int)(width - 1), (unsigned long long)v);
    memcpy(field, tmp, width - 1);
    field[width - 1] = 0;
}

static bool split_name(const char *name, uint8_t *hdr)
{
    size_t len = strlen(name);
    if (len == 0 || len > TAR_NAME_MAX)
        return false;
    if (len <= NAME_FIELD) {
        memcpy(hdr + H_NAME, name, len);
        return true;
    }
    /* prefix '/' name: the last slash that leaves both parts in range. */
    for (size_t i = len; i-- > 0;) {
        if (name[i] != '/')
            continue;
        if (i <= PREFIX_FIELD && len - i - 1 <= NAME_FIELD && len - i - 1 > 0) {
            memcpy(hdr + H_PREFIX, name, i);
            memcpy(hdr + H_NAME, name + i + 1, len - i - 1);
            return true;
        }
    }
    return false;
}

int tar_member_begin(struct tar_writer *w, const char *name, uint64_t size)
{
    uint8_t hdr[TAR_BLOCK] = {0};
    w->member = name;
    if (!split_name(name, hdr)) {
        snprintf(w->error, sizeof(w->error), "%s: name too long for a tar header", name);
        return -1;
    }
    put_octal(hdr + H_MODE, 8, 0644);
    put_octal(hdr + H_UID, 8, 0);
    put_octal(hdr + H_GID, 8, 0);
    if (size < OCTAL_SIZE_LIMIT) {
        put_octal(hdr + H_SIZE, 12, size);
    } else {
        /* Base-256: a set top bit, then the size big-endian. */
        hdr[H_SIZE] = 0x80;
        for (int i = 0; i < 8; i++)
            hdr[H_SIZE + 11 - i] = (uint8_t)(size >> (8 * i));
    }
    put_octal(hdr + H_MTIME, 12, (uint64_t)time(NULL));
    hdr[H_TYPE] = '0';
    memcpy(hdr + H_MAGIC, "ustar", 6);
    memcpy(hdr + H_VERSION, "00", 2);
    memset(hdr + H_CHKSUM, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += hdr[i];
    char chk[8];
    snprintf(chk, sizeof(chk), "%06o", sum);
    memcpy(hdr + H_CHKSUM, chk, 7); /* six digits and a NUL; the space stays */
    if (write_at(w, hdr, sizeof(hdr)) < 0)
        return -1;
    w->member_left = size;
    return 0;
}

int tar_member_data(struct tar_writer *w, const void *data, size_t len, bool sparse)
{
    if (len > w->member_left) {
        snprintf(w->error, sizeof(w->error), "%s: more data than the member's size", w->member);
        return -1;
    }
    w->member_left -= len;
    if (!sparse)
        return write_at(w, data, len);
    /* Runs of non-zero pages go out in one write each; zero pages are
     * skipped (the next write lands past them, leaving a hole). */
    const uint8_t *p = data;
    size_t run_start = 0, at = 0;
    while (at < len) {
        size_t n = len - at < PAGE ? len - at : PAGE;
        if (tar_all_zero(p + at, n)) {
            if (at > run_start && write_at(w, p + run_start, at - run_start) < 0)
                return -1;
            w->pos += n;
            run_start = at + n;
        }
        at += n;
    }
    if (at > run_start && write_at(w, p + run_start, at - run_start) < 0)
        return -1;
    return 0;
}

int tar_member_end(struct tar_writer *w)
{
    if (w->member_left) {
        snprintf(w->error, sizeof(w->error), "%s: %llu bytes of data missing", w->member,
                 (unsigned long long)w->member_left);
        return -1;
    }
    uint64_t pad = padded(w->pos) - w->pos;
    static const uint8_t zeros[TAR_BLOCK];
    if (pad && write_at(w, zeros, pad) < 0)
        return -1;
    w->member = NULL;
    return 0;
}

int tar_write_member(struct tar_writer *w, const char *name, const void *data, uint64_t size)
{
    if (tar_member_begin(w, name, size) < 0 || tar_member_data(w, data, size, false) < 0)
        return -1;
    return tar_member_end(w);
}

int tar_writer_finish(struct tar_writer *w)
{
    static const uint8_t zeros[2 * TAR_BLOCK];
    return write_at(w, zeros, sizeof(zeros));
}

/* ---- Reading ---- */

static bool parse_octal(const uint8_t *field, size_t width, uint64_t *out)
{
    size_t i = 0;
    while (i < width && field[i] == ' ')
        i++;
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < width && field[i] >= '0' && field[i] <= '7'; i++, digits++) {
        if (v >> 60)
            return false;
        v = v * 8 + (uint64_t)(field[i] - '0');
    }
    if (digits == 0)
        return false;
    for (; i < width; i++)
        if (field[i] != 0 && field[i] != ' ')
            return false;
    *out = v;
    return true;
}

static bool parse_size(const uint8_t *field, uint64_t *out)
{
    if (field[0] & 0x80) {
        if (field[0] != 0x80 || field[1] || field[2] || field[3])
            return false;
        uint64_t v = 0;
        for (int i = 4; i < 12; i++)
            v = v << 8 | field[i];
        *out = v;
        return true;
    }
    return parse_octal(field, 12, out);
}

/* A field of width bytes, NUL-terminated unless full. */
static size_t field_len(const uint8_t *field, size_t width)
{
    const uint8_t *nul = memchr(field, 0, width);
    return nul ? (size_t)(nul - field) : width;
}

static bool name_ok(const char *name)
{
    if (!*name || name[0] == '/')
        return false;
    const char *c = name;
    while (*c) {
        const char *end = strchr(c, '/');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (!end)
            break;
        c = end + 1;
        if (!*c)
            return false; /* a trailing slash: a directory */
    }
    return true;
}

static bool header_name(const uint8_t *hdr, char *out)
{
    size_t plen = field_len(hdr + H_PREFIX, PREFIX_FIELD);
    size_t nlen = field_len(hdr + H_NAME, NAME_FIELD);
    size_t at = 0;
    if (plen) {
        memcpy(out, hdr + H_PREFIX, plen);
        out[plen] = '/';
        at = plen + 1;
    }
    memcpy(out + at, hdr + H_NAME, nlen);
    out[at + nlen] = '\0';
    return strlen(out) == at + nlen; /* no NUL inside */
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int index_archive(struct tar_reader *r, char *err, size_t err_size)
{
    uint64_t pos = 0;
    const char *last = "(the start of the archive)";
    for (;;) {
        uint8_t hdr[TAR_BLOCK];
        if (r->file_size - pos < TAR_BLOCK) {
            text_error(err, err_size, "truncated after member '%s': no end-of-archive block", last);
            return -1;
        }
        if (read_at(r->fd, hdr, sizeof(hdr), pos) < 0) {
            text_error(err, err_size, "read error after member '%s': %s", last, strerror(errno));
            return -1;
        }
        if (tar_all_zero(hdr, sizeof(hdr)))
            return 0;
        char name[TAR_NAME_MAX + 1];
        bool named = header_name(hdr, name);
        const char *shown = named ? name : "(unreadable name)";
        uint64_t stored_sum;
        unsigned sum = 0;
        for (size_t i = 0; i < TAR_BLOCK; i++)
            sum += (i >= H_CHKSUM && i < H_CHKSUM + 8) ? ' ' : hdr[i];
        if (!parse_octal(hdr + H_CHKSUM, 8, &stored_sum) || stored_sum != sum) {
            text_error(err, err_size, "member '%s' (header after '%s'): bad header checksum", shown,
                       last);
            return -1;
        }
        if (memcmp(hdr + H_MAGIC, "ustar", 5) != 0 ||
            (hdr[H_MAGIC + 5] != 0 && hdr[H_MAGIC + 5] != ' ')) {
            text_error(err, err_size, "member '%s': not a ustar header", shown);
            return -1;
        }
        if (!named || !name_ok(name)) {
            text_error(err, err_size,
                       "member '%s': name refused (empty, absolute, or with '.' or '..')", shown);
            return -1;
        }
        if (hdr[H_TYPE] != '0' && hdr[H_TYPE] != 0) {
            text_error(err, err_size, "member '%s': not a regular file (type '%c')", name,
                       hdr[H_TYPE] >= 0x20 && hdr[H_TYPE] < 0x7f ? hdr[H_TYPE] : '?');
            return -1;
        }
        uint64_t size;
        if (!parse_size(hdr + H_SIZE, &size)) {
            text_error(err, err_size, "member '%s': bad size field", name);
            return -1;
        }
        uint64_t offset = pos + TAR_BLOCK;
        if (size > r->file_size - offset) {
            text_error(err, err_size, "member '%s': truncated (%llu bytes, %llu in the file)", name,
                       (unsigned long long)size, (unsigned long long)(r->file_size - offset));
            return -1;
        }
        if (tar_find(r, name)) {
            text_error(err, err_size, "member '%s': appears twice", name);
            return -1;
        }
        if (r->count >= TAR_MAX_MEMBERS) {
            text_error(err, err_size, "member '%s': more than %u members", name, TAR_MAX_MEMBERS);
            return -1;
        }
        struct tar_member *m = &r->members[r->count++];
        snprintf(m->name, sizeof(m->name), "%s", name);
        m->offset = offset;
        m->size = size;
        pos = offset + padded(size);
        if (pos > r->file_size) {
            text_error(err, err_size, "member '%s': truncated (its padding is missing)", name);
            return -1;
        }
        last = m->name;
    }
}

int tar_read_at(const struct tar_reader *r, void *buf, size_t len, uint64_t off)
{
    return read_at(r->fd, buf, len, off);
}

int tar_reader_open(struct tar_reader *r, const char *path, char *err, size_t err_size)
{
    *r = (struct tar_reader){.fd = -1};
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (r->fd < 0 || fstat(r->fd, &st) < 0) {
        text_error(err, err_size, "%s", strerror(errno));
        tar_reader_close(r);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        text_error(err, err_size, "not a regular file");
        tar_reader_close(r);
        return -1;
    }
    r->file_size = (uint64_t)st.st_size;
    r->members = calloc(TAR_MAX_MEMBERS, sizeof(*r->members));
    if (!r->members) {
        text_error(err, err_size, "out of memory");
        tar_reader_close(r);
        return -1;
    }
    if (index_archive(r, err, err_size) < 0) {
        tar_reader_close(r);
        return -1;
    }
    return 0;
}

void tar_reader_close(struct tar_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->members);
    *r = (struct tar_reader){.fd = -1};
}

const struct tar_member *tar_find(const struct tar_reader *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->members[i].name, name) == 0)
            return &r->members[i];
    return NULL;
}

int tar_read_member(const struct tar_reader *r, const struct tar_member *m, uint64_t max,
                    uint8_t **data, size_t *len, char *err, size_t err_size)
{
    if (m->size > max) {
        text_error(err, err_size, "member '%s': %llu bytes, at most %llu expected", m->name,
                   (unsigned long long)m->size, (unsigned long long)max);
        return -1;
    }
    uint8_t *buf = malloc(m->size + 1);
    if (!buf) {
        text_error(err, err_size, "member '%s': out of memory", m->name);
        return -1;
    }
    if (read_at(r->fd, buf, m->size, m->offset) < 0) {
        text_error(err, err_size, "member '%s': read error", m->name);
        free(buf);
        return -1;
    }
    buf[m->size] = 0;
    *data = buf;
    *len = m->size;
    return 0;
}
