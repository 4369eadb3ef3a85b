#include "devices/uart16550.h"

#include <string.h>

#include "common/log.h"
#include "common/sync.h"

static unsigned fifo_capacity(const struct uart16550 *u)
{
    return (u->fcr & UART_FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static unsigned rx_trigger_level(const struct uart16550 *u)
{
    static const unsigned levels[4] = {1, 4, 8, 14};
    return (u->fcr & UART_FCR_ENABLE) ? levels[u->fcr >> 6] : 1;
}

/* Highest-priority pending interrupt as an IIR identification, or NO_INT. */
static uint8_t pending_interrupt(const struct uart16550 *u)
{
    if ((u->ier & UART_IER_RLSI) && (u->lsr & (UART_LSR_OE | 0x0c | UART_LSR_BI)))
        return UART_IIR_RLSI;
    if ((u->ier & UART_IER_RDI) && u->rx_count > 0)
        return u->rx_count >= rx_trigger_level(u) ? UART_IIR_RDI : UART_IIR_TIMEOUT;
    if ((u->ier & UART_IER_THRI) && u->thre_pending)
        return UART_IIR_THRI;
    if ((u->ier & UART_IER_MSI) && (u->msr & 0x0f))
        return UART_IIR_MSI;
    return UART_IIR_NO_INT;
}

/* On a PC the UART's interrupt output reaches the PIC only through OUT2. */
static void update_irq(struct uart16550 *u)
{
    bool level = pending_interrupt(u) != UART_IIR_NO_INT && (u->mcr & UART_MCR_OUT2);
    if (level != u->irq_asserted) {
        u->irq_asserted = level;
        irq_line_set(&u->irq, level);
    }
}

static void update_lsr(struct uart16550 *u)
{
    if (u->rx_count)
        u->lsr |= UART_LSR_DR;
    else
        u->lsr &= (uint8_t)~UART_LSR_DR;
    if (u->tx_count == 0)
        u->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
    else
        u->lsr &= (uint8_t) ~(UART_LSR_THRE | UART_LSR_TEMT);
}

/* Modem status as the guest sees it: a connected null-modem line outside
 * loopback, the MCR outputs folded back in loopback. Sets delta bits. */
static void update_msr(struct uart16550 *u)
{
    uint8_t lines;
    if (u->mcr & UART_MCR_LOOP) {
        lines = (uint8_t)(((u->mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
                          ((u->mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
                          ((u->mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
                          ((u->mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0));
    } else {
        lines = UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD;
    }
    uint8_t old = u->msr & 0xf0;
    uint8_t changed = old ^ lines;
    uint8_t delta = u->msr & 0x0f;
    if (changed & UART_MSR_CTS)
        delta |= UART_MSR_DCTS;
    if (changed & UART_MSR_DSR)
        delta |= UART_MSR_DDSR;
    if (changed & UART_MSR_DCD)
        delta |= UART_MSR_DDCD;
    if ((old & UART_MSR_RI) && !(lines & UART_MSR_RI))
        delta |= UART_MSR_TERI; /* trailing edge of ring indicator */
    u->msr = lines | delta;
}

static void rx_push(struct uart16550 *u, uint8_t byte)
{
    if (u->rx_count >= fifo_capacity(u)) {
        u->lsr |= UART_LSR_OE;
        return;
    }
    u->rx_fifo[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = byte;
    u->rx_count++;
}

static void drain_tx(struct uart16550 *u)
{
    if (u->tx_count == 0)
        return;
    if (u->mcr & UART_MCR_LOOP) {
        for (unsigned i = 0; i < u->tx_count; i++)
            rx_push(u, u->tx_fifo[i]);
        u->tx_count = 0;
    } else if (u->backend.tx) {
        size_t taken = u->backend.tx(u->backend.opaque, u->tx_fifo, u->tx_count);
        if (taken > u->tx_count)
            taken = u->tx_count;
        memmove(u->tx_fifo, u->tx_fifo + taken, u->tx_count - taken);
        u->tx_count -= (unsigned)taken;
    } else {
        u->tx_count = 0; /* no backend: discard */
    }
    if (u->tx_count == 0)
        u->thre_pending = true;
}

static void reset_locked(struct uart16550 *u)
{
    u->ier = 0;
    u->lcr = 0;
    u->mcr = 0;
    u->lsr = UART_LSR_THRE | UART_LSR_TEMT;
    u->msr = 0;
    u->scr = 0;
    u->dll = 0x0c; /* 9600 baud */
    u->dlm = 0;
    u->fcr = 0;
    u->thre_pending = false;
    u->rx_head = u->rx_count = 0;
    u->tx_count = 0;
    update_msr(u);
    u->msr &= 0xf0; /* no deltas at power-on */
    update_irq(u);
}

static void fifo_control(struct uart16550 *u, uint8_t value)
{
    bool was_enabled = u->fcr & UART_FCR_ENABLE;
    bool enable = value & UART_FCR_ENABLE;
    if (enable != was_enabled || (value & UART_FCR_CLEAR_RX)) {
        u->rx_head = u->rx_count = 0;
        u->lsr &= (uint8_t)~UART_LSR_OE;
    }
    if (enable != was_enabled || (value & UART_FCR_CLEAR_TX))
        u->tx_count = 0;
    /* Only the enable and trigger bits are retained (no 64-byte mode). */
    u->fcr = enable ? (uint8_t)(value & 0xc1) : 0;
}

static uint64_t uart_read(void *opaque, uint64_t offset, unsigned size)
{
    struct uart16550 *u = opaque;
    uint8_t value = 0xff;
    if (size != 1)
        return ~0ull; /* the registers are byte wide */
    pthread_mutex_lock(&u->lock);
    switch (offset) {
    case UART_RBR_THR:
        if (u->lcr & UART_LCR_DLAB) {
            value = u->dll;
        } else {
            value = 0;
            if (u->rx_count) {
                bool was_full = u->rx_count >= fifo_capacity(u);
                value = u->rx_fifo[u->rx_head];
                u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
                u->rx_count--;
                if (was_full && u->backend.rx_space)
                    u->backend.rx_space(u->backend.opaque);
            }
        }
        break;
    case UART_IER:
        value = (u->lcr & UART_LCR_DLAB) ? u->dlm : u->ier;
        break;
    case UART_IIR_FCR: {
        uint8_t id = pending_interrupt(u);
        if (id == UART_IIR_THRI)
            u->thre_pending = false; /* reading IIR acknowledges THRE */
        value = id | ((u->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO_ON : 0);
        break;
    }
    case UART_LCR:
        value = u->lcr;
        break;
    case UART_MCR:
        value = u->mcr;
        break;
    case UART_LSR:
        update_lsr(u);
        value = u->lsr;
        u->lsr &= (uint8_t) ~(UART_LSR_OE | 0x0c | UART_LSR_BI); /* errors clear on read */
        break;
    case UART_MSR:
        value = u->msr;
        u->msr &= 0xf0;
        break;
    case UART_SCR:
        value = u->scr;
        break;
    }
    update_lsr(u);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return value;
}

static void uart_write(void *opaque, uint64_t offset, unsigned size, uint64_t value64)
{
    struct uart16550 *u = opaque;
    uint8_t value = (uint8_t)value64;
    if (size != 1)
        return;
    pthread_mutex_lock(&u->lock);
    switch (offset) {
    case UART_RBR_THR:
        if (u->lcr & UART_LCR_DLAB) {
            u->dll = value;
            break;
        }
        u->thre_pending = false;
        if (u->tx_count < fifo_capacity(u))
            u->tx_fifo[u->tx_count++] = value;
        /* else: the guest ignored THRE; the byte is lost as on hardware */
        drain_tx(u);
        break;
    case UART_IER:
        if (u->lcr & UART_LCR_DLAB) {
            u->dlm = value;
            break;
        }
        /* Enabling the THRE interrupt while THR is empty raises it at once. */
        if ((value & UART_IER_THRI) && !(u->ier & UART_IER_THRI) && u->tx_count == 0)
            u->thre_pending = true;
        u->ier = value & 0x0f;
        break;
    case UART_IIR_FCR:
        fifo_control(u, value);
        if (u->backend.rx_space)
            u->backend.rx_space(u->backend.opaque); /* capacity may have grown */
        break;
    case UART_LCR:
        u->lcr = value;
        break;
    case UART_MCR:
        u->mcr = value & 0x1f;
        update_msr(u);
        if (!(u->mcr & UART_MCR_LOOP)) {
            drain_tx(u);
            if (u->backend.rx_space)
                u->backend.rx_space(u->backend.opaque);
        }
        break;
    case UART_LSR:
    case UART_MSR:
        break; /* read-only (factory test modes not modelled) */
    case UART_SCR:
        u->scr = value;
        break;
    }
    update_lsr(u);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}

const struct io_ops uart16550_io_ops = {.read = uart_read, .write = uart_write};

static void uart_reset(struct device *dev)
{
    struct uart16550 *u = container_of(dev, struct uart16550, dev);
    pthread_mutex_lock(&u->lock);
    reset_locked(u);
    pthread_mutex_unlock(&u->lock);
}

static void uart_dump(struct device *dev)
{
    struct uart16550 *u = container_of(dev, struct uart16550, dev);
    if (!mutex_lock_within(&u->lock, 100)) {
        log_info("%s: lock held for 100 ms", dev->name);
        return;
    }
    update_lsr(u);
    log_info("%s: ier 0x%02x iir 0x%02x lcr 0x%02x mcr 0x%02x lsr 0x%02x fcr 0x%02x; tx fifo %u, "
             "rx fifo %u, THRE interrupt %s, irq line %s",
             dev->name, u->ier, pending_interrupt(u), u->lcr, u->mcr, u->lsr, u->fcr, u->tx_count,
             u->rx_count, u->thre_pending ? "latched" : "clear", u->irq_asserted ? "high" : "low");
    pthread_mutex_unlock(&u->lock);
}

static void uart_destroy(struct device *dev)
{
    struct uart16550 *u = container_of(dev, struct uart16550, dev);
    pthread_mutex_destroy(&u->lock);
}

/* The registers and both FIFOs (oldest byte first). The interrupt line is
 * not saved: it follows from the registers and is driven again on load. */
static int uart_state(struct device *dev, struct snap *s)
{
    struct uart16550 *u = container_of(dev, struct uart16550, dev);
    pthread_mutex_lock(&u->lock);
    uint8_t rx[UART_FIFO_SIZE] = {0};
    uint8_t rx_count = (uint8_t)u->rx_count, tx_count = (uint8_t)u->tx_count;
    for (unsigned i = 0; i < u->rx_count; i++)
        rx[i] = u->rx_fifo[(u->rx_head + i) % UART_FIFO_SIZE];
    snap_u8(s, "ier", &u->ier);
    snap_u8(s, "lcr", &u->lcr);
    snap_u8(s, "mcr", &u->mcr);
    snap_u8(s, "lsr", &u->lsr);
    snap_u8(s, "msr", &u->msr);
    snap_u8(s, "scr", &u->scr);
    snap_u8(s, "dll", &u->dll);
    snap_u8(s, "dlm", &u->dlm);
    snap_u8(s, "fcr", &u->fcr);
    snap_bool(s, "thre_pending", &u->thre_pending);
    snap_u8(s, "rx_count", &rx_count);
    snap_bytes(s, "rx_fifo", rx, sizeof(rx));
    snap_u8(s, "tx_count", &tx_count);
    snap_bytes(s, "tx_fifo", u->tx_fifo, sizeof(u->tx_fifo));
    if (snap_loading(s) && !snap_error(s)) {
        snap_check(s, !(u->ier & ~0x0fu), "ier", "reserved bits set");
        snap_check(s, !(u->mcr & ~0x1fu), "mcr", "reserved bits set");
        snap_check(s, (u->fcr & ~0xc1u) == 0 && (u->fcr & UART_FCR_ENABLE || u->fcr == 0), "fcr",
                   "not a FIFO control value this UART keeps");
        /* Capacity depends on the loaded FCR: 16 bytes with FIFOs, else 1. */
        snap_check(s, rx_count <= fifo_capacity(u), "rx_count", "more than the FIFO holds");
        snap_check(s, tx_count <= fifo_capacity(u), "tx_count", "more than the FIFO holds");
    }
    if (snap_loading(s) && !snap_error(s)) {
        memcpy(u->rx_fifo, rx, sizeof(rx));
        u->rx_head = 0;
        u->rx_count = rx_count;
        u->tx_count = tx_count;
        /* Bytes the saved backend had not taken go out now. */
        if (!(u->mcr & UART_MCR_LOOP))
            drain_tx(u);
        update_lsr(u);
        update_irq(u);
        if (u->backend.rx_space && rx_count < fifo_capacity(u))
            u->backend.rx_space(u->backend.opaque);
    }
    pthread_mutex_unlock(&u->lock);
    return snap_error(s);
}

static const struct device_ops uart_device_ops = {
    .reset = uart_reset,
    .dump = uart_dump,
    .state = uart_state,
    .kind = "uart16550",
    .state_version = 1,
    .destroy = uart_destroy,
};

void uart16550_init(struct uart16550 *u, const char *name, struct uart_backend backend,
                    struct irq_line irq)
{
    memset(u, 0, sizeof(*u));
    u->dev.name = name;
    u->dev.ops = &uart_device_ops;
    u->backend = backend;
    u->irq = irq;
    pthread_mutex_init(&u->lock, NULL);
    reset_locked(u);
}

size_t uart16550_rx_room(struct uart16550 *u)
{
    pthread_mutex_lock(&u->lock);
    size_t room = (u->mcr & UART_MCR_LOOP) ? 0 : fifo_capacity(u) - u->rx_count;
    pthread_mutex_unlock(&u->lock);
    return room;
}

size_t uart16550_receive(struct uart16550 *u, const uint8_t *buf, size_t len)
{
    size_t taken = 0;
    pthread_mutex_lock(&u->lock);
    /* In loopback the receiver is disconnected from the line. */
    if (!(u->mcr & UART_MCR_LOOP)) {
        while (taken < len && u->rx_count < fifo_capacity(u))
            rx_push(u, buf[taken++]);
    }
    update_lsr(u);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return taken;
}

void uart16550_tx_ready(struct uart16550 *u)
{
    pthread_mutex_lock(&u->lock);
    if (!(u->mcr & UART_MCR_LOOP))
        drain_tx(u);
    update_lsr(u);
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}
