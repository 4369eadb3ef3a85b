#include "firmware/aml.h"

#include <string.h>

void aml_init(struct aml *a)
{
    memset(a, 0, sizeof(*a));
}

bool aml_finish(struct aml *a)
{
    return !a->failed && !a->buf.failed && a->depth == 0;
}

void aml_free(struct aml *a)
{
    bytebuf_free(&a->buf);
    a->depth = 0;
}

static void emit(struct aml *a, uint8_t byte)
{
    bytebuf_u8(&a->buf, byte);
}

void aml_bytes(struct aml *a, const void *data, size_t len)
{
    bytebuf_append(&a->buf, data, len);
}

unsigned aml_pkg_length_encode(size_t content_len, uint8_t out[4])
{
    /* The encoded length counts the PkgLength bytes themselves. */
    if (content_len + 1 <= 0x3f) {
        out[0] = (uint8_t)(content_len + 1);
        return 1;
    }
    for (unsigned n = 2; n <= 4; n++) {
        size_t total = content_len + n;
        if (total < ((size_t)1 << (4 + 8 * (n - 1)))) {
            out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
            for (unsigned i = 1; i < n; i++)
                out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
            return n;
        }
    }
    return 0;
}

static bool lead_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
    return lead_name_char(c) || (c >= '0' && c <= '9');
}

/* One segment of up to 4 characters, padded with '_'. */
static bool name_seg(struct aml *a, const char *seg, size_t len)
{
    if (len == 0 || len > 4 || !lead_name_char(seg[0]))
        return false;
    char out[4] = {'_', '_', '_', '_'};
    for (size_t i = 0; i < len; i++) {
        if (!name_char(seg[i]))
            return false;
        out[i] = seg[i];
    }
    aml_bytes(a, out, 4);
    return true;
}

void aml_name_string(struct aml *a, const char *path)
{
    const char *p = path;
    if (*p == '\\') {
        emit(a, AML_ROOT_CHAR);
        p++;
    } else {
        while (*p == '^') {
            emit(a, AML_PARENT_PREFIX);
            p++;
        }
    }
    if (*p == '\0') {
        emit(a, 0x00); /* NullName */
        return;
    }
    unsigned segs = 1;
    for (const char *q = p; *q; q++)
        segs += (*q == '.');
    if (segs > 255) {
        a->failed = true;
        return;
    }
    if (segs == 2) {
        emit(a, AML_DUAL_NAME_PREFIX);
    } else if (segs > 2) {
        emit(a, AML_MULTI_NAME_PREFIX);
        emit(a, (uint8_t)segs);
    }
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!name_seg(a, p, len)) {
            a->failed = true;
            return;
        }
        p += len + (dot ? 1 : 0);
        if (dot && *p == '\0') {
            a->failed = true; /* trailing dot */
            return;
        }
    }
}

void aml_integer(struct aml *a, uint64_t value)
{
    if (value == 0) {
        emit(a, AML_ZERO_OP);
    } else if (value == 1) {
        emit(a, AML_ONE_OP);
    } else if (value <= 0xff) {
        emit(a, AML_BYTE_PREFIX);
        emit(a, (uint8_t)value);
    } else if (value <= 0xffff) {
        emit(a, AML_WORD_PREFIX);
        bytebuf_le16(&a->buf, (uint16_t)value);
    } else if (value <= 0xffffffffu) {
        emit(a, AML_DWORD_PREFIX);
        bytebuf_le32(&a->buf, (uint32_t)value);
    } else {
        emit(a, AML_QWORD_PREFIX);
        bytebuf_le64(&a->buf, value);
    }
}

void aml_string(struct aml *a, const char *s)
{
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x01 || (unsigned char)*p > 0x7f) {
            a->failed = true;
            return;
        }
    }
    emit(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

uint32_t aml_eisaid_value(const char *id)
{
    if (strlen(id) != 7)
        return 0;
    uint32_t letters = 0;
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return 0;
        letters = (letters << 5) | (uint32_t)(id[i] - 0x40);
    }
    uint32_t digits = 0;
    for (int i = 3; i < 7; i++) {
        char c = id[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return 0;
        digits = (digits << 4) | d;
    }
    /* Big-endian on the wire: 15 bits of letters, then 16 bits of product. */
    uint32_t be = (letters << 16) | digits;
    return ((be >> 24) & 0xff) | ((be >> 8) & 0xff00) | ((be << 8) & 0xff0000) | (be << 24);
}

void aml_eisaid(struct aml *a, const char *id)
{
    uint32_t v = aml_eisaid_value(id);
    if (v == 0) {
        a->failed = true;
        return;
    }
    emit(a, AML_DWORD_PREFIX); /* always a DWord, as iasl's EISAID() does */
    bytebuf_le32(&a->buf, v);
}

void aml_name_begin(struct aml *a, const char *name)
{
    emit(a, AML_NAME_OP);
    aml_name_string(a, name);
}

void aml_name_integer(struct aml *a, const char *name, uint64_t value)
{
    aml_name_begin(a, name);
    aml_integer(a, value);
}

void aml_name_str(struct aml *a, const char *name, const char *value)
{
    aml_name_begin(a, name);
    aml_string(a, value);
}

void aml_name_eisaid(struct aml *a, const char *name, const char *id)
{
    aml_name_begin(a, name);
    aml_eisaid(a, id);
}

static void open_block(struct aml *a, bool is_buffer)
{
    if (a->depth >= AML_MAX_DEPTH) {
        a->failed = true;
        return;
    }
    a->open_is_buffer[a->depth] = is_buffer;
    a->open_at[a->depth++] = a->buf.len;
}

void aml_scope_open(struct aml *a, const char *name)
{
    emit(a, AML_SCOPE_OP);
    open_block(a, false);
    aml_name_string(a, name);
}

void aml_device_open(struct aml *a, const char *name)
{
    emit(a, AML_EXT_OP_PREFIX);
    emit(a, AML_EXT_DEVICE_OP);
    open_block(a, false);
    aml_name_string(a, name);
}

void aml_method_open(struct aml *a, const char *name, unsigned arg_count, bool serialized)
{
    if (arg_count > 7)
        a->failed = true;
    emit(a, AML_METHOD_OP);
    open_block(a, false);
    aml_name_string(a, name);
    emit(a, (uint8_t)((arg_count & 7) | (serialized ? 0x08 : 0)));
}

void aml_package_open(struct aml *a, unsigned count)
{
    if (count > 255)
        a->failed = true; /* VarPackage is not needed by our tables */
    emit(a, AML_PACKAGE_OP);
    open_block(a, false);
    emit(a, (uint8_t)count);
}

void aml_buffer_open(struct aml *a)
{
    emit(a, AML_BUFFER_OP);
    open_block(a, true);
}

void aml_close(struct aml *a)
{
    if (a->depth == 0) {
        a->failed = true;
        return;
    }
    a->depth--;
    size_t at = a->open_at[a->depth];
    if (a->buf.failed || at > a->buf.len) {
        a->failed = true;
        return;
    }
    if (a->open_is_buffer[a->depth]) {
        /* BufferSize is a TermArg preceding the byte list. */
        struct aml size_term;
        aml_init(&size_term);
        aml_integer(&size_term, a->buf.len - at);
        bytebuf_insert(&a->buf, at, size_term.buf.data, size_term.buf.len);
        aml_free(&size_term);
    }
    uint8_t pkg[4];
    unsigned n = aml_pkg_length_encode(a->buf.len - at, pkg);
    if (n == 0) {
        a->failed = true;
        return;
    }
    bytebuf_insert(&a->buf, at, pkg, n);
}

void aml_return_integer(struct aml *a, uint64_t value)
{
    emit(a, AML_RETURN_OP);
    aml_integer(a, value);
}

/* ---- resource descriptors ---- */

enum {
    RES_SMALL_IRQ_NOFLAGS = 0x22, /* type 0x04, length 2 */
    RES_SMALL_IO = 0x47,          /* type 0x08, length 7 */
    RES_SMALL_END_TAG = 0x79,     /* type 0x0f, length 1 */
    RES_LARGE_MEMORY32_FIXED = 0x86,
    RES_LARGE_DWORD_ADDRESS = 0x87,
    RES_LARGE_WORD_ADDRESS = 0x88,
    RES_LARGE_EXTENDED_IRQ = 0x89,
    RES_LARGE_QWORD_ADDRESS = 0x8a,
};

enum { ADDR_SPACE_MEMORY = 0, ADDR_SPACE_IO = 1, ADDR_SPACE_BUS = 2 };

/* General flags: producer, positive decode, _MIF and _MAF set. */
#define ADDR_GENERAL_FLAGS 0x0c
/* Memory type flags: read-write plus cacheability (_MEM). */
#define ADDR_MEM_RW 0x01
#define ADDR_MEM_CACHEABLE 0x02
/* I/O type flags: _RNG = entire range. */
#define ADDR_IO_ENTIRE_RANGE 0x03

void res_io(struct bytebuf *r, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    bytebuf_u8(r, RES_SMALL_IO);
    bytebuf_u8(r, 0x01); /* 16-bit decode */
    bytebuf_le16(r, min);
    bytebuf_le16(r, max);
    bytebuf_u8(r, align);
    bytebuf_u8(r, len);
}

void res_irq_noflags(struct bytebuf *r, uint16_t irq_mask)
{
    bytebuf_u8(r, RES_SMALL_IRQ_NOFLAGS);
    bytebuf_le16(r, irq_mask);
}

void res_interrupt(struct bytebuf *r, bool level, bool active_high, bool shared, uint32_t gsi)
{
    bytebuf_u8(r, RES_LARGE_EXTENDED_IRQ);
    bytebuf_le16(r, 6);
    /* Consumer; edge (bit 1) and active-low (bit 2) are the set values. */
    bytebuf_u8(
        r, (uint8_t)(0x01 | (level ? 0 : 0x02) | (active_high ? 0 : 0x04) | (shared ? 0x08 : 0)));
    bytebuf_u8(r, 1);
    bytebuf_le32(r, gsi);
}

void res_memory32_fixed(struct bytebuf *r, bool writable, uint32_t base, uint32_t len)
{
    bytebuf_u8(r, RES_LARGE_MEMORY32_FIXED);
    bytebuf_le16(r, 9);
    bytebuf_u8(r, writable ? 1 : 0);
    bytebuf_le32(r, base);
    bytebuf_le32(r, len);
}

void res_word_bus_number(struct bytebuf *r, uint16_t min, uint16_t max)
{
    bytebuf_u8(r, RES_LARGE_WORD_ADDRESS);
    bytebuf_le16(r, 13);
    bytebuf_u8(r, ADDR_SPACE_BUS);
    bytebuf_u8(r, ADDR_GENERAL_FLAGS);
    bytebuf_u8(r, 0);
    bytebuf_le16(r, 0); /* granularity */
    bytebuf_le16(r, min);
    bytebuf_le16(r, max);
    bytebuf_le16(r, 0); /* translation */
    bytebuf_le16(r, (uint16_t)(max - min + 1));
}

void res_word_io(struct bytebuf *r, uint16_t min, uint16_t max)
{
    bytebuf_u8(r, RES_LARGE_WORD_ADDRESS);
    bytebuf_le16(r, 13);
    bytebuf_u8(r, ADDR_SPACE_IO);
    bytebuf_u8(r, ADDR_GENERAL_FLAGS);
    bytebuf_u8(r, ADDR_IO_ENTIRE_RANGE);
    bytebuf_le16(r, 0);
    bytebuf_le16(r, min);
    bytebuf_le16(r, max);
    bytebuf_le16(r, 0);
    bytebuf_le16(r, (uint16_t)(max - min + 1));
}

void res_dword_memory(struct bytebuf *r, bool cacheable, uint32_t min, uint32_t max)
{
    bytebuf_u8(r, RES_LARGE_DWORD_ADDRESS);
    bytebuf_le16(r, 23);
    bytebuf_u8(r, ADDR_SPACE_MEMORY);
    bytebuf_u8(r, ADDR_GENERAL_FLAGS);
    bytebuf_u8(r, ADDR_MEM_RW | (cacheable ? ADDR_MEM_CACHEABLE : 0));
    bytebuf_le32(r, 0);
    bytebuf_le32(r, min);
    bytebuf_le32(r, max);
    bytebuf_le32(r, 0);
    bytebuf_le32(r, max - min + 1);
}

void res_qword_memory(struct bytebuf *r, bool cacheable, uint64_t min, uint64_t max)
{
    bytebuf_u8(r, RES_LARGE_QWORD_ADDRESS);
    bytebuf_le16(r, 43);
    bytebuf_u8(r, ADDR_SPACE_MEMORY);
    bytebuf_u8(r, ADDR_GENERAL_FLAGS);
    bytebuf_u8(r, ADDR_MEM_RW | (cacheable ? ADDR_MEM_CACHEABLE : 0));
    bytebuf_le64(r, 0);
    bytebuf_le64(r, min);
    bytebuf_le64(r, max);
    bytebuf_le64(r, 0);
    bytebuf_le64(r, max - min + 1);
}

void aml_resource_template(struct aml *a, const struct bytebuf *descriptors)
{
    if (descriptors->failed) {
        a->failed = true;
        return;
    }
    aml_buffer_open(a);
    aml_bytes(a, descriptors->data, descriptors->len);
    uint8_t sum = (uint8_t)(byte_sum(descriptors->data, descriptors->len) + RES_SMALL_END_TAG);
    uint8_t end[2] = {RES_SMALL_END_TAG, (uint8_t)(0x100 - sum)};
    aml_bytes(a, end, sizeof(end));
    aml_close(a);
}
