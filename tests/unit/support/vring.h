/* A split-virtqueue driver for unit tests: the guest's side of a ring laid
 * out in fake guest memory (see fake_mem.h), so tests can post descriptor
 * chains (direct or through indirect tables) and read what the device
 * returned in the used ring. */
#ifndef TESTS_SUPPORT_VRING_H
#define TESTS_SUPPORT_VRING_H

#include <stdbool.h>
#include <stdint.h>

/* A ring's guest addresses, its size and the driver's next avail index. */
struct vring {
    uint64_t desc, avail, used;
    uint16_t size;
    uint16_t avail_idx;
};

/* Zeroes the descriptor table, avail and used rings; avail_idx back to 0. */
void vring_clear(struct vring *r);

/* Writes descriptor i of the table at `table` (a ring's or an indirect
 * table): both are arrays of the same 16-byte descriptors. */
void vring_set_desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                       uint16_t next);
/* Writes descriptor i of r's own table. */
void vring_set_desc(struct vring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next);

/* Posts the chain starting at `head`: the avail entry, then the index. */
void vring_avail_add(struct vring *r, uint16_t head);

/* Event index (VIRTIO_RING_F_EVENT_IDX): the driver wants an interrupt once
 * the used index passes `idx` (the avail ring's used_event field). */
void vring_set_used_event(struct vring *r, uint16_t idx);

/* The used ring as the device left it: its index, and entry i's id and
 * length (i taken modulo the ring size). */
uint16_t vring_used_idx(const struct vring *r);
uint32_t vring_used_id(const struct vring *r, unsigned i);
uint32_t vring_used_len(const struct vring *r, unsigned i);

/* Waits up to 2 s for the used index to reach `target` (devices complete
 * on their own threads); true when it did. */
bool vring_wait_used(const struct vring *r, uint16_t target);

#endif
