#include "core/guest_mem.h"

#include <string.h>

bool guest_mem_add(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva, bool readonly)
{
    if (mem->count >= GUEST_MEM_MAX_REGIONS || size == 0 || gpa + size < gpa)
        return false;
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size)
            return false;
    }
    mem->regions[mem->count++] = (struct guest_mem_region){gpa, size, hva, readonly};
    return true;
}

void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len, bool write)
{
    if (len == 0)
        return NULL;
    for (unsigned i = 0; i < mem->count; i++) {
        const struct guest_mem_region *r = &mem->regions[i];
        /* Written so that no sum can overflow: offset < size, len <= size - offset. */
        if (gpa < r->gpa)
            continue;
        uint64_t offset = gpa - r->gpa;
        if (offset >= r->size || len > r->size - offset)
            continue;
        if (write && r->readonly)
            return NULL;
        return r->hva + offset;
    }
    return NULL;
}

bool guest_mem_valid(const struct guest_mem *mem, uint64_t gpa, uint64_t len, bool write)
{
    return guest_mem_ptr(mem, gpa, len, write) != NULL;
}

bool guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, size_t len)
{
    const void *src = guest_mem_ptr(mem, gpa, len, false);
    if (!src)
        return false;
    memcpy(buf, src, len);
    return true;
}

bool guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len)
{
    void *dst = guest_mem_ptr(mem, gpa, len, true);
    if (!dst)
        return false;
    memcpy(dst, buf, len);
    return true;
}
