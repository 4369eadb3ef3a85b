#include "virtio/virtqueue.h"

#include <stdio.h>
#include <string.h>

#include "common/bytes.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "virtqueue.c assumes a little-endian host (virtio rings are little-endian)"
#endif

/* Offsets inside the rings. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4
#define USED_ELEM_SIZE 8

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* ---- Guest-shared memory accessors ----
 * Ring fields are read and written exactly once per use, atomically (the
 * rings' alignment is checked at activation), so a guest changing them
 * concurrently cannot make us see two different values of one field. */

static uint16_t load16(const uint8_t *p)
{
    return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_RELAXED);
}

static uint16_t load16_acquire(const uint8_t *p)
{
    return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static void store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELAXED);
}

static void store16_release(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELEASE);
}

static void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n((uint32_t *)(void *)p, v, __ATOMIC_RELAXED);
}

/* A descriptor may sit in an indirect table of any alignment: copy its 16
 * bytes once through volatile loads, then decode the private copy. */
static void read_desc(const uint8_t *p, struct desc *d)
{
    uint8_t raw[VIRTQ_DESC_SIZE];
    const volatile uint8_t *src = p;
    for (unsigned i = 0; i < VIRTQ_DESC_SIZE; i++)
        raw[i] = src[i];
    d->addr = le64_load(raw);
    d->len = le32_load(raw + 8);
    d->flags = le16_load(raw + 12);
    d->next = le16_load(raw + 14);
}

/* ---- Sizes ---- */

uint64_t virtq_desc_bytes(unsigned n)
{
    return (uint64_t)n * VIRTQ_DESC_SIZE;
}

uint64_t virtq_avail_bytes(unsigned n)
{
    return 6 + 2ull * n; /* flags, idx, ring[n], used_event */
}

uint64_t virtq_used_bytes(unsigned n)
{
    return 6 + (uint64_t)USED_ELEM_SIZE * n; /* flags, idx, ring[n], avail_event */
}

/* ---- Setup ---- */

void virtq_init(struct virtq *vq, const char *dev_name, unsigned index, uint16_t max_size,
                struct log_ratelimit *log)
{
    memset(vq, 0, sizeof(*vq));
    vq->dev_name = dev_name;
    vq->index = index;
    vq->log = log;
    vq->max_size = max_size;
    vq->size = max_size;
    pthread_mutex_init(&vq->used_lock, NULL);
}

void virtq_destroy(struct virtq *vq)
{
    pthread_mutex_destroy(&vq->used_lock);
}

void virtq_deactivate(struct virtq *vq)
{
    pthread_mutex_lock(&vq->used_lock);
    vq->active = false;
    vq->desc = vq->avail = vq->used = NULL;
    vq->mem = NULL;
    pthread_mutex_unlock(&vq->used_lock);
}

void virtq_reset(struct virtq *vq)
{
    virtq_deactivate(vq);
    vq->size = vq->max_size;
    vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
    vq->event_idx = vq->indirect = false;
    vq->last_avail = 0;
    vq->used_idx = 0;
    vq->signalled_used = 0;
    vq->signalled_valid = false;
}

bool virtq_size_valid(const struct virtq *vq, uint64_t size)
{
    return size != 0 && size <= vq->max_size && (size & (size - 1)) == 0;
}

void virtq_set_legacy_pfn(struct virtq *vq, uint32_t pfn)
{
    uint64_t base = (uint64_t)pfn * VIRTQ_LEGACY_ALIGN;
    vq->desc_gpa = base;
    vq->avail_gpa = base + virtq_desc_bytes(vq->size);
    uint64_t avail_end = vq->avail_gpa + virtq_avail_bytes(vq->size);
    vq->used_gpa = (avail_end + VIRTQ_LEGACY_ALIGN - 1) & ~(uint64_t)(VIRTQ_LEGACY_ALIGN - 1);
}

static uint8_t *map_ring(struct virtq *vq, const struct guest_mem *mem, const char *what,
                         uint64_t gpa, uint64_t len, unsigned align, bool write)
{
    if (gpa % align) {
        log_limited(vq->log, LOG_ERROR,
                    "%s queue %u: %s ring at 0x%llx is not %u-byte aligned; device needs reset",
                    vq->dev_name, vq->index, what, (unsigned long long)gpa, align);
        return NULL;
    }
    uint8_t *p = guest_mem_ptr(mem, gpa, len, write);
    if (!p || (uintptr_t)p % align) {
        log_limited(vq->log, LOG_ERROR,
                    "%s queue %u: %s ring 0x%llx+0x%llx is not in guest RAM%s; device needs "
                    "reset",
                    vq->dev_name, vq->index, what, (unsigned long long)gpa, (unsigned long long)len,
                    write ? " (or not writable)" : "");
        return NULL;
    }
    return p;
}

bool virtq_activate(struct virtq *vq, const struct guest_mem *mem, uint64_t features)
{
    if (!virtq_size_valid(vq, vq->size)) {
        log_limited(vq->log, LOG_ERROR, "%s queue %u: invalid size %u; device needs reset",
                    vq->dev_name, vq->index, vq->size);
        return false;
    }
    uint8_t *desc =
        map_ring(vq, mem, "descriptor", vq->desc_gpa, virtq_desc_bytes(vq->size), 16, false);
    uint8_t *avail =
        desc ? map_ring(vq, mem, "available", vq->avail_gpa, virtq_avail_bytes(vq->size), 2, false)
             : NULL;
    uint8_t *used =
        avail ? map_ring(vq, mem, "used", vq->used_gpa, virtq_used_bytes(vq->size), 4, true) : NULL;
    if (!used)
        return false;
    pthread_mutex_lock(&vq->used_lock);
    vq->mem = mem;
    vq->desc = desc;
    vq->avail = avail;
    vq->used = used;
    vq->event_idx = features & (1ull << VIRTIO_RING_F_EVENT_IDX);
    vq->indirect = features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
    vq->last_avail = 0;
    vq->used_idx = 0;
    vq->signalled_used = 0;
    vq->signalled_valid = false;
    vq->active = true;
    pthread_mutex_unlock(&vq->used_lock);
    return true;
}

void virtq_restore(struct virtq *vq, uint16_t last_avail, uint16_t used_idx,
                   uint16_t signalled_used, bool signalled_valid)
{
    pthread_mutex_lock(&vq->used_lock);
    vq->last_avail = last_avail;
    vq->used_idx = used_idx;
    vq->signalled_used = signalled_used;
    vq->signalled_valid = signalled_valid;
    pthread_mutex_unlock(&vq->used_lock);
}

/* ---- The walker ---- */

#define fail(vq, ...)                                                                              \
    do {                                                                                           \
        log_limited((vq)->log, LOG_ERROR, __VA_ARGS__);                                            \
        return VIRTQ_ERROR;                                                                        \
    } while (0)

bool virtq_has_available(struct virtq *vq)
{
    return vq->active && load16_acquire(vq->avail + AVAIL_IDX) != vq->last_avail;
}

void virtq_describe(struct virtq *vq, bool popper_idle, char *buf, size_t cap)
{
    if (!vq->active) {
        snprintf(buf, cap, "size %u, inactive", vq->size);
        return;
    }
    char popper[32] = "busy";
    if (popper_idle)
        snprintf(popper, sizeof(popper), "%u", vq->last_avail);
    char used[64] = "busy";
    if (pthread_mutex_trylock(&vq->used_lock) == 0) {
        snprintf(used, sizeof(used), "%u (last interrupt at %u%s)", vq->used_idx,
                 vq->signalled_used, vq->signalled_valid ? "" : ", none yet");
        pthread_mutex_unlock(&vq->used_lock);
    }
    snprintf(buf, cap,
             "size %u, avail.idx %u avail.flags 0x%x used_event %u; last_avail %s; used.idx %u "
             "used.flags 0x%x avail_event %u; our used_idx %s; event_idx %u",
             vq->size, load16_acquire(vq->avail + AVAIL_IDX), load16(vq->avail + AVAIL_FLAGS),
             load16(vq->avail + AVAIL_RING + 2u * vq->size), popper, load16(vq->used + USED_IDX),
             load16(vq->used + USED_FLAGS),
             load16(vq->used + USED_RING + USED_ELEM_SIZE * vq->size), used, vq->event_idx);
}

enum virtq_pop_result virtq_pop(struct virtq *vq, struct virtq_chain *c)
{
    if (!vq->active)
        return VIRTQ_EMPTY;
    const char *dev = vq->dev_name;
    unsigned qi = vq->index;
    /* Acquire: ring entries and descriptors are read after the index. */
    uint16_t avail_idx = load16_acquire(vq->avail + AVAIL_IDX);
    uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
    if (pending == 0)
        return VIRTQ_EMPTY;
    if (pending > vq->size)
        fail(vq,
             "%s queue %u: available index jumped from %u to %u (queue size %u); device "
             "needs reset",
             dev, qi, vq->last_avail, avail_idx, vq->size);
    uint16_t slot = vq->last_avail & (uint16_t)(vq->size - 1);
    uint16_t head = load16(vq->avail + AVAIL_RING + 2u * slot);
    vq->last_avail++;
    if (head >= vq->size)
        fail(vq, "%s queue %u: head descriptor %u out of range (queue size %u); device needs reset",
             dev, qi, head, vq->size);

    c->head = head;
    c->nout = c->nin = 0;
    c->out_bytes = c->in_bytes = 0;
    const uint8_t *table = vq->desc;
    uint32_t table_len = vq->size;
    uint32_t budget = vq->size; /* descriptors a chain may still visit in this table */
    uint32_t idx = head;
    bool in_indirect = false;
    for (;;) {
        if (budget-- == 0)
            fail(vq,
                 "%s queue %u: descriptor chain from head %u loops or is longer than its %s "
                 "(%u); device needs reset",
                 dev, qi, head, in_indirect ? "indirect table" : "queue", table_len);
        struct desc d;
        read_desc(table + (size_t)idx * VIRTQ_DESC_SIZE, &d);
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!vq->indirect)
                fail(vq,
                     "%s queue %u: indirect descriptor, but VIRTIO_RING_F_INDIRECT_DESC was not "
                     "negotiated; device needs reset",
                     dev, qi);
            if (in_indirect)
                fail(vq,
                     "%s queue %u: indirect descriptor inside an indirect table; device needs "
                     "reset",
                     dev, qi);
            if (d.flags & VIRTQ_DESC_F_NEXT)
                fail(vq,
                     "%s queue %u: descriptor %u has both INDIRECT and NEXT; device needs reset",
                     dev, qi, idx);
            if (d.len == 0 || d.len % VIRTQ_DESC_SIZE || d.len / VIRTQ_DESC_SIZE > VIRTQ_MAX_SIZE)
                fail(vq, "%s queue %u: indirect table length %u is invalid; device needs reset",
                     dev, qi, d.len);
            const uint8_t *t = guest_mem_ptr(vq->mem, d.addr, d.len, false);
            if (!t)
                fail(vq,
                     "%s queue %u: indirect table 0x%llx+0x%x is not in guest RAM; device needs "
                     "reset",
                     dev, qi, (unsigned long long)d.addr, d.len);
            table = t;
            table_len = d.len / VIRTQ_DESC_SIZE;
            budget = table_len;
            idx = 0;
            in_indirect = true;
            continue;
        }
        bool writable = d.flags & VIRTQ_DESC_F_WRITE;
        if (d.len == 0)
            fail(vq, "%s queue %u: zero-length buffer in chain %u; device needs reset", dev, qi,
                 head);
        if (!writable && c->nin)
            fail(vq,
                 "%s queue %u: device-readable buffer after a device-writable one in chain %u; "
                 "device needs reset",
                 dev, qi, head);
        if (c->nout + c->nin >= c->iov_cap)
            fail(vq,
                 "%s queue %u: chain %u has more than %u buffers (the device's limit); device "
                 "needs reset",
                 dev, qi, head, c->iov_cap);
        void *hva = guest_mem_ptr(vq->mem, d.addr, d.len, writable);
        if (!hva)
            fail(vq,
                 "%s queue %u: buffer 0x%llx+0x%x in chain %u is not in guest RAM%s; device "
                 "needs reset",
                 dev, qi, (unsigned long long)d.addr, d.len, head,
                 writable ? " (or not writable)" : "");
        struct iovec *iov = &c->iov[c->nout + c->nin];
        iov->iov_base = hva;
        iov->iov_len = d.len;
        if (writable) {
            c->nin++;
            c->in_bytes += d.len;
        } else {
            c->nout++;
            c->out_bytes += d.len;
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return VIRTQ_CHAIN;
        if (d.next >= table_len)
            fail(vq,
                 "%s queue %u: next descriptor %u out of range (%u entries); device needs reset",
                 dev, qi, d.next, table_len);
        idx = d.next;
    }
}

/* ---- Used ring and notification suppression ---- */

static bool need_interrupt_locked(struct virtq *vq)
{
    /* The used index store must be visible before we read the driver's
     * suppression fields (spec 2.7.7/2.7.10: a full barrier). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (vq->event_idx) {
        uint16_t now = vq->used_idx, old = vq->signalled_used;
        bool valid = vq->signalled_valid;
        vq->signalled_used = now;
        vq->signalled_valid = true;
        uint16_t event = load16(vq->avail + AVAIL_RING + 2u * vq->size);
        return !valid || (uint16_t)(now - event - 1) < (uint16_t)(now - old);
    }
    return !(load16(vq->avail + AVAIL_FLAGS) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool virtq_push_many(struct virtq *vq, const uint16_t *heads, const uint32_t *lens, unsigned n)
{
    pthread_mutex_lock(&vq->used_lock);
    if (!vq->active || n == 0) {
        pthread_mutex_unlock(&vq->used_lock);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        uint16_t slot = (uint16_t)(vq->used_idx + i) & (uint16_t)(vq->size - 1);
        uint8_t *elem = vq->used + USED_RING + (size_t)slot * USED_ELEM_SIZE;
        store32(elem, heads[i]);
        store32(elem + 4, lens[i]);
    }
    vq->used_idx = (uint16_t)(vq->used_idx + n);
    /* Release: the elements (and the data and status the device wrote into
     * the buffers before) are visible before the new index. */
    store16_release(vq->used + USED_IDX, vq->used_idx);
    bool notify = need_interrupt_locked(vq);
    pthread_mutex_unlock(&vq->used_lock);
    return notify;
}

bool virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
    return virtq_push_many(vq, &head, &len, 1);
}

void virtq_disable_notify(struct virtq *vq)
{
    if (vq->active && !vq->event_idx)
        store16(vq->used + USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_enable_notify(struct virtq *vq)
{
    if (!vq->active)
        return false;
    if (vq->event_idx)
        store16(vq->used + USED_RING + (size_t)vq->size * USED_ELEM_SIZE, vq->last_avail);
    else
        store16(vq->used + USED_FLAGS, 0);
    /* Publish the request for notifications before re-reading the index. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return load16(vq->avail + AVAIL_IDX) != vq->last_avail;
}
