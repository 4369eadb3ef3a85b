/* A growable byte buffer for the table generators. Appends never fail
 * loudly: an allocation failure (or a size past BYTEBUF_MAX) latches the
 * failed flag, further appends are ignored, and the builder checks the flag
 * once at the end. */
#ifndef FIRMWARE_BYTEBUF_H
#define FIRMWARE_BYTEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"

#define BYTEBUF_MAX (64u * 1024 * 1024) /* far above any table we generate */

struct bytebuf {
    uint8_t *data;
    size_t len, cap;
    bool failed;
};

void bytebuf_free(struct bytebuf *b);
/* Appends len bytes (zeros if data is NULL); returns the offset written at. */
size_t bytebuf_append(struct bytebuf *b, const void *data, size_t len);
size_t bytebuf_zeros(struct bytebuf *b, size_t len);
void bytebuf_u8(struct bytebuf *b, uint8_t v);
void bytebuf_le16(struct bytebuf *b, uint16_t v);
void bytebuf_le32(struct bytebuf *b, uint32_t v);
void bytebuf_le64(struct bytebuf *b, uint64_t v);
void bytebuf_be16(struct bytebuf *b, uint16_t v);
void bytebuf_be32(struct bytebuf *b, uint32_t v);
void bytebuf_be64(struct bytebuf *b, uint64_t v);
/* Inserts len bytes at offset pos (pos <= b->len), moving the tail up. */
void bytebuf_insert(struct bytebuf *b, size_t pos, const void *data, size_t len);
/* Pads with zeros up to a multiple of align (a power of two). */
void bytebuf_align(struct bytebuf *b, size_t align);
/* Moves the contents out: *data (malloc'd, caller frees) and *len. */
bool bytebuf_take(struct bytebuf *b, uint8_t **data, size_t *len);

/* Big-endian, in place; the range must already exist. Little-endian
 * values use le16_load/le16_store and friends (common/bytes.h). */
void put_be16(uint8_t *p, uint16_t v);
void put_be32(uint8_t *p, uint32_t v);
void put_be64(uint8_t *p, uint64_t v);
uint16_t get_be16(const uint8_t *p);
uint32_t get_be32(const uint8_t *p);
uint64_t get_be64(const uint8_t *p);

/* Sum of bytes modulo 256; an ACPI/SMBIOS checksum byte makes it zero. */
uint8_t byte_sum(const uint8_t *p, size_t len);

#endif
