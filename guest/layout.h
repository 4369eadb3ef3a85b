/*
 * Fixed low-RAM layout of the test guest, shared by entry.S and the C code.
 * Everything below 0xA0000 (the ROM itself is read-only).
 */
#ifndef TESTGUEST_LAYOUT_H
#define TESTGUEST_LAYOUT_H

#define ROM_BASE 0xFFFF0000 /* the ROM's upper 64 KiB: real mode's CS base at reset */

#define BOOTREC_ADDR 0x7000 /* boot counter record: magic, count, check */

#define TRAMP_ADDR 0x8000 /* AP real-mode trampoline (SIPI vector 0x08) */
#define TRAMP_VECTOR 0x08

#define AP_TICKET_ADDR 0x9000 /* u32: next AP slot, lock xadd */
#define AP_DONE_ADDR 0x9004   /* u32: APs fully checked in */
#define AP_IDS_ADDR 0x9100    /* u32[256]: APIC id per cpu, [0] = BSP */
#define MAX_CPUS 255

/* The `cpuid` command: the BSP lists the (leaf, subleaf) pairs it found
 * before it starts the APs; every CPU (slot < CPUID_DUMP_CPUS) runs CPUID
 * on each and stores {eax, ebx, ecx, edx} in its slot. */
#define CPUID_LIST_ADDR 0xA000 /* u32 count, then u32 (leaf, subleaf) pairs */
#define CPUID_LIST_MAX 128
#define CPUID_DUMP_ADDR 0x80000  /* slot k at CPUID_DUMP_ADDR + (k << SHIFT) */
#define CPUID_DUMP_SLOT_SHIFT 11 /* CPUID_LIST_MAX * 16 bytes */
#define CPUID_DUMP_CPUS 64       /* 0x80000 .. 0x9FFFF */

#define PML4_ADDR 0x10000
#define PDPT_ADDR 0x11000
#define PD_LOW_ADDR 0x12000  /* 4 PDs: identity map of 0..4 GiB, 2 MiB pages */
#define PD_HIGH_ADDR 0x16000 /* PDs for highmem, up to PD_HIGH_MAX GiB */
#define PD_HIGH_MAX 74       /* 0x16000 .. 0x5FFFF */

#define BSS_ADDR 0x60000  /* C .bss (zeroed at boot) up to 0x6FFFF */
#define STACK_TOP 0x80000 /* BSP stack, 0x70000 .. 0x7FFFF */

#define SEL_CODE32 0x08
#define SEL_DATA 0x10
#define SEL_CODE64 0x18

/* CPL3 sessions of the drivers (cpl3.c): a copy of the GDT in RAM adds
 * these, loaded only when `bench` or `net` first runs. */
#define SEL_UDATA 0x20 /* DPL3 data */
#define SEL_UCODE 0x28 /* DPL3 64-bit code */
#define SEL_TSS 0x30   /* 64-bit TSS (16-byte descriptor) */

/* RAM the drivers use (only while `bench` or `net` runs; the guest needs
 * at least 64 MiB then). */
#define USER_STACK_TOP 0x210000   /* CPL3 stack, 0x200000 .. 0x20FFFF */
#define BENCH_STATE_ADDR 0x210000 /* driver state, up to 0x21FFFF */
#define BENCH_QUEUE_ADDR 0x220000 /* rings, queues, PRP lists: up to 0x3FFFFF */
#define BENCH_TABLE_ADDR 0x400000 /* storage bench: a byte per 4 KiB disk block, */
#define BENCH_TABLE_SIZE 0xC00000 /* 4 .. 16 MiB: disks up to 48 GiB */
#define BENCH_DATA_ADDR 0x1000000 /* data buffers: 16 MiB .. 48 MiB */
#define BENCH_DATA_SIZE 0x2000000
#define BENCH_MMIO_BASE 0xC0000000ULL /* BARs assigned from here, up to */
#define BENCH_MMIO_END 0xD0000000ULL  /* (the PCI hole, below the ECAM) */

/* The `acpiread` command's copy of the ACPI tables (needs 2 MiB of RAM). */
#define ACPIREAD_ADDR 0x100000
#define ACPIREAD_SIZE 0x10000

#define LAPIC_BASE 0xFEE00000

#endif
