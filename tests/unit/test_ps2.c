/* i8042 PS/2 controller model: controller commands, keyboard and mouse
 * protocol, scan code translation, interrupts, reset line, hostile I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/ps2.h"
#include "support/state.h"

struct line {
    bool level;
    int raises;
};

static void line_set(void *opaque, bool level)
{
    struct line *l = opaque;
    if (level && !l->level)
        l->raises++;
    l->level = level;
}

static int reset_requests;

static void count_reset(void *opaque, bool level)
{
    if (level)
        reset_requests++;
}

static struct ps2 ps2;
static struct line kbd_line, aux_line;

static int setup(void **state)
{
    memset(&kbd_line, 0, sizeof(kbd_line));
    memset(&aux_line, 0, sizeof(aux_line));
    reset_requests = 0;
    ps2_init(&ps2, "ps2", (struct irq_line){line_set, &kbd_line},
             (struct irq_line){line_set, &aux_line}, (struct irq_line){count_reset, NULL});
    return 0;
}

static int teardown(void **state)
{
    ps2.dev.ops->destroy(&ps2.dev);
    return 0;
}

static uint8_t status(void)
{
    return (uint8_t)ps2_ctrl_io_ops.read(&ps2, 0, 1);
}

static void command(uint8_t value)
{
    ps2_ctrl_io_ops.write(&ps2, 0, 1, value);
}

static void data_out(uint8_t value)
{
    ps2_data_io_ops.write(&ps2, 0, 1, value);
}

static uint8_t data_in(void)
{
    return (uint8_t)ps2_data_io_ops.read(&ps2, 0, 1);
}

/* Reads the expected bytes, each announced by OBF (and AUX as given). */
static void expect_bytes(bool aux, const uint8_t *bytes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint8_t st = status();
        assert_true(st & PS2_STATUS_OBF);
        assert_int_equal(!!(st & PS2_STATUS_AUX), aux);
        assert_int_equal(data_in(), bytes[i]);
    }
    assert_false(status() & PS2_STATUS_OBF);
}

#define EXPECT(aux, ...)                                                                           \
    do {                                                                                           \
        const uint8_t expected_[] = {__VA_ARGS__};                                                 \
        expect_bytes(aux, expected_, sizeof(expected_));                                           \
    } while (0)

static void set_config(uint8_t config)
{
    command(0x60);
    data_out(config);
}

static uint8_t read_config(void)
{
    command(0x20);
    assert_true(status() & PS2_STATUS_OBF);
    return data_in();
}

static void test_power_on(void **state)
{
    assert_int_equal(status(), PS2_STATUS_UNLOCKED | PS2_STATUS_CMD);
    assert_int_equal(read_config(), PS2_CFG_KBD_INT | PS2_CFG_AUX_INT);
    assert_false(status() & PS2_STATUS_OBF);
    command(0xd0);
    EXPECT(false, 0xcf); /* reset released, A20 on */
    command(0xc0);
    EXPECT(false, 0x80);
}

static void test_self_tests(void **state)
{
    assert_false(status() & PS2_STATUS_SYS);
    command(0xaa);
    EXPECT(false, 0x55);
    assert_true(status() & PS2_STATUS_SYS);
    command(0xab);
    EXPECT(false, 0x00);
    command(0xa9);
    EXPECT(false, 0x00);
}

static void test_config_byte_and_a2(void **state)
{
    command(0x60);
    assert_true(status() & PS2_STATUS_CMD);
    data_out(0x65);
    assert_false(status() & PS2_STATUS_CMD);
    assert_int_equal(read_config(), 0x65);
    assert_true(status() & PS2_STATUS_SYS); /* status mirrors config bit 2 */
    command(0xad);
    assert_int_equal(read_config() & PS2_CFG_KBD_DISABLE, PS2_CFG_KBD_DISABLE);
    command(0xae);
    assert_int_equal(read_config() & PS2_CFG_KBD_DISABLE, 0);
    command(0xa7); /* Linux's AUX bit-assignment test */
    assert_int_equal(read_config() & PS2_CFG_AUX_DISABLE, PS2_CFG_AUX_DISABLE);
    command(0xa8);
    assert_int_equal(read_config() & PS2_CFG_AUX_DISABLE, 0);
    /* Controller RAM beyond the configuration byte. */
    command(0x7f);
    data_out(0x99);
    command(0x3f);
    EXPECT(false, 0x99);
}

static void test_identify_and_translation_of_id(void **state)
{
    data_out(0xf2);
    EXPECT(false, 0xfa, 0xab, 0x83);
    set_config(PS2_CFG_KBD_INT | PS2_CFG_TRANSLATE);
    data_out(0xf2);
    EXPECT(false, 0xfa, 0xab, 0x41); /* what Linux's atkbd expects when translated */
}

static void test_scan_set_selection(void **state)
{
    data_out(0xf0);
    data_out(0x00);
    EXPECT(false, 0xfa, 0xfa, 0x02);
    data_out(0xf0);
    data_out(0x01);
    EXPECT(false, 0xfa, 0xfa);
    data_out(0xf0);
    data_out(0x00);
    EXPECT(false, 0xfa, 0xfa, 0x01);
    data_out(0xf0);
    data_out(0x03); /* set 3 is refused, set 1 stays */
    EXPECT(false, 0xfa, 0xfe);
    data_out(0xf0);
    data_out(0x02);
    EXPECT(false, 0xfa, 0xfa);
    set_config(PS2_CFG_TRANSLATE);
    data_out(0xf0);
    data_out(0x00);
    EXPECT(false, 0xfa, 0xfa, 0x41); /* set 2, as the host sees it translated */
}

static void test_injected_scancodes(void **state)
{
    const uint8_t a_make[] = {0x1c}, a_break[] = {0xf0, 0x1c};
    const uint8_t up_make[] = {0xe0, 0x75}, up_break[] = {0xe0, 0xf0, 0x75};
    set_config(PS2_CFG_TRANSLATE);
    assert_true(ps2_kbd_inject_scancode(&ps2, a_make, sizeof(a_make)));
    assert_true(ps2_kbd_inject_scancode(&ps2, a_break, sizeof(a_break)));
    assert_true(ps2_kbd_inject_scancode(&ps2, up_make, sizeof(up_make)));
    assert_true(ps2_kbd_inject_scancode(&ps2, up_break, sizeof(up_break)));
    EXPECT(false, 0x1e, 0x9e, 0xe0, 0x48, 0xe0, 0xc8);

    set_config(0); /* raw set 2 */
    assert_true(ps2_kbd_inject_scancode(&ps2, up_break, sizeof(up_break)));
    EXPECT(false, 0xe0, 0xf0, 0x75);

    data_out(0xf0); /* the keyboard itself in set 1 */
    data_out(0x01);
    EXPECT(false, 0xfa, 0xfa);
    assert_true(ps2_kbd_inject_scancode(&ps2, a_break, sizeof(a_break)));
    EXPECT(false, 0x9e);
}

static void test_queue_bound_and_scanning(void **state)
{
    const uint8_t key[] = {0x1c};
    int accepted = 0;
    for (int i = 0; i < 40; i++)
        accepted += ps2_kbd_inject_scancode(&ps2, key, 1);
    /* 16 queued plus the one already in the output buffer. */
    assert_int_equal(accepted, PS2_QUEUE_SIZE + 1);
    for (int i = 0; i < accepted; i++)
        assert_int_equal(data_in(), 0x1c);
    assert_false(status() & PS2_STATUS_OBF);

    data_out(0xf5); /* disable scanning */
    EXPECT(false, 0xfa);
    assert_false(ps2_kbd_inject_scancode(&ps2, key, 1));
    assert_false(status() & PS2_STATUS_OBF);
    data_out(0xf4);
    EXPECT(false, 0xfa);
    assert_true(ps2_kbd_inject_scancode(&ps2, key, 1));
    EXPECT(false, 0x1c);
}

static void test_keyboard_commands(void **state)
{
    data_out(0xff);
    EXPECT(false, 0xfa, 0xaa);
    data_out(0xee);
    EXPECT(false, 0xee);
    data_out(0xed);
    data_out(0x07);
    EXPECT(false, 0xfa, 0xfa);
    assert_int_equal(ps2.kbd_leds, 7);
    data_out(0xf3);
    data_out(0x20);
    EXPECT(false, 0xfa, 0xfa);
    data_out(0xf6);
    EXPECT(false, 0xfa);
    data_out(0x01); /* unknown: resend */
    EXPECT(false, 0xfe);
    data_out(0xfe); /* resend the last byte */
    EXPECT(false, 0xfe);
    data_out(0xf2);
    EXPECT(false, 0xfa, 0xab, 0x83);
    data_out(0xfe);
    EXPECT(false, 0x83);
}

static void test_keyboard_irq(void **state)
{
    const uint8_t key[] = {0x1c}, key2[] = {0x32};
    set_config(PS2_CFG_KBD_INT);
    ps2_kbd_inject_scancode(&ps2, key, 1);
    ps2_kbd_inject_scancode(&ps2, key2, 1);
    assert_true(kbd_line.level);
    assert_int_equal(kbd_line.raises, 1);
    assert_int_equal(data_in(), 0x1c);
    assert_true(kbd_line.level);
    assert_int_equal(kbd_line.raises, 2); /* a fresh edge for the next byte */
    assert_int_equal(data_in(), 0x32);
    assert_false(kbd_line.level);
    assert_false(aux_line.level);

    set_config(0); /* interrupts off: data only */
    ps2_kbd_inject_scancode(&ps2, key, 1);
    assert_false(kbd_line.level);
    assert_true(status() & PS2_STATUS_OBF);
    set_config(PS2_CFG_KBD_INT); /* enabling with data waiting raises it */
    assert_true(kbd_line.level);
    assert_int_equal(data_in(), 0x1c);

    command(0xad); /* interface disabled: bytes wait in the keyboard */
    ps2_kbd_inject_scancode(&ps2, key2, 1);
    assert_false(status() & PS2_STATUS_OBF);
    assert_false(kbd_line.level);
    command(0xae);
    assert_true(kbd_line.level);
    EXPECT(false, 0x32);
}

static void test_mouse(void **state)
{
    set_config(PS2_CFG_KBD_INT | PS2_CFG_AUX_INT);
    command(0xd4);
    data_out(0xff);
    assert_true(aux_line.level);
    assert_false(kbd_line.level);
    EXPECT(true, 0xfa, 0xaa, 0x00);
    assert_false(aux_line.level);
    assert_true(aux_line.raises >= 3);
    command(0xd4);
    data_out(0xf2);
    EXPECT(true, 0xfa, 0x00); /* plain PS/2 mouse */
    command(0xd4);
    data_out(0xf3);
    command(0xd4);
    data_out(200);
    EXPECT(true, 0xfa, 0xfa);
    command(0xd4);
    data_out(0xf4);
    EXPECT(true, 0xfa);
    command(0xd4);
    data_out(0xe9);
    EXPECT(true, 0xfa, 0x20, 0x02, 200);
    command(0xd4);
    data_out(0xe1); /* a vendor probe: not this mouse */
    EXPECT(true, 0xfe);
    command(0xd4);
    data_out(0xee); /* wrap mode echoes */
    command(0xd4);
    data_out(0x42);
    command(0xd4);
    data_out(0xec);
    EXPECT(true, 0xfa, 0x42, 0xfa);
    command(0xd4);
    data_out(0xeb);
    EXPECT(true, 0xfa, 0x08, 0x00, 0x00);
}

static void test_aux_loopback_for_linux_probe(void **state)
{
    set_config(PS2_CFG_AUX_INT | PS2_CFG_KBD_DISABLE);
    command(0xd3);
    data_out(0x5a);
    assert_true(aux_line.level);
    EXPECT(true, 0x5a);
    command(0xd2);
    data_out(0xa5);
    EXPECT(false, 0xa5);
}

static void test_reset_line(void **state)
{
    command(0xfe);
    assert_int_equal(reset_requests, 1);
    command(0xf0); /* pulses bits 0-3, including reset */
    assert_int_equal(reset_requests, 2);
    command(0xff);
    command(0xf1);
    command(0xfd);
    assert_int_equal(reset_requests, 2);
    command(0xd1);
    data_out(0x03); /* A20 on, reset released */
    assert_int_equal(reset_requests, 2);
    command(0xd1);
    data_out(0x02); /* bit 0 low: reset */
    assert_int_equal(reset_requests, 3);
    command(0xd0);
    EXPECT(false, 0x02);
}

static void test_device_reset(void **state)
{
    const uint8_t key[] = {0x1c};
    set_config(0x47);
    command(0xd1);
    ps2_kbd_inject_scancode(&ps2, key, 1);
    assert_true(kbd_line.level);
    ps2.dev.ops->reset(&ps2.dev);
    assert_false(kbd_line.level);
    assert_int_equal(status(), PS2_STATUS_UNLOCKED | PS2_STATUS_CMD);
    data_out(0xf2); /* no pending D1: goes to the keyboard */
    EXPECT(false, 0xfa, 0xab, 0x83);
    assert_int_equal(reset_requests, 0);
}

static void test_bad_sizes(void **state)
{
    assert_int_equal(ps2_data_io_ops.read(&ps2, 0, 2), ~0ull);
    assert_int_equal(ps2_ctrl_io_ops.read(&ps2, 0, 4), ~0ull);
    ps2_ctrl_io_ops.write(&ps2, 0, 2, 0xfe);
    ps2_data_io_ops.write(&ps2, 0, 8, 0xff);
    assert_int_equal(reset_requests, 0);
    assert_false(status() & PS2_STATUS_OBF);
}

static void drain(void)
{
    for (int i = 0; i < 64 && (status() & PS2_STATUS_OBF); i++)
        (void)data_in();
    assert_false(status() & PS2_STATUS_OBF);
}

static void test_hostile_accesses(void **state)
{
    static const unsigned sizes[] = {1, 2, 4, 8};
    /* Every command with every data byte. */
    for (unsigned cmd = 0; cmd < 256; cmd++) {
        for (unsigned value = 0; value < 256; value++) {
            command((uint8_t)cmd);
            data_out((uint8_t)value);
            (void)status();
            (void)data_in();
        }
        set_config(PS2_CFG_KBD_INT | PS2_CFG_AUX_INT);
        drain();
    }
    srand(99);
    for (int i = 0; i < 300000; i++) {
        unsigned size = sizes[rand() % 4];
        uint64_t value = (uint64_t)rand() << 31 ^ (uint64_t)rand();
        switch (rand() % 5) {
        case 0:
            ps2_ctrl_io_ops.write(&ps2, 0, size, value);
            break;
        case 1:
            ps2_data_io_ops.write(&ps2, 0, size, value);
            break;
        case 2:
            (void)ps2_ctrl_io_ops.read(&ps2, 0, size);
            break;
        case 3:
            (void)ps2_data_io_ops.read(&ps2, 0, size);
            break;
        case 4: {
            uint8_t codes[4] = {(uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand()};
            ps2_kbd_inject_scancode(&ps2, codes, (size_t)(rand() % 5));
            break;
        }
        }
        assert_true(ps2.kbd_queue.count <= PS2_QUEUE_SIZE);
        assert_true(ps2.aux_queue.count <= PS2_QUEUE_SIZE);
        assert_true(ps2.ctrl_count <= PS2_CTRL_QUEUE_SIZE);
        /* Lines only while a byte of their kind waits. */
        assert_true(!kbd_line.level || ((status() & PS2_STATUS_OBF) && !ps2.obuf_aux));
        assert_true(!aux_line.level || ((status() & PS2_STATUS_OBF) && ps2.obuf_aux));
    }
    /* Bounded: everything pending drains, then the controller still works. */
    set_config(PS2_CFG_KBD_INT | PS2_CFG_AUX_INT);
    drain();
    command(0xaa);
    EXPECT(false, 0x55);
    data_out(0xff);
    EXPECT(false, 0xfa, 0xaa);
}

/* A controller mid-conversation: translation on, keyboard LEDs set and a
 * typematic command waiting for its parameter, the mouse enabled and its
 * status reply queued behind the keyboard's acks, a byte in the output
 * buffer with IRQ 1 up. A fresh controller takes the state and the guest
 * reads on: the same bytes in the same order, the same lines, and the
 * waiting command takes the next byte. */
static void test_state_roundtrip_and_refusals(void **state)
{
    command(0x60);
    data_out(PS2_CFG_KBD_INT | PS2_CFG_AUX_INT | PS2_CFG_SYS | PS2_CFG_TRANSLATE);
    data_out(0xed);
    data_out(0x05);
    data_out(0xf3); /* typematic: parameter pending */
    command(0xd4);
    data_out(0xf4);
    command(0xd4);
    data_out(0xe9);
    assert_true(kbd_line.level);

    struct line kbd_b = {0}, aux_b = {0};
    struct ps2 b;
    ps2_init(&b, "ps2", (struct irq_line){line_set, &kbd_b}, (struct irq_line){line_set, &aux_b},
             (struct irq_line){count_reset, NULL});
    assert_state_roundtrip(&ps2.dev, &b.dev);
    assert_true(kbd_b.level);
    assert_false(aux_b.level);
    const uint8_t kbd_bytes[] = {0xfa, 0xfa, 0xfa};
    const uint8_t aux_bytes[] = {0xfa, 0xfa, 0x20, 0x02, 100};
    for (size_t i = 0; i < sizeof(kbd_bytes); i++) {
        uint8_t st = (uint8_t)ps2_ctrl_io_ops.read(&b, 0, 1);
        assert_int_equal(st & (PS2_STATUS_OBF | PS2_STATUS_AUX | PS2_STATUS_SYS),
                         PS2_STATUS_OBF | PS2_STATUS_SYS);
        assert_int_equal(ps2_data_io_ops.read(&b, 0, 1), kbd_bytes[i]);
    }
    assert_true(aux_b.level);
    for (size_t i = 0; i < sizeof(aux_bytes); i++) {
        assert_true(ps2_ctrl_io_ops.read(&b, 0, 1) & PS2_STATUS_AUX);
        assert_int_equal(ps2_data_io_ops.read(&b, 0, 1), aux_bytes[i]);
    }
    assert_false(aux_b.level);
    assert_int_equal(kbd_b.raises, 3);
    ps2_data_io_ops.write(&b, 0, 1, 0x20); /* the typematic parameter */
    assert_int_equal(b.kbd_typematic, 0x20);
    assert_int_equal(ps2_data_io_ops.read(&b, 0, 1), 0xfa);

    assert_state_refusals(&ps2.dev, &b.dev);
    const uint8_t too_many = PS2_QUEUE_SIZE + 1, bad_command = 0x12, bad_set = 3, five = 5;
    assert_state_field_refused(&ps2.dev, &b.dev, "kbd.queue.count", &too_many, 1);
    assert_state_field_refused(&ps2.dev, &b.dev, "aux.queue.count", &too_many, 1);
    assert_state_field_refused(&ps2.dev, &b.dev, "ctrl.reply_count", &five, 1);
    assert_state_field_refused(&ps2.dev, &b.dev, "ctrl.pending_command", &bad_command, 1);
    assert_state_field_refused(&ps2.dev, &b.dev, "kbd.pending_command", &bad_command, 1);
    assert_state_field_refused(&ps2.dev, &b.dev, "kbd.scan_set", &bad_set, 1);
    b.dev.ops->destroy(&b.dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_tests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_byte_and_a2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identify_and_translation_of_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_set_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injected_scancodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound_and_scanning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboard_irq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mouse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aux_loopback_for_linux_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_accesses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_roundtrip_and_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
