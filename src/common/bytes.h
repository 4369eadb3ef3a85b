/* The one copy of the tree's small byte and struct helpers:
 * - little-endian loads and stores of 16/32/64-bit values at any byte
 *   address (memcpy, so no alignment is needed), and size-generic ones
 *   for the 1/2/4/8-byte accesses of the buses;
 * - ARRAY_LEN, the number of elements of an array (not a pointer);
 * - size_mask, the all-ones value of an access of 1..8 bytes;
 * - container_of, the enclosing struct of an embedded member.
 * The loads and stores are plain accesses. Guest-shared fields that must be
 * read or written exactly once use __atomic accesses instead (the virtqueue
 * ring accessors, the NVMe completion's phase dword). */
#ifndef COMMON_BYTES_H
#define COMMON_BYTES_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The value with the low size bytes set (size 0..8): a bus access of size
 * bytes reads all ones where nothing answers, and is masked to its width. */
static inline uint64_t size_mask(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline uint16_t le16_load(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static inline uint32_t le32_load(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static inline uint64_t le64_load(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static inline void le16_store(void *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

static inline void le32_store(void *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void le64_store(void *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

/* The size bytes at p as a little-endian value (size 1, 2, 4 or 8; any
 * size up to 8 works, 0 gives 0, bytes past the eighth are not read). */
static inline uint64_t le_load(const void *p, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, p, size < 8 ? size : 8);
    return le64toh(v);
}

/* Stores the low size bytes of v at p, little-endian (size as le_load). */
static inline void le_store(void *p, unsigned size, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, size < 8 ? size : 8);
}

#endif
