/* The virtio-pci modern interface of the test guest's drivers (see
 * virtio_modern.h). */
#include "virtio_modern.h"

#include <stddef.h>

#include "pci.h"

void *memset(void *d, int c, size_t n);

bool virtio_modern_map(unsigned bus, unsigned dev, const uint64_t bar_addr[6],
                       struct virtio_modern *v)
{
    v->common = pci_virtio_cap(bus, dev, bar_addr, 1, 0);
    v->notify = pci_virtio_cap(bus, dev, bar_addr, 2, &v->notify_mult);
    v->devcfg = pci_virtio_cap(bus, dev, bar_addr, 4, 0);
    return v->common && v->notify && v->devcfg;
}

bool virtio_modern_reset(const struct virtio_modern *v, const struct cpl3_session *u)
{
    w8(v->common, VCOM_STATUS, 0);
    uint64_t deadline = u_deadline(u, 1000);
    while (r8(v->common, VCOM_STATUS) != 0) {
        if (tsc_passed(deadline))
            return false;
        cpu_relax();
    }
    return true;
}

bool virtio_modern_begin(const struct virtio_modern *v, struct cpl3_session *u, uint64_t *offered)
{
    volatile uint8_t *c = v->common;
    if (!virtio_modern_reset(v, u)) {
        u_fail(u, "virtio reset did not complete");
        return false;
    }
    w8(c, VCOM_STATUS, VST_ACK);
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER);
    w32(c, VCOM_DFSELECT, 0);
    uint64_t f = r32(c, VCOM_DF);
    w32(c, VCOM_DFSELECT, 1);
    f |= (uint64_t)r32(c, VCOM_DF) << 32;
    if (!(f & VIRTIO_F_VERSION_1)) {
        u_fail(u, "device does not offer VIRTIO_F_VERSION_1");
        return false;
    }
    *offered = f;
    return true;
}

bool virtio_modern_accept(const struct virtio_modern *v, struct cpl3_session *u, uint64_t features)
{
    volatile uint8_t *c = v->common;
    w32(c, VCOM_GFSELECT, 0);
    w32(c, VCOM_GF, (uint32_t)features);
    w32(c, VCOM_GFSELECT, 1);
    w32(c, VCOM_GF, (uint32_t)(features >> 32));
    w8(c, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK);
    if (!(r8(c, VCOM_STATUS) & VST_FEATURES_OK)) {
        u_fail(u, "device refused FEATURES_OK");
        return false;
    }
    return true;
}

bool virtio_modern_queue_setup(const struct virtio_modern *v, struct virtq *q, uint16_t index,
                               uint16_t max_size, uint64_t rings, bool event_idx)
{
    volatile uint8_t *c = v->common;
    w16(c, VCOM_Q_SELECT, index);
    uint16_t device_max = r16(c, VCOM_Q_SIZE);
    uint16_t size = max_size;
    while (size > device_max)
        size >>= 1;
    if (size < 8)
        return false;
    memset((void *)(uintptr_t)rings, 0, VIRTQ_RINGS_SIZE);
    memset(q, 0, sizeof(*q));
    q->desc = (volatile struct virtq_desc *)(uintptr_t)rings;
    q->avail = (volatile struct virtq_avail *)(uintptr_t)(rings + VIRTQ_AVAIL_OFF);
    q->used = (volatile struct virtq_used *)(uintptr_t)(rings + VIRTQ_USED_OFF);
    q->index = index;
    q->size = size;
    q->event_idx = event_idx;
    w16(c, VCOM_Q_SIZE, size);
    w16(c, VCOM_Q_MSIX, 0xffff);
    w64(c, VCOM_Q_DESC, rings);
    w64(c, VCOM_Q_AVAIL, rings + VIRTQ_AVAIL_OFF);
    w64(c, VCOM_Q_USED, rings + VIRTQ_USED_OFF);
    q->notify = (volatile uint16_t *)(v->notify + (uint64_t)r16(c, VCOM_Q_NOFF) * v->notify_mult);
    if (event_idx)
        q->avail->ring[size] = 0x8000; /* used_event half the index space away */
    else
        q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
    w16(c, VCOM_Q_ENABLE, 1);
    return true;
}

void virtio_modern_driver_ok(const struct virtio_modern *v)
{
    w8(v->common, VCOM_STATUS, VST_ACK | VST_DRIVER | VST_FEATURES_OK | VST_DRIVER_OK);
}
