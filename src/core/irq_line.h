/* The output lines a device drives, as the device sees them: it sets a level
 * and does not know what is wired to the other end (the machine's interrupt
 * controllers, a request to the main thread, another device, a test).
 *
 * struct irq_line is one line: an interrupt, or a request line (reset,
 * power-off) whose receiver acts when it is asserted, driven with
 * irq_line_pulse(). struct irq_bank is one source's view of a set of
 * numbered lines, for a device that picks its line at run time (HPET
 * comparator routes, PIIX3 PIRQ routing): n names the line (a GSI).
 *
 * A line whose set is NULL is not connected: setting it does nothing. The
 * machine's ends are in core/machine.h (machine_irq_line and friends). */
#ifndef CORE_IRQ_LINE_H
#define CORE_IRQ_LINE_H

#include <stdbool.h>

struct irq_line {
    void (*set)(void *opaque, bool level);
    void *opaque;
};

struct irq_bank {
    void (*set)(void *opaque, unsigned n, bool level);
    void *opaque;
};

static inline void irq_line_set(const struct irq_line *line, bool level)
{
    if (line->set)
        line->set(line->opaque, level);
}

/* Asserts the line and releases it: one edge, or one request. */
static inline void irq_line_pulse(const struct irq_line *line)
{
    irq_line_set(line, true);
    irq_line_set(line, false);
}

static inline void irq_bank_set(const struct irq_bank *bank, unsigned n, bool level)
{
    if (bank->set)
        bank->set(bank->opaque, n, level);
}

#endif
