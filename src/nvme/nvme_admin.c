/* NVMe admin command set: Identify, Create/Delete I/O queues, Get/Set
 * Features, Get Log Page, Abort, Asynchronous Event Request, Doorbell
 * Buffer Config. Runs on the vCPU thread that rang the admin SQ doorbell,
 * with ctrl->lock held. */
#include "nvme/nvme_int.h"

#include <stdio.h>
#include <string.h>

#include "common/bytes.h"
#include "common/snap.h"

#define IDENTIFY_SIZE 4096
#define MODEL_NUMBER "propolis-nvme"
#define FIRMWARE_REV "1.0"
#define TEMPERATURE_KELVIN 310 /* reported composite temperature: 37 C */
#define WCTEMP_KELVIN 343      /* warning threshold: 70 C */
#define CCTEMP_KELVIN 373      /* critical threshold: 100 C */

/* Identify CNS values. */
#define CNS_NAMESPACE 0x00
#define CNS_CONTROLLER 0x01
#define CNS_ACTIVE_NS_LIST 0x02
#define CNS_NS_DESCRIPTORS 0x03
#define CNS_CSI_CONTROLLER 0x06

#define NIDT_NGUID 0x02

static const char *name_of(const struct nvme_ctrl *c)
{
    return c->pci.dev.name ? c->pci.dev.name : "nvme";
}

/* A 128-bit little-endian counter from a 64-bit value. */
static void put128(uint8_t *b, unsigned off, uint64_t v)
{
    le64_store(b + off, v);
    le64_store(b + off + 8, 0);
}

static void put_string(uint8_t *b, unsigned off, unsigned len, const char *s)
{
    size_t n = strlen(s);
    for (unsigned i = 0; i < len; i++)
        b[off + i] = (uint8_t)(i < n ? s[i] : ' ');
}

/* ---- Identify ---- */

static void identify_controller(const struct nvme_ctrl *c, uint8_t *b)
{
    le16_store(b, NVME_PCI_VENDOR_ID);     /* VID */
    le16_store(b + 2, NVME_PCI_VENDOR_ID); /* SSVID */
    put_string(b, 4, 20, c->serial);       /* SN */
    put_string(b, 24, 40, MODEL_NUMBER);
    put_string(b, 64, 8, FIRMWARE_REV);
    b[72] = 0;                                /* RAB */
    b[73] = 0x25, b[74] = 0x40, b[75] = 0xa8; /* IEEE OUI A8-40-25 (Oxide), LSB first */
    b[76] = 0;                                /* CMIC: one port, one controller */
    b[77] = NVME_MDTS;
    le16_store(b + 78, 0);                /* CNTLID */
    le32_store(b + 80, NVME_VERSION);     /* VER */
    le32_store(b + 92, 0);                /* OAES: no notices */
    b[111] = 1;                           /* CNTRLTYPE: I/O controller */
    le16_store(b + 256, NVME_OACS_DBBUF); /* OACS: Doorbell Buffer Config only */
    b[258] = NVME_ACL;
    b[259] = NVME_AERL;
    b[260] = 0x03; /* FRMW: one slot, read-only */
    b[261] = 0x04; /* LPA: extended Get Log Page data */
    b[262] = 0;    /* ELPE: one error log entry */
    b[263] = 0;    /* NPSS: one power state */
    le16_store(b + 266, WCTEMP_KELVIN);
    le16_store(b + 268, CCTEMP_KELVIN);
    b[512] = (NVME_SQES_LOG2 << 4) | NVME_SQES_LOG2; /* SQES */
    b[513] = (NVME_CQES_LOG2 << 4) | NVME_CQES_LOG2; /* CQES */
    le32_store(b + 516, 1);                          /* NN */
    uint16_t oncs = 0;
    if (c->can_discard)
        oncs |= 1u << 2; /* Dataset Management */
    if (c->can_write_zeroes)
        oncs |= 1u << 3; /* Write Zeroes */
    le16_store(b + 520, oncs);
    /* VWC: present, and Flush accepts NSID FFFFFFFFh. */
    b[525] = c->vwc ? 0x07 : 0x00;
    le32_store(b + 536, 0); /* SGLS: PRPs only */
    char nqn[128];
    int n =
        snprintf(nqn, sizeof(nqn), "nqn.2019-08.com.oxidecomputer:propolis-nvme:%.20s", c->serial);
    while (n > 0 && nqn[n - 1] == ' ')
        nqn[--n] = '\0';
    memcpy(b + 768, nqn, (size_t)n); /* SUBNQN, NUL padded */
    /* PSD0: 25 W, entry/exit latencies QEMU reports. */
    le16_store(b + 2048, 2500);
    le32_store(b + 2048 + 4, 16);
    le32_store(b + 2048 + 8, 4);
}

static void identify_namespace(const struct nvme_ctrl *c, uint8_t *b)
{
    le64_store(b, c->nsze);                      /* NSZE */
    le64_store(b + 8, c->nsze);                  /* NCAP */
    le64_store(b + 16, c->nsze);                 /* NUSE */
    b[24] = c->can_discard ? 0x01 : 0x00;        /* NSFEAT: thin provisioning (deallocation) */
    b[25] = 0;                                   /* NLBAF: one format */
    b[26] = 0;                                   /* FLBAS: format 0, no metadata */
    b[33] = 0;                                   /* DLFEAT: deallocated reads not reported */
    le64_store(b + 48, c->nsze << c->lba_shift); /* NVMCAP, low half */
    b[99] = c->read_only ? 0x01 : 0x00;          /* NSATTR: write protected */
    memcpy(b + 104, c->nguid, 16);               /* NGUID */
    le32_store(b + 128, (uint32_t)c->lba_shift << 16); /* LBAF0: MS 0, LBADS, RP 0 */
}

static uint16_t admin_identify(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint8_t b[IDENTIFY_SIZE];
    memset(b, 0, sizeof(b));
    uint8_t cns = cmd->cdw10 & 0xff;
    uint8_t csi = cmd->cdw11 >> 24;
    switch (cns) {
    case CNS_NAMESPACE:
        if (cmd->nsid != 1)
            return NVME_ERR(NVME_SC_INVALID_NS);
        identify_namespace(c, b);
        break;
    case CNS_CONTROLLER:
        identify_controller(c, b);
        break;
    case CNS_ACTIVE_NS_LIST:
        if (cmd->nsid >= 0xfffffffeu)
            return NVME_ERR(NVME_SC_INVALID_NS);
        if (cmd->nsid < 1)
            le32_store(b, 1);
        break;
    case CNS_NS_DESCRIPTORS:
        if (cmd->nsid != 1)
            return NVME_ERR(NVME_SC_INVALID_NS);
        b[0] = NIDT_NGUID;
        b[1] = 16;
        memcpy(b + 4, c->nguid, 16);
        break;
    case CNS_CSI_CONTROLLER:
        /* The NVM command set's controller data: no limits beyond MDTS. */
        if (csi != 0)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        break;
    default:
        log_debug("%s: Identify CNS 0x%x not supported", name_of(c), cns);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
    return nvme_prp_write(c, cmd, b, sizeof(b), sizeof(b));
}

/* ---- Queues ---- */

static bool queue_size_ok(uint32_t qsize)
{
    return qsize >= 2 && qsize <= NVME_MQES + 1u;
}

static uint16_t admin_create_cq(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint16_t qid = cmd->cdw10 & 0xffff;
    uint32_t qsize = (cmd->cdw10 >> 16) + 1;
    bool pc = cmd->cdw11 & 1, ien = cmd->cdw11 & 2;
    uint16_t iv = cmd->cdw11 >> 16;
    uint64_t base = cmd->prp1;
    const char *why;
    uint16_t status;
    if (qid == 0 || qid > c->ncqa || qid >= NVME_NUM_QUEUES || c->cqs[qid].active) {
        why = "queue id invalid or in use";
        status = NVME_ERR_CS(NVME_SC_QID_INVALID);
    } else if (!queue_size_ok(qsize) || NVME_CC_IOCQES(c->cc) != NVME_CQES_LOG2) {
        why = "queue size (or CC.IOCQES) invalid";
        status = NVME_ERR_CS(NVME_SC_QUEUE_SIZE);
    } else if (!pc) {
        why = "queue not physically contiguous (CAP.CQR is set)";
        status = NVME_ERR(NVME_SC_INVALID_FIELD);
    } else if (base & (NVME_PAGE_SIZE - 1)) {
        why = "queue base not page aligned";
        status = NVME_ERR(NVME_SC_PRP_OFFSET_INVALID);
    } else if (iv >= NVME_MSIX_VECTORS || (ien && iv != 0 && !msix_enabled(&c->msix))) {
        why = "interrupt vector invalid";
        status = NVME_ERR_CS(NVME_SC_INVALID_VECTOR);
    } else if (!guest_mem_valid(c->mem, base, (uint64_t)qsize * NVME_CQE_SIZE, true)) {
        why = "queue memory is not guest RAM";
        status = NVME_ERR(NVME_SC_INVALID_FIELD);
    } else {
        nvme_dbbuf_clear_entries(c, qid, true);
        nvme_cq_init(c, &c->cqs[qid], qid, base, qsize, ien, iv);
        c->io_queues++;
        log_debug("%s: I/O CQ %u created: %u entries at 0x%llx, %s vector %u", name_of(c), qid,
                  qsize, (unsigned long long)base, ien ? "interrupts on" : "polled", iv);
        return NVME_OK;
    }
    log_limited(&c->admin_log, LOG_WARNING,
                "%s: Create I/O CQ %u (%u entries at 0x%llx, vector %u) refused: %s", name_of(c),
                qid, qsize, (unsigned long long)base, iv, why);
    return status;
}

static uint16_t admin_create_sq(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint16_t qid = cmd->cdw10 & 0xffff;
    uint32_t qsize = (cmd->cdw10 >> 16) + 1;
    bool pc = cmd->cdw11 & 1;
    uint16_t cqid = cmd->cdw11 >> 16;
    uint64_t base = cmd->prp1;
    const char *why;
    uint16_t status;
    if (qid == 0 || qid > c->nsqa || qid >= NVME_NUM_QUEUES || c->sqs[qid].active) {
        why = "queue id invalid or in use";
        status = NVME_ERR_CS(NVME_SC_QID_INVALID);
    } else if (cqid == 0 || cqid >= NVME_NUM_QUEUES || !c->cqs[cqid].active) {
        why = "no such completion queue";
        status = NVME_ERR_CS(NVME_SC_CQ_INVALID);
    } else if (!queue_size_ok(qsize) || NVME_CC_IOSQES(c->cc) != NVME_SQES_LOG2) {
        why = "queue size (or CC.IOSQES) invalid";
        status = NVME_ERR_CS(NVME_SC_QUEUE_SIZE);
    } else if (!pc) {
        why = "queue not physically contiguous (CAP.CQR is set)";
        status = NVME_ERR(NVME_SC_INVALID_FIELD);
    } else if (base & (NVME_PAGE_SIZE - 1)) {
        why = "queue base not page aligned";
        status = NVME_ERR(NVME_SC_PRP_OFFSET_INVALID);
    } else if (!guest_mem_valid(c->mem, base, (uint64_t)qsize * NVME_SQE_SIZE, false)) {
        why = "queue memory is not guest RAM";
        status = NVME_ERR(NVME_SC_INVALID_FIELD);
    } else {
        struct nvme_sq *sq = &c->sqs[qid];
        if (!nvme_sq_alloc_reqs(c, sq, qsize))
            return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INTERNAL);
        nvme_dbbuf_clear_entries(c, qid, false);
        nvme_sq_init(c, sq, qid, cqid, base, qsize);
        c->cqs[cqid].sq_refs++;
        c->io_queues++;
        log_debug("%s: I/O SQ %u created: %u entries at 0x%llx, CQ %u", name_of(c), qid, qsize,
                  (unsigned long long)base, cqid);
        return NVME_OK;
    }
    log_limited(&c->admin_log, LOG_WARNING,
                "%s: Create I/O SQ %u (%u entries at 0x%llx, CQ %u) refused: %s", name_of(c), qid,
                qsize, (unsigned long long)base, cqid, why);
    return status;
}

static uint16_t admin_delete_sq(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint16_t qid = cmd->cdw10 & 0xffff;
    if (qid == 0 || qid >= NVME_NUM_QUEUES || !c->sqs[qid].active) {
        log_limited(&c->admin_log, LOG_WARNING, "%s: Delete I/O SQ %u: no such queue", name_of(c),
                    qid);
        return NVME_ERR_CS(NVME_SC_QID_INVALID);
    }
    struct nvme_sq *sq = &c->sqs[qid];
    uint16_t cqid = sq->cqid;
    /* Commands already at the back end complete (and are posted) first. */
    nvme_sq_teardown(c, sq);
    if (c->cqs[cqid].sq_refs)
        c->cqs[cqid].sq_refs--;
    c->io_queues--;
    log_debug("%s: I/O SQ %u deleted", name_of(c), qid);
    return NVME_OK;
}

static uint16_t admin_delete_cq(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint16_t qid = cmd->cdw10 & 0xffff;
    if (qid == 0 || qid >= NVME_NUM_QUEUES || !c->cqs[qid].active) {
        log_limited(&c->admin_log, LOG_WARNING, "%s: Delete I/O CQ %u: no such queue", name_of(c),
                    qid);
        return NVME_ERR_CS(NVME_SC_QID_INVALID);
    }
    if (c->cqs[qid].sq_refs) {
        log_limited(&c->admin_log, LOG_WARNING,
                    "%s: Delete I/O CQ %u refused: %u submission queue(s) still use it", name_of(c),
                    qid, c->cqs[qid].sq_refs);
        return NVME_ERR_CS(NVME_SC_INVALID_QUEUE_DELETION);
    }
    nvme_cq_teardown(c, &c->cqs[qid]);
    nvme_update_intx(c);
    c->io_queues--;
    log_debug("%s: I/O CQ %u deleted", name_of(c), qid);
    return NVME_OK;
}

/* ---- Doorbell Buffer Config ---- */

/* PRP1: the shadow doorbell buffer, PRP2: the EventIdx buffer. Taken again
 * if sent again; dropped at controller reset. */
static uint16_t admin_dbbuf_config(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    bool eis_at_fault;
    const char *why = nvme_dbbuf_refused(c, cmd->prp1, cmd->prp2, &eis_at_fault);
    if (why) {
        log_limited(&c->admin_log, LOG_WARNING,
                    "%s: Doorbell Buffer Config (0x%llx, 0x%llx) refused: %s", name_of(c),
                    (unsigned long long)cmd->prp1, (unsigned long long)cmd->prp2, why);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
    nvme_dbbuf_enable_locked(c, cmd->prp1, cmd->prp2);
    log_debug("%s: shadow doorbells at 0x%llx, EventIdx at 0x%llx", name_of(c),
              (unsigned long long)cmd->prp1, (unsigned long long)cmd->prp2);
    return NVME_OK;
}

/* ---- Features ---- */

void nvme_features_default(struct nvme_ctrl *c)
{
    memset(&c->feat, 0, sizeof(c->feat));
    c->feat.temp_over = WCTEMP_KELVIN;
    c->feat.temp_under = 0;
    for (unsigned i = 0; i < NVME_MSIX_VECTORS; i++)
        c->feat.irq_config[i] = i;
    atomic_store(&c->write_cache, c->vwc);
}

static uint16_t set_features(struct nvme_ctrl *c, const struct nvme_sqe *cmd, uint32_t *dw0)
{
    uint8_t fid = cmd->cdw10 & 0xff;
    uint32_t v = cmd->cdw11;
    if (cmd->cdw10 & (1u << 31))
        return NVME_ERR_CS(NVME_SC_FEATURE_NOT_SAVEABLE);
    switch (fid) {
    case NVME_FEAT_ARBITRATION:
        c->feat.arbitration = v;
        return NVME_OK;
    case NVME_FEAT_POWER_MGMT:
        if ((v & 0x1f) != 0) /* NPSS = 0: power state 0 only */
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        c->feat.power_mgmt = v & 0xff;
        return NVME_OK;
    case NVME_FEAT_TEMP_THRESH: {
        unsigned tmpsel = (v >> 16) & 0xf, thsel = (v >> 20) & 0x3;
        if ((tmpsel != 0 && tmpsel != 0xf) || thsel > 1)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        if (thsel == 0)
            c->feat.temp_over = v & 0xffff;
        else
            c->feat.temp_under = v & 0xffff;
        return NVME_OK;
    }
    case NVME_FEAT_ERROR_RECOVERY:
        if (v & (1u << 16)) /* DULBE: deallocated blocks are not errors here */
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        c->feat.error_recovery = v & 0xffff;
        return NVME_OK;
    case NVME_FEAT_VOLATILE_WC:
        if (!c->vwc)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        atomic_store(&c->write_cache, (v & 1) != 0);
        return NVME_OK;
    case NVME_FEAT_NUM_QUEUES: {
        uint32_t nsqr = v & 0xffff, ncqr = v >> 16;
        if (nsqr == 0xffff || ncqr == 0xffff)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        if (c->io_queues)
            return NVME_ERR(NVME_SC_CMD_SEQ_ERROR);
        c->nsqa = (uint16_t)(nsqr + 1 < NVME_MAX_IO_QUEUES ? nsqr + 1 : NVME_MAX_IO_QUEUES);
        c->ncqa = (uint16_t)(ncqr + 1 < NVME_MAX_IO_QUEUES ? ncqr + 1 : NVME_MAX_IO_QUEUES);
        *dw0 = ((uint32_t)(c->ncqa - 1) << 16) | (uint32_t)(c->nsqa - 1);
        return NVME_OK;
    }
    case NVME_FEAT_IRQ_COALESCE:
        c->feat.irq_coalesce = v & 0xffff;
        return NVME_OK;
    case NVME_FEAT_IRQ_CONFIG: {
        unsigned iv = v & 0xffff;
        if (iv >= NVME_MSIX_VECTORS)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        c->feat.irq_config[iv] = v & 0x1ffff;
        return NVME_OK;
    }
    case NVME_FEAT_WRITE_ATOMIC:
        c->feat.write_atomic = v & 1;
        return NVME_OK;
    case NVME_FEAT_ASYNC_EVENT:
        c->feat.async_event_cfg = v;
        return NVME_OK;
    default:
        /* LBA Range Type, APST, Host Memory Buffer, Timestamp, Keep Alive,
         * ...: not supported. */
        log_debug("%s: Set Features 0x%x not supported", name_of(c), fid);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
}

/* Current (sel 0) or default (sel 1, and 2: nothing is saveable) value. */
static uint16_t feature_value(struct nvme_ctrl *c, uint8_t fid, uint32_t cdw11, bool dflt,
                              uint32_t *dw0)
{
    switch (fid) {
    case NVME_FEAT_ARBITRATION:
        *dw0 = dflt ? 0 : c->feat.arbitration;
        return NVME_OK;
    case NVME_FEAT_POWER_MGMT:
        *dw0 = dflt ? 0 : c->feat.power_mgmt;
        return NVME_OK;
    case NVME_FEAT_TEMP_THRESH: {
        unsigned tmpsel = (cdw11 >> 16) & 0xf, thsel = (cdw11 >> 20) & 0x3;
        if ((tmpsel != 0 && tmpsel != 0xf) || thsel > 1)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        uint32_t t = thsel == 0 ? (dflt ? WCTEMP_KELVIN : c->feat.temp_over)
                                : (dflt ? 0 : c->feat.temp_under);
        *dw0 = t | (tmpsel << 16) | (thsel << 20);
        return NVME_OK;
    }
    case NVME_FEAT_ERROR_RECOVERY:
        *dw0 = dflt ? 0 : c->feat.error_recovery;
        return NVME_OK;
    case NVME_FEAT_VOLATILE_WC:
        if (!c->vwc)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        *dw0 = (dflt || atomic_load(&c->write_cache)) ? 1 : 0;
        return NVME_OK;
    case NVME_FEAT_NUM_QUEUES: {
        uint32_t nsqa = dflt ? NVME_MAX_IO_QUEUES : c->nsqa;
        uint32_t ncqa = dflt ? NVME_MAX_IO_QUEUES : c->ncqa;
        *dw0 = ((ncqa - 1) << 16) | (nsqa - 1);
        return NVME_OK;
    }
    case NVME_FEAT_IRQ_COALESCE:
        *dw0 = dflt ? 0 : c->feat.irq_coalesce;
        return NVME_OK;
    case NVME_FEAT_IRQ_CONFIG: {
        unsigned iv = cdw11 & 0xffff;
        if (iv >= NVME_MSIX_VECTORS)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        *dw0 = dflt ? iv : c->feat.irq_config[iv];
        return NVME_OK;
    }
    case NVME_FEAT_WRITE_ATOMIC:
        *dw0 = dflt ? 0 : c->feat.write_atomic;
        return NVME_OK;
    case NVME_FEAT_ASYNC_EVENT:
        *dw0 = dflt ? 0 : c->feat.async_event_cfg;
        return NVME_OK;
    default:
        log_debug("%s: Get Features 0x%x not supported", name_of(c), fid);
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
}

static uint16_t get_features(struct nvme_ctrl *c, const struct nvme_sqe *cmd, uint32_t *dw0)
{
    uint8_t fid = cmd->cdw10 & 0xff;
    unsigned sel = (cmd->cdw10 >> 8) & 0x7;
    switch (sel) {
    case 0:
        return feature_value(c, fid, cmd->cdw11, false, dw0);
    case 1:
    case 2:
        return feature_value(c, fid, cmd->cdw11, true, dw0);
    case 3: {
        /* Supported capabilities: changeable, neither saveable nor per
         * namespace. */
        uint16_t status = feature_value(c, fid, cmd->cdw11, true, dw0);
        if (status == NVME_OK)
            *dw0 = 1u << 2;
        return status;
    }
    default:
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    }
}

/* ---- Log pages ---- */

static size_t log_smart(struct nvme_ctrl *c, uint8_t *b)
{
    b[0] = 0; /* critical warning */
    le16_store(b + 1, TEMPERATURE_KELVIN);
    b[3] = 100; /* available spare */
    b[4] = 10;  /* available spare threshold */
    b[5] = 0;   /* percentage used */
    /* Data units are thousands of 512-byte units, rounded up. */
    uint64_t rd = atomic_load(&c->read_bytes), wr = atomic_load(&c->write_bytes);
    put128(b, 32, (rd / 512 + 999) / 1000);
    put128(b, 48, (wr / 512 + 999) / 1000);
    put128(b, 64, atomic_load(&c->read_cmds));
    put128(b, 80, atomic_load(&c->write_cmds));
    put128(b, 112, 1); /* power cycles */
    /* A restored base may be ahead of a clock without the saved offset. */
    uint64_t now = vm_clock_now(c->clock);
    uint64_t on_ns = now > c->created_ns ? now - c->created_ns : 0;
    put128(b, 128, on_ns / 3600000000000ull); /* power-on hours */
    put128(b, 176, c->error_count);
    return 512;
}

static size_t log_firmware(uint8_t *b)
{
    b[0] = 0x01; /* active firmware: slot 1 */
    put_string(b, 8, 8, FIRMWARE_REV);
    return 512;
}

static uint16_t admin_get_log_page(struct nvme_ctrl *c, const struct nvme_sqe *cmd)
{
    uint8_t lid = cmd->cdw10 & 0xff;
    bool rae = cmd->cdw10 & (1u << 15);
    uint64_t numd = (cmd->cdw10 >> 16) | ((uint64_t)(cmd->cdw11 & 0xffff) << 16);
    uint64_t len = (numd + 1) * 4;
    uint64_t offset = cmd->cdw12 | ((uint64_t)cmd->cdw13 << 32);
    uint8_t page[512];
    memset(page, 0, sizeof(page));
    size_t page_len;
    switch (lid) {
    case NVME_LOG_ERROR:
        page_len = 64 * 1; /* ELPE + 1 entries, none valid */
        if (!rae)
            c->error_events_masked = false;
        break;
    case NVME_LOG_SMART:
        if (cmd->nsid != 0 && cmd->nsid != 1 && cmd->nsid != 0xffffffffu)
            return NVME_ERR(NVME_SC_INVALID_NS);
        page_len = log_smart(c, page);
        break;
    case NVME_LOG_FW_SLOT:
        page_len = log_firmware(page);
        break;
    default:
        log_debug("%s: Get Log Page 0x%x not supported", name_of(c), lid);
        return NVME_ERR_CS(NVME_SC_INVALID_LOG_PAGE);
    }
    if ((offset & 3) || offset > page_len || len > NVME_MAX_XFER)
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    size_t avail = page_len - (size_t)offset;
    return nvme_prp_write(c, cmd, page + offset, avail < len ? avail : (size_t)len, (size_t)len);
}

/* ---- Asynchronous events ---- */

/* Outstanding AERs hold no admin CQ slot: with a small admin CQ (two
 * entries is legal) they would otherwise leave no room for any other
 * command, for good. An event is posted when a slot is free; if none is,
 * it stays queued and the admin CQ head doorbell retries. */
static void deliver_events(struct nvme_ctrl *c)
{
    /* A paused controller posts nothing; resume delivers. */
    while (c->aer_count > 0 && c->event_count > 0 && !atomic_load(&c->paused)) {
        if (!nvme_cq_reserve(c, &c->cqs[0], 0))
            return;
        struct nvme_event ev = c->events[0];
        memmove(c->events, c->events + 1, (c->event_count - 1) * sizeof(c->events[0]));
        c->event_count--;
        uint16_t cid = c->aer_cids[--c->aer_count];
        uint32_t dw0 = ev.type | ((uint32_t)ev.info << 8) | ((uint32_t)ev.log_page << 16);
        nvme_cq_post(c, &c->cqs[0], 0, atomic_load(&c->sqs[0].sqhd), cid, NVME_OK, dw0);
        if (ev.type == NVME_AER_TYPE_ERROR)
            c->error_events_masked = true;
    }
}

void nvme_admin_event(struct nvme_ctrl *c, uint8_t type, uint8_t info, uint8_t log_page)
{
    if (type == NVME_AER_TYPE_ERROR) {
        c->error_count++;
        if (c->error_events_masked)
            return; /* until the host reads the Error Information log */
    }
    for (unsigned i = 0; i < c->event_count; i++)
        if (c->events[i].type == type && c->events[i].info == info)
            return; /* already queued */
    if (c->event_count == NVME_MAX_EVENTS)
        return;
    c->events[c->event_count++] = (struct nvme_event){type, info, log_page};
    deliver_events(c);
}

void nvme_admin_reset(struct nvme_ctrl *c)
{
    /* Outstanding AERs are aborted implicitly by the reset: no completion. */
    c->aer_count = 0;
    c->event_count = 0;
    c->error_events_masked = false;
}

/* ---- Dispatch ---- */

/* Runs one admin command. Returns its status; *post false means the
 * completion is deferred (an AER keeps its slot). */
static uint16_t admin_exec(struct nvme_ctrl *c, const struct nvme_sqe *cmd, uint32_t *dw0,
                           bool *post)
{
    if (cmd->flags & 0xc3) /* fused operations, SGLs */
        return NVME_ERR(NVME_SC_INVALID_FIELD);
    switch (cmd->opcode) {
    case NVME_ADM_IDENTIFY:
        return admin_identify(c, cmd);
    case NVME_ADM_CREATE_CQ:
        return admin_create_cq(c, cmd);
    case NVME_ADM_CREATE_SQ:
        return admin_create_sq(c, cmd);
    case NVME_ADM_DELETE_SQ:
        return admin_delete_sq(c, cmd);
    case NVME_ADM_DELETE_CQ:
        return admin_delete_cq(c, cmd);
    case NVME_ADM_SET_FEATURES:
        return set_features(c, cmd, dw0);
    case NVME_ADM_GET_FEATURES:
        return get_features(c, cmd, dw0);
    case NVME_ADM_GET_LOG_PAGE:
        return admin_get_log_page(c, cmd);
    case NVME_ADM_ABORT: {
        uint16_t sqid = cmd->cdw10 & 0xffff;
        if (sqid >= NVME_NUM_QUEUES || !c->sqs[sqid].active)
            return NVME_ERR(NVME_SC_INVALID_FIELD);
        *dw0 = 1; /* not aborted: commands run to completion */
        return NVME_OK;
    }
    case NVME_ADM_DBBUF_CONFIG:
        return admin_dbbuf_config(c, cmd);
    case NVME_ADM_ASYNC_EVENT:
        if (c->aer_count > NVME_AERL)
            return NVME_ERR_CS(NVME_SC_AER_LIMIT);
        c->aer_cids[c->aer_count++] = cmd->cid;
        *post = false;
        nvme_cq_unreserve(&c->cqs[0]); /* the slot taken to fetch it */
        deliver_events(c);
        return NVME_OK;
    default:
        log_limited(&c->admin_log, LOG_INFO, "%s: admin opcode 0x%02x not supported", name_of(c),
                    cmd->opcode);
        return NVME_ERR(NVME_SC_INVALID_OPCODE);
    }
}

static void admin_run(struct nvme_ctrl *c)
{
    struct nvme_sq *sq = &c->sqs[0];
    struct nvme_cq *cq = &c->cqs[0];
    if (atomic_load(&c->paused))
        return; /* the tail is kept; resume runs the queue */
    if (atomic_load(&c->enabled))
        deliver_events(c); /* events that waited for a CQ slot */
    /* Shadow doorbells: the tail is read from the shadow entry each time
     * the queue looks empty (the MMIO doorbell is copied there). */
    while (atomic_load(&c->enabled) && sq->active &&
           (sq->head != sq->tail || nvme_sq_shadow_refresh(c, sq))) {
        if (!pci_bus_master_enabled(&c->pci)) {
            log_limited(&c->admin_log, LOG_WARNING,
                        "%s: admin commands wait: bus mastering is disabled", name_of(c));
            return;
        }
        if (!nvme_cq_reserve(c, cq, 0))
            return; /* resumed by the admin CQ head doorbell */
        struct nvme_sqe cmd;
        uint64_t gpa = sq->base + (uint64_t)sq->head * NVME_SQE_SIZE;
        if (!guest_mem_read(c->mem, gpa, &cmd, sizeof(cmd))) {
            nvme_cq_unreserve(cq);
            nvme_fatal_locked(c, "admin submission queue entry outside guest RAM");
            return;
        }
        sq->head = (sq->head + 1) % sq->size;
        atomic_store(&sq->sqhd, sq->head);
        uint32_t dw0 = 0;
        bool post = true;
        uint16_t status = admin_exec(c, &cmd, &dw0, &post);
        log_trace("%s: admin opcode 0x%02x cid %u: status 0x%x", name_of(c), cmd.opcode, cmd.cid,
                  status);
        if (post)
            nvme_cq_post(c, cq, 0, sq->head, cmd.cid, status, dw0);
    }
}

void nvme_admin_process(struct nvme_ctrl *c)
{
    admin_run(c);
    /* Bad shadow doorbell values the worker found (or this run did). */
    nvme_raise_shadow_errors_locked(c);
}

/* ---- State ---- */

static void features_state(struct nvme_ctrl *c, struct snap *s, struct nvme_features *f,
                           bool *write_cache)
{
    snap_enter(s, "feat");
    snap_u32(s, "arbitration", &f->arbitration);
    snap_u32(s, "power_mgmt", &f->power_mgmt);
    snap_check(s, (f->power_mgmt & ~0xe0u) == 0, "power_mgmt",
               "not power state 0 or reserved bits set");
    snap_u16(s, "temp_over", &f->temp_over);
    snap_u16(s, "temp_under", &f->temp_under);
    snap_u32(s, "error_recovery", &f->error_recovery);
    snap_check(s, f->error_recovery <= 0xffff, "error_recovery", "DULBE or reserved bits set");
    snap_u32(s, "irq_coalesce", &f->irq_coalesce);
    snap_check(s, f->irq_coalesce <= 0xffff, "irq_coalesce", "reserved bits set");
    snap_u32(s, "write_atomic", &f->write_atomic);
    snap_check(s, f->write_atomic <= 1, "write_atomic", "reserved bits set");
    snap_u32(s, "async_event_cfg", &f->async_event_cfg);
    snap_u32_array(s, "irq_config", f->irq_config, NVME_MSIX_VECTORS);
    for (unsigned iv = 0; iv < NVME_MSIX_VECTORS && snap_loading(s) && !snap_error(s); iv++)
        if ((f->irq_config[iv] & 0xffff) != iv || f->irq_config[iv] > 0x1ffff)
            snap_fail(s, "irq_config", "entry %u (0x%x) is not vector %u's configuration", iv,
                      f->irq_config[iv], iv);
    snap_bool(s, "volatile_wc", write_cache);
    snap_check(s, !*write_cache || c->vwc, "volatile_wc",
               "write cache enabled but this namespace has no volatile write cache");
    snap_leave(s);
}

void nvme_admin_state(struct nvme_ctrl *c, struct snap *s, struct nvme_admin_image *im)
{
    if (!snap_loading(s)) {
        memset(im, 0, sizeof(*im));
        im->nsqa = c->nsqa;
        im->ncqa = c->ncqa;
        im->feat = c->feat;
        im->write_cache = atomic_load(&c->write_cache);
        im->aer_count = c->aer_count;
        memcpy(im->aer_cids, c->aer_cids, sizeof(im->aer_cids));
        im->event_count = c->event_count;
        memcpy(im->events, c->events, sizeof(im->events));
        im->error_events_masked = c->error_events_masked;
        im->error_count = c->error_count;
    }
    /* Number of Queues as granted. */
    snap_u16(s, "nsqa", &im->nsqa);
    if (snap_loading(s) && (im->nsqa < 1 || im->nsqa > NVME_MAX_IO_QUEUES))
        snap_fail(s, "nsqa", "%u submission queues, not 1 to %u", im->nsqa, NVME_MAX_IO_QUEUES);
    snap_u16(s, "ncqa", &im->ncqa);
    if (snap_loading(s) && (im->ncqa < 1 || im->ncqa > NVME_MAX_IO_QUEUES))
        snap_fail(s, "ncqa", "%u completion queues, not 1 to %u", im->ncqa, NVME_MAX_IO_QUEUES);
    features_state(c, s, &im->feat, &im->write_cache);

    /* Outstanding Asynchronous Event Requests (their command ids) and the
     * events waiting for one. */
    snap_u32(s, "aer_count", &im->aer_count);
    if (!snap_check(s, im->aer_count <= NVME_AERL + 1, "aer_count", "beyond the AER limit"))
        return;
    snap_u16_array(s, "aer_cids", im->aer_cids, im->aer_count);
    snap_u32(s, "event_count", &im->event_count);
    if (!snap_check(s, im->event_count <= NVME_MAX_EVENTS, "event_count",
                    "more events than the controller queues"))
        return;
    for (unsigned i = 0; i < im->event_count; i++) {
        struct nvme_event *ev = &im->events[i];
        snap_enter(s, "event%u", i);
        snap_u8(s, "type", &ev->type);
        snap_check(s, ev->type <= 7, "type", "not an asynchronous event type");
        snap_u8(s, "info", &ev->info);
        snap_u8(s, "log_page", &ev->log_page);
        snap_leave(s);
    }
    snap_bool(s, "error_events_masked", &im->error_events_masked);
    snap_u64(s, "error_count", &im->error_count);
}

void nvme_admin_restore(struct nvme_ctrl *c, const struct nvme_admin_image *im)
{
    c->nsqa = im->nsqa;
    c->ncqa = im->ncqa;
    c->feat = im->feat;
    atomic_store(&c->write_cache, im->write_cache);
    c->aer_count = im->aer_count;
    memcpy(c->aer_cids, im->aer_cids, sizeof(c->aer_cids));
    c->event_count = im->event_count;
    memcpy(c->events, im->events, sizeof(c->events));
    c->error_events_masked = im->error_events_masked;
    c->error_count = im->error_count;
}
