/* The virtio-pci modern interface (virtio 1.x) as the test guest's
 * drivers use it: register offsets, status and feature bits, the split
 * virtqueue's ring layout, and the initialisation steps both CPL3 drivers
 * (storage_bench.c: virtio-blk, net_test.c: virtio-net) take. The device
 * fuzzer (device_fuzz.c) uses the offsets and bits to break the rules. */
#ifndef TESTGUEST_VIRTIO_MODERN_H
#define TESTGUEST_VIRTIO_MODERN_H

#include <stdbool.h>
#include <stdint.h>

#include "cpl3.h"
#include "mmio.h"

/* Common configuration structure (virtio 1.x section 4.1.4.3). */
enum {
    VCOM_DFSELECT = 0x00,
    VCOM_DF = 0x04,
    VCOM_GFSELECT = 0x08,
    VCOM_GF = 0x0c,
    VCOM_NUM_QUEUES = 0x12,
    VCOM_STATUS = 0x14,
    VCOM_GENERATION = 0x15,
    VCOM_Q_SELECT = 0x16,
    VCOM_Q_SIZE = 0x18,
    VCOM_Q_MSIX = 0x1a,
    VCOM_Q_ENABLE = 0x1c,
    VCOM_Q_NOFF = 0x1e,
    VCOM_Q_DESC = 0x20,
    VCOM_Q_AVAIL = 0x28, /* the driver area */
    VCOM_Q_USED = 0x30,  /* the device area */
};

/* Device status bits. */
#define VST_ACK 1
#define VST_DRIVER 2
#define VST_DRIVER_OK 4
#define VST_FEATURES_OK 8
#define VST_NEEDS_RESET 0x40

#define VIRTIO_F_EVENT_IDX (1ULL << 29)
#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* The largest queue the drivers set up. */
#define VIRTQ_MAX 256

/* A queue's rings, 4 KiB apart from its ring area's start (enough for
 * VIRTQ_MAX entries each). */
#define VIRTQ_AVAIL_OFF 0x1000
#define VIRTQ_USED_OFF 0x2000
#define VIRTQ_RINGS_SIZE 0x3000

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

struct virtq_avail {
    uint16_t flags, idx;
    uint16_t ring[VIRTQ_MAX + 1]; /* + used_event at ring[size] */
};

struct virtq_used_elem {
    uint32_t id, len;
};

struct virtq_used {
    uint16_t flags, idx;
    struct virtq_used_elem ring[VIRTQ_MAX];
    uint16_t avail_event_max; /* avail_event is at ring[size] for smaller queues */
};

/* A split virtqueue as the drivers drive it (one chain head per request or
 * buffer; the drivers read the used ring themselves). */
struct virtq {
    volatile struct virtq_desc *desc;
    volatile struct virtq_avail *avail;
    volatile struct virtq_used *used;
    volatile uint16_t *notify;
    uint16_t index, size;
    uint16_t avail_idx; /* the next avail ring entry the driver fills */
    uint16_t avail_pub; /* the avail index the device was last shown */
    uint16_t last_used; /* the next used ring entry the driver takes */
    bool event_idx;     /* VIRTIO_F_EVENT_IDX negotiated */
};

/* Puts a chain's head in the next avail ring entry (the device sees it
 * after virtq_publish). */
static inline void virtq_add(struct virtq *q, uint16_t head)
{
    q->avail->ring[q->avail_idx & (q->size - 1)] = head;
    q->avail_idx++;
}

/* Shows the device the heads added since the last call and notifies it
 * unless it said it need not (avail_event, or VIRTQ_USED_F_NO_NOTIFY);
 * returns whether it notified (a kick: an MMIO exit). */
static inline bool virtq_publish(struct virtq *q)
{
    if (q->avail_pub == q->avail_idx)
        return false;
    barrier(); /* the ring entries before the index */
    q->avail->idx = q->avail_idx;
    full_fence(); /* the index before reading what the device wants */
    bool need;
    if (q->event_idx) {
        /* avail_event: the used ring's entry after its last. */
        uint16_t avail_event = *(volatile uint16_t *)(uintptr_t)(q->used->ring + q->size);
        need = (uint16_t)(q->avail_idx - avail_event - 1) < (uint16_t)(q->avail_idx - q->avail_pub);
    } else {
        need = !(q->used->flags & VIRTQ_USED_F_NO_NOTIFY);
    }
    q->avail_pub = q->avail_idx;
    if (need)
        *q->notify = q->index;
    return need;
}

/* The regions a function's virtio vendor capabilities point at, mapped
 * through its BARs. */
struct virtio_modern {
    volatile uint8_t *common, *notify, *devcfg;
    uint32_t notify_mult; /* bytes between queues' notify addresses */
};

/* CPL0: finds the common, notify and device configuration regions of
 * bus:dev, whose BARs are assigned at bar_addr (NULL where absent); false
 * when one of them is missing. */
bool virtio_modern_map(unsigned bus, unsigned dev, const uint64_t bar_addr[6],
                       struct virtio_modern *v);

/* The rest runs at CPL3. */

/* Writes status 0 and waits up to 1 s for the device to read back 0 (its
 * reset done); false when it did not. */
bool virtio_modern_reset(const struct virtio_modern *v, const struct cpl3_session *u);

/* Initialisation up to the features: reset, ACKNOWLEDGE, DRIVER; *offered
 * gets the device's feature bits. False (u_fail says why) when the reset
 * did not complete or the device does not offer VIRTIO_F_VERSION_1. */
bool virtio_modern_begin(const struct virtio_modern *v, struct cpl3_session *u, uint64_t *offered);

/* Writes the features the driver takes, then FEATURES_OK; false (u_fail
 * says why) when the device refused them. */
bool virtio_modern_accept(const struct virtio_modern *v, struct cpl3_session *u, uint64_t features);

/* Sets up and enables queue index as *q: the largest power-of-two size up
 * to max_size that the device allows, its rings zeroed at rings (see
 * VIRTQ_AVAIL_OFF), no MSI-X vector, and no interrupts wanted (used_event
 * far ahead with event_idx, else VIRTQ_AVAIL_F_NO_INTERRUPT): the drivers
 * poll. False when the device's queue holds fewer than 8 entries (then
 * nothing was set up; the caller says so in its words). */
bool virtio_modern_queue_setup(const struct virtio_modern *v, struct virtq *q, uint16_t index,
                               uint16_t max_size, uint64_t rings, bool event_idx);

/* Sets DRIVER_OK: the device is live. */
void virtio_modern_driver_ok(const struct virtio_modern *v);

#endif
