/* A split-virtqueue driver for unit tests; see vring.h. */
#include "support/vring.h"

#include <string.h>

#include "support/fake_mem.h"
#include "support/poll.h"
#include "virtio/virtqueue.h"

void vring_clear(struct vring *r)
{
    memset(mem_host(r->desc), 0, 16ull * r->size);
    memset(mem_host(r->avail), 0, virtq_avail_bytes(r->size));
    memset(mem_host(r->used), 0, virtq_used_bytes(r->size));
    r->avail_idx = 0;
}

void vring_set_desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                       uint16_t next)
{
    uint8_t *d = mem_host(table + 16ull * i);
    memcpy(d, &addr, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

void vring_set_desc(struct vring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next)
{
    vring_set_desc_at(r->desc, i, addr, len, flags, next);
}

void vring_avail_add(struct vring *r, uint16_t head)
{
    mem_put16(r->avail + 4 + 2u * (r->avail_idx % r->size), head);
    r->avail_idx++;
    mem_put16(r->avail + 2, r->avail_idx);
}

void vring_set_used_event(struct vring *r, uint16_t idx)
{
    mem_put16(r->avail + 4 + 2u * r->size, idx);
}

uint16_t vring_used_idx(const struct vring *r)
{
    return mem_get16(r->used + 2);
}

uint32_t vring_used_id(const struct vring *r, unsigned i)
{
    return mem_get32(r->used + 4 + 8ull * (i % r->size));
}

uint32_t vring_used_len(const struct vring *r, unsigned i)
{
    return mem_get32(r->used + 4 + 8ull * (i % r->size) + 4);
}

struct used_target {
    const struct vring *r;
    uint16_t target;
};

static bool used_reached(void *arg)
{
    const struct used_target *t = arg;
    return vring_used_idx(t->r) == t->target;
}

bool vring_wait_used(const struct vring *r, uint16_t target)
{
    struct used_target t = {r, target};
    return poll_until(used_reached, &t);
}
