/* UART model: registers, FIFOs, interrupts, backpressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "devices/uart16550.h"
#include "support/state.h"

struct fake_host {
    uint8_t sent[256];
    size_t sent_len;
    size_t accept_limit; /* bytes the backend takes before refusing */
    int rx_space_calls;
    bool irq;
    int irq_edges;
};

static size_t fake_tx(void *opaque, const uint8_t *buf, size_t len)
{
    struct fake_host *h = opaque;
    size_t room = h->accept_limit - h->sent_len;
    size_t n = len < room ? len : room;
    memcpy(h->sent + h->sent_len, buf, n);
    h->sent_len += n;
    return n;
}

static void fake_rx_space(void *opaque)
{
    ((struct fake_host *)opaque)->rx_space_calls++;
}

static void fake_irq(void *opaque, bool level)
{
    struct fake_host *h = opaque;
    if (level && !h->irq)
        h->irq_edges++;
    h->irq = level;
}

static struct uart16550 uart;
static struct fake_host host;

static int setup(void **state)
{
    memset(&host, 0, sizeof(host));
    host.accept_limit = sizeof(host.sent);
    uart16550_init(&uart, "test", (struct uart_backend){fake_tx, fake_rx_space, &host},
                   (struct irq_line){fake_irq, &host});
    return 0;
}

static int teardown(void **state)
{
    uart.dev.ops->destroy(&uart.dev);
    return 0;
}

static uint8_t rd(unsigned reg)
{
    return (uint8_t)uart16550_io_ops.read(&uart, reg, 1);
}

static void wr(unsigned reg, uint8_t v)
{
    uart16550_io_ops.write(&uart, reg, 1, v);
}

static void test_power_on_state(void **state)
{
    assert_int_equal(rd(UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
    assert_int_equal(rd(UART_IIR_FCR), UART_IIR_NO_INT);
    assert_int_equal(rd(UART_IER), 0);
    /* A connected line: CTS, DSR, DCD. */
    assert_int_equal(rd(UART_MSR), UART_MSR_CTS | UART_MSR_DSR | UART_MSR_DCD);
}

static void test_scratch_and_divisor_latch(void **state)
{
    wr(UART_SCR, 0xa5);
    assert_int_equal(rd(UART_SCR), 0xa5);
    wr(UART_LCR, UART_LCR_DLAB | 0x03);
    wr(UART_RBR_THR, 0x01);
    wr(UART_IER, 0x00);
    assert_int_equal(rd(UART_RBR_THR), 0x01);
    assert_int_equal(rd(UART_IER), 0x00);
    wr(UART_LCR, 0x03);
    assert_int_equal(host.sent_len, 0); /* divisor writes are not data */
    assert_int_equal(rd(UART_LCR), 0x03);
}

static void test_transmit_reaches_backend(void **state)
{
    const char *msg = "hello";
    for (size_t i = 0; i < strlen(msg); i++)
        wr(UART_RBR_THR, (uint8_t)msg[i]);
    assert_int_equal(host.sent_len, 5);
    assert_memory_equal(host.sent, msg, 5);
    assert_true(rd(UART_LSR) & UART_LSR_THRE);
}

static void test_backpressure_holds_thre(void **state)
{
    host.accept_limit = 2;
    wr(UART_IIR_FCR, UART_FCR_ENABLE);
    for (int i = 0; i < 5; i++)
        wr(UART_RBR_THR, (uint8_t)('a' + i));
    assert_int_equal(host.sent_len, 2);
    assert_false(rd(UART_LSR) & UART_LSR_THRE); /* FIFO holds the rest */
    host.accept_limit = 100;
    uart16550_tx_ready(&uart);
    assert_int_equal(host.sent_len, 5);
    assert_memory_equal(host.sent, "abcde", 5);
    assert_true(rd(UART_LSR) & UART_LSR_THRE);
}

static void test_receive_fifo_and_room(void **state)
{
    const uint8_t data[20] = "0123456789abcdefghij";
    /* FIFO disabled: one byte of holding register. */
    assert_int_equal(uart16550_receive(&uart, data, 20), 1);
    assert_int_equal(rd(UART_RBR_THR), '0');
    wr(UART_IIR_FCR, UART_FCR_ENABLE);
    assert_int_equal(uart16550_rx_room(&uart), UART_FIFO_SIZE);
    assert_int_equal(uart16550_receive(&uart, data, 20), UART_FIFO_SIZE);
    assert_true(rd(UART_LSR) & UART_LSR_DR);
    int before = host.rx_space_calls;
    for (int i = 0; i < UART_FIFO_SIZE; i++)
        assert_int_equal(rd(UART_RBR_THR), data[i]);
    assert_true(host.rx_space_calls > before);
    assert_false(rd(UART_LSR) & UART_LSR_DR);
}

static void test_rx_interrupt_needs_out2(void **state)
{
    wr(UART_IER, UART_IER_RDI);
    uint8_t b = 'x';
    uart16550_receive(&uart, &b, 1);
    assert_false(host.irq);
    assert_int_equal(rd(UART_IIR_FCR) & 0x0f, UART_IIR_RDI);
    wr(UART_MCR, UART_MCR_OUT2 | UART_MCR_DTR | UART_MCR_RTS);
    assert_true(host.irq);
    assert_int_equal(rd(UART_RBR_THR), 'x');
    assert_false(host.irq);
    assert_int_equal(rd(UART_IIR_FCR) & 0x0f, UART_IIR_NO_INT);
}

static void test_fifo_trigger_and_timeout(void **state)
{
    wr(UART_MCR, UART_MCR_OUT2);
    wr(UART_IIR_FCR, UART_FCR_ENABLE | 0x80); /* trigger at 8 */
    wr(UART_IER, UART_IER_RDI);
    uint8_t data[8] = "abcdefgh";
    uart16550_receive(&uart, data, 3);
    assert_int_equal(rd(UART_IIR_FCR), UART_IIR_FIFO_ON | UART_IIR_TIMEOUT);
    uart16550_receive(&uart, data + 3, 5);
    assert_int_equal(rd(UART_IIR_FCR), UART_IIR_FIFO_ON | UART_IIR_RDI);
    assert_true(host.irq);
}

static void test_thre_interrupt_on_enable_and_iir_ack(void **state)
{
    wr(UART_MCR, UART_MCR_OUT2);
    wr(UART_IER, UART_IER_THRI);
    assert_true(host.irq); /* THR already empty: raised at once */
    assert_int_equal(rd(UART_IIR_FCR) & 0x0f, UART_IIR_THRI);
    assert_false(host.irq); /* reading IIR acknowledged it */
    assert_int_equal(rd(UART_IIR_FCR) & 0x0f, UART_IIR_NO_INT);
    wr(UART_RBR_THR, 'z'); /* drains immediately, THRE again */
    assert_true(host.irq);
}

static void test_loopback(void **state)
{
    /* Linux's 8250 probe: MCR = LOOP|OUT2|RTS, expects MSR top nibble DCD|CTS. */
    wr(UART_MCR, UART_MCR_LOOP | UART_MCR_OUT2 | UART_MCR_RTS);
    assert_int_equal(rd(UART_MSR) & 0xf0, UART_MSR_DCD | UART_MSR_CTS);
    wr(UART_RBR_THR, 0x55);
    assert_int_equal(host.sent_len, 0);
    assert_true(rd(UART_LSR) & UART_LSR_DR);
    assert_int_equal(rd(UART_RBR_THR), 0x55);
    uint8_t b = 1;
    assert_int_equal(uart16550_receive(&uart, &b, 1), 0); /* line disconnected */
    wr(UART_MCR, 0);
}

static void test_overrun_sets_lsr_and_clears_on_read(void **state)
{
    wr(UART_MCR, UART_MCR_LOOP);
    wr(UART_RBR_THR, 1);
    wr(UART_RBR_THR, 2); /* 1-byte holding register overruns */
    uint8_t lsr = rd(UART_LSR);
    assert_true(lsr & UART_LSR_OE);
    assert_false(rd(UART_LSR) & UART_LSR_OE);
}

static void test_fcr_clears_and_iir_reports_fifo(void **state)
{
    wr(UART_IIR_FCR, UART_FCR_ENABLE);
    assert_int_equal(rd(UART_IIR_FCR) & 0xc0, 0xc0);
    uint8_t d[4] = "abcd";
    uart16550_receive(&uart, d, 4);
    wr(UART_IIR_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
    assert_false(rd(UART_LSR) & UART_LSR_DR);
    wr(UART_IIR_FCR, 0);
    assert_int_equal(rd(UART_IIR_FCR) & 0xc0, 0);
}

static void test_hostile_accesses(void **state)
{
    /* Wide accesses and every register/value: no crash, byte registers only. */
    assert_int_equal(uart16550_io_ops.read(&uart, 0, 4), ~0ull);
    uart16550_io_ops.write(&uart, 0, 2, 0xffff);
    assert_int_equal(host.sent_len, 0);
    for (unsigned reg = 0; reg < 8; reg++)
        for (unsigned v = 0; v < 256; v++) {
            wr(reg, (uint8_t)v);
            (void)rd(reg);
        }
}

static void test_reset_restores_power_on(void **state)
{
    wr(UART_IER, 0x0f);
    wr(UART_MCR, UART_MCR_OUT2);
    wr(UART_LCR, 0x83);
    uart.dev.ops->reset(&uart.dev);
    assert_int_equal(rd(UART_IER), 0);
    assert_int_equal(rd(UART_LCR), 0);
    assert_false(host.irq);
}

/* A UART mid-conversation: FIFOs on, divisor set, bytes waiting in both
 * directions (the host refusing output), the receive timeout interrupt up.
 * A fresh UART on a host in the same condition takes the state and carries
 * on: same registers, same bytes in order, the line raised, and the held
 * output goes out once its host accepts. */
static void test_state_roundtrip_and_refusals(void **state)
{
    wr(UART_LCR, UART_LCR_DLAB);
    wr(UART_RBR_THR, 0x01);
    wr(UART_IER, 0x00);
    wr(UART_LCR, 0x03);
    wr(UART_IIR_FCR, UART_FCR_ENABLE | 0x80); /* trigger level 8 */
    wr(UART_IER, UART_IER_RDI | UART_IER_THRI);
    wr(UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
    wr(UART_SCR, 0x5a);
    host.accept_limit = 0;
    wr(UART_RBR_THR, 'x');
    wr(UART_RBR_THR, 'y');
    wr(UART_RBR_THR, 'z');
    const uint8_t in[5] = {'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(uart16550_receive(&uart, in, sizeof(in)), 5);
    assert_true(host.irq);

    struct fake_host host_b = {.accept_limit = 0};
    struct uart16550 b;
    uart16550_init(&b, "test", (struct uart_backend){fake_tx, fake_rx_space, &host_b},
                   (struct irq_line){fake_irq, &host_b});
    assert_state_roundtrip(&uart.dev, &b.dev);
    assert_true(host_b.irq);
    assert_int_equal(host_b.irq_edges, 1);
    assert_int_equal(uart16550_io_ops.read(&b, UART_IIR_FCR, 1),
                     UART_IIR_TIMEOUT | UART_IIR_FIFO_ON);
    assert_int_equal(uart16550_io_ops.read(&b, UART_LCR, 1), 0x03);
    assert_int_equal(uart16550_io_ops.read(&b, UART_SCR, 1), 0x5a);
    assert_int_equal(uart16550_io_ops.read(&b, UART_LSR, 1), UART_LSR_DR);
    for (unsigned i = 0; i < sizeof(in); i++)
        assert_int_equal(uart16550_io_ops.read(&b, UART_RBR_THR, 1), in[i]);
    assert_false(host_b.irq);
    host_b.accept_limit = sizeof(host_b.sent);
    uart16550_tx_ready(&b);
    assert_int_equal(host_b.sent_len, 3);
    assert_memory_equal(host_b.sent, "xyz", 3);
    assert_true(host_b.irq); /* THR empty again, THRI enabled */
    uart16550_io_ops.write(&b, UART_LCR, 1, UART_LCR_DLAB);
    assert_int_equal(uart16550_io_ops.read(&b, UART_RBR_THR, 1), 0x01);

    assert_state_refusals(&uart.dev, &b.dev);
    const uint8_t too_many = UART_FIFO_SIZE + 1, bad_fcr = UART_FCR_CLEAR_RX, bad_ier = 0x10;
    assert_state_field_refused(&uart.dev, &b.dev, "rx_count", &too_many, 1);
    assert_state_field_refused(&uart.dev, &b.dev, "tx_count", &too_many, 1);
    assert_state_field_refused(&uart.dev, &b.dev, "fcr", &bad_fcr, 1);
    assert_state_field_refused(&uart.dev, &b.dev, "ier", &bad_ier, 1);
    /* Without FIFOs the receiver holds one byte. */
    wr(UART_IIR_FCR, 0);
    assert_int_equal(uart16550_receive(&uart, in, 1), 1);
    const uint8_t two = 2;
    assert_state_field_refused(&uart.dev, &b.dev, "rx_count", &two, 1);
    b.dev.ops->destroy(&b.dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_on_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scratch_and_divisor_latch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transmit_reaches_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_holds_thre, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_fifo_and_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_interrupt_needs_out2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_trigger_and_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_interrupt_on_enable_and_iir_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overrun_sets_lsr_and_clears_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fcr_clears_and_iir_reports_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_restores_power_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
