/* Register and memory-ordering helpers of the test guest's CPL3 drivers
 * (storage_bench.c, net_test.c, virtio_modern.[ch]): every device register
 * access is one volatile load or store of its width. */
#ifndef TESTGUEST_MMIO_H
#define TESTGUEST_MMIO_H

#include <stdint.h>

/* The compiler keeps memory accesses in order across it. */
static inline void barrier(void)
{
    __asm__ volatile("" ::: "memory");
}

/* The CPU does too (a store before a load, e.g. a ring index before
 * reading the device's event index). */
static inline void full_fence(void)
{
    __asm__ volatile("lock addl $0, (%%rsp)" ::: "memory", "cc");
}

static inline uint8_t r8(volatile uint8_t *b, unsigned off)
{
    return *(volatile uint8_t *)(b + off);
}
static inline uint16_t r16(volatile uint8_t *b, unsigned off)
{
    return *(volatile uint16_t *)(b + off);
}
static inline uint32_t r32(volatile uint8_t *b, unsigned off)
{
    return *(volatile uint32_t *)(b + off);
}
static inline void w8(volatile uint8_t *b, unsigned off, uint8_t v)
{
    *(volatile uint8_t *)(b + off) = v;
}
static inline void w16(volatile uint8_t *b, unsigned off, uint16_t v)
{
    *(volatile uint16_t *)(b + off) = v;
}
static inline void w32(volatile uint8_t *b, unsigned off, uint32_t v)
{
    *(volatile uint32_t *)(b + off) = v;
}
/* Two dword stores, low half first (virtio and NVMe allow it). */
static inline void w64(volatile uint8_t *b, unsigned off, uint64_t v)
{
    w32(b, off, (uint32_t)v);
    w32(b, off + 4, (uint32_t)(v >> 32));
}

#endif
