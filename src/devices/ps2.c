#include "devices/ps2.h"

#include <string.h>

/* Replies. */
#define ACK 0xfa
#define RESEND 0xfe
#define BAT_OK 0xaa
#define ECHO 0xee

#define CONFIG(p) ((p)->ram[0])

/* Power-on values as QEMU: interrupts on, no translation until firmware
 * asks; output port with reset released and A20 on. */
#define CONFIG_POWER_ON (PS2_CFG_KBD_INT | PS2_CFG_AUX_INT)
#define OUTPORT_POWER_ON 0xcf
#define INPUT_PORT_VALUE 0x80 /* keyboard not inhibited */
#define KBD_TYPEMATIC_DEFAULT 0x2b
#define MOUSE_STATUS_REMOTE 0x40
#define MOUSE_STATUS_ENABLED 0x20
#define MOUSE_STATUS_SCALE21 0x10

/* The 8042's scan set 2 -> set 1 translation for codes below 0x80; codes
 * from 0x80 pass unchanged except 0x83 (F7) and 0x84 (SysRq). */
static const uint8_t set2_to_set1_low[128] = {
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
};

static uint8_t translate_code(uint8_t code)
{
    if (code < 0x80)
        return set2_to_set1_low[code];
    if (code == 0x83)
        return 0x41;
    if (code == 0x84)
        return 0x54;
    return code;
}

/* One step of the translation: returns false when the byte is absorbed
 * (a 0xf0 release prefix, which sets bit 7 of the next code instead). */
static bool translate_step(bool *release, uint8_t *byte)
{
    if (*byte == 0xf0) {
        *release = true;
        return false;
    }
    *byte = (uint8_t)(translate_code(*byte) | (*release ? 0x80 : 0));
    *release = false;
    return true;
}

/* ---- Queues. */

static bool queue_push(struct ps2_queue *q, uint8_t byte)
{
    if (q->count >= PS2_QUEUE_SIZE)
        return false;
    q->bytes[(q->head + q->count) % PS2_QUEUE_SIZE] = byte;
    q->count++;
    return true;
}

static uint8_t queue_pop(struct ps2_queue *q)
{
    uint8_t byte = q->bytes[q->head];
    q->head = (q->head + 1) % PS2_QUEUE_SIZE;
    q->count--;
    return byte;
}

static void queue_clear(struct ps2_queue *q)
{
    q->head = q->count = 0;
}

static void ctrl_reply(struct ps2 *p, uint8_t value, bool aux)
{
    if (p->ctrl_count >= PS2_CTRL_QUEUE_SIZE) {
        log_limited(&p->guest_log, LOG_WARNING,
                    "%s: controller reply 0x%02x dropped (guest not reading)", p->dev.name, value);
        return;
    }
    p->ctrl_replies[(p->ctrl_head + p->ctrl_count) % PS2_CTRL_QUEUE_SIZE] =
        (struct ps2_ctrl_reply){value, aux};
    p->ctrl_count++;
}

/* ---- Output buffer and interrupts. Like a real 8042, one byte at a time
 * moves into the output buffer: controller replies first, then keyboard
 * bytes (unless the keyboard interface is disabled), then aux bytes. */

static void refill_output(struct ps2 *p)
{
    if (p->obf)
        return;
    if (p->ctrl_count) {
        struct ps2_ctrl_reply reply = p->ctrl_replies[p->ctrl_head];
        p->ctrl_head = (p->ctrl_head + 1) % PS2_CTRL_QUEUE_SIZE;
        p->ctrl_count--;
        p->obuf = reply.value;
        p->obuf_aux = reply.aux;
    } else if (!(CONFIG(p) & PS2_CFG_KBD_DISABLE) && p->kbd_queue.count) {
        p->obuf = queue_pop(&p->kbd_queue);
        p->obuf_aux = false;
    } else if (!(CONFIG(p) & PS2_CFG_AUX_DISABLE) && p->aux_queue.count) {
        p->obuf = queue_pop(&p->aux_queue);
        p->obuf_aux = true;
    } else {
        return;
    }
    p->obf = true;
}

static void set_kbd_line(struct ps2 *p, bool level)
{
    if (level != p->kbd_irq_level) {
        p->kbd_irq_level = level;
        irq_line_set(&p->kbd_irq, level);
    }
}

static void set_aux_line(struct ps2 *p, bool level)
{
    if (level != p->aux_irq_level) {
        p->aux_irq_level = level;
        irq_line_set(&p->aux_irq, level);
    }
}

/* Lines are levels while a byte waits (QEMU); a data read drops them before
 * the next byte moves in, so edge-triggered pins see one edge per byte. */
static void update_output(struct ps2 *p)
{
    refill_output(p);
    uint8_t config = CONFIG(p);
    set_kbd_line(p, p->obf && !p->obuf_aux && (config & PS2_CFG_KBD_INT) &&
                        !(config & PS2_CFG_KBD_DISABLE));
    set_aux_line(p, p->obf && p->obuf_aux && (config & PS2_CFG_AUX_INT));
}

/* ---- Keyboard. */

static void kbd_send(struct ps2 *p, uint8_t byte)
{
    p->kbd_last_sent = byte;
    if ((CONFIG(p) & PS2_CFG_TRANSLATE) && !translate_step(&p->translate_release, &byte))
        return;
    if (!queue_push(&p->kbd_queue, byte))
        log_limited(&p->guest_log, LOG_DEBUG, "%s: keyboard queue full; byte dropped", p->dev.name);
}

static void kbd_set_defaults(struct ps2 *p)
{
    p->kbd_scan_set = 2;
    p->kbd_leds = 0;
    p->kbd_typematic = KBD_TYPEMATIC_DEFAULT;
    p->kbd_pending_command = 0;
}

static void kbd_command_parameter(struct ps2 *p, uint8_t command, uint8_t value)
{
    switch (command) {
    case 0xed: /* set LEDs */
        p->kbd_leds = value & 0x07;
        kbd_send(p, ACK);
        break;
    case 0xf3: /* typematic rate and delay */
        p->kbd_typematic = value & 0x7f;
        kbd_send(p, ACK);
        break;
    case 0xf0: /* get (0) or set the scan code set; set 3 is not offered */
        if (value == 0) {
            kbd_send(p, ACK);
            kbd_send(p, p->kbd_scan_set); /* translated, 2 reads as 0x41 (QEMU) */
        } else if (value == 1 || value == 2) {
            p->kbd_scan_set = value;
            kbd_send(p, ACK);
        } else {
            kbd_send(p, RESEND);
        }
        break;
    }
}

static void kbd_write(struct ps2 *p, uint8_t byte)
{
    if (p->kbd_pending_command) {
        uint8_t command = p->kbd_pending_command;
        p->kbd_pending_command = 0;
        kbd_command_parameter(p, command, byte);
        return;
    }
    switch (byte) {
    case 0xed:
    case 0xf0:
    case 0xf3:
        p->kbd_pending_command = byte;
        kbd_send(p, ACK);
        break;
    case 0xee:
        kbd_send(p, ECHO);
        break;
    case 0xf2: /* identify: an MF2 keyboard */
        kbd_send(p, ACK);
        kbd_send(p, 0xab);
        kbd_send(p, 0x83); /* 0x41 once translated, as Linux expects */
        break;
    case 0xf4:
        p->kbd_scanning = true;
        kbd_send(p, ACK);
        break;
    case 0xf5: /* defaults, scanning off */
        kbd_set_defaults(p);
        p->kbd_scanning = false;
        kbd_send(p, ACK);
        break;
    case 0xf6: /* defaults, scanning on */
        kbd_set_defaults(p);
        p->kbd_scanning = true;
        kbd_send(p, ACK);
        break;
    case 0xfe:
        kbd_send(p, p->kbd_last_sent);
        break;
    case 0xff: /* reset and self-test (BAT) */
        kbd_set_defaults(p);
        p->kbd_scanning = true;
        queue_clear(&p->kbd_queue);
        kbd_send(p, ACK);
        kbd_send(p, BAT_OK);
        break;
    default:
        log_limited(&p->guest_log, LOG_DEBUG, "%s: unknown keyboard command 0x%02x", p->dev.name,
                    byte);
        kbd_send(p, RESEND);
        break;
    }
}

/* ---- Mouse: a plain 3-button PS/2 mouse (ID 0) that never moves. */

static void aux_send(struct ps2 *p, uint8_t byte)
{
    p->aux_last_sent = byte;
    if (!queue_push(&p->aux_queue, byte))
        log_limited(&p->guest_log, LOG_DEBUG, "%s: aux queue full; byte dropped", p->dev.name);
}

static void mouse_set_defaults(struct ps2 *p)
{
    p->mouse_status = 0; /* stream mode, reporting off, 1:1 */
    p->mouse_resolution = 2;
    p->mouse_sample_rate = 100;
    p->aux_pending_command = 0;
}

static void mouse_write(struct ps2 *p, uint8_t byte)
{
    if (p->aux_pending_command) {
        uint8_t command = p->aux_pending_command;
        p->aux_pending_command = 0;
        if (command == 0xf3)
            p->mouse_sample_rate = byte;
        else
            p->mouse_resolution = byte & 0x03;
        aux_send(p, ACK);
        return;
    }
    if (p->mouse_wrap && byte != 0xec && byte != 0xff) {
        aux_send(p, byte); /* wrap (echo) mode */
        return;
    }
    switch (byte) {
    case 0xe6:
        p->mouse_status &= (uint8_t)~MOUSE_STATUS_SCALE21;
        aux_send(p, ACK);
        break;
    case 0xe7:
        p->mouse_status |= MOUSE_STATUS_SCALE21;
        aux_send(p, ACK);
        break;
    case 0xe8: /* resolution */
    case 0xf3: /* sample rate */
        p->aux_pending_command = byte;
        aux_send(p, ACK);
        break;
    case 0xe9: /* status request */
        aux_send(p, ACK);
        aux_send(p, p->mouse_status);
        aux_send(p, p->mouse_resolution);
        aux_send(p, p->mouse_sample_rate);
        break;
    case 0xea:
        p->mouse_status &= (uint8_t)~MOUSE_STATUS_REMOTE;
        aux_send(p, ACK);
        break;
    case 0xeb: /* read data: a packet without motion */
        aux_send(p, ACK);
        aux_send(p, 0x08);
        aux_send(p, 0x00);
        aux_send(p, 0x00);
        break;
    case 0xec:
        p->mouse_wrap = false;
        aux_send(p, ACK);
        break;
    case 0xee:
        p->mouse_wrap = true;
        aux_send(p, ACK);
        break;
    case 0xf0:
        p->mouse_status |= MOUSE_STATUS_REMOTE;
        aux_send(p, ACK);
        break;
    case 0xf2: /* get device ID */
        aux_send(p, ACK);
        aux_send(p, 0x00);
        break;
    case 0xf4:
        p->mouse_status |= MOUSE_STATUS_ENABLED;
        aux_send(p, ACK);
        break;
    case 0xf5:
        p->mouse_status &= (uint8_t)~MOUSE_STATUS_ENABLED;
        aux_send(p, ACK);
        break;
    case 0xf6:
        mouse_set_defaults(p);
        aux_send(p, ACK);
        break;
    case 0xfe:
        aux_send(p, p->aux_last_sent);
        break;
    case 0xff: /* reset: ack, self-test passed, ID */
        mouse_set_defaults(p);
        p->mouse_wrap = false;
        queue_clear(&p->aux_queue);
        aux_send(p, ACK);
        aux_send(p, BAT_OK);
        aux_send(p, 0x00);
        break;
    default:
        /* Vendor probes (Synaptics, TrackPoint...) fail fast on a resend. */
        log_limited(&p->guest_log, LOG_DEBUG, "%s: unknown mouse command 0x%02x", p->dev.name,
                    byte);
        aux_send(p, RESEND);
        break;
    }
}

/* ---- Controller. */

static void request_reset(struct ps2 *p, const char *how)
{
    log_limited(&p->guest_log, LOG_INFO, "%s: guest reset through the keyboard controller (%s)",
                p->dev.name, how);
    irq_line_pulse(&p->reset_line);
}

static uint8_t outport_value(const struct ps2 *p)
{
    uint8_t value = p->outport & (uint8_t)~0x30;
    if (p->obf)
        value |= p->obuf_aux ? 0x20 : 0x10;
    return value;
}

static void write_outport(struct ps2 *p, uint8_t value)
{
    p->outport = value;
    if (!(value & PS2_OUT_A20))
        log_limited(&p->guest_log, LOG_INFO, "%s: A20 gate disable ignored (always enabled)",
                    p->dev.name);
    if (!(value & PS2_OUT_RESET))
        request_reset(p, "output port");
}

static void controller_command(struct ps2 *p, uint8_t command)
{
    p->last_write_was_command = true;
    p->pending_command = 0;
    if (command >= 0x20 && command <= 0x3f) {
        ctrl_reply(p, p->ram[command - 0x20], false); /* 0x20: configuration byte */
        return;
    }
    if (command >= 0x60 && command <= 0x7f) {
        p->pending_command = command;
        return;
    }
    if (command >= 0xf0) {
        /* Pulse output bits 0-3 whose command bit is 0; bit 0 is reset. */
        if (!(command & 0x01))
            request_reset(p, "pulse");
        return;
    }
    switch (command) {
    case 0xa7:
        CONFIG(p) |= PS2_CFG_AUX_DISABLE;
        break;
    case 0xa8:
        CONFIG(p) &= (uint8_t)~PS2_CFG_AUX_DISABLE;
        break;
    case 0xa9: /* aux interface test: passed */
    case 0xab: /* keyboard interface test: passed */
        ctrl_reply(p, 0x00, false);
        break;
    case 0xaa: /* controller self-test */
        CONFIG(p) |= PS2_CFG_SYS;
        ctrl_reply(p, 0x55, false);
        break;
    case 0xad:
        CONFIG(p) |= PS2_CFG_KBD_DISABLE;
        break;
    case 0xae:
        CONFIG(p) &= (uint8_t)~PS2_CFG_KBD_DISABLE;
        break;
    case 0xc0:
        ctrl_reply(p, INPUT_PORT_VALUE, false);
        break;
    case 0xd0:
        ctrl_reply(p, outport_value(p), false);
        break;
    case 0xd1: /* write output port */
    case 0xd2: /* write keyboard output buffer */
    case 0xd3: /* write aux output buffer */
    case 0xd4: /* write to the aux device */
        p->pending_command = command;
        break;
    case 0xdd:
        write_outport(p, p->outport & (uint8_t)~PS2_OUT_A20);
        break;
    case 0xdf:
        p->outport |= PS2_OUT_A20;
        break;
    default:
        log_limited(&p->guest_log, LOG_WARNING, "%s: unsupported controller command 0x%02x",
                    p->dev.name, command);
        break;
    }
}

static void data_write(struct ps2 *p, uint8_t value)
{
    uint8_t command = p->pending_command;
    p->last_write_was_command = false;
    p->pending_command = 0;
    if (command >= 0x60 && command <= 0x7f) {
        p->ram[command - 0x60] = value; /* 0x60: configuration byte */
        return;
    }
    switch (command) {
    case 0xd1:
        write_outport(p, value);
        break;
    case 0xd2:
        ctrl_reply(p, value, false);
        break;
    case 0xd3:
        ctrl_reply(p, value, true);
        break;
    case 0xd4:
        CONFIG(p) &= (uint8_t)~PS2_CFG_AUX_DISABLE; /* talking to a port enables it (QEMU) */
        mouse_write(p, value);
        break;
    default:
        CONFIG(p) &= (uint8_t)~PS2_CFG_KBD_DISABLE;
        kbd_write(p, value);
        break;
    }
}

static uint8_t data_read(struct ps2 *p)
{
    uint8_t value = p->obuf; /* empty: the last byte again (QEMU) */
    if (p->obf) {
        p->obf = false;
        set_kbd_line(p, false);
        set_aux_line(p, false);
    }
    return value;
}

static uint8_t status_read(const struct ps2 *p)
{
    uint8_t status = PS2_STATUS_UNLOCKED;
    if (p->obf)
        status |= PS2_STATUS_OBF | (p->obuf_aux ? PS2_STATUS_AUX : 0);
    if (CONFIG(p) & PS2_CFG_SYS)
        status |= PS2_STATUS_SYS;
    if (p->last_write_was_command)
        status |= PS2_STATUS_CMD;
    return status;
}

static bool byte_access(struct ps2 *p, unsigned size, const char *what)
{
    if (size == 1)
        return true;
    log_limited(&p->guest_log, LOG_WARNING, "%s: ignored %u-byte %s", p->dev.name, size, what);
    return false;
}

static uint64_t ps2_data_read(void *opaque, uint64_t offset, unsigned size)
{
    struct ps2 *p = opaque;
    if (!byte_access(p, size, "data read"))
        return ~0ull;
    pthread_mutex_lock(&p->lock);
    uint8_t value = data_read(p);
    update_output(p);
    pthread_mutex_unlock(&p->lock);
    return value;
}

static void ps2_data_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct ps2 *p = opaque;
    if (!byte_access(p, size, "data write"))
        return;
    pthread_mutex_lock(&p->lock);
    data_write(p, (uint8_t)value);
    update_output(p);
    pthread_mutex_unlock(&p->lock);
}

static uint64_t ps2_status_read(void *opaque, uint64_t offset, unsigned size)
{
    struct ps2 *p = opaque;
    if (!byte_access(p, size, "status read"))
        return ~0ull;
    pthread_mutex_lock(&p->lock);
    uint8_t status = status_read(p);
    pthread_mutex_unlock(&p->lock);
    return status;
}

static void ps2_command_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct ps2 *p = opaque;
    if (!byte_access(p, size, "command write"))
        return;
    pthread_mutex_lock(&p->lock);
    controller_command(p, (uint8_t)value);
    update_output(p);
    pthread_mutex_unlock(&p->lock);
}

const struct io_ops ps2_data_io_ops = {.read = ps2_data_read, .write = ps2_data_write};
const struct io_ops ps2_ctrl_io_ops = {.read = ps2_status_read, .write = ps2_command_write};

bool ps2_kbd_inject_scancode(struct ps2 *p, const uint8_t *set2, size_t len)
{
    if (!set2 || len == 0 || len > PS2_QUEUE_SIZE)
        return false;
    bool accepted = false;
    pthread_mutex_lock(&p->lock);
    /* Each byte yields at most one queued byte, so len bounds the room needed. */
    if (p->kbd_scanning && PS2_QUEUE_SIZE - p->kbd_queue.count >= len) {
        bool release = false;
        for (size_t i = 0; i < len; i++) {
            uint8_t byte = set2[i];
            /* A keyboard switched to set 1 sends set 1 itself. */
            if (p->kbd_scan_set == 1 && !translate_step(&release, &byte))
                continue;
            kbd_send(p, byte);
        }
        accepted = true;
        update_output(p);
    }
    pthread_mutex_unlock(&p->lock);
    return accepted;
}

/* ---- Lifecycle. */

static void reset_locked(struct ps2 *p)
{
    memset(p->ram, 0, sizeof(p->ram));
    CONFIG(p) = CONFIG_POWER_ON;
    p->outport = OUTPORT_POWER_ON;
    p->pending_command = 0;
    p->last_write_was_command = true;
    p->obf = false;
    p->obuf = 0;
    p->obuf_aux = false;
    p->ctrl_head = p->ctrl_count = 0;
    p->translate_release = false;
    queue_clear(&p->kbd_queue);
    kbd_set_defaults(p);
    p->kbd_scanning = true;
    p->kbd_last_sent = 0;
    queue_clear(&p->aux_queue);
    mouse_set_defaults(p);
    p->mouse_wrap = false;
    p->aux_last_sent = 0;
    update_output(p);
}

static void ps2_reset(struct device *dev)
{
    struct ps2 *p = container_of(dev, struct ps2, dev);
    pthread_mutex_lock(&p->lock);
    reset_locked(p);
    pthread_mutex_unlock(&p->lock);
}

static void ps2_destroy(struct device *dev)
{
    struct ps2 *p = container_of(dev, struct ps2, dev);
    pthread_mutex_destroy(&p->lock);
}

/* A device queue, oldest byte first. */
static void queue_state(struct snap *s, const char *name, struct ps2_queue *q)
{
    snap_enter(s, "%s", name);
    uint8_t bytes[PS2_QUEUE_SIZE] = {0};
    uint8_t count = (uint8_t)q->count;
    for (unsigned i = 0; i < q->count; i++)
        bytes[i] = q->bytes[(q->head + i) % PS2_QUEUE_SIZE];
    snap_u8(s, "count", &count);
    snap_bytes(s, "bytes", bytes, sizeof(bytes));
    if (snap_loading(s) && !snap_error(s) &&
        snap_check(s, count <= PS2_QUEUE_SIZE, "count", "more than the queue holds")) {
        memcpy(q->bytes, bytes, sizeof(bytes));
        q->head = 0;
        q->count = count;
    }
    snap_leave(s);
}

static bool controller_command_pending_valid(uint8_t command)
{
    return command == 0 || (command >= 0x60 && command <= 0x7f) ||
           (command >= 0xd1 && command <= 0xd4);
}

/* Controller, keyboard and mouse registers with their queues. The IRQ
 * lines follow from the output buffer and are driven again on load. */
static int ps2_state(struct device *dev, struct snap *s)
{
    struct ps2 *p = container_of(dev, struct ps2, dev);
    pthread_mutex_lock(&p->lock);
    snap_enter(s, "ctrl");
    snap_bytes(s, "ram", p->ram, sizeof(p->ram));
    snap_u8(s, "outport", &p->outport);
    snap_u8(s, "pending_command", &p->pending_command);
    snap_bool(s, "last_write_was_command", &p->last_write_was_command);
    snap_bool(s, "obf", &p->obf);
    snap_u8(s, "obuf", &p->obuf);
    snap_bool(s, "obuf_aux", &p->obuf_aux);
    snap_bool(s, "translate_release", &p->translate_release);
    uint8_t reply_count = (uint8_t)p->ctrl_count;
    uint8_t reply_values[PS2_CTRL_QUEUE_SIZE] = {0}, reply_aux[PS2_CTRL_QUEUE_SIZE] = {0};
    for (unsigned i = 0; i < p->ctrl_count; i++) {
        const struct ps2_ctrl_reply *r = &p->ctrl_replies[(p->ctrl_head + i) % PS2_CTRL_QUEUE_SIZE];
        reply_values[i] = r->value;
        reply_aux[i] = r->aux;
    }
    snap_u8(s, "reply_count", &reply_count);
    snap_bytes(s, "reply_values", reply_values, sizeof(reply_values));
    snap_bytes(s, "reply_aux", reply_aux, sizeof(reply_aux));
    if (snap_loading(s) && !snap_error(s)) {
        snap_check(s, controller_command_pending_valid(p->pending_command), "pending_command",
                   "not a command that takes a data byte");
        snap_check(s, reply_count <= PS2_CTRL_QUEUE_SIZE, "reply_count",
                   "more than the reply queue holds");
        for (unsigned i = 0; i < PS2_CTRL_QUEUE_SIZE; i++)
            snap_check(s, reply_aux[i] <= 1, "reply_aux", "not 0 or 1");
        if (!snap_error(s)) {
            for (unsigned i = 0; i < PS2_CTRL_QUEUE_SIZE; i++)
                p->ctrl_replies[i] = (struct ps2_ctrl_reply){reply_values[i], reply_aux[i] != 0};
            p->ctrl_head = 0;
            p->ctrl_count = reply_count;
        }
    }
    snap_leave(s);

    snap_enter(s, "kbd");
    queue_state(s, "queue", &p->kbd_queue);
    snap_u8(s, "pending_command", &p->kbd_pending_command);
    snap_u8(s, "scan_set", &p->kbd_scan_set);
    snap_bool(s, "scanning", &p->kbd_scanning);
    snap_u8(s, "leds", &p->kbd_leds);
    snap_u8(s, "typematic", &p->kbd_typematic);
    snap_u8(s, "last_sent", &p->kbd_last_sent);
    if (snap_loading(s) && !snap_error(s)) {
        uint8_t c = p->kbd_pending_command;
        snap_check(s, c == 0 || c == 0xed || c == 0xf0 || c == 0xf3, "pending_command",
                   "not a keyboard command that takes a parameter");
        snap_check(s, p->kbd_scan_set == 1 || p->kbd_scan_set == 2, "scan_set",
                   "not scan set 1 or 2");
        snap_check(s, p->kbd_leds <= 7, "leds", "bits beyond the three LEDs");
        snap_check(s, p->kbd_typematic <= 0x7f, "typematic", "bit 7 set");
    }
    snap_leave(s);

    snap_enter(s, "aux");
    queue_state(s, "queue", &p->aux_queue);
    snap_u8(s, "pending_command", &p->aux_pending_command);
    snap_u8(s, "status", &p->mouse_status);
    snap_u8(s, "resolution", &p->mouse_resolution);
    snap_u8(s, "sample_rate", &p->mouse_sample_rate);
    snap_bool(s, "wrap", &p->mouse_wrap);
    snap_u8(s, "last_sent", &p->aux_last_sent);
    if (snap_loading(s) && !snap_error(s)) {
        uint8_t c = p->aux_pending_command;
        snap_check(s, c == 0 || c == 0xe8 || c == 0xf3, "pending_command",
                   "not a mouse command that takes a parameter");
        snap_check(s,
                   !(p->mouse_status &
                     ~(MOUSE_STATUS_REMOTE | MOUSE_STATUS_ENABLED | MOUSE_STATUS_SCALE21)),
                   "status", "bits the mouse does not report");
        snap_check(s, p->mouse_resolution <= 3, "resolution", "not 0 to 3");
    }
    snap_leave(s);

    if (snap_loading(s) && !snap_error(s))
        update_output(p);
    pthread_mutex_unlock(&p->lock);
    return snap_error(s);
}

static const struct device_ops ps2_device_ops = {
    .reset = ps2_reset,
    .state = ps2_state,
    .kind = "ps2",
    .state_version = 1,
    .destroy = ps2_destroy,
};

void ps2_init(struct ps2 *p, const char *name, struct irq_line kbd_irq, struct irq_line aux_irq,
              struct irq_line reset_line)
{
    memset(p, 0, sizeof(*p));
    p->dev.name = name;
    p->dev.ops = &ps2_device_ops;
    p->kbd_irq = kbd_irq;
    p->aux_irq = aux_irq;
    p->reset_line = reset_line;
    pthread_mutex_init(&p->lock, NULL);
    reset_locked(p);
}
