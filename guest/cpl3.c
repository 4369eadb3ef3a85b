/* CPL3 sessions of the test guest's drivers (see cpl3.h). */
#include "cpl3.h"

#include <stdbool.h>

#include "layout.h"

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

/* Used by entry.S (user_enter, user_ud_entry). */
extern struct tss64 user_tss;
extern uint64_t user_saved_rsp;
struct tss64 user_tss __attribute__((aligned(16)));
uint64_t user_saved_rsp;

extern const char user_ud_entry[];

static uint64_t gdt_ram[8] __attribute__((aligned(16)));
static bool cpl3_ready;

struct __attribute__((packed)) cpl3_desc_ptr {
    uint16_t limit;
    uint64_t base;
};

void cpl3_setup(void)
{
    if (cpl3_ready)
        return;
    gdt_ram[0] = 0;
    gdt_ram[1] = 0x00CF9B000000FFFFULL; /* as the ROM GDT */
    gdt_ram[2] = 0x00CF93000000FFFFULL;
    gdt_ram[3] = 0x00AF9B000000FFFFULL;
    gdt_ram[4] = 0x00CFF3000000FFFFULL; /* SEL_UDATA: DPL3 data */
    gdt_ram[5] = 0x00AFFB000000FFFFULL; /* SEL_UCODE: DPL3 64-bit code */
    uint64_t base = (uint64_t)(uintptr_t)&user_tss, limit = sizeof(user_tss) - 1;
    gdt_ram[6] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ULL << 40 |
                 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
    gdt_ram[7] = base >> 32;
    user_tss.iomap_base = sizeof(user_tss); /* no I/O bitmap: no port I/O at CPL3 */
    struct cpl3_desc_ptr g = {sizeof(gdt_ram) - 1, (uint64_t)(uintptr_t)gdt_ram};
    __asm__ volatile("lgdt %0" : : "m"(g) : "memory");
    __asm__ volatile("ltr %w0" : : "r"((uint16_t)SEL_TSS) : "memory");

    /* #UD gate: CPL3 sessions end with ud2 (user_ud_entry hands a CPL0 #UD
     * to the ordinary handler). */
    struct cpl3_desc_ptr idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    volatile uint16_t *gate = (volatile uint16_t *)(uintptr_t)(idtr.base + 6 * 16);
    uint64_t h = (uint64_t)(uintptr_t)user_ud_entry;
    gate[0] = (uint16_t)h;
    gate[3] = (uint16_t)(h >> 16);
    *(volatile uint32_t *)(gate + 4) = (uint32_t)(h >> 32);

    /* User-accessible identity map of 0..4 GiB; the BAR window uncached. */
    volatile uint64_t *pml4 = (volatile uint64_t *)(uintptr_t)PML4_ADDR;
    volatile uint64_t *pdpt = (volatile uint64_t *)(uintptr_t)PDPT_ADDR;
    volatile uint64_t *pd = (volatile uint64_t *)(uintptr_t)PD_LOW_ADDR;
    pml4[0] |= 4;
    for (unsigned i = 0; i < 4; i++)
        pdpt[i] |= 4;
    for (unsigned i = 0; i < 2048; i++)
        pd[i] |= 4;
    for (uint64_t a = BENCH_MMIO_BASE; a < BENCH_MMIO_END; a += 0x200000)
        pd[a >> 21] |= 0x18;
    __asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)PML4_ADDR) : "memory");
    cpl3_ready = true;
}

void cpl3_setup_polling(void)
{
    outb(0x21, 0xff); /* both PICs */
    outb(0xA1, 0xff);
    outb(0x3F8 + 1, 0x00); /* COM1 IER */
    cpl3_setup();
}

void u_fail(struct cpl3_session *u, const char *why)
{
    unsigned i = 0;
    while (why[i] && i < sizeof(u->err) - 1) {
        u->err[i] = why[i];
        i++;
    }
    u->err[i] = 0;
}
