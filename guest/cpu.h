/* Instructions the test guest's C code needs, shared by its files: port
 * I/O (CPL0 only here: the TSS has no I/O bitmap), the TSC and the busy
 * waits built on it, pause. */
#ifndef TESTGUEST_CPU_H
#define TESTGUEST_CPU_H

#include <stdbool.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* The TSC value ms milliseconds from now, at tsc_khz ticks per ms. */
static inline uint64_t tsc_deadline(uint64_t tsc_khz, uint64_t ms)
{
    return rdtsc() + ms * tsc_khz;
}

/* Whether the TSC reached deadline (a signed difference: wrap-safe). */
static inline bool tsc_passed(uint64_t deadline)
{
    return (int64_t)(rdtsc() - deadline) >= 0;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" : : : "memory");
}

#endif
