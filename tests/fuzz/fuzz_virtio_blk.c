/* virtio-blk (src/virtio/virtio_blk.c) over the fake block back end: the
 * input picks the disk (block size, read-only, discard and write-zeroes,
 * synchronous or with requests held in flight, 1 or 2 queues), then
 * drives the device as a hostile driver (fuzz_virtio.h): requests of any
 * type, sector and shape, chains direct, indirect, looped or outside RAM,
 * resets and pauses with requests in flight, completions in any order. */
#include <stdlib.h>
#include <string.h>

#include "virtio/virtio_blk.h"

#include "fuzz_virtio.h"
#include "support/fake_block.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

static void extra(void *opaque, uint8_t op, struct fuzz_in *in)
{
    struct fake_block *fb = opaque;
    switch (op % 3) {
    case 0: /* the back end completes some requests, newest first */
        fake_block_complete_n(fb, fi_u8(in) % 8 + 1u);
        break;
    case 1: /* ... or every one */
        fake_block_complete_all(fb);
        break;
    default: /* the back end starts failing, or recovers */
        fb->fail_status = fi_u8(in) & 1 ? -5 /* EIO */ : 0;
        break;
    }
}

static void settle(void *opaque)
{
    fake_block_complete_all(opaque);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    struct fake_block fb;
    uint8_t shape = fuzz_disk_init(&fb, &in);
    fb.async = shape & 32;
    fb.drain_completes = true;
    struct virtio_device *vdev = virtio_blk_create(&(struct virtio_blk_params){
        .name = "vblk", .backend = &fb.be, .num_queues = shape & 64 ? 2 : 1, .mem = &fake_mem});
    if (!vdev)
        abort();
    fuzz_virtio_run(vdev, &in, &(struct fuzz_virtio_hooks){extra, settle, &fb});
    virtio_device_destroy(vdev);
    if (fake_block_pending(&fb) != 0)
        abort(); /* the device went away with requests at the back end */
    fake_block_fini(&fb);
    return 0;
}
