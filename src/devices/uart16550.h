/* 16550A UART model: registers, 16-byte FIFOs, interrupts and modem/line
 * status. Host-side I/O goes through a backend; the model never blocks. */
#ifndef DEVICES_UART16550_H
#define DEVICES_UART16550_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/irq_line.h"
#include "devices/device.h"

#define UART_FIFO_SIZE 16
#define UART_PORT_COUNT 8

struct uart_backend {
    /* Offers bytes the guest sent. Returns how many were taken; bytes not
     * taken stay in the transmit FIFO (so the guest sees THR not empty)
     * until the backend calls uart_tx_ready(). Called with the UART locked. */
    size_t (*tx)(void *opaque, const uint8_t *buf, size_t len);
    /* The receive FIFO has room again. Called with the UART locked. */
    void (*rx_space)(void *opaque);
    void *opaque;
};

struct uart16550 {
    struct device dev;
    pthread_mutex_t lock;
    struct uart_backend backend;
    struct irq_line irq;

    uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
    bool thre_pending; /* THR-empty interrupt latched, cleared by IIR read or THR write */
    bool irq_asserted;

    uint8_t rx_fifo[UART_FIFO_SIZE];
    unsigned rx_head, rx_count;
    uint8_t tx_fifo[UART_FIFO_SIZE];
    unsigned tx_count;
};

extern const struct io_ops uart16550_io_ops;

void uart16550_init(struct uart16550 *uart, const char *name, struct uart_backend backend,
                    struct irq_line irq);
/* Host to guest: queues up to the free FIFO space, returns bytes taken. */
size_t uart16550_receive(struct uart16550 *uart, const uint8_t *buf, size_t len);
/* Free receive FIFO space (bytes). */
size_t uart16550_rx_room(struct uart16550 *uart);
/* The backend can take bytes again: drain the transmit FIFO into it. */
void uart16550_tx_ready(struct uart16550 *uart);

/* Register offsets and bits, shared with tests. */
enum {
    UART_RBR_THR = 0,
    UART_IER = 1,
    UART_IIR_FCR = 2,
    UART_LCR = 3,
    UART_MCR = 4,
    UART_LSR = 5,
    UART_MSR = 6,
    UART_SCR = 7,
};
#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI 0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_RLSI 0x06
#define UART_IIR_TIMEOUT 0x0c
#define UART_IIR_FIFO_ON 0xc0
#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_LCR_DLAB 0x80
#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR 0x01
#define UART_LSR_OE 0x02
#define UART_LSR_BI 0x10
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_LSR_FIFOE 0x80
#define UART_MSR_DCTS 0x01
#define UART_MSR_DDSR 0x02
#define UART_MSR_TERI 0x04
#define UART_MSR_DDCD 0x08
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80

#endif
