/* A hostile virtio driver for the virtio device targets; see fuzz_virtio.h. */
#include "fuzz_virtio.h"

#include <string.h>

#include "common/bytes.h"
#include "core/io_loop.h"

void fuzz_virtio_poll(struct virtio_device *vdev)
{
    /* A few rounds: processing one queue may kick another. */
    for (unsigned round = 0; round < 4; round++) {
        int events = 0;
        for (unsigned q = 0; q < vdev->num_queues; q++) {
            int n = io_loop_poll(virtio_queue_loop(vdev, q), 0);
            if (n > 0)
                events += n;
        }
        if (!events)
            return;
    }
}

uint64_t fuzz_vq_base(unsigned q)
{
    return (q % 8) * FUZZ_VQ_WINDOW;
}

static void queue_setup(struct virtio_device *vdev, unsigned q, uint16_t size)
{
    uint64_t b = fuzz_vq_base(q);
    virtio_queue_set_size_locked(vdev, q, size);
    virtio_queue_set_addr_locked(vdev, q, VIRTIO_RING_DESC, b);
    virtio_queue_set_addr_locked(vdev, q, VIRTIO_RING_AVAIL, b + 0x200);
    virtio_queue_set_addr_locked(vdev, q, VIRTIO_RING_USED, b + 0x300);
    virtio_queue_enable_locked(vdev, q, 1);
}

void fuzz_virtio_bring_up(struct virtio_device *vdev, uint16_t size)
{
    pthread_mutex_lock(&vdev->lock);
    virtio_set_status_locked(vdev, VIRTIO_STATUS_ACKNOWLEDGE, false);
    virtio_set_status_locked(vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, false);
    virtio_set_driver_features_locked(vdev, 0, (uint32_t)vdev->device_features);
    virtio_set_driver_features_locked(vdev, 1, (uint32_t)(vdev->device_features >> 32));
    virtio_set_status_locked(
        vdev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, false);
    for (unsigned q = 0; q < vdev->num_queues && q < 8; q++)
        queue_setup(vdev, q, size);
    virtio_set_status_locked(vdev, 0x0f, false);
    pthread_mutex_unlock(&vdev->lock);
    fuzz_virtio_poll(vdev);
}

/* Descriptor i of the table at `table`. */
static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t d[16];
    le64_store(d, addr);
    le32_store(d + 8, len);
    le16_store(d + 12, flags);
    le16_store(d + 14, next);
    guest_mem_write(&fake_mem, table + 16ull * i, d, sizeof(d));
}

/* A buffer address: mostly in the data area (so chains are usable),
 * sometimes anywhere fi_gpa() goes. */
static uint64_t buf_addr(struct fuzz_in *in)
{
    uint8_t sel = fi_u8(in);
    if (sel < 0xe0)
        return FUZZ_VQ_DATA + (uint64_t)fi_u16(in) % (FUZZ_RAM_SIZE - FUZZ_VQ_DATA);
    return fi_gpa(in);
}

/* Writes a chain of n descriptors from `first` in queue q's table (or an
 * indirect table in the data area, pointed at by descriptor `first`),
 * then makes `first` available and notifies. */
void fuzz_vq_post(uint64_t b, uint16_t size, struct fuzz_in *in)
{
    uint8_t hdr = fi_u8(in);
    unsigned n = 1 + (hdr & 7);
    bool indirect = hdr & 0x80;
    uint16_t first = fi_u8(in) % FUZZ_VQ_MAX_SIZE;
    uint64_t table = b;
    unsigned start = first;
    if (indirect) {
        table = FUZZ_VQ_DATA + (fi_u16(in) & 0x7ff0);
        put_desc(b, first, table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
        start = 0;
    }
    for (unsigned i = 0; i < n; i++) {
        uint8_t raw = fi_u8(in);
        /* Usually well linked (the next descriptor), sometimes anything:
         * bit 7 an explicit next, bit 6 a NEXT flag on the last one too. */
        uint16_t next = (raw & 0x80) ? fi_u8(in) : (uint16_t)(start + i + 1);
        uint16_t flags = raw & (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT);
        if (i + 1 < n || (raw & 0x40))
            flags |= VIRTQ_DESC_F_NEXT;
        uint64_t addr = buf_addr(in);
        uint32_t len = fi_u16(in);
        put_desc(table, start + i, addr, len, flags, next);
    }
    uint8_t *avail = guest_mem_ptr(&fake_mem, b + 0x200, 4 + 2 * FUZZ_VQ_MAX_SIZE, true);
    uint16_t idx = le16_load(avail + 2);
    size = size ? size : 1;
    le16_store(avail + 4 + 2 * (idx % size), first);
    __atomic_store_n((uint16_t *)(void *)(avail + 2), (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

bool fuzz_virtio_op(struct virtio_device *vdev, uint8_t op, struct fuzz_in *in)
{
    unsigned nq = vdev->num_queues;
    switch (op) {
    case 0: /* guest memory */
        fi_mem_write(in);
        return true;
    case 1: { /* status */
        uint8_t v = fi_u8(in);
        bool legacy = fi_u8(in) & 1;
        pthread_mutex_lock(&vdev->lock);
        virtio_set_status_locked(vdev, v, legacy);
        pthread_mutex_unlock(&vdev->lock);
        fuzz_virtio_poll(vdev);
        return true;
    }
    case 2: { /* feature words */
        unsigned word = fi_u8(in) & 1;
        uint32_t v = fi_u32(in);
        pthread_mutex_lock(&vdev->lock);
        virtio_set_driver_features_locked(vdev, word, v);
        pthread_mutex_unlock(&vdev->lock);
        return true;
    }
    case 3: { /* legacy features */
        uint32_t v = fi_u32(in);
        pthread_mutex_lock(&vdev->lock);
        virtio_set_legacy_features_locked(vdev, v);
        pthread_mutex_unlock(&vdev->lock);
        return true;
    }
    case 4: { /* queue size */
        unsigned q = fi_u8(in) % nq;
        uint64_t size = fi_u8(in) & 0x80 ? fi_u64(in) : fi_u8(in);
        pthread_mutex_lock(&vdev->lock);
        virtio_queue_set_size_locked(vdev, q, size);
        pthread_mutex_unlock(&vdev->lock);
        return true;
    }
    case 5: { /* queue ring address */
        unsigned q = fi_u8(in) % nq;
        enum virtio_ring_part part = (enum virtio_ring_part)(fi_u8(in) % 3);
        uint64_t gpa = fi_gpa(in);
        pthread_mutex_lock(&vdev->lock);
        virtio_queue_set_addr_locked(vdev, q, part, gpa);
        (void)virtio_queue_addr(vdev, q, part);
        pthread_mutex_unlock(&vdev->lock);
        return true;
    }
    case 6: { /* queue enable */
        unsigned q = fi_u8(in) % nq;
        uint64_t v = fi_u8(in) & 0x80 ? fi_u64(in) : 1;
        pthread_mutex_lock(&vdev->lock);
        virtio_queue_enable_locked(vdev, q, v);
        pthread_mutex_unlock(&vdev->lock);
        fuzz_virtio_poll(vdev);
        return true;
    }
    case 7: { /* legacy queue PFN */
        unsigned q = fi_u8(in) % nq;
        uint32_t pfn = fi_u8(in) & 0x80 ? fi_u32(in) : fi_u8(in) & 0x1f;
        pthread_mutex_lock(&vdev->lock);
        virtio_queue_set_legacy_pfn_locked(vdev, q, pfn);
        pthread_mutex_unlock(&vdev->lock);
        fuzz_virtio_poll(vdev);
        return true;
    }
    case 8: /* notify */
        virtio_queue_kick(vdev, fi_u8(in) % nq);
        fuzz_virtio_poll(vdev);
        return true;
    case 9: { /* post a chain on a queue and notify */
        unsigned q = fi_u8(in) % nq;
        fuzz_vq_post(fuzz_vq_base(q), vdev->queues[q].vq.size, in);
        virtio_queue_kick(vdev, q);
        fuzz_virtio_poll(vdev);
        return true;
    }
    case 10: { /* configuration read */
        unsigned off = fi_u8(in);
        (void)virtio_config_read(vdev, off, fi_size(in));
        (void)virtio_config_generation(vdev);
        (void)virtio_status(vdev);
        return true;
    }
    case 11: { /* configuration write */
        unsigned off = fi_u8(in);
        unsigned size = fi_size(in);
        virtio_config_write(vdev, off, size, fi_u64(in));
        return true;
    }
    case 12: /* reset */
        pthread_mutex_lock(&vdev->lock);
        virtio_reset_locked(vdev);
        pthread_mutex_unlock(&vdev->lock);
        return true;
    case 13: { /* state dump view of a queue */
        char ring[128], dev[128];
        virtio_describe_queue(vdev, fi_u8(in) % nq, ring, sizeof(ring), dev, sizeof(dev));
        return true;
    }
    case 14: { /* the usual queue setup, one queue */
        unsigned q = fi_u8(in) % nq;
        uint16_t size = (uint16_t)(1u << (fi_u8(in) % 6));
        pthread_mutex_lock(&vdev->lock);
        queue_setup(vdev, q, size);
        pthread_mutex_unlock(&vdev->lock);
        fuzz_virtio_poll(vdev);
        return true;
    }
    case 15: /* pause and resume */
        virtio_device_pause(vdev);
        virtio_device_resume(vdev);
        fuzz_virtio_poll(vdev);
        return true;
    default:
        return false;
    }
}

void fuzz_virtio_run(struct virtio_device *vdev, struct fuzz_in *in,
                     const struct fuzz_virtio_hooks *hooks)
{
    uint8_t first = fi_u8(in);
    if (!(first & 0x80))
        fuzz_virtio_bring_up(vdev, (uint16_t)(1u << (first % 6)));
    for (unsigned steps = 0; fi_more(in) && steps < 512; steps++) {
        uint8_t op = fi_u8(in);
        /* The common operations take 0..15 (0..31 twice as often as the
         * target's own, which get 32..63). */
        op &= 63;
        if (op >= 32 && hooks->extra) {
            hooks->extra(hooks->opaque, (uint8_t)(op - 32), in);
            continue;
        }
        op &= 15;
        if (hooks->settle && (op == 1 || op == 7 || op == 12 || op == 15))
            hooks->settle(hooks->opaque);
        fuzz_virtio_op(vdev, op, in);
    }
    if (hooks->settle)
        hooks->settle(hooks->opaque);
}
