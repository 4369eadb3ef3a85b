/* Fake guest memory for unit tests: host buffers registered with a
 * guest_mem, and typed accessors by guest physical address, so tests can
 * build rings, queues and descriptors where the device under test looks. */
#ifndef TESTS_SUPPORT_FAKE_MEM_H
#define TESTS_SUPPORT_FAKE_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/guest_mem.h"

/* The guest memory the device under test is given (&fake_mem). */
extern struct guest_mem fake_mem;

/* Adds a page-aligned region of `size` bytes at `gpa`, every byte `fill`;
 * returns its host address. Regions are freed by fake_mem_free(). */
uint8_t *fake_mem_add(uint64_t gpa, uint64_t size, bool read_only, uint8_t fill);
/* Frees every region and empties fake_mem for the next fixture. */
void fake_mem_free(void);

/* The host address of gpa; fails the test when gpa is in no region. */
uint8_t *mem_host(uint64_t gpa);

/* 16-bit ring indexes are shared with device threads: atomic accesses. */
void mem_put16(uint64_t gpa, uint16_t v);
uint16_t mem_get16(uint64_t gpa);
/* Wider fields are written before the device is told: plain copies. */
void mem_put32(uint64_t gpa, uint32_t v);
void mem_put64(uint64_t gpa, uint64_t v);
uint32_t mem_get32(uint64_t gpa);
uint64_t mem_get64(uint64_t gpa);

#endif
