/* Shared pieces of the libFuzzer targets; see fuzz_support.h. */
#include "fuzz_support.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/snap.h"
#include "devices/device.h"

uint8_t fi_u8(struct fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* Low part first: separate statements, as the order of two calls in one
 * expression is unspecified. */
uint16_t fi_u16(struct fuzz_in *in)
{
    uint16_t low = fi_u8(in);
    return (uint16_t)(low | (unsigned)fi_u8(in) << 8);
}

uint32_t fi_u32(struct fuzz_in *in)
{
    uint32_t low = fi_u16(in);
    return low | (uint32_t)fi_u16(in) << 16;
}

uint64_t fi_u64(struct fuzz_in *in)
{
    uint64_t low = fi_u32(in);
    return low | (uint64_t)fi_u32(in) << 32;
}

size_t fi_bytes(struct fuzz_in *in, void *out, size_t len)
{
    size_t have = len < in->n ? len : in->n;
    memcpy(out, in->p, have);
    memset((uint8_t *)out + have, 0, len - have);
    in->p += have;
    in->n -= have;
    return have;
}

unsigned fi_size(struct fuzz_in *in)
{
    return 1u << (fi_u8(in) & 3);
}

static uint8_t *ram, *tail, *rom;

void fuzz_mem_reset(void)
{
    if (!ram) {
        ram = fake_mem_add(FUZZ_RAM_GPA, FUZZ_RAM_SIZE, false, 0);
        tail = fake_mem_add(FUZZ_TAIL_GPA, FUZZ_TAIL_SIZE, false, 0);
        rom = fake_mem_add(FUZZ_ROM_GPA, FUZZ_ROM_SIZE, true, 0);
        return;
    }
    memset(ram, 0, FUZZ_RAM_SIZE);
    memset(tail, 0, FUZZ_TAIL_SIZE);
    memset(rom, 0, FUZZ_ROM_SIZE);
}

uint64_t fi_gpa(struct fuzz_in *in)
{
    uint8_t sel = fi_u8(in);
    if (sel < 0xc0)
        return fi_u16(in); /* RAM */
    if (sel < 0xe0)
        return FUZZ_TAIL_GPA + (fi_u16(in) & 0x1fff); /* the tail and past it */
    if (sel < 0xf0)
        return FUZZ_ROM_GPA + (fi_u16(in) & 0x1fff);
    return fi_u64(in);
}

void fi_mem_write(struct fuzz_in *in)
{
    uint64_t gpa = fi_gpa(in);
    size_t len = fi_u8(in) + 1u;
    uint8_t buf[256];
    len = fi_bytes(in, buf, len);
    /* Byte by byte into whatever region holds each byte: the read-only
     * page included (the guest's firmware image). */
    for (size_t i = 0; i < len; i++) {
        uint64_t a = gpa + i;
        for (unsigned r = 0; r < fake_mem.count; r++) {
            const struct guest_mem_region *g = &fake_mem.regions[r];
            if (a >= g->gpa && a - g->gpa < g->size)
                g->hva[a - g->gpa] = buf[i];
        }
    }
}

void fuzz_logs_init(void)
{
    const char *level = getenv("FUZZ_LOG");
    log_set_level(level && *level == '0' ? LOG_CRITICAL : LOG_TRACE);
}

uint8_t fuzz_disk_init(struct fake_block *fb, struct fuzz_in *in)
{
    uint8_t shape = fi_u8(in);
    bool read_only = shape & 1;
    fake_block_init(fb, "disk0",
                    &(struct block_info){
                        .size = FUZZ_DISK_SIZE,
                        .block_size = shape & 2 ? 4096 : 512,
                        .read_only = read_only,
                        .can_discard = !read_only && (shape & 4),
                        .can_write_zeroes = !read_only && (shape & 8),
                        .volatile_cache = shape & 16,
                        .workers = 1,
                    });
    return shape;
}

void fuzz_corrupt_state(struct device *dev, struct fuzz_in *in)
{
    if (device_pause(dev) < 0)
        return;
    struct snap_buf buf = {0};
    char err[512];
    if (device_save_state(dev, &buf, err, sizeof(err)) == 0 && buf.len > 0) {
        unsigned n = fi_u8(in) % 4;
        for (unsigned i = 0; i < n; i++) {
            size_t at = fi_u32(in) % buf.len;
            buf.data[at] = fi_u8(in);
        }
        size_t pos = 0;
        struct snap_record rec;
        if (snap_next_record(buf.data, buf.len, &pos, &rec, err, sizeof(err)) == 1)
            (void)device_load_state(dev, &rec, err, sizeof(err));
    }
    snap_buf_free(&buf);
    device_resume(dev);
}
