/* Fake guest memory for unit tests; see fake_mem.h. */
#include "support/fake_mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FAKE_MEM_MAX_REGIONS 8

struct guest_mem fake_mem;

static struct {
    uint64_t gpa, size;
    uint8_t *host;
} regions[FAKE_MEM_MAX_REGIONS];
static unsigned nregions;

uint8_t *fake_mem_add(uint64_t gpa, uint64_t size, bool read_only, uint8_t fill)
{
    assert_true(nregions < FAKE_MEM_MAX_REGIONS);
    uint8_t *host = aligned_alloc(4096, size);
    assert_non_null(host);
    memset(host, fill, size);
    assert_true(guest_mem_add(&fake_mem, gpa, size, host, read_only));
    regions[nregions].gpa = gpa;
    regions[nregions].size = size;
    regions[nregions].host = host;
    nregions++;
    return host;
}

void fake_mem_free(void)
{
    for (unsigned i = 0; i < nregions; i++)
        free(regions[i].host);
    nregions = 0;
    memset(&fake_mem, 0, sizeof(fake_mem));
}

uint8_t *mem_host(uint64_t gpa)
{
    for (unsigned i = 0; i < nregions; i++)
        if (gpa >= regions[i].gpa && gpa - regions[i].gpa < regions[i].size)
            return regions[i].host + (gpa - regions[i].gpa);
    fail_msg("gpa 0x%llx not in test memory", (unsigned long long)gpa);
    return NULL;
}

void mem_put16(uint64_t gpa, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)mem_host(gpa), v, __ATOMIC_SEQ_CST);
}

uint16_t mem_get16(uint64_t gpa)
{
    return __atomic_load_n((uint16_t *)(void *)mem_host(gpa), __ATOMIC_SEQ_CST);
}

void mem_put32(uint64_t gpa, uint32_t v)
{
    memcpy(mem_host(gpa), &v, 4);
}

void mem_put64(uint64_t gpa, uint64_t v)
{
    memcpy(mem_host(gpa), &v, 8);
}

uint32_t mem_get32(uint64_t gpa)
{
    uint32_t v;
    memcpy(&v, mem_host(gpa), 4);
    return v;
}

uint64_t mem_get64(uint64_t gpa)
{
    uint64_t v;
    memcpy(&v, mem_host(gpa), 8);
    return v;
}
