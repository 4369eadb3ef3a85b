/* Guest physical memory: the one checked path through which devices touch
 * guest RAM. Every access is bounds- and overflow-checked against the RAM
 * regions; nothing else in the VMM dereferences guest addresses. */
#ifndef CORE_GUEST_MEM_H
#define CORE_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4

struct guest_mem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *hva;
    bool readonly; /* bootrom: the guest cannot write it, devices may not either */
};

struct guest_mem {
    struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
    unsigned count;
};

/* Adds a region; regions must not overlap. Returns false if full or overlapping. */
bool guest_mem_add(struct guest_mem *mem, uint64_t gpa, uint64_t size, void *hva, bool readonly);

/* Host pointer to [gpa, gpa+len) if it lies wholly inside one region (and,
 * for writes, a writable one); NULL otherwise. len 0 is never valid. */
void *guest_mem_ptr(const struct guest_mem *mem, uint64_t gpa, uint64_t len, bool write);

/* Copies; false (and nothing copied) if any byte lies outside RAM. */
bool guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *buf, size_t len);
bool guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *buf, size_t len);

/* True if [gpa, gpa+len) is guest RAM (writable if write is set). */
bool guest_mem_valid(const struct guest_mem *mem, uint64_t gpa, uint64_t len, bool write);

#endif
