/* Register maps as data: a device lists its registers (offset, size, id)
 * and the map turns any bus access (1 to 8 bytes at any offset) into
 * whole-register reads and masked whole-register writes. One way for every
 * device to decode sub-register and multi-register accesses; the device
 * decides per register what a partial write means (the mask says which
 * bytes the guest wrote).
 *
 * Bytes no register covers read as zero and are dropped on write; the
 * result says whether any byte missed, so the device can log it. */
#ifndef COMMON_REGMAP_H
#define COMMON_REGMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reg_def {
    uint32_t offset;
    uint8_t size; /* 1, 2, 4 or 8 */
    uint32_t id;  /* the device's name for the register */
};

/* Registers sorted by offset, not overlapping. */
struct regmap {
    const struct reg_def *regs;
    size_t count;
};

typedef uint64_t (*reg_read_fn)(void *opaque, uint32_t id);
/* value holds the whole register with the written bytes in place; mask has
 * the written bytes set (all ones for a full-width write). */
typedef void (*reg_write_fn)(void *opaque, uint32_t id, uint64_t value, uint64_t mask);

/* Checks a map's order and sizes (tests and debug builds). */
bool regmap_valid(const struct regmap *map);

/* Reads size (1-8) bytes at offset; registers are read once each. Returns
 * true if every byte fell in a register. */
bool regmap_read(const struct regmap *map, uint64_t offset, unsigned size, reg_read_fn read,
                 void *opaque, uint64_t *value);
/* Writes size bytes at offset, one masked write per register touched, in
 * offset order. Returns true if every byte fell in a register. */
bool regmap_write(const struct regmap *map, uint64_t offset, unsigned size, uint64_t value,
                  reg_write_fn write, void *opaque);

/* The register's value with the masked bytes replaced: the usual meaning
 * of a partial write to a plain read/write register. */
static inline uint64_t reg_merge(uint64_t old, uint64_t value, uint64_t mask)
{
    return (old & ~mask) | (value & mask);
}

#endif
