/* pci-virtio-block: a virtio block device (type 2; on PCI, transitional ID
 * 1af4:1001, subsystem 1af4:0002, class 0x010000) over a struct
 * block_backend. It implements the virtio core's device ops only
 * (virtio.h); the transport wraps it (virtio_pci_create).
 *
 * Offered features: SEG_MAX (126), BLK_SIZE (the back end's block size),
 * FLUSH, RO (a read-only back end), DISCARD and WRITE_ZEROES (if the back
 * end can; one segment per request), MQ (more than one queue), plus the
 * transport's VERSION_1, ANY_LAYOUT, INDIRECT_DESC and EVENT_IDX.
 * Requests: IN, OUT, FLUSH, GET_ID (the block_dev name, 20 bytes, NUL
 * padded), DISCARD, WRITE_ZEROES; anything else completes with UNSUPP, a
 * sector range outside the disk or not aligned to the block size with IOERR,
 * a write to a read-only disk with IOERR. The status byte is written last,
 * just before the chain goes back on the used ring.
 *
 * Each queue's I/O loop (one thread per queue) parses requests and submits
 * them to the back end; completions arrive on back-end threads, and touch the device only
 * while counted in flight (waking a starved worker included), so nothing
 * reaches a device whose queues have quiesced. A queue keeps at most
 * queue-size requests in flight (a fixed pool allocated when the queue
 * starts): beyond that it waits for completions, so a hostile guest cannot
 * make the VMM allocate. Skip-flush is the back end's business: flushes are
 * always passed down. Pause waits for every request in flight to complete
 * into the used ring.
 *
 * State (under "blk."): the configuration, which the guest cannot write;
 * a state from another disk (capacity, block size, queues, limits) is
 * refused.
 *
 * The device does not own the back end: destroy back ends after the
 * machine (which destroys its devices, draining their requests). */
#ifndef VIRTIO_VIRTIO_BLK_H
#define VIRTIO_VIRTIO_BLK_H

#include <stdint.h>

#include "block/block.h"
#include "virtio/virtio.h"

#define VIRTIO_BLK_DEFAULT_QUEUES 4
#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_SEG_MAX 126
#define VIRTIO_BLK_MAX_BUFS (VIRTIO_BLK_SEG_MAX + 2) /* + header and status */
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_CONFIG_SIZE 0x3c
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */

/* Feature bits. */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_F_UNMAP 1

/* Configuration layout (struct virtio_blk_config). */
#define VIRTIO_BLK_CFG_CAPACITY 0x00
#define VIRTIO_BLK_CFG_SIZE_MAX 0x08
#define VIRTIO_BLK_CFG_SEG_MAX 0x0c
#define VIRTIO_BLK_CFG_BLK_SIZE 0x14
#define VIRTIO_BLK_CFG_NUM_QUEUES 0x22
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS 0x24
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG 0x28
#define VIRTIO_BLK_CFG_DISCARD_ALIGN 0x2c
#define VIRTIO_BLK_CFG_MAX_WZ_SECTORS 0x30
#define VIRTIO_BLK_CFG_MAX_WZ_SEG 0x34
#define VIRTIO_BLK_CFG_WZ_MAY_UNMAP 0x38

struct virtio_blk_params {
    const char *name;              /* the [dev.NAME] name, for messages */
    struct block_backend *backend; /* GET_ID serial = backend->name */
    unsigned num_queues;           /* 0: VIRTIO_BLK_DEFAULT_QUEUES; at most 16 */
    const struct guest_mem *mem;
};

/* Builds the device; the caller hands it to a transport
 * (virtio_pci_create), which owns it from then on. Returns NULL (logged)
 * on error. */
struct virtio_device *virtio_blk_create(const struct virtio_blk_params *params);

/* Test seam, NULL in the VMM: when set, a completion that found its
 * queue's worker starved calls it after its request is back in the pool
 * and before it wakes the worker, i.e. while it still touches the device.
 * tests/unit/test_virtio_blk.c holds a completion there to check that a
 * quiesce (reset, destroy) waits for it. Set it before the completion's
 * thread exists. */
extern void (*virtio_blk_wake_hook)(void);

#endif
