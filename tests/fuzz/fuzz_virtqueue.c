/* The split-virtqueue walker (src/virtio/virtqueue.c) on its own: the input
 * configures a queue (size, ring addresses anywhere, legacy PFN, ring
 * features), writes guest memory and chains (direct, indirect, nested,
 * looped, out of RAM), and pops and pushes. Every chain the walker hands
 * out is checked: each buffer inside one guest memory region, writable
 * ones outside the read-only region, no more buffers than the caller's
 * iovec array, and the byte counts adding up. */
#include <stdlib.h>
#include <string.h>

#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#include "fuzz_virtio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_HELD 64
#define IOV_MAX_CAP 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

/* True if [p, p+len) lies inside one region; *ro set if it is read-only. */
static bool in_region(const uint8_t *p, size_t len, bool *ro)
{
    for (unsigned r = 0; r < fake_mem.count; r++) {
        const struct guest_mem_region *g = &fake_mem.regions[r];
        if (p >= g->hva && len <= g->size && (size_t)(p - g->hva) <= g->size - len) {
            *ro = g->readonly;
            return true;
        }
    }
    return false;
}

static void check_chain(const struct virtq *vq, const struct virtq_chain *ch)
{
    if (ch->head >= vq->size || ch->nout + ch->nin > ch->iov_cap)
        abort();
    uint64_t out = 0, in = 0;
    for (unsigned i = 0; i < ch->nout + ch->nin; i++) {
        bool ro = false;
        if (ch->iov[i].iov_len == 0 || !in_region(ch->iov[i].iov_base, ch->iov[i].iov_len, &ro))
            abort(); /* a buffer the guest does not own */
        if (i >= ch->nout && ro)
            abort(); /* the device would write the guest's ROM */
        if (i < ch->nout)
            out += ch->iov[i].iov_len;
        else
            in += ch->iov[i].iov_len;
    }
    if (out != ch->out_bytes || in != ch->in_bytes)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    struct log_ratelimit log = {0};
    struct virtq vq;
    uint16_t max = (uint16_t)(1u << (fi_u8(&in) % 6));
    virtq_init(&vq, "fuzzq", 0, max, &log);
    uint16_t held[MAX_HELD];
    unsigned nheld = 0;
    struct iovec iov[IOV_MAX_CAP];
    for (unsigned steps = 0; fi_more(&in) && steps < 512; steps++) {
        switch (fi_u8(&in) % 11) {
        case 0:
            fi_mem_write(&in);
            break;
        case 1: { /* configure and activate, the usual layout or anything */
            virtq_deactivate(&vq);
            nheld = 0;
            uint8_t how = fi_u8(&in);
            uint64_t sz = how & 1 ? fi_u16(&in) : 1u << (fi_u8(&in) % 6);
            if (virtq_size_valid(&vq, sz))
                vq.size = (uint16_t)sz;
            if (how & 2) {
                vq.desc_gpa = fi_gpa(&in);
                vq.avail_gpa = fi_gpa(&in);
                vq.used_gpa = fi_gpa(&in);
            } else {
                vq.desc_gpa = fuzz_vq_base(0);
                vq.avail_gpa = fuzz_vq_base(0) + 0x200;
                vq.used_gpa = fuzz_vq_base(0) + 0x300;
            }
            uint64_t features = 0;
            if (how & 4)
                features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
            if (how & 8)
                features |= 1ull << VIRTIO_RING_F_EVENT_IDX;
            if (how & 16)
                features |= 1ull << VIRTIO_F_VERSION_1;
            virtq_activate(&vq, &fake_mem, features);
            break;
        }
        case 2: /* legacy PFN, then activate */
            virtq_deactivate(&vq);
            nheld = 0;
            virtq_set_legacy_pfn(&vq, fi_u8(&in) & 0x80 ? fi_u32(&in) : fi_u8(&in) & 0x1f);
            virtq_activate(&vq, &fake_mem,
                           fi_u8(&in) & 1 ? 1ull << VIRTIO_RING_F_INDIRECT_DESC : 0);
            break;
        case 3: /* a chain in the usual layout */
            if (vq.active && vq.desc_gpa == fuzz_vq_base(0))
                fuzz_vq_post(fuzz_vq_base(0), vq.size, &in);
            break;
        case 4: { /* pop */
            if (!vq.active)
                break;
            struct virtq_chain ch = {.iov = iov, .iov_cap = 1 + fi_u8(&in) % IOV_MAX_CAP};
            enum virtq_pop_result r = virtq_pop(&vq, &ch);
            if (r == VIRTQ_CHAIN) {
                check_chain(&vq, &ch);
                if (nheld < MAX_HELD)
                    held[nheld++] = ch.head;
                else
                    virtq_push(&vq, ch.head, 0);
            } else if (r == VIRTQ_ERROR) {
                /* What a transport does: the queue is no longer used. */
                virtq_deactivate(&vq);
                nheld = 0;
            }
            break;
        }
        case 5: /* push one held chain */
            if (vq.active && nheld) {
                unsigned i = fi_u8(&in) % nheld;
                virtq_push(&vq, held[i], fi_u32(&in));
                held[i] = held[--nheld];
            }
            break;
        case 6: { /* push several at once */
            if (!vq.active || !nheld)
                break;
            unsigned n = 1 + fi_u8(&in) % nheld;
            uint32_t lens[MAX_HELD];
            for (unsigned i = 0; i < n; i++)
                lens[i] = fi_u16(&in);
            virtq_push_many(&vq, held + nheld - n, lens, n);
            nheld -= n;
            break;
        }
        case 7:
            if (vq.active)
                virtq_disable_notify(&vq);
            break;
        case 8:
            if (vq.active) {
                (void)virtq_enable_notify(&vq);
                (void)virtq_has_available(&vq);
            }
            break;
        case 9: { /* the state dump's view */
            char buf[160];
            virtq_describe(&vq, fi_u8(&in) & 1, buf, sizeof(buf));
            break;
        }
        default: /* reset */
            virtq_reset(&vq);
            nheld = 0;
            break;
        }
    }
    virtq_deactivate(&vq);
    virtq_destroy(&vq);
    return 0;
}
