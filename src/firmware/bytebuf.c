#include "firmware/bytebuf.h"

#include <stdlib.h>
#include <string.h>

void bytebuf_free(struct bytebuf *b)
{
    free(b->data);
    *b = (struct bytebuf){0};
}

static bool reserve(struct bytebuf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra > BYTEBUF_MAX || b->len > BYTEBUF_MAX - extra) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = true;
        return false;
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

size_t bytebuf_append(struct bytebuf *b, const void *data, size_t len)
{
    size_t at = b->len;
    if (len == 0 || !reserve(b, len))
        return at;
    if (data)
        memcpy(b->data + b->len, data, len);
    else
        memset(b->data + b->len, 0, len);
    b->len += len;
    return at;
}

size_t bytebuf_zeros(struct bytebuf *b, size_t len)
{
    return bytebuf_append(b, NULL, len);
}

void bytebuf_u8(struct bytebuf *b, uint8_t v)
{
    bytebuf_append(b, &v, 1);
}

/* Appends the low size bytes of v, little-endian. */
static void append_le(struct bytebuf *b, unsigned size, uint64_t v)
{
    uint8_t p[8];
    le_store(p, size, v);
    bytebuf_append(b, p, size);
}

void bytebuf_le16(struct bytebuf *b, uint16_t v)
{
    append_le(b, 2, v);
}

void bytebuf_le32(struct bytebuf *b, uint32_t v)
{
    append_le(b, 4, v);
}

void bytebuf_le64(struct bytebuf *b, uint64_t v)
{
    append_le(b, 8, v);
}

void bytebuf_be16(struct bytebuf *b, uint16_t v)
{
    uint8_t p[2];
    put_be16(p, v);
    bytebuf_append(b, p, sizeof(p));
}

void bytebuf_be32(struct bytebuf *b, uint32_t v)
{
    uint8_t p[4];
    put_be32(p, v);
    bytebuf_append(b, p, sizeof(p));
}

void bytebuf_be64(struct bytebuf *b, uint64_t v)
{
    uint8_t p[8];
    put_be64(p, v);
    bytebuf_append(b, p, sizeof(p));
}

void bytebuf_insert(struct bytebuf *b, size_t pos, const void *data, size_t len)
{
    if (pos > b->len) {
        b->failed = true;
        return;
    }
    if (len == 0 || !reserve(b, len))
        return;
    memmove(b->data + pos + len, b->data + pos, b->len - pos);
    memcpy(b->data + pos, data, len);
    b->len += len;
}

void bytebuf_align(struct bytebuf *b, size_t align)
{
    size_t rem = b->len & (align - 1);
    if (rem)
        bytebuf_zeros(b, align - rem);
}

bool bytebuf_take(struct bytebuf *b, uint8_t **data, size_t *len)
{
    if (b->failed) {
        bytebuf_free(b);
        return false;
    }
    *data = b->data;
    *len = b->len;
    *b = (struct bytebuf){0};
    return true;
}

void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

uint8_t byte_sum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return sum;
}
