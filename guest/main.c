/*
 * testguest: a tiny freestanding bootrom that exercises a VMM.
 *
 * Runs at CPL0 in long mode, which this host's KVM emulates instruction by
 * instruction, so it stays small: no large loops, no SSE, x87, int n, int3,
 * popcnt, xsave, ... (the build checks the disassembly). Only the storage
 * benchmark (storage_bench.c) runs its hot path at CPL3, natively.
 *
 * Protocol on COM1 (every line ends with "\r\n"); see guest/README.md.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acpiread.h"
#include "cpu.h"
#include "layout.h"
#include "device_fuzz.h"
#include "hostile.h"
#include "mem_pattern.h"
#include "net_test.h"
#include "pci.h"
#include "rand.h"
#include "storage_bench.h"
#include "text.h"

/* ------------------------------------------------------------------ */
/* Port I/O, MSR-free helpers                                          */

static inline void cli(void)
{
    __asm__ volatile("cli" : : : "memory");
}

/* Enable interrupts and halt atomically (sti shadow), then disable again. */
static inline void sti(void)
{
    __asm__ volatile("sti" ::: "memory");
}

static inline void sti_hlt_cli(void)
{
    __asm__ volatile("sti; hlt; cli" : : : "memory");
}

static __attribute__((noreturn)) void park_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" : : : "memory");
}

static inline uint32_t lapic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0B0
#define LAPIC_SVR 0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3E0

#define VEC_PIC_BASE 0x20
#define VEC_UART (VEC_PIC_BASE + 4)
#define VEC_TIMER 0x40
#define VEC_SPURIOUS 0xFF

/* Small freestanding libc bits GCC may call. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

void *memset(void *d, int c, size_t n)
{
    void *r = d;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return r;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *r = d;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return r;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp) {
        while (n--)
            *dp++ = *sp++;
    } else {
        while (n--)
            dp[n] = sp[n];
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* COM1 16550A                                                         */

#define COM1 0x3F8
#define UART_RBR 0
#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR_RTS 0x03
#define MCR_OUT2 0x08

#define DEBUGCON 0x402

static void uart_init(void)
{
    outb(COM1 + UART_IER, 0x00);
    outb(COM1 + UART_LCR, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01);        /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + UART_LCR, 0x03); /* 8N1 */
    outb(COM1 + UART_FCR, 0x07); /* FIFOs on and cleared, RX trigger 1 */
    outb(COM1 + UART_MCR, MCR_DTR_RTS);
}

static void uart_putc(char c)
{
    /* Bounded: a VMM that never sets THRE must not hang us forever. */
    for (uint32_t i = 0; i < 1000000; i++) {
        if (inb(COM1 + UART_LSR) & LSR_THRE)
            break;
        cpu_relax();
    }
    outb(COM1 + UART_THR, (uint8_t)c);
}

static void uart_drain_tx(void)
{
    for (uint32_t i = 0; i < 1000000; i++) {
        if (inb(COM1 + UART_LSR) & LSR_TEMT)
            return;
        cpu_relax();
    }
}

static void put_str(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void put_mem(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        uart_putc(s[i]);
}

static void put_dec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        uart_putc(buf[--n]);
}

static void put_hex(uint64_t v, int min_digits)
{
    static const char digits[] = "0123456789abcdef";
    char buf[16];
    int n = 0;
    do {
        buf[n++] = digits[v & 15];
        v >>= 4;
    } while (v || n < min_digits);
    while (n)
        uart_putc(buf[--n]);
}

static void line_start(void)
{
    put_str("testguest: ");
}
static void line_end(void)
{
    put_str("\r\n");
}

static void say(const char *s)
{
    line_start();
    put_str(s);
    line_end();
}

static void debugcon_str(const char *s)
{
    while (*s)
        outb(DEBUGCON, (uint8_t)*s++);
}

/* ------------------------------------------------------------------ */
/* Time: TSC and LAPIC timer calibrated against PIT channel 2          */

static uint64_t tsc_khz;
static uint64_t lapic_timer_khz; /* LAPIC timer ticks per ms at divide-by-16 */

#define TSC_KHZ_FALLBACK 3000000ULL       /* 3 GHz if the PIT is unusable */
#define LAPIC_TIMER_KHZ_FALLBACK 62500ULL /* 1 GHz bus clock / 16 (KVM, QEMU) */

/*
 * The TSC serves busy-wait timeouts only: on this host the guest TSC falls
 * behind while the vCPU is halted, so waits that hlt count LAPIC timer
 * interrupts instead.
 *
 * One PIT channel 2 mode-0 window of `count` PIT ticks, measured in TSC
 * cycles and LAPIC timer ticks. Bounded; false if the PIT does not behave.
 */
static bool pit_window(uint32_t count, uint64_t *tsc_delta, uint64_t *lapic_delta)
{
    /* Gate channel 2 on, speaker off; mode 0 (OUT low until terminal count). */
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xB0);
    lapic_write(LAPIC_TIMER_DIV, 0x3);     /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, 0x10000); /* one-shot, masked */
    outb(0x42, (uint8_t)(count & 0xFF));
    lapic_write(LAPIC_TIMER_INIT, 0xFFFFFFFF);
    uint64_t t0 = rdtsc();
    outb(0x42, (uint8_t)(count >> 8));
    bool ok = false;
    if (!(inb(0x61) & 0x20)) { /* OUT must be low right after programming */
        /* Give up after ~5e9 TSC cycles or 20M polls. */
        for (uint32_t i = 0; i < 20000000; i++) {
            if (inb(0x61) & 0x20) {
                *lapic_delta = 0xFFFFFFFFULL - lapic_read(LAPIC_TIMER_CUR);
                *tsc_delta = rdtsc() - t0;
                ok = true;
                break;
            }
            if (rdtsc() - t0 > 5000000000ULL)
                break;
        }
    }
    outb(0x61, (uint8_t)(inb(0x61) & ~0x03));
    lapic_write(LAPIC_TIMER_INIT, 0);
    return ok;
}

static void tsc_calibrate(void)
{
    const uint32_t pit_hz = 1193182, ms = 1;
    uint64_t best_tsc = 0, best_lapic = UINT64_MAX;
    /* Eight 1 ms windows; keep the shortest in LAPIC (wall-clock) time: the
     * end of a window is seen late when the host deschedules the vCPU, which
     * happens often on a loaded host. */
    for (int round = 0; round < 8; round++) {
        uint64_t dt, dl;
        if (!pit_window(pit_hz * ms / 1000, &dt, &dl))
            break;
        if (dl < best_lapic) {
            best_lapic = dl;
            best_tsc = dt;
        }
    }
    uint64_t khz = best_lapic != UINT64_MAX ? best_tsc / ms : 0;
    /* Accept 100 MHz .. 20 GHz; otherwise assume a typical frequency. */
    if (khz < 100000 || khz > 20000000)
        khz = TSC_KHZ_FALLBACK;
    tsc_khz = khz;
    uint64_t lkhz = best_lapic != UINT64_MAX ? best_lapic / ms : 0;
    if (lkhz < 100 || lkhz > 10000000)
        lkhz = LAPIC_TIMER_KHZ_FALLBACK;
    lapic_timer_khz = lkhz;
}

static void delay_us(uint64_t us)
{
    uint64_t end = rdtsc() + us * tsc_khz / 1000;
    while ((int64_t)(rdtsc() - end) < 0)
        cpu_relax();
}

/* ------------------------------------------------------------------ */
/* Interrupts: IDT, PIC, LAPIC, UART receive ring                      */

struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t zero;
};

struct __attribute__((packed)) desc_ptr {
    uint16_t limit;
    uint64_t base;
};

static struct idt_gate idt[256] __attribute__((aligned(16)));

extern const uint64_t exc_stubs[32];
extern const uint64_t irq_stubs[18];
extern const uint8_t irq_stub_vectors[18];

static void idt_set(unsigned vec, uint64_t handler)
{
    struct idt_gate *g = &idt[vec];
    g->off_lo = (uint16_t)handler;
    g->sel = SEL_CODE64;
    g->ist = 0;
    g->type = 0x8E; /* present, DPL 0, 64-bit interrupt gate */
    g->off_mid = (uint16_t)(handler >> 16);
    g->off_hi = (uint32_t)(handler >> 32);
    g->zero = 0;
}

static void lidt(const void *base, uint16_t limit)
{
    struct desc_ptr p = {limit, (uint64_t)(uintptr_t)base};
    __asm__ volatile("lidt %0" : : "m"(p) : "memory");
}

static void idt_init(void)
{
    for (unsigned i = 0; i < 32; i++)
        idt_set(i, exc_stubs[i]);
    for (unsigned i = 0; i < 18; i++)
        idt_set(irq_stub_vectors[i], irq_stubs[i]);
    lidt(idt, sizeof(idt) - 1);
}

static void pic_init(uint8_t master_mask, uint8_t slave_mask)
{
    outb(0x20, 0x11); /* ICW1: edge, cascade, ICW4 needed */
    outb(0xA0, 0x11);
    outb(0x21, VEC_PIC_BASE);     /* ICW2: vectors 0x20..0x27 */
    outb(0xA1, VEC_PIC_BASE + 8); /*       vectors 0x28..0x2F */
    outb(0x21, 0x04);             /* ICW3: slave on IRQ2 */
    outb(0xA1, 0x02);
    outb(0x21, 0x01); /* ICW4: 8086 mode */
    outb(0xA1, 0x01);
    outb(0x21, master_mask);
    outb(0xA1, slave_mask);
}

static void lapic_init_bsp(void)
{
    lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* software enable */
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LVT_TIMER, 0x10000); /* masked */
    lapic_write(LAPIC_LVT_LINT0, 0x700);   /* ExtINT: 8259 virtual wire */
    lapic_write(LAPIC_LVT_LINT1, 0x400);   /* NMI */
}

/* Periodic 10 ms LAPIC timer: the clock for waits that halt. */
#define TICK_MS 10
static void lapic_timer_start(void)
{
    lapic_write(LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, 0x20000 | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INIT, (uint32_t)(lapic_timer_khz * TICK_MS));
}

static void lapic_timer_stop(void)
{
    lapic_write(LAPIC_LVT_TIMER, 0x10000);
    lapic_write(LAPIC_TIMER_INIT, 0);
}

#define RING_SIZE 256
static volatile uint8_t rx_ring[RING_SIZE];
static volatile uint32_t rx_head, rx_tail; /* head: ISR writes; tail: main */
static volatile bool irq_test_mode;
static volatile int irq_test_byte; /* byte + 1; 0: none yet */
static volatile uint32_t uart_irqs, timer_irqs;
/* IRQ 0 interrupts, for the count command. */
static volatile uint32_t pit_irqs;
static bool rx_irq_mode;        /* command loop waits with sti;hlt */
static volatile bool rx_paused; /* ring full: RX interrupt off, data waits in the UART */

static void ring_push(uint8_t c)
{
    uint32_t h = rx_head;
    if (h - rx_tail < RING_SIZE) {
        rx_ring[h % RING_SIZE] = c;
        rx_head = h + 1;
    }
}

static int ring_pop(void)
{
    uint32_t t = rx_tail;
    if (t == rx_head)
        return -1;
    int c = rx_ring[t % RING_SIZE];
    rx_tail = t + 1;
    return c;
}

static void uart_rx_irq(bool on)
{
    outb(COM1 + UART_MCR, (uint8_t)(MCR_DTR_RTS | (on ? MCR_OUT2 : 0)));
    outb(COM1 + UART_IER, on ? 0x01 : 0x00);
    outb(0x21, on ? 0xEF : 0xFF); /* only IRQ4 on the master */
}

void irq_dispatch(uint64_t vec);
void irq_dispatch(uint64_t vec)
{
    if (vec == VEC_UART) {
        uart_irqs++;
        /* Drain fully: the PIC is edge-triggered, so leaving data behind
         * would leave the line high with no new edge to come. */
        for (int i = 0; i < 65536 && (inb(COM1 + UART_LSR) & LSR_DR); i++) {
            if (rx_head - rx_tail >= RING_SIZE) {
                /* Full: leave the rest in the UART (flow control back to the
                 * host) until the reader makes room. */
                outb(COM1 + UART_IER, 0x00);
                rx_paused = true;
                break;
            }
            uint8_t c = inb(COM1 + UART_RBR);
            if (irq_test_mode && irq_test_byte == 0 && c != '\r' && c != '\n')
                irq_test_byte = c + 1;
            else
                ring_push(c);
        }
        outb(0x20, 0x20);
    } else if (vec == VEC_TIMER) {
        timer_irqs++;
        lapic_write(LAPIC_EOI, 0);
    } else if (vec >= VEC_PIC_BASE && vec < VEC_PIC_BASE + 16) {
        unsigned irq = (unsigned)(vec - VEC_PIC_BASE);
        if (irq == 0)
            pit_irqs++;
        if (irq == 7 || irq == 15) {
            /* Possibly spurious: EOI only if really in service. */
            uint16_t pic = irq == 7 ? 0x20 : 0xA0;
            outb(pic, 0x0B); /* OCW3: read ISR */
            if (!(inb(pic) & 0x80)) {
                if (irq == 15)
                    outb(0x20, 0x20);
                return;
            }
        }
        if (irq >= 8)
            outb(0xA0, 0x20);
        outb(0x20, 0x20);
    }
    /* VEC_SPURIOUS: no EOI. */
}

/* ------------------------------------------------------------------ */
/* Verdict bookkeeping                                                 */

static unsigned fails;
static bool done_written;

static void write_done(void)
{
    if (!done_written) {
        done_written = true;
        debugcon_str("done\n");
    }
}

struct exc_frame {
    uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

void exc_handler(const struct exc_frame *f);
void exc_handler(const struct exc_frame *f)
{
    line_start();
    put_str("FAIL exception ");
    put_dec(f->vec);
    put_str(" err 0x");
    put_hex(f->err, 1);
    put_str(" rip 0x");
    put_hex(f->rip, 1);
    line_end();
    say("verdict FAIL");
    uart_drain_tx();
    write_done();
    park_forever();
}

/* ------------------------------------------------------------------ */
/* Line input                                                          */

#define LINE_MAX 128

static int next_byte(uint64_t deadline, bool forever)
{
    for (;;) {
        if (rx_irq_mode)
            cli();
        int c = ring_pop();
        if (rx_irq_mode && rx_paused) {
            rx_paused = false;
            outb(COM1 + UART_IER, 0x01); /* pending data raises a fresh edge */
        }
        if (c >= 0) {
            if (rx_irq_mode)
                sti();
            return c;
        }
        if (rx_irq_mode) {
            /* The ISR fills the ring; interrupts are off here, so no wake-up
             * is lost between the check above and the halt. */
            sti_hlt_cli();
            continue;
        }
        if (inb(COM1 + UART_LSR) & LSR_DR)
            return inb(COM1 + UART_RBR);
        if (!forever && tsc_passed(deadline))
            return -1;
        cpu_relax();
    }
}

/* Read one non-empty line (CR and/or LF terminate; empty lines are skipped).
 * Returns its length, or -1 on timeout. */
static int read_line(char *buf, size_t max, uint64_t timeout_ms)
{
    bool forever = timeout_ms == 0;
    uint64_t deadline = forever ? 0 : tsc_deadline(tsc_khz, timeout_ms);
    size_t len = 0;
    for (;;) {
        int c = next_byte(deadline, forever);
        if (c < 0)
            return -1;
        if (c == '\r' || c == '\n') {
            if (len == 0)
                continue;
            buf[len] = 0;
            return (int)len;
        }
        if (len < max - 1)
            buf[len++] = (char)c;
    }
}

static bool streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* ------------------------------------------------------------------ */
/* Step 2: boot counter that survives a reset keeping RAM              */

#define BOOT_MAGIC 0x7465737467756573ULL /* "testgues" */

static uint64_t boot_check(uint64_t count)
{
    uint64_t x = BOOT_MAGIC ^ (count * 0x9E3779B97F4A7C15ULL);
    return ~((x << 13) | (x >> 51));
}

static uint64_t boot_count_next(void)
{
    volatile uint64_t *rec = (volatile uint64_t *)(uintptr_t)BOOTREC_ADDR;
    uint64_t n = 1;
    if (rec[0] == BOOT_MAGIC && rec[2] == boot_check(rec[1]) && rec[1] < (1ULL << 40))
        n = rec[1] + 1;
    rec[0] = BOOT_MAGIC;
    rec[1] = n;
    rec[2] = boot_check(n);
    return n;
}

/* ------------------------------------------------------------------ */
/* Step 3: parameter line                                              */

struct params {
    uint64_t cpus, mem_mib, lowmem_mib;
    bool have_cpus, have_mem, bad;
};

/* The largest number the parameter line and the commands take (10^12 + 9;
 * each checks its own range after). */
#define COMMAND_NUMBER_MAX 1000000000009ULL

static bool parse_u64(const char **pp, uint64_t *out)
{
    return parse_decimal(pp, COMMAND_NUMBER_MAX, out);
}

static void parse_params(const char *line, struct params *pr)
{
    pr->cpus = 1;
    pr->mem_mib = 0;
    pr->lowmem_mib = 3072;
    pr->have_cpus = pr->have_mem = pr->bad = false;
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *v;
        uint64_t x;
        if (word_is(p, "cpus=", &v)) {
            if (!parse_u64(&v, &x) || x < 1 || x > MAX_CPUS)
                pr->bad = true;
            else {
                pr->cpus = x;
                pr->have_cpus = true;
            }
            p = v;
        } else if (word_is(p, "mem=", &v)) {
            if (!parse_u64(&v, &x) || x < 2)
                pr->bad = true;
            else {
                pr->mem_mib = x;
                pr->have_mem = true;
            }
            p = v;
        } else if (word_is(p, "lowmem=", &v)) {
            if (!parse_u64(&v, &x) || x < 2 || x > 4096)
                pr->bad = true;
            else
                pr->lowmem_mib = x;
            p = v;
        }
        /* Skip the rest of this token (unknown keys are ignored). */
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
}

/* ------------------------------------------------------------------ */
/* Step 4: application processors                                      */

extern const char tramp_start[], tramp_end[];

static void icr_send(uint32_t lo)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, lo);
    for (uint32_t i = 0; i < 100000; i++) {
        if (!(lapic_read(LAPIC_ICR_LO) & (1u << 12)))
            return;
        cpu_relax();
    }
}

static inline void cpuid_regs(uint32_t leaf, uint32_t subleaf, uint32_t r[4])
{
    __asm__ volatile("cpuid"
                     : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(subleaf));
}

static void cpuid_list_add(uint32_t leaf, uint32_t subleaf)
{
    volatile uint32_t *list = (volatile uint32_t *)(uintptr_t)CPUID_LIST_ADDR;
    if (list[0] >= CPUID_LIST_MAX)
        return;
    list[1 + 2 * list[0]] = leaf;
    list[2 + 2 * list[0]] = subleaf;
    list[0]++;
}

/* Leaf and subleaves as the BSP sees them: 4 and 0x8000001D until the
 * null cache, 0xB and 0x1F through the first invalid level, 7 up to its
 * maximum subleaf, 0xD for the XCR0 components; then each range's first
 * leaf past its maximum (the vendor's rule for absent leaves). */
static void cpuid_list_range(uint32_t first, uint32_t max)
{
    uint32_t r[4];
    for (uint32_t leaf = first; leaf <= max && leaf - first < 0x30; leaf++) {
        if (leaf == 4 || leaf == 0x8000001D) {
            for (uint32_t sub = 0; sub < 8; sub++) {
                cpuid_list_add(leaf, sub);
                cpuid_regs(leaf, sub, r);
                if ((r[0] & 0x1F) == 0)
                    break;
            }
        } else if (leaf == 0xB || leaf == 0x1F) {
            for (uint32_t sub = 0; sub < 8; sub++) {
                cpuid_list_add(leaf, sub);
                cpuid_regs(leaf, sub, r);
                if (((r[2] >> 8) & 0xFF) == 0)
                    break;
            }
        } else if (leaf == 7) {
            cpuid_regs(7, 0, r);
            for (uint32_t sub = 0; sub <= r[0] && sub < 4; sub++)
                cpuid_list_add(7, sub);
        } else if (leaf == 0xD) {
            cpuid_regs(0xD, 0, r);
            cpuid_list_add(0xD, 0);
            cpuid_list_add(0xD, 1);
            for (uint32_t sub = 2; sub < 32; sub++)
                if (r[0] & (1u << sub))
                    cpuid_list_add(0xD, sub);
        } else {
            cpuid_list_add(leaf, 0);
        }
    }
    cpuid_list_add(max + 1, 0);
}

/* Writes this CPU's answers for the listed leaves into slot. */
static void cpuid_dump_self(uint32_t slot)
{
    volatile uint32_t *list = (volatile uint32_t *)(uintptr_t)CPUID_LIST_ADDR;
    volatile uint32_t *out =
        (volatile uint32_t *)(uintptr_t)(CPUID_DUMP_ADDR +
                                         ((uint64_t)slot << CPUID_DUMP_SLOT_SHIFT));
    for (uint32_t i = 0; i < list[0]; i++) {
        uint32_t r[4];
        cpuid_regs(list[1 + 2 * i], list[2 + 2 * i], r);
        for (int k = 0; k < 4; k++)
            out[4 * i + k] = r[k];
    }
}

static void cpuid_plan(void)
{
    uint32_t r[4];
    *(volatile uint32_t *)(uintptr_t)CPUID_LIST_ADDR = 0;
    cpuid_regs(0, 0, r);
    cpuid_list_range(0, r[0]);
    cpuid_regs(0x40000000, 0, r);
    if (r[0] >= 0x40000000 && r[0] < 0x40000100)
        cpuid_list_range(0x40000000, r[0]);
    cpuid_regs(0x80000000, 0, r);
    if (r[0] >= 0x80000000 && r[0] < 0x80000100)
        cpuid_list_range(0x80000000, r[0]);
    cpuid_dump_self(0);
}

static uint32_t cpus_checked_in; /* set by start_aps */

/* `cpuid`: "cpuid K LLLLLLLL.S EAX EBX ECX EDX" for every CPU that
 * checked in (up to CPUID_DUMP_CPUS), as recorded at its start-up. */
static void cpuid_command(void)
{
    volatile uint32_t *list = (volatile uint32_t *)(uintptr_t)CPUID_LIST_ADDR;
    uint32_t cpus = cpus_checked_in < CPUID_DUMP_CPUS ? cpus_checked_in : CPUID_DUMP_CPUS;
    for (uint32_t k = 0; k < cpus; k++) {
        volatile uint32_t *regs =
            (volatile uint32_t *)(uintptr_t)(CPUID_DUMP_ADDR +
                                             ((uint64_t)k << CPUID_DUMP_SLOT_SHIFT));
        for (uint32_t i = 0; i < list[0]; i++) {
            line_start();
            put_str("cpuid ");
            put_dec(k);
            put_str(" ");
            put_hex(list[1 + 2 * i], 8);
            put_str(".");
            put_hex(list[2 + 2 * i], 1);
            for (int j = 0; j < 4; j++) {
                put_str(" ");
                put_hex(regs[4 * i + j], 8);
            }
            line_end();
        }
    }
    line_start();
    put_str("cpuid done cpus ");
    put_dec(cpus);
    put_str(" leaves ");
    put_dec(list[0]);
    line_end();
}

static void start_aps(uint64_t want)
{
    volatile uint32_t *ticket = (volatile uint32_t *)(uintptr_t)AP_TICKET_ADDR;
    volatile uint32_t *done = (volatile uint32_t *)(uintptr_t)AP_DONE_ADDR;
    volatile uint32_t *ids = (volatile uint32_t *)(uintptr_t)AP_IDS_ADDR;

    memcpy((void *)(uintptr_t)TRAMP_ADDR, tramp_start, (size_t)(tramp_end - tramp_start));
    cpuid_plan(); /* before the APs, which read the list */
    *ticket = 0;
    *done = 0;
    ids[0] = lapic_read(LAPIC_ID) >> 24;

    uint32_t got = 0;
    if (want > 1) {
        /* INIT-SIPI-SIPI to all excluding self. */
        icr_send(0x000C4500);
        delay_us(10000);
        icr_send(0x000C4600 | TRAMP_VECTOR);
        delay_us(200);
        icr_send(0x000C4600 | TRAMP_VECTOR);
        uint64_t dl = tsc_deadline(tsc_khz, 2000);
        while (*done < want - 1 && !tsc_passed(dl))
            cpu_relax();
        /* Let stragglers beyond the expected count show up briefly. */
        delay_us(1000);
        got = *done;
    }

    uint32_t total = got + 1;
    cpus_checked_in = total;
    for (uint32_t k = 0; k < total && k < MAX_CPUS; k++) {
        line_start();
        put_str("cpu ");
        put_dec(k);
        put_str(" apic ");
        put_dec(ids[k]);
        line_end();
    }
    if (total == want) {
        line_start();
        put_str("cpus ");
        put_dec(want);
        put_str(" ok");
        line_end();
    } else {
        fails++;
        line_start();
        put_str("FAIL cpus got ");
        put_dec(total);
        put_str(" want ");
        put_dec(want);
        line_end();
    }
}

/* ------------------------------------------------------------------ */
/* Step 5: memory at the ends of lowmem and highmem                    */

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)
#define HIGHMEM_BASE (4 * GiB)

static inline void write_cr3(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

static void fill_pd(uint64_t pd_addr, uint64_t gib, uint64_t end)
{
    volatile uint64_t *pd = (volatile uint64_t *)(uintptr_t)pd_addr;
    for (uint64_t i = 0; i < 512; i++) {
        uint64_t a = gib * GiB + i * 2 * MiB;
        pd[i] = a < end ? (a | 0x83) : 0;
    }
}

/* Map [4 GiB, 4 GiB + bytes) with 2 MiB pages. Returns false if too big. */
static bool map_highmem(uint64_t bytes)
{
    uint64_t end = HIGHMEM_BASE + bytes;
    uint64_t first = HIGHMEM_BASE / GiB, last = (end - 1) / GiB;
    if (last >= 512)
        return false;
    volatile uint64_t *pdpt = (volatile uint64_t *)(uintptr_t)PDPT_ADDR;
    bool all = last - first + 1 <= PD_HIGH_MAX;
    unsigned slot = 0;
    for (uint64_t g = first; g <= last; g++) {
        if (!all && g != first && g != last)
            continue; /* huge highmem: only the two ends are tested */
        uint64_t pd = PD_HIGH_ADDR + (uint64_t)slot * 4096;
        fill_pd(pd, g, end);
        pdpt[g] = pd | 3;
        slot++;
    }
    write_cr3(PML4_ADDR);
    return true;
}

static uint64_t pattern(unsigned i, uint64_t addr)
{
    return (0x9E3779B97F4A7C15ULL * (i + 1)) ^ addr ^ 0x5A5A000000000000ULL;
}

static void mem_fail(const char *what, uint64_t addr, uint64_t got, uint64_t want)
{
    fails++;
    line_start();
    put_str("FAIL mem ");
    put_str(what);
    put_str(" 0x");
    put_hex(addr, 1);
    put_str(" got 0x");
    put_hex(got, 16);
    put_str(" want 0x");
    put_hex(want, 16);
    line_end();
}

static void test_memory(const struct params *pr)
{
    if (!pr->have_mem) {
        fails++;
        say("FAIL mem size unknown");
        return;
    }
    uint64_t low_mib = pr->mem_mib < pr->lowmem_mib ? pr->mem_mib : pr->lowmem_mib;
    uint64_t low_end = low_mib * MiB;
    uint64_t high_bytes = pr->mem_mib > pr->lowmem_mib ? (pr->mem_mib - pr->lowmem_mib) * MiB : 0;

    uint64_t addr[4];
    const char *what[4] = {"lowmem_end", "lowmem_end", "highmem", "highmem"};
    unsigned n = 2;
    addr[0] = low_end - 4096;
    addr[1] = low_end - 8;
    if (high_bytes) {
        if (!map_highmem(high_bytes)) {
            fails++;
            say("FAIL mem highmem too large to map");
            high_bytes = 0;
        } else {
            addr[2] = HIGHMEM_BASE;
            addr[3] = HIGHMEM_BASE + high_bytes - 8;
            n = 4;
        }
    }
    for (unsigned i = 0; i < n; i++)
        *(volatile uint64_t *)(uintptr_t)addr[i] = pattern(i, addr[i]);
    bool ok_low = true, ok_high = true;
    for (unsigned i = 0; i < n; i++) {
        uint64_t got = *(volatile uint64_t *)(uintptr_t)addr[i];
        uint64_t want = pattern(i, addr[i]);
        if (got != want) {
            mem_fail(what[i], addr[i], got, want);
            if (i < 2)
                ok_low = false;
            else
                ok_high = false;
        }
    }
    if (ok_low)
        say("mem lowmem_end ok");
    if (n == 4) {
        if (ok_high)
            say("mem highmem ok");
    } else if (!high_bytes && pr->mem_mib <= pr->lowmem_mib) {
        say("mem highmem skipped");
    }
}

/* ------------------------------------------------------------------ */
/* Step 7: UART receive interrupt through the 8259                     */

static bool test_irq(void)
{
    irq_test_byte = 0;
    irq_test_mode = true;
    lapic_timer_start(); /* watchdog ticks so the halt loop can time out */
    uart_rx_irq(true);
    say("irq?");
    /* 60 s counted in LAPIC timer ticks (the TSC lags while halted here). */
    uint32_t t0 = timer_irqs;
    for (;;) {
        cli();
        if (irq_test_byte != 0 || timer_irqs - t0 >= 60000 / TICK_MS)
            break;
        sti_hlt_cli();
    }
    uart_rx_irq(false);
    lapic_timer_stop();
    irq_test_mode = false;
    if (irq_test_byte == 0) {
        fails++;
        line_start();
        put_str("FAIL irq timeout uart_irqs ");
        put_dec(uart_irqs);
        put_str(" timer_irqs ");
        put_dec(timer_irqs);
        line_end();
        return false;
    }
    line_start();
    put_str("irq ok ");
    put_hex((uint64_t)(irq_test_byte - 1), 2);
    line_end();
    return true;
}

/* ------------------------------------------------------------------ */
/* Step 9: command loop                                                */

static __attribute__((noreturn)) void triple_fault(void)
{
    lidt(0, 0);
    __asm__ volatile("ud2");
    park_forever();
}

/* ------------------------------------------------------------------ */
/* Register sweep: hostile values of every size at the platform devices */

static uint64_t sweep_state;

static uint64_t sweep_rand(void)
{
    return xorshift64(&sweep_state);
}

static void port_write(uint16_t port, unsigned size, uint32_t v)
{
    if (size == 1)
        __asm__ volatile("outb %b0, %w1" ::"a"((uint8_t)v), "Nd"(port));
    else if (size == 2)
        __asm__ volatile("outw %w0, %w1" ::"a"((uint16_t)v), "Nd"(port));
    else
        __asm__ volatile("outl %0, %w1" ::"a"(v), "Nd"(port));
}

static uint32_t port_read(uint16_t port, unsigned size)
{
    uint32_t v = 0;
    if (size == 1) {
        uint8_t b;
        __asm__ volatile("inb %w1, %b0" : "=a"(b) : "Nd"(port));
        v = b;
    } else if (size == 2) {
        uint16_t w;
        __asm__ volatile("inw %w1, %w0" : "=a"(w) : "Nd"(port));
        v = w;
    } else {
        __asm__ volatile("inl %w1, %0" : "=a"(v) : "Nd"(port));
    }
    return v;
}

/* Writes that would end the test by design (reset, power-off, the
 * console itself) are skipped; everything else gets random values. */
static bool sweep_write_allowed(uint16_t port, unsigned size)
{
    uint16_t last = (uint16_t)(port + size - 1);
    if (last >= COM1 && port < COM1 + 8)
        return false; /* our console */
    if (port == 0x64 || port == 0x92 || (port <= 0xCF9 && last >= 0xCF9))
        return false; /* reset lines */
    if (port <= 0xB005 && last >= 0xB004)
        return false; /* PM1a control: SLP_EN powers off */
    if (port <= 0x21 || (port >= 0x40 && port <= 0x43) || (port >= 0xA0 && port <= 0xA1))
        return false; /* the in-kernel PIC and PIT drive our own interrupts */
    if (port == 0x402 || port == 0x505)
        return false; /* debug log and pvpanic: valid but noisy */
    return true;
}

static void sweep(uint64_t seed)
{
    static const struct {
        uint16_t base, len;
    } ranges[] = {
        {0x60, 1},  {0x64, 1},   {0x70, 2},   {0x80, 1},    {0x92, 1},
        {0xB2, 2},  {0x2E8, 8},  {0x2F8, 8},  {0x3E8, 8},   {0x402, 1},
        {0x505, 1}, {0x510, 12}, {0xAFE0, 4}, {0xB000, 64}, {0xCF8, 8},
    };
    sweep_state = seed ? seed : 0x9E3779B97F4A7C15ULL;
    cli();
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
            for (uint16_t off = 0; off < ranges[r].len; off++) {
                for (unsigned size = 1; size <= 4; size *= 2) {
                    uint16_t port = (uint16_t)(ranges[r].base + off);
                    if (sweep_write_allowed(port, size))
                        port_write(port, size, (uint32_t)sweep_rand());
                    (void)port_read(port, size);
                }
            }
        }
        /* HPET and the ECAM window of bus 0 (the chipset functions and
         * empty slots), every size. */
        for (uint64_t off = 0; off < 0x400; off += 4) {
            volatile uint32_t *hpet = (volatile uint32_t *)(uintptr_t)(0xFED00000ULL + off);
            *hpet = (uint32_t)sweep_rand();
            (void)*hpet;
        }
        for (unsigned i = 0; i < 512; i++) {
            uint64_t off = sweep_rand() & 0xFFFFC; /* bus 0, any devfn, any register */
            uint64_t devfn_reg = off & 0xFFFFF;
            if ((devfn_reg >> 12) == 0x0B && (devfn_reg & 0xFFF) < 0x44)
                continue; /* PIIX4 PM's PMBA: moving the PM block is fine, but keep S5 off */
            volatile uint32_t *cfg = (volatile uint32_t *)(uintptr_t)(0xE0000000ULL + devfn_reg);
            if (sweep_rand() & 1)
                *cfg = (uint32_t)sweep_rand();
            (void)*cfg;
            volatile uint8_t *b = (volatile uint8_t *)cfg + (sweep_rand() & 3);
            (void)*b;
        }
    }
    /* Re-enable what the command loop relies on: UART RX interrupt. */
    uart_rx_irq(true);
    sti();
}

/* ------------------------------------------------------------------ */
/* pmmove: PM block moved away, a virtio BAR at its power-on base, reset */

#define PM_TMR 0x08
#define VIRTIO_VENDOR 0x1AF4

/* Configuration mechanism #1, any function of bus 0 (pci.c reaches
 * function 0 only). */
static uint32_t cfg_read_devfn(unsigned devfn, unsigned reg)
{
    outl(0xCF8, 0x80000000u | devfn << 8 | (reg & 0xFC));
    return inl(0xCFC);
}

static void cfg_write_devfn(unsigned devfn, unsigned reg, uint32_t v)
{
    outl(0xCF8, 0x80000000u | devfn << 8 | (reg & 0xFC));
    outl(0xCFC, v);
}

/* The PM block must come back at 0xB000 after the reset even though a BAR
 * sits there until that BAR's own function is reset. */
static void pmmove(void)
{
    unsigned vdev = 0;
    for (unsigned dev = 1; dev < 32 && !vdev; dev++)
        if ((cfg_read_devfn(dev << 3, 0x00) & 0xFFFF) == VIRTIO_VENDOR)
            vdev = dev;
    if (!vdev) {
        say("pmmove FAIL no virtio function on bus 0");
        return;
    }
    cfg_write_devfn(PIIX4_PM_DEVFN, PIIX4_PM_PMBA, PM_BASE_MOVED | 1);
    uint32_t cmd = cfg_read_devfn(vdev << 3, 0x04) & 0xFFFF;
    cfg_write_devfn(vdev << 3, 0x04, cmd & ~1u);
    cfg_write_devfn(vdev << 3, 0x10, PM_BASE_POWER_ON); /* BAR0: legacy I/O registers */
    cfg_write_devfn(vdev << 3, 0x04, cmd | 1u);
    /* The 24-bit timer answers at the new base; the legacy device
     * features (not all ones) at the old one. */
    uint32_t tmr = inl(PM_BASE_MOVED + PM_TMR);
    uint32_t features = inl(PM_BASE_POWER_ON);
    if ((tmr >> 24) != 0 || features == 0xFFFFFFFFu) {
        line_start();
        put_str("pmmove FAIL pm timer 0x");
        put_hex(tmr, 8);
        put_str(" virtio features 0x");
        put_hex(features, 8);
        line_end();
        return;
    }
    line_start();
    put_str("pmmove pm 0x");
    put_hex(PM_BASE_MOVED, 4);
    put_str(" virtio 0:");
    put_dec(vdev);
    put_str(" bar0 0x");
    put_hex(PM_BASE_POWER_ON, 4);
    put_str(", resetting");
    line_end();
    uart_drain_tx();
    outb(0xCF9, 0x06);
    delay_us(50000);
    say("pmmove returned");
}

/* pio PORT [VALUE] (decimal): a byte read from PORT, or VALUE written to
 * it, e.g. the pvpanic port's events. */
static void pio_command(const char *p)
{
    uint64_t port, value = 0;
    bool write = false;
    bool ok = parse_u64(&p, &port) && port <= 0xFFFF;
    if (ok && *p == ' ') {
        p++;
        write = true;
        ok = parse_u64(&p, &value) && value <= 0xFF;
    }
    if (!ok || *p) {
        say("pio FAIL usage: pio PORT [VALUE] (decimal, VALUE a byte)");
        return;
    }
    if (write)
        outb((uint16_t)port, (uint8_t)value);
    else
        value = inb((uint16_t)port);
    line_start();
    put_str("pio 0x");
    put_hex(port, 4);
    put_str(write ? " <- 0x" : " = 0x");
    put_hex(value, 2);
    line_end();
}

static void devfuzz_report(const char *kind, unsigned dev, uint64_t ops)
{
    line_start();
    put_str("devfuzz ");
    put_str(kind);
    put_str(" at 0:");
    put_dec(dev);
    put_str(" ops=");
    put_dec(ops);
    line_end();
}

static uint8_t cmos_read(uint8_t reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

/* count [MS]: every MS ms (default 200, counted in 10 ms LAPIC timer
 * ticks) prints "count K ticks T pit P hpet H rtc HHMMSS tsc C" until a
 * line arrives, then "count stopped K". PIT channel 0 runs at 100 Hz on
 * IRQ0 and the HPET main counter is enabled: a snapshot taken in between
 * must keep every one of them going from where it was. */
static void count_command(const char *p)
{
    uint64_t ms = 200, k = 0;
    if (*p == ' ') {
        p++;
        if (!parse_u64(&p, &ms) || ms < TICK_MS || ms > 60000)
            ms = 200;
    }
    if (!rx_irq_mode) {
        say("count FAIL the UART interrupt does not work");
        return;
    }
    volatile uint32_t *hpet = (volatile uint32_t *)(uintptr_t)0xFED00000ULL;
    hpet[0x10 / 4] |= 1; /* main counter on */
    cli();
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2: 100 Hz */
    outb(0x40, 11932 & 0xFF);
    outb(0x40, 11932 >> 8);
    outb(0x21, 0xEE); /* IRQ0 and IRQ4 */
    lapic_timer_start();
    uint32_t next = timer_irqs + (uint32_t)(ms / TICK_MS);
    while (rx_head == rx_tail) {
        if ((int32_t)(timer_irqs - next) < 0) {
            sti_hlt_cli();
            continue;
        }
        next += (uint32_t)(ms / TICK_MS);
        while (cmos_read(0x0A) & 0x80) /* update in progress */
            cpu_relax();
        uint32_t hms = (uint32_t)cmos_read(4) << 16 | (uint32_t)cmos_read(2) << 8 | cmos_read(0);
        uint32_t lo = hpet[0xF0 / 4], hi = hpet[0xF4 / 4];
        line_start();
        put_str("count ");
        put_dec(++k);
        put_str(" ticks ");
        put_dec(timer_irqs);
        put_str(" pit ");
        put_dec(pit_irqs);
        put_str(" hpet ");
        put_hex((uint64_t)hi << 32 | lo, 1);
        put_str(" rtc ");
        put_hex(hms, 6);
        put_str(" tsc ");
        put_dec(rdtsc());
        line_end();
    }
    lapic_timer_stop();
    outb(0x21, 0xEF);
    sti();
    char line[LINE_MAX];
    read_line(line, sizeof(line), 1000);
    line_start();
    put_str("count stopped ");
    put_dec(k);
    line_end();
}

static __attribute__((noreturn)) void command_loop(void)
{
    char line[LINE_MAX];
    for (;;) {
        int n = read_line(line, sizeof(line), 0);
        if (n < 0)
            continue;
        const char *p; /* a command's arguments */
        if (streq(line, "halt")) {
            say("halting");
            uart_drain_tx();
            park_forever();
        } else if (streq(line, "triple")) {
            say("triple fault");
            uart_drain_tx();
            cli();
            triple_fault();
        } else if (streq(line, "kbdreset")) {
            /* 8042 "pulse reset line": the VM resets, RAM kept. */
            uart_drain_tx();
            outb(0x64, 0xFE);
            delay_us(50000);
            say("kbdreset returned");
        } else if (streq(line, "port92")) {
            /* Fast reset: a rising edge on bit 0 of port 0x92. */
            uart_drain_tx();
            outb(0x92, 0x00);
            outb(0x92, 0x01);
            delay_us(50000);
            say("port92 returned");
        } else if (streq(line, "s5")) {
            /* ACPI soft-off through the PIIX4 PM1a control block at its
             * reset base 0xB000: SLP_TYP 0 (S5 on this chipset) with SLP_EN. */
            uart_drain_tx();
            __asm__ volatile("outw %w0, %w1" ::"a"((uint16_t)0x2000), "Nd"((uint16_t)0xB004));
            delay_us(50000);
            say("s5 returned");
        } else if (streq(line, "cf9")) {
            uart_drain_tx();
            outb(0xCF9, 0x06);
            delay_us(50000); /* a reset may take effect a little later */
            say("cf9 returned");
        } else if (streq(line, "pmmove")) {
            pmmove();
        } else if (word_is(line, "pio ", &p)) {
            pio_command(p);
        } else if (word_is(line, "acpiread ", &p)) {
            acpiread(p, say);
        } else if (word_is(line, "count", &p) && (*p == ' ' || *p == 0)) {
            count_command(p);
        } else if (streq(line, "ping")) {
            say("pong");
        } else if (streq(line, "cpuid")) {
            cpuid_command();
        } else if (streq(line, "lspci")) {
            /* Bus 0, function 0 of every slot: "pci 05 1af4:1000 class 020000". */
            for (unsigned dev = 0; dev < 32; dev++) {
                uint32_t id = pci_cfg_read(0, dev, 0);
                if (id == 0xFFFFFFFFu)
                    continue;
                line_start();
                put_str("pci ");
                put_hex(dev, 2);
                put_str(" ");
                put_hex(id & 0xFFFF, 4);
                put_str(":");
                put_hex(id >> 16, 4);
                put_str(" class ");
                put_hex(pci_cfg_read(0, dev, 8) >> 8, 6);
                line_end();
            }
            say("lspci done");
        } else if (word_is(line, "spew ", &p)) {
            /* Bulk output, for console tests: "spew N" prints N lines. */
            uint64_t count = 0;
            if (!parse_u64(&p, &count))
                count = 0;
            for (uint64_t k = 1; k <= count; k++) {
                line_start();
                put_str("spew line ");
                put_dec(k);
                put_str(" ................");
                line_end();
            }
            say("spew done");
        } else if (word_is(line, "sweep", &p)) {
            uint64_t seed = 0;
            if (*p == ' ') {
                p++;
                if (!parse_u64(&p, &seed))
                    seed = 0;
            }
            sweep(seed);
            say("sweep done");
        } else if (word_is(line, "bench ", &p)) {
            /* Storage benchmark (storage_bench.c): drivers polling at CPL3. */
            cli();
            storage_bench(p, tsc_khz, say);
            if (rx_irq_mode) {
                uart_rx_irq(true);
                sti();
            }
        } else if (word_is(line, "mem ", &p)) {
            /* RAM pattern for the snapshot benchmark (mem_pattern.c), at CPL3. */
            cli();
            mem_pattern_command(p, tsc_khz, say);
            if (rx_irq_mode)
                sti();
        } else if (word_is(line, "net", &p) && (*p == ' ' || *p == 0)) {
            /* virtio-net test driver (net_test.c): polling at CPL3. */
            cli();
            net_test(p, tsc_khz, say);
            if (rx_irq_mode) {
                uart_rx_irq(true);
                sti();
            }
        } else if (word_is(line, "devfuzz", &p) && (*p == ' ' || *p == 0)) {
            /* Hostile driver for the storage devices and the NIC (device_fuzz.c). */
            uint64_t seed = 1, rounds = 8;
            while (*p == ' ')
                p++;
            if (*p && !parse_u64(&p, &seed))
                p = "?";
            while (*p == ' ')
                p++;
            if (word_is(p, "rounds=", &p)) {
                if (!parse_u64(&p, &rounds) || rounds < 1 || rounds > 64)
                    p = "?";
            }
            if (*p) {
                say("devfuzz FAIL usage: devfuzz SEED [rounds=1..64]");
                continue;
            }
            cli();
            unsigned devices = device_fuzz(seed, (unsigned)rounds, tsc_khz, say, devfuzz_report);
            line_start();
            put_str("devfuzz done devices=");
            put_dec(devices);
            line_end();
            if (rx_irq_mode) {
                uart_rx_irq(true);
                sti();
            }
        } else if (word_is(line, "hostile ", &p)) {
            /* The hostile-guest matrix (hostile.c). */
            cli();
            hostile(p, tsc_khz, say);
            if (rx_irq_mode) {
                uart_rx_irq(true);
                sti();
            }
        } else if (word_is(line, "deaf ", &p)) {
            /* Stop reading COM1 for N ms (busy, RX interrupt off): the
             * console's input backs up in the VMM. */
            uint64_t ms = 0;
            if (parse_u64(&p, &ms) && ms <= 600000) {
                say("deaf");
                uart_drain_tx();
                cli();
                uart_rx_irq(false);
                delay_us(ms * 1000);
                if (rx_irq_mode) {
                    uart_rx_irq(true);
                    sti();
                }
                say("hearing");
            } else {
                say("deaf: bad argument");
            }
        } else if (streq(line, "info")) {
            line_start();
            put_str("info tsc_khz ");
            put_dec(tsc_khz);
            put_str(" lapic_timer_khz ");
            put_dec(lapic_timer_khz);
            put_str(" uart_irqs ");
            put_dec(uart_irqs);
            put_str(" timer_irqs ");
            put_dec(timer_irqs);
            line_end();
        } else {
            line_start();
            put_str("unknown command ");
            put_mem(line, (size_t)n);
            line_end();
        }
    }
}

/* ------------------------------------------------------------------ */

void cmain(void);
void cmain(void)
{
    char line[LINE_MAX];

    uart_init();
    idt_init();
    outb(0x21, 0xFF); /* PICs fully masked until step 7 */
    outb(0xA1, 0xFF);

    uint64_t boot = boot_count_next();
    line_start();
    put_str("boot ");
    put_dec(boot);
    line_end();

    lapic_init_bsp();
    tsc_calibrate();

    say("ready");
    int n = read_line(line, sizeof(line), 60000);
    if (n < 0) {
        say("FAIL no command");
        uart_drain_tx();
        park_forever();
    }
    struct params pr;
    parse_params(line, &pr);
    if (pr.bad || !pr.have_cpus || !pr.have_mem) {
        fails++;
        line_start();
        put_str("FAIL params ");
        put_mem(line, (size_t)n);
        line_end();
    }

    start_aps(pr.cpus);
    test_memory(&pr);
    mem_pattern_layout(pr.have_mem ? pr.mem_mib : 0, pr.lowmem_mib);

    say("echo?");
    n = read_line(line, sizeof(line), 60000);
    if (n < 0) {
        fails++;
        say("FAIL echo timeout");
    } else {
        line_start();
        put_str("echo ");
        put_mem(line, (size_t)n);
        line_end();
    }

    pic_init(0xFF, 0xFF);
    bool irq_ok = test_irq();

    if (fails == 0)
        say("PASS");
    else
        say("verdict FAIL");
    uart_drain_tx();
    write_done();

    /* Idle in hlt between commands when the UART interrupt is known to work. */
    if (irq_ok) {
        rx_irq_mode = true;
        uart_rx_irq(true);
    }
    command_loop();
}
