/* i8042 PS/2 controller with a keyboard (scan set 2, translated to set 1
 * when the configuration byte asks) and a plain PS/2 mouse on the aux port,
 * as QEMU's pc machine and propolis have them. Ports 0x60 (data) and 0x64
 * (status/command); IRQ 1 for keyboard bytes and IRQ 12 for aux bytes when
 * the configuration byte enables them; the controller's reset line (0xfe,
 * any pulse of output bit 0, or writing bit 0 = 0 to the output port)
 * requests a machine reset. The A20 gate is reported but not emulated. */
#ifndef DEVICES_PS2_H
#define DEVICES_PS2_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "core/bus.h"
#include "core/irq_line.h"
#include "devices/device.h"

#define PS2_DATA_PORT 0x60
#define PS2_CTRL_PORT 0x64
#define PS2_KBD_IRQ 1
#define PS2_AUX_IRQ 12
#define PS2_QUEUE_SIZE 16 /* per device; bytes beyond are dropped */
#define PS2_CTRL_QUEUE_SIZE 4

/* Status register. */
#define PS2_STATUS_OBF 0x01
#define PS2_STATUS_IBF 0x02
#define PS2_STATUS_SYS 0x04
#define PS2_STATUS_CMD 0x08 /* last write went to 0x64 */
#define PS2_STATUS_UNLOCKED 0x10
#define PS2_STATUS_AUX 0x20 /* the output byte is from the aux port */

/* Configuration byte (controller RAM byte 0). */
#define PS2_CFG_KBD_INT 0x01
#define PS2_CFG_AUX_INT 0x02
#define PS2_CFG_SYS 0x04
#define PS2_CFG_KBD_DISABLE 0x10
#define PS2_CFG_AUX_DISABLE 0x20
#define PS2_CFG_TRANSLATE 0x40

/* Output port. */
#define PS2_OUT_RESET 0x01 /* 0 = hold the CPU in reset */
#define PS2_OUT_A20 0x02

struct ps2_queue {
    uint8_t bytes[PS2_QUEUE_SIZE];
    unsigned head, count;
};

struct ps2_ctrl_reply {
    uint8_t value;
    bool aux;
};

struct ps2 {
    struct device dev;
    pthread_mutex_t lock;
    struct irq_line kbd_irq, aux_irq;
    struct irq_line reset_line; /* pulsed to reset the machine */

    /* Controller. */
    uint8_t ram[32]; /* ram[0] is the configuration byte */
    uint8_t outport;
    uint8_t pending_command; /* waiting for its data byte on 0x60; 0 = none */
    bool last_write_was_command;
    bool obf; /* output buffer full: obuf holds the byte the guest reads next */
    uint8_t obuf;
    bool obuf_aux;
    struct ps2_ctrl_reply ctrl_replies[PS2_CTRL_QUEUE_SIZE];
    unsigned ctrl_head, ctrl_count;
    bool kbd_irq_level, aux_irq_level;
    bool translate_release; /* translation saw 0xf0: set bit 7 of the next byte */

    /* Keyboard. */
    struct ps2_queue kbd_queue;
    uint8_t kbd_pending_command;
    uint8_t kbd_scan_set;
    bool kbd_scanning;
    uint8_t kbd_leds;
    uint8_t kbd_typematic;
    uint8_t kbd_last_sent;

    /* Mouse. */
    struct ps2_queue aux_queue;
    uint8_t aux_pending_command;
    uint8_t mouse_status; /* as reported by 0xe9: remote 0x40, enabled 0x20, 2:1 0x10 */
    uint8_t mouse_resolution;
    uint8_t mouse_sample_rate;
    bool mouse_wrap;
    uint8_t aux_last_sent;

    struct log_ratelimit guest_log;
};

/* Register PS2_DATA_PORT with ps2_data_io_ops and PS2_CTRL_PORT with
 * ps2_ctrl_io_ops, both 1 byte, opaque = the ps2. */
extern const struct io_ops ps2_data_io_ops;
extern const struct io_ops ps2_ctrl_io_ops;

/* reset_line: pulsed for each reset request (machine_request_line(m,
 * MACHINE_RESET)). */
void ps2_init(struct ps2 *ps2, const char *name, struct irq_line kbd_irq, struct irq_line aux_irq,
              struct irq_line reset_line);

/* Host keyboard input: one key event as scan set 2 bytes (e.g. {0xf0, 0x1c}
 * for releasing A), converted to what the guest selected. Dropped whole (and
 * false returned) when scanning is off or the queue lacks room. */
bool ps2_kbd_inject_scancode(struct ps2 *ps2, const uint8_t *set2, size_t len);

#endif
