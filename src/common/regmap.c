#include "common/regmap.h"

#include "common/bytes.h"

bool regmap_valid(const struct regmap *map)
{
    uint64_t end = 0;
    for (size_t i = 0; i < map->count; i++) {
        const struct reg_def *r = &map->regs[i];
        if ((r->size != 1 && r->size != 2 && r->size != 4 && r->size != 8) || r->offset < end)
            return false;
        end = (uint64_t)r->offset + r->size;
    }
    return true;
}

/* The first register ending after offset (binary search). */
static size_t first_reg(const struct regmap *map, uint64_t offset)
{
    size_t lo = 0, hi = map->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uint64_t)map->regs[mid].offset + map->regs[mid].size <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The bytes [*lo, *hi) of the access that register r holds. */
static void overlap(const struct reg_def *r, uint64_t offset, unsigned size, uint64_t *lo,
                    uint64_t *hi)
{
    uint64_t reg_end = (uint64_t)r->offset + r->size;
    *lo = offset > r->offset ? offset : r->offset;
    *hi = offset + size < reg_end ? offset + size : reg_end;
}

bool regmap_read(const struct regmap *map, uint64_t offset, unsigned size, reg_read_fn read,
                 void *opaque, uint64_t *value)
{
    *value = 0;
    if (size == 0 || size > 8)
        return false;
    unsigned covered = 0;
    for (size_t i = first_reg(map, offset); i < map->count && map->regs[i].offset < offset + size;
         i++) {
        const struct reg_def *r = &map->regs[i];
        uint64_t reg = read(opaque, r->id) & size_mask(r->size), lo, hi;
        overlap(r, offset, size, &lo, &hi);
        for (uint64_t at = lo; at < hi; at++, covered++)
            *value |= ((reg >> (8 * (at - r->offset))) & 0xff) << (8 * (at - offset));
    }
    return covered == size;
}

bool regmap_write(const struct regmap *map, uint64_t offset, unsigned size, uint64_t value,
                  reg_write_fn write, void *opaque)
{
    if (size == 0 || size > 8)
        return false;
    unsigned covered = 0;
    for (size_t i = first_reg(map, offset); i < map->count && map->regs[i].offset < offset + size;
         i++) {
        const struct reg_def *r = &map->regs[i];
        uint64_t reg_value = 0, mask = 0, lo, hi;
        overlap(r, offset, size, &lo, &hi);
        for (uint64_t at = lo; at < hi; at++, covered++) {
            reg_value |= ((value >> (8 * (at - offset))) & 0xff) << (8 * (at - r->offset));
            mask |= 0xffull << (8 * (at - r->offset));
        }
        write(opaque, r->id, reg_value, mask);
    }
    return covered == size;
}
