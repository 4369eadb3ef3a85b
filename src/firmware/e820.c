#include "firmware/e820.h"

#include "common/log.h"

#define HIGHMEM_START (4ull << 30)

struct e820_entry {
    uint64_t base, size;
    uint32_t type;
};

int e820_build(const struct platform_desc *d, struct bytebuf *out)
{
    struct e820_entry entries[2 + PLATFORM_MAX_RESERVED];
    unsigned n = 0;
    *out = (struct bytebuf){0};
    if (d->lowmem_size)
        entries[n++] = (struct e820_entry){0, d->lowmem_size, E820_RAM};
    if (d->highmem_size)
        entries[n++] = (struct e820_entry){HIGHMEM_START, d->highmem_size, E820_RAM};
    if (d->reserved_count > PLATFORM_MAX_RESERVED)
        return -1;
    for (unsigned i = 0; i < d->reserved_count; i++)
        entries[n++] = (struct e820_entry){d->reserved[i].base, d->reserved[i].size, E820_RESERVED};
    /* Insertion sort by address; then reject empty, wrapping or overlapping ranges. */
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && entries[j].base < entries[j - 1].base; j--) {
            struct e820_entry tmp = entries[j];
            entries[j] = entries[j - 1];
            entries[j - 1] = tmp;
        }
    for (unsigned i = 0; i < n; i++) {
        const struct e820_entry *e = &entries[i];
        if (e->size == 0 || e->base + e->size < e->base ||
            (i + 1 < n && e->base + e->size > entries[i + 1].base)) {
            log_error("e820: bad or overlapping range 0x%llx+0x%llx", (unsigned long long)e->base,
                      (unsigned long long)e->size);
            bytebuf_free(out);
            return -1;
        }
        bytebuf_le64(out, e->base);
        bytebuf_le64(out, e->size);
        bytebuf_le32(out, e->type);
    }
    if (out->failed) {
        bytebuf_free(out);
        return -1;
    }
    return 0;
}
