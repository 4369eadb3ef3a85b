/* Internals of the NVMe controller shared by nvme.c (PCI function,
 * registers, doorbells, queues, interrupts, worker), nvme_admin.c (admin
 * command set) and nvme_io.c (PRP walking, NVM command set). Not for other
 * modules: they use nvme.h.
 *
 * Locking, outermost first:
 *   ctrl->lock   registers, admin queue processing, I/O queue creation and
 *                deletion, features, asynchronous events. Held on vCPU threads
 *                (register and admin doorbell writes); never taken by the
 *                worker or by back-end completions.
 *   sq->lock     one submission queue: tail (doorbell), head, active flag,
 *                request pool and in-flight count.
 *   cq->lock     one completion queue: head (doorbell), tail, phase, slots
 *                reserved by fetched commands.
 *   pci.lock     (the PCI function's) INTx level computation.
 *   ctrl->work_lock  the worker's pending set, follow-up list and wake-up.
 * A queue's shadow doorbell fields (struct nvme_shadow) are under the
 * queue's lock (the admin SQ's also under ctrl->lock, which every user of
 * them holds), and change only with ctrl->lock held as well.
 * The worker is an io_loop (core/io_loop.h) on a thread of its own, woken
 * through kick_fd (an eventfd) only when it is idle and not already woken,
 * so a doorbell costs at most one write(2), as the condvar's wake-up did.
 * A command is fetched from its SQ only after a slot of its CQ is reserved,
 * so a completion always has room: the CQ never overflows and completions
 * never wait; a full CQ stops the fetching until its head doorbell moves. */
#ifndef NVME_NVME_INT_H
#define NVME_NVME_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/block.h"
#include "common/log.h"
#include "core/guest_mem.h"
#include "core/io_loop.h"
#include "core/timer.h"
#include "nvme/nvme.h"
#include "pci/msix.h"
#include "pci/pci.h"

/* ---- Limits ---- */

#define NVME_PAGE_SHIFT 12
#define NVME_PAGE_SIZE (1u << NVME_PAGE_SHIFT) /* CAP.MPSMIN = CAP.MPSMAX = 0 */
#define NVME_MAX_IO_QUEUES 16                  /* I/O SQs and CQs each */
#define NVME_NUM_QUEUES (NVME_MAX_IO_QUEUES + 1)
#define NVME_MQES 2047 /* CAP.MQES, 0's based: queues of up to 2048 entries */
#define NVME_MDTS 8    /* 2^8 pages = 1 MiB */
#define NVME_MAX_XFER ((uint64_t)NVME_PAGE_SIZE << NVME_MDTS)
#define NVME_MAX_IOV (NVME_MAX_XFER / NVME_PAGE_SIZE + 1)
#define NVME_SQ_MAX_INFLIGHT 128 /* commands of one SQ at the back end at once */
#define NVME_MSIX_VECTORS 32
#define NVME_AERL 3 /* 0's based: four outstanding Asynchronous Event Requests */
#define NVME_ACL 3  /* 0's based: four outstanding Aborts */
#define NVME_MAX_EVENTS 8
#define NVME_DSM_MAX_RANGES 256
#define NVME_SQE_SIZE 64
#define NVME_CQE_SIZE 16
#define NVME_SQES_LOG2 6
#define NVME_CQES_LOG2 4
#define NVME_FETCH_BATCH 32 /* commands taken from one SQ before looking at the next */
#define NVME_DB_STRIDE 4    /* bytes between doorbells: CAP.DSTRD = 0 */
/* The shadow doorbell and EventIdx entries of every queue id, in bytes: the
 * part of each Doorbell Buffer Config buffer the controller uses. */
#define NVME_DBBUF_SPAN (2u * NVME_NUM_QUEUES * NVME_DB_STRIDE)

/* ---- BARs ---- */

#define NVME_BAR0_SIZE 0x4000 /* registers + doorbells */
#define NVME_MSIX_BAR 4
#define NVME_MSIX_BAR_SIZE 0x1000
#define NVME_MSIX_TABLE_OFFSET 0x000
#define NVME_MSIX_PBA_OFFSET 0x800

/* ---- Registers ---- */

#define NVME_REG_CAP 0x00
#define NVME_REG_VS 0x08
#define NVME_REG_INTMS 0x0c
#define NVME_REG_INTMC 0x10
#define NVME_REG_CC 0x14
#define NVME_REG_CSTS 0x1c
#define NVME_REG_NSSR 0x20
#define NVME_REG_AQA 0x24
#define NVME_REG_ASQ 0x28
#define NVME_REG_ACQ 0x30
#define NVME_REG_DBS 0x1000

#define NVME_VERSION 0x00010400u /* 1.4.0 */

#define NVME_CAP_CQR (1ull << 16)
#define NVME_CAP_TO_SHIFT 24
#define NVME_CAP_TO 0x0f /* 7.5 s, in 500 ms units */
#define NVME_CAP_CSS_NVM (1ull << 37)

#define NVME_CC_EN 0x1u
#define NVME_CC_CSS(cc) (((cc) >> 4) & 0x7)
#define NVME_CC_MPS(cc) (((cc) >> 7) & 0xf)
#define NVME_CC_AMS(cc) (((cc) >> 11) & 0x7)
#define NVME_CC_SHN(cc) (((cc) >> 14) & 0x3)
#define NVME_CC_IOSQES(cc) (((cc) >> 16) & 0xf)
#define NVME_CC_IOCQES(cc) (((cc) >> 20) & 0xf)
#define NVME_CC_WRITABLE 0x00fffff1u
#define NVME_CC_SETUP_FIELDS 0x00003ff0u /* CSS, MPS, AMS: fixed while enabled */

#define NVME_CSTS_RDY 0x1u
#define NVME_CSTS_CFS 0x2u
#define NVME_CSTS_SHST_MASK 0xcu
#define NVME_CSTS_SHST_COMPLETE 0x8u

#define NVME_AQA_ASQS(aqa) ((aqa)&0xfff)
#define NVME_AQA_ACQS(aqa) (((aqa) >> 16) & 0xfff)
#define NVME_AQA_WRITABLE 0x0fff0fffu

/* ---- Status: SC in bits 7:0, SCT in bits 10:8, DNR in bit 14 (the CQE
 * status field shifted right by one, leaving out the phase tag) ---- */

#define NVME_SCT_GENERIC 0
#define NVME_SCT_CMD_SPECIFIC 1
#define NVME_SCT_MEDIA 2
#define NVME_STATUS(sct, sc) ((uint16_t)(((sct) << 8) | (sc)))
#define NVME_DNR 0x4000

#define NVME_SC_SUCCESS 0x00
#define NVME_SC_INVALID_OPCODE 0x01
#define NVME_SC_INVALID_FIELD 0x02
#define NVME_SC_DATA_XFER_ERROR 0x04
#define NVME_SC_INTERNAL 0x06
#define NVME_SC_ABORT_SQ_DELETION 0x08
#define NVME_SC_INVALID_NS 0x0b
#define NVME_SC_CMD_SEQ_ERROR 0x0c
#define NVME_SC_PRP_OFFSET_INVALID 0x13
#define NVME_SC_NS_WRITE_PROTECTED 0x20
#define NVME_SC_LBA_RANGE 0x80
#define NVME_SC_CAP_EXCEEDED 0x81

#define NVME_SC_CQ_INVALID 0x00
#define NVME_SC_QID_INVALID 0x01
#define NVME_SC_QUEUE_SIZE 0x02
#define NVME_SC_ABORT_LIMIT 0x03
#define NVME_SC_AER_LIMIT 0x05
#define NVME_SC_INVALID_VECTOR 0x08
#define NVME_SC_INVALID_LOG_PAGE 0x09
#define NVME_SC_INVALID_QUEUE_DELETION 0x0c
#define NVME_SC_FEATURE_NOT_SAVEABLE 0x0d

#define NVME_SC_WRITE_FAULT 0x80
#define NVME_SC_READ_ERROR 0x81

#define NVME_OK NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_SUCCESS)
#define NVME_ERR(sc) ((uint16_t)(NVME_STATUS(NVME_SCT_GENERIC, sc) | NVME_DNR))
#define NVME_ERR_CS(sc) ((uint16_t)(NVME_STATUS(NVME_SCT_CMD_SPECIFIC, sc) | NVME_DNR))

/* ---- Commands ---- */

enum nvme_admin_opcode {
    NVME_ADM_DELETE_SQ = 0x00,
    NVME_ADM_CREATE_SQ = 0x01,
    NVME_ADM_GET_LOG_PAGE = 0x02,
    NVME_ADM_DELETE_CQ = 0x04,
    NVME_ADM_CREATE_CQ = 0x05,
    NVME_ADM_IDENTIFY = 0x06,
    NVME_ADM_ABORT = 0x08,
    NVME_ADM_SET_FEATURES = 0x09,
    NVME_ADM_GET_FEATURES = 0x0a,
    NVME_ADM_ASYNC_EVENT = 0x0c,
    NVME_ADM_DBBUF_CONFIG = 0x7c, /* Doorbell Buffer Config (NVMe 1.3) */
};

#define NVME_OACS_DBBUF (1u << 8) /* Identify Controller OACS: Doorbell Buffer Config */

enum nvme_io_opcode {
    NVME_CMD_FLUSH = 0x00,
    NVME_CMD_WRITE = 0x01,
    NVME_CMD_READ = 0x02,
    NVME_CMD_WRITE_ZEROES = 0x08,
    NVME_CMD_DSM = 0x09,
};

#define NVME_RW_FUA (1u << 30)
#define NVME_DSM_AD (1u << 2)

/* Feature identifiers. */
#define NVME_FEAT_ARBITRATION 0x01
#define NVME_FEAT_POWER_MGMT 0x02
#define NVME_FEAT_LBA_RANGE 0x03
#define NVME_FEAT_TEMP_THRESH 0x04
#define NVME_FEAT_ERROR_RECOVERY 0x05
#define NVME_FEAT_VOLATILE_WC 0x06
#define NVME_FEAT_NUM_QUEUES 0x07
#define NVME_FEAT_IRQ_COALESCE 0x08
#define NVME_FEAT_IRQ_CONFIG 0x09
#define NVME_FEAT_WRITE_ATOMIC 0x0a
#define NVME_FEAT_ASYNC_EVENT 0x0b

/* Asynchronous event types and information. */
#define NVME_AER_TYPE_ERROR 0
#define NVME_AER_INFO_INVALID_DB_REGISTER 0x00
#define NVME_AER_INFO_INVALID_DB_VALUE 0x01
#define NVME_LOG_ERROR 0x01
#define NVME_LOG_SMART 0x02
#define NVME_LOG_FW_SLOT 0x03

/* A submission queue entry as it sits in guest memory (little endian). */
struct nvme_sqe {
    uint8_t opcode;
    uint8_t flags; /* FUSE 1:0, PSDT 7:6 */
    uint16_t cid;
    uint32_t nsid;
    uint32_t cdw2, cdw3;
    uint64_t mptr;
    uint64_t prp1, prp2;
    uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
};
_Static_assert(sizeof(struct nvme_sqe) == NVME_SQE_SIZE, "SQE layout");

/* ---- Queues and requests ---- */

struct nvme_ctrl;
struct nvme_sq;

/* A Dataset Management range as it sits in guest memory. */
struct nvme_dsm_range {
    uint32_t attributes;
    uint32_t nlb; /* not 0's based */
    uint64_t slba;
};
_Static_assert(sizeof(struct nvme_dsm_range) == 16, "DSM range layout");

/* One I/O command from fetch to completion. A command needing a second
 * stage (the flush after a FUA write, the next range of a Dataset
 * Management) goes back to the worker through nvme_queue_followup. */
struct nvme_req {
    struct nvme_ctrl *ctrl;
    struct nvme_sq *sq;
    struct nvme_req *next; /* free list or follow-up list */
    uint16_t cid;
    uint8_t opcode;
    bool flush_after;   /* FUA write: a flush runs once the write is done */
    uint16_t dsm_next;  /* Dataset Management: next range to deallocate */
    uint16_t dsm_count; /* ranges to deallocate (non-empty ones, packed) */
    uint64_t bytes;     /* data moved, for the SMART counters */
    struct block_request breq;
    union {
        struct iovec iov[NVME_MAX_IOV];
        struct nvme_dsm_range ranges[NVME_DSM_MAX_RANGES];
    };
};

/* Shadow doorbells (Doorbell Buffer Config): the guest addresses of one
 * queue's entries in the shadow doorbell buffer (the driver writes its SQ
 * tail or CQ head there) and in the EventIdx buffer (the device writes
 * there the value past which the driver must ring the MMIO doorbell). */
struct nvme_shadow {
    bool on;
    uint64_t db, ei;
};

struct nvme_sq {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* broadcast when inflight reaches 0 */
    bool active;
    uint16_t qid, cqid;
    uint32_t size;
    uint64_t base;
    uint32_t head, tail;
    _Atomic uint32_t sqhd; /* head as reported in completions */
    unsigned inflight;
    bool starved; /* stopped fetching for want of a free request */
    struct nvme_req *reqs;
    unsigned nreqs;
    struct nvme_req *free;
    struct nvme_shadow shadow;
};

struct nvme_cq {
    pthread_mutex_t lock;
    bool active;
    uint16_t qid;
    uint32_t size;
    uint64_t base;
    uint32_t head, tail;
    bool phase;
    uint32_t reserved;    /* slots promised to fetched commands */
    uint32_t waiting_sqs; /* bit per SQ that stopped fetching for want of a slot */
    bool ien;
    uint16_t iv;
    unsigned sq_refs; /* SQs bound to it (ctrl->lock) */
    struct nvme_shadow shadow;
};

struct nvme_event {
    uint8_t type, info, log_page;
};

/* Feature values (ctrl->lock). */
struct nvme_features {
    uint32_t arbitration;
    uint32_t power_mgmt;
    uint16_t temp_over, temp_under;
    uint32_t error_recovery;
    uint32_t irq_coalesce;
    uint32_t write_atomic;
    uint32_t async_event_cfg;
    uint32_t irq_config[NVME_MSIX_VECTORS]; /* CD bit per vector */
};

struct nvme_ctrl {
    struct pci_device pci;
    struct msix msix;
    const struct guest_mem *mem;
    struct block_backend *be;
    const struct vm_clock *clock; /* params->clock, or own_clock */
    struct vm_clock own_clock;

    /* Namespace 1, fixed at creation. */
    uint64_t nsze; /* logical blocks */
    uint32_t lba_size;
    unsigned lba_shift;
    bool read_only, can_discard, can_write_zeroes, vwc;
    char serial[21];
    uint8_t nguid[16];

    pthread_mutex_t lock;
    uint32_t cc, csts, aqa;
    _Atomic uint32_t intms;   /* written under lock, read by the INTx logic */
    _Atomic bool write_cache; /* Volatile Write Cache feature: WCE */
    uint64_t asq, acq;
    _Atomic bool enabled;    /* CSTS.RDY: doorbells accepted */
    _Atomic bool io_stopped; /* shut down: I/O SQs are not fetched */
    uint16_t nsqa, ncqa;     /* I/O queues granted (Number of Queues), 1-based */
    unsigned io_queues;      /* I/O SQs + CQs that exist */
    struct nvme_features feat;
    uint16_t aer_cids[NVME_AERL + 1];
    unsigned aer_count;
    struct nvme_event events[NVME_MAX_EVENTS];
    unsigned event_count;
    bool error_events_masked; /* until the Error Information log is read */
    uint64_t error_count;
    /* Doorbell Buffer Config: the shadow doorbell and EventIdx buffers
     * (guest addresses, page aligned), until the controller is reset. */
    bool dbbuf;
    uint64_t dbbuf_dbs, dbbuf_eis;
    /* A shadow doorbell held a bad value where ctrl->lock could not be
     * taken (the worker); the next holder raises the error event. */
    _Atomic bool shadow_db_error;

    struct nvme_sq sqs[NVME_NUM_QUEUES];
    struct nvme_cq cqs[NVME_NUM_QUEUES];

    /* I/O worker: an io_loop watching kick_fd. */
    struct io_loop loop;
    struct io_watch kick_watch;
    int kick_fd;
    bool loop_started;
    pthread_mutex_t work_lock;
    pthread_cond_t idle_cond; /* broadcast when the worker goes idle */
    uint32_t pending;         /* bit per SQ with doorbell activity */
    struct nvme_req *followups;
    bool worker_busy; /* in its callback, will look at pending again */
    bool kick_posted; /* kick_fd written, not yet read by the worker */

    /* Pause (device_ops.pause): no command is taken from any SQ while set;
     * requests already at the back end still complete. loop_paused: the
     * worker's loop is parked (io_loop_pause). */
    _Atomic bool paused;
    bool loop_paused;

    /* INTx: bit per CQ holding entries the host has not consumed. The level
     * is computed and driven under the PCI function's lock. */
    _Atomic uint32_t intx_pending;

    /* SMART counters. */
    _Atomic uint64_t read_bytes, write_bytes, read_cmds, write_cmds;
    uint64_t created_ns; /* on clock: the base of the power-on hours */

    struct log_ratelimit db_log, io_log, admin_log, reg_log;
};

/* ---- nvme.c ---- */

/* Reserves a slot in cq for one completion; false if the CQ is full (then
 * sqid is noted and the worker is kicked once the host frees a slot) or gone. */
bool nvme_cq_reserve(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t sqid);
/* Posts a completion into a slot reserved earlier and signals the CQ's
 * interrupt. status as NVME_STATUS()/NVME_ERR(). Any thread, no lock held.
 * Dropped (logged at debug) if the CQ was torn down meanwhile. */
void nvme_cq_post(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t sqid, uint32_t sqhd,
                  uint16_t cid, uint16_t status, uint32_t dw0);
/* Gives back a reserved slot that will not be used. */
void nvme_cq_unreserve(struct nvme_cq *cq);
/* Asks the worker to look at SQ qid. Takes work_lock (innermost), so a
 * caller may hold sq->lock. */
void nvme_kick(struct nvme_ctrl *c, unsigned qid);
/* Hands a request back to the worker for its second stage (FUA flush). */
void nvme_queue_followup(struct nvme_ctrl *c, struct nvme_req *req);
/* A condition the controller cannot continue from: CSTS.CFS. ctrl->lock held. */
void nvme_fatal_locked(struct nvme_ctrl *c, const char *why);
/* Stops an SQ: no more fetching; waits until its in-flight commands have
 * completed. ctrl->lock held. */
void nvme_sq_quiesce(struct nvme_ctrl *c, struct nvme_sq *sq);
/* nvme_sq_init and nvme_cq_init take the queue's shadow doorbell entries
 * from the controller's Doorbell Buffer Config (ctrl->lock held). */
void nvme_sq_init(struct nvme_ctrl *c, struct nvme_sq *sq, uint16_t qid, uint16_t cqid,
                  uint64_t base, uint32_t size);
/* Allocates an I/O SQ's request pool. Returns false on allocation failure. */
bool nvme_sq_alloc_reqs(struct nvme_ctrl *c, struct nvme_sq *sq, uint32_t size);
void nvme_sq_teardown(struct nvme_ctrl *c, struct nvme_sq *sq);
void nvme_cq_init(struct nvme_ctrl *c, struct nvme_cq *cq, uint16_t qid, uint64_t base,
                  uint32_t size, bool ien, uint16_t iv);
void nvme_cq_teardown(struct nvme_ctrl *c, struct nvme_cq *cq);
/* Recomputes the INTx level (pin A) from the CQs and INTMS. */
void nvme_update_intx(struct nvme_ctrl *c);
/* Why Doorbell Buffer Config cannot take these buffers (both must be page
 * aligned, writable guest RAM for every queue's entries, apart); NULL if it
 * can. *eis_at_fault: the reason is the EventIdx buffer's. */
const char *nvme_dbbuf_refused(const struct nvme_ctrl *c, uint64_t dbs, uint64_t eis,
                               bool *eis_at_fault);
/* Doorbell Buffer Config with checked buffers: every existing queue moves
 * to them, its shadow entries set to the doorbell values the controller
 * has. ctrl->lock held. */
void nvme_dbbuf_enable_locked(struct nvme_ctrl *c, uint64_t dbs, uint64_t eis);
/* Zeroes queue qid's shadow doorbell and EventIdx entries (a new queue's
 * doorbell is 0). ctrl->lock held, the queue not yet created. */
void nvme_dbbuf_clear_entries(struct nvme_ctrl *c, unsigned qid, bool is_cq);
/* SQ with shadow doorbells whose head has caught up with its tail: takes
 * the driver's tail from the shadow doorbell; with nothing new there,
 * publishes EventIdx = tail (the driver rings the MMIO doorbell for its
 * next command) and looks once more, so a command written before the
 * driver could see the EventIdx is not left waiting. Returns true if the
 * SQ has entries to fetch. A tail beyond the queue is ignored and reported
 * like a bad doorbell write (nvme_raise_shadow_errors). The SQ's lock (the
 * admin SQ: ctrl->lock) held. */
bool nvme_sq_shadow_refresh(struct nvme_ctrl *c, struct nvme_sq *sq);
/* Raises the error event of a bad shadow doorbell value found where
 * ctrl->lock could not be taken: _locked with it held; the other takes it
 * only if it is free (a thread holding no controller lock). */
void nvme_raise_shadow_errors_locked(struct nvme_ctrl *c);
void nvme_raise_shadow_errors(struct nvme_ctrl *c);

/* ---- nvme_admin.c ---- */

/* The admin side of the controller's state (Number of Queues, the other
 * features, asynchronous events), staged so that a load changes nothing
 * until every field has been read and checked. */
struct nvme_admin_image {
    uint16_t nsqa, ncqa;
    struct nvme_features feat;
    bool write_cache;
    uint32_t aer_count;
    uint16_t aer_cids[NVME_AERL + 1];
    uint32_t event_count;
    struct nvme_event events[NVME_MAX_EVENTS];
    bool error_events_masked;
    uint64_t error_count;
};

struct snap;
/* Saves (from the controller, into im) or loads (into im, each field
 * checked) the admin state. ctrl->lock held. */
void nvme_admin_state(struct nvme_ctrl *c, struct snap *s, struct nvme_admin_image *im);
/* Puts a loaded image in place. ctrl->lock held. */
void nvme_admin_restore(struct nvme_ctrl *c, const struct nvme_admin_image *im);

/* Runs the admin SQ up to its tail. ctrl->lock held. */
void nvme_admin_process(struct nvme_ctrl *c);
/* Queues an asynchronous event and completes an outstanding AER if any.
 * ctrl->lock held. */
void nvme_admin_event(struct nvme_ctrl *c, uint8_t type, uint8_t info, uint8_t log_page);
/* Drops outstanding AERs and queued events (controller reset). */
void nvme_admin_reset(struct nvme_ctrl *c);
void nvme_features_default(struct nvme_ctrl *c);

/* ---- nvme_io.c ---- */

/* Builds host iovecs for the data buffer [prp1, prp2] of len bytes (len <=
 * NVME_MAX_XFER). to_guest: the device writes the buffer (a Read). Every
 * page and PRP list is checked through guest_mem. Returns NVME_OK or an
 * error status; *cnt receives the number of iovecs. */
uint16_t nvme_map_prp(struct nvme_ctrl *c, uint64_t prp1, uint64_t prp2, uint64_t len,
                      bool to_guest, struct iovec *iov, unsigned max, unsigned *cnt);
/* Copies buf into / out of the data buffer of an admin command. */
/* nvme_prp_write fills xfer_len bytes: buf (len bytes, len <= xfer_len),
 * then zeroes. */
uint16_t nvme_prp_write(struct nvme_ctrl *c, const struct nvme_sqe *cmd, const void *buf,
                        size_t len, size_t xfer_len);
uint16_t nvme_prp_read(struct nvme_ctrl *c, const struct nvme_sqe *cmd, void *buf, size_t len);
/* Fetches and starts commands of I/O SQ sq (worker thread). Returns true if
 * the SQ still has work it left for the next round. */
bool nvme_io_process_sq(struct nvme_ctrl *c, struct nvme_sq *sq);
/* Next stage of a request handed back by nvme_queue_followup (worker). */
void nvme_io_followup(struct nvme_ctrl *c, struct nvme_req *req);

#endif
