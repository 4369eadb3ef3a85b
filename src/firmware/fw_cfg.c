#include "firmware/fw_cfg.h"

#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "core/guest_mem.h"
#include "firmware/bytebuf.h"

static const uint8_t dma_signature[FW_CFG_DMA_COUNT] = {'Q', 'E', 'M', 'U', ' ', 'C', 'F', 'G'};

static int find_selector(const struct fw_cfg *fw, uint16_t selector)
{
    for (unsigned i = 0; i < fw->item_count; i++)
        if (fw->items[i].selector == selector)
            return (int)i;
    return -1;
}

static struct fw_cfg_item *current(struct fw_cfg *fw)
{
    return fw->cur_item >= 0 ? &fw->items[fw->cur_item] : NULL;
}

static void select_item(struct fw_cfg *fw, uint16_t selector)
{
    fw->cur_selector = selector;
    fw->cur_offset = 0;
    fw->cur_item = find_selector(fw, selector);
    struct fw_cfg_item *item = current(fw);
    if (!item)
        log_limited(&fw->guest_log, LOG_DEBUG, "fw_cfg: guest selected missing item 0x%04x",
                    selector);
    else if (item->refresh)
        item->refresh(item->refresh_opaque, item->data, item->size);
}

/* ---- building the item set (before the guest runs) ---- */

static int add_item(struct fw_cfg *fw, uint16_t selector, const char *name, const void *data,
                    size_t len, bool writable)
{
    if (fw->item_count >= FW_CFG_MAX_ITEMS) {
        log_error("fw_cfg: too many items");
        return -1;
    }
    if (len && !data) {
        log_error("fw_cfg: item %s has no data", name ? name : "");
        return -1;
    }
    if (len > FW_CFG_MAX_ITEM_SIZE) {
        log_error("fw_cfg: item %s is too large (%zu bytes)", name ? name : "", len);
        return -1;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        log_error("fw_cfg: out of memory");
        return -1;
    }
    if (len)
        memcpy(copy, data, len);
    struct fw_cfg_item *item = &fw->items[fw->item_count++];
    *item = (struct fw_cfg_item){
        .selector = selector,
        .is_file = name != NULL,
        .data = copy,
        .size = (uint32_t)len,
        .writable = writable,
    };
    if (name)
        strcpy(item->name, name);
    return 0;
}

static int cmp_file_names(const void *a, const void *b)
{
    const struct fw_cfg_item *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* QEMU numbers files from 0x20 in name order and lists them that way. */
static int renumber_files(struct fw_cfg *fw)
{
    struct fw_cfg_item *files[FW_CFG_MAX_ITEMS];
    unsigned count = 0;
    for (unsigned i = 0; i < fw->item_count; i++)
        if (fw->items[i].is_file)
            files[count++] = &fw->items[i];
    qsort(files, count, sizeof(files[0]), cmp_file_names);

    struct bytebuf dir = {0};
    bytebuf_be32(&dir, count);
    for (unsigned i = 0; i < count; i++) {
        uint8_t entry[FW_CFG_DIR_ENTRY_SIZE] = {0};
        files[i]->selector = (uint16_t)(FW_CFG_FILE_FIRST + i);
        put_be32(entry, files[i]->size);
        put_be16(entry + 4, files[i]->selector);
        memcpy(entry + 8, files[i]->name, strlen(files[i]->name));
        bytebuf_append(&dir, entry, sizeof(entry));
    }
    int index = find_selector(fw, FW_CFG_FILE_DIR);
    uint8_t *data;
    size_t len;
    if (index < 0 || !bytebuf_take(&dir, &data, &len)) {
        log_error("fw_cfg: cannot build the file directory");
        return -1;
    }
    free(fw->items[index].data);
    fw->items[index].data = data;
    fw->items[index].size = (uint32_t)len;
    /* A selection made earlier keeps meaning the same selector. */
    fw->cur_item = find_selector(fw, fw->cur_selector);
    return 0;
}

static bool legacy_selector(uint16_t selector)
{
    return selector < FW_CFG_FILE_FIRST || (selector >= 0x8000 && selector < 0x9000);
}

int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t selector, const void *data, size_t len)
{
    pthread_mutex_lock(&fw->lock);
    int ret = -1;
    if (!legacy_selector(selector) || selector == FW_CFG_FILE_DIR)
        log_error("fw_cfg: 0x%04x is not a legacy item selector", selector);
    else if (find_selector(fw, selector) >= 0)
        log_error("fw_cfg: item 0x%04x added twice", selector);
    else
        ret = add_item(fw, selector, NULL, data, len, false);
    if (ret == 0)
        fw->cur_item = find_selector(fw, fw->cur_selector);
    pthread_mutex_unlock(&fw->lock);
    return ret;
}

static bool valid_file_name(const char *name)
{
    size_t len = strnlen(name, FW_CFG_FILE_NAME_SIZE);
    if (len == 0 || len >= FW_CFG_FILE_NAME_SIZE)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

static int add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len,
                    bool writable)
{
    pthread_mutex_lock(&fw->lock);
    int ret = -1;
    if (!valid_file_name(name)) {
        log_error("fw_cfg: bad file name \"%s\"", name);
    } else {
        bool duplicate = false;
        for (unsigned i = 0; i < fw->item_count; i++)
            duplicate |= fw->items[i].is_file && strcmp(fw->items[i].name, name) == 0;
        if (duplicate)
            log_error("fw_cfg: file %s added twice", name);
        else if (add_item(fw, FW_CFG_INVALID, name, data, len, writable) == 0)
            ret = renumber_files(fw);
    }
    pthread_mutex_unlock(&fw->lock);
    return ret;
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data, size_t len)
{
    return add_file(fw, name, data, len, false);
}

int fw_cfg_add_ramfb(struct fw_cfg *fw)
{
    uint8_t zeros[RAMFB_CFG_SIZE] = {0};
    return add_file(fw, RAMFB_FILE, zeros, sizeof(zeros), true);
}

static struct fw_cfg_item *find_file(struct fw_cfg *fw, const char *name)
{
    for (unsigned i = 0; i < fw->item_count; i++)
        if (fw->items[i].is_file && strcmp(fw->items[i].name, name) == 0)
            return &fw->items[i];
    return NULL;
}

uint16_t fw_cfg_file_selector(struct fw_cfg *fw, const char *name)
{
    pthread_mutex_lock(&fw->lock);
    const struct fw_cfg_item *item = find_file(fw, name);
    uint16_t selector = item ? item->selector : FW_CFG_INVALID;
    pthread_mutex_unlock(&fw->lock);
    return selector;
}

void fw_cfg_refresh_selected(struct fw_cfg *fw)
{
    pthread_mutex_lock(&fw->lock);
    struct fw_cfg_item *item = current(fw);
    if (item && item->refresh)
        item->refresh(item->refresh_opaque, item->data, item->size);
    pthread_mutex_unlock(&fw->lock);
}

int fw_cfg_set_refresh(struct fw_cfg *fw, const char *name, fw_cfg_refresh_fn refresh, void *opaque)
{
    pthread_mutex_lock(&fw->lock);
    struct fw_cfg_item *item = find_file(fw, name);
    if (item) {
        item->refresh = refresh;
        item->refresh_opaque = opaque;
    }
    pthread_mutex_unlock(&fw->lock);
    if (!item) {
        log_error("fw_cfg: no file %s to refresh", name);
        return -1;
    }
    return 0;
}

bool fw_cfg_ramfb_mode(struct fw_cfg *fw, struct ramfb_mode *out)
{
    pthread_mutex_lock(&fw->lock);
    bool valid = fw->ramfb_valid;
    if (valid)
        *out = fw->ramfb;
    pthread_mutex_unlock(&fw->lock);
    return valid;
}

/* ---- guest accesses ---- */

static uint8_t data_read(struct fw_cfg *fw)
{
    struct fw_cfg_item *item = current(fw);
    if (!item || fw->cur_offset >= item->size) {
        log_limited(&fw->guest_log, LOG_DEBUG, "fw_cfg: read past the end of item 0x%04x",
                    fw->cur_selector);
        return 0;
    }
    return item->data[fw->cur_offset++];
}

/* The guest finished writing the ramfb configuration: adopt it if sane. */
static void ramfb_written(struct fw_cfg *fw, const struct fw_cfg_item *item)
{
    struct ramfb_mode mode;
    const char *why = ramfb_parse(item->data, fw->mem, &mode);
    if (why) {
        log_limited(&fw->guest_log, LOG_WARNING, "ramfb: guest configuration rejected: %s", why);
        return;
    }
    fw->ramfb = mode;
    fw->ramfb_valid = true;
    fw->ramfb_changes++;
    log_limited(&fw->guest_log, LOG_INFO, "ramfb: %ux%u XR24, stride %u, at 0x%llx", mode.width,
                mode.height, mode.stride, (unsigned long long)mode.addr);
}

static bool dma_read(struct fw_cfg *fw, uint64_t addr, uint32_t length)
{
    if (length == 0)
        return true;
    uint8_t *dst = guest_mem_ptr(fw->mem, addr, length, true);
    if (!dst) {
        log_limited(&fw->guest_log, LOG_WARNING,
                    "fw_cfg: DMA read of %u bytes to 0x%llx is not inside guest RAM", length,
                    (unsigned long long)addr);
        return false;
    }
    struct fw_cfg_item *item = current(fw);
    uint32_t avail = (item && fw->cur_offset < item->size) ? item->size - fw->cur_offset : 0;
    uint32_t n = length < avail ? length : avail;
    if (n)
        memcpy(dst, item->data + fw->cur_offset, n);
    if (n < length) {
        /* Past the end (or no item): zeros, as QEMU does. */
        memset(dst + n, 0, length - n);
        log_limited(&fw->guest_log, LOG_DEBUG, "fw_cfg: DMA read past the end of item 0x%04x",
                    fw->cur_selector);
    }
    fw->cur_offset += n;
    return true;
}

static bool dma_write(struct fw_cfg *fw, uint64_t addr, uint32_t length)
{
    struct fw_cfg_item *item = current(fw);
    if (!item || !item->writable) {
        log_limited(&fw->guest_log, LOG_WARNING, "fw_cfg: DMA write to read-only item 0x%04x",
                    fw->cur_selector);
        return false;
    }
    if (length == 0)
        return true;
    if (fw->cur_offset > item->size || length > item->size - fw->cur_offset) {
        log_limited(&fw->guest_log, LOG_WARNING,
                    "fw_cfg: DMA write of %u bytes at offset %u past the end of %s", length,
                    fw->cur_offset, item->name);
        return false;
    }
    const uint8_t *src = guest_mem_ptr(fw->mem, addr, length, false);
    if (!src) {
        log_limited(&fw->guest_log, LOG_WARNING,
                    "fw_cfg: DMA write of %u bytes from 0x%llx is not inside guest RAM", length,
                    (unsigned long long)addr);
        return false;
    }
    memcpy(item->data + fw->cur_offset, src, length);
    fw->cur_offset += length;
    if (strcmp(item->name, RAMFB_FILE) == 0 && fw->cur_offset == item->size)
        ramfb_written(fw, item);
    return true;
}

static void dma_skip(struct fw_cfg *fw, uint32_t length)
{
    struct fw_cfg_item *item = current(fw);
    if (!item)
        return;
    uint64_t end = (uint64_t)fw->cur_offset + length;
    fw->cur_offset = end < item->size ? (uint32_t)end : item->size;
}

static void dma_transfer(struct fw_cfg *fw, uint64_t desc_addr)
{
    uint8_t desc[FW_CFG_DMA_DESC_SIZE];
    if (!guest_mem_read(fw->mem, desc_addr, desc, sizeof(desc))) {
        log_limited(&fw->guest_log, LOG_WARNING,
                    "fw_cfg: DMA descriptor at 0x%llx is not inside guest RAM",
                    (unsigned long long)desc_addr);
        return;
    }
    uint32_t control = get_be32(desc);
    uint32_t length = get_be32(desc + 4);
    uint64_t addr = get_be64(desc + 8);
    if (control & FW_CFG_DMA_SELECT)
        select_item(fw, (uint16_t)(control >> 16));
    bool ok = true;
    /* One operation, in the precedence the specification gives. */
    if (control & FW_CFG_DMA_READ)
        ok = dma_read(fw, addr, length);
    else if (control & FW_CFG_DMA_WRITE)
        ok = dma_write(fw, addr, length);
    else if (control & FW_CFG_DMA_SKIP)
        dma_skip(fw, length);
    uint8_t result[4];
    put_be32(result, ok ? 0 : FW_CFG_DMA_ERROR);
    if (!guest_mem_write(fw->mem, desc_addr, result, sizeof(result)))
        log_limited(&fw->guest_log, LOG_WARNING,
                    "fw_cfg: cannot complete the DMA descriptor at 0x%llx (not writable RAM)",
                    (unsigned long long)desc_addr);
}

static uint64_t io_read(void *opaque, uint64_t offset, unsigned size)
{
    struct fw_cfg *fw = opaque;
    uint64_t value = 0;
    pthread_mutex_lock(&fw->lock);
    if (size == 1)
        value = data_read(fw); /* as QEMU: a byte read of either port reads data */
    else
        log_limited(&fw->guest_log, LOG_DEBUG, "fw_cfg: ignored %u-byte read of port 0x%llx", size,
                    (unsigned long long)(FW_CFG_IO_BASE + offset));
    pthread_mutex_unlock(&fw->lock);
    return value;
}

static void io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct fw_cfg *fw = opaque;
    pthread_mutex_lock(&fw->lock);
    if (offset == 0 && size == 2)
        select_item(fw, (uint16_t)value);
    else
        log_limited(&fw->guest_log, LOG_DEBUG,
                    "fw_cfg: ignored %u-byte write of 0x%llx to port 0x%llx (data writes "
                    "need DMA)",
                    size, (unsigned long long)value, (unsigned long long)(FW_CFG_IO_BASE + offset));
    pthread_mutex_unlock(&fw->lock);
}

static uint64_t dma_reg_read(void *opaque, uint64_t offset, unsigned size)
{
    /* The register reads as "QEMU CFG" in memory order. */
    if (offset >= FW_CFG_DMA_COUNT)
        return 0;
    unsigned avail = FW_CFG_DMA_COUNT - (unsigned)offset;
    return le_load(dma_signature + offset, size < avail ? size : avail);
}

static void dma_reg_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct fw_cfg *fw = opaque;
    pthread_mutex_lock(&fw->lock);
    /* The register is big-endian; port data arrives little-endian. */
    if (size == 4 && offset == 0) {
        fw->dma_addr_high = __builtin_bswap32((uint32_t)value);
    } else if (size == 4 && offset == 4) {
        uint64_t addr = ((uint64_t)fw->dma_addr_high << 32) | __builtin_bswap32((uint32_t)value);
        fw->dma_addr_high = 0;
        dma_transfer(fw, addr);
    } else if (size == 8 && offset == 0) {
        fw->dma_addr_high = 0;
        dma_transfer(fw, __builtin_bswap64(value));
    } else {
        log_limited(&fw->guest_log, LOG_DEBUG,
                    "fw_cfg: ignored %u-byte DMA register write at +%llu", size,
                    (unsigned long long)offset);
    }
    pthread_mutex_unlock(&fw->lock);
}

const struct io_ops fw_cfg_io_ops = {.read = io_read, .write = io_write};
const struct io_ops fw_cfg_dma_ops = {.read = dma_reg_read, .write = dma_reg_write};

/* ---- lifecycle ---- */

static void fw_cfg_reset(struct device *dev)
{
    struct fw_cfg *fw = container_of(dev, struct fw_cfg, dev);
    pthread_mutex_lock(&fw->lock);
    select_item(fw, FW_CFG_SIGNATURE);
    fw->dma_addr_high = 0;
    /* The framebuffer lived in RAM the next boot will reuse. */
    for (unsigned i = 0; i < fw->item_count; i++)
        if (fw->items[i].writable)
            memset(fw->items[i].data, 0, fw->items[i].size);
    fw->ramfb_valid = false;
    pthread_mutex_unlock(&fw->lock);
}

static void fw_cfg_destroy(struct device *dev)
{
    struct fw_cfg *fw = container_of(dev, struct fw_cfg, dev);
    for (unsigned i = 0; i < fw->item_count; i++)
        free(fw->items[i].data);
    fw->item_count = 0;
    pthread_mutex_destroy(&fw->lock);
}

/* FNV-1a over what names the items: selectors, file names, sizes and
 * which are writable (not the contents, which the host may render
 * differently, e.g. its CPU's model in SMBIOS). */
static uint64_t layout_hash(const struct fw_cfg *fw)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < fw->item_count; i++) {
        const struct fw_cfg_item *item = &fw->items[i];
        uint8_t fixed[7];
        le16_store(fixed, item->selector);
        le32_store(fixed + 2, item->size);
        fixed[6] = item->writable;
        for (size_t b = 0; b < sizeof(fixed); b++)
            h = (h ^ fixed[b]) * 0x100000001b3ull;
        for (const char *c = item->is_file ? item->name : "";; c++) {
            h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
            if (!*c)
                break;
        }
    }
    return h;
}

/* Only what the guest changes: the selection and offset, the DMA address
 * register's high half (the low half starts a transfer, which completes
 * within the write: no DMA is ever in flight), the writable files and the
 * framebuffer mode adopted from them. The items are rebuilt from the
 * config; their count and a hash of their layout refuse a state from a
 * different item set, where the selection would mean something else. */
static int fw_cfg_state(struct device *dev, struct snap *s)
{
    struct fw_cfg *fw = container_of(dev, struct fw_cfg, dev);
    pthread_mutex_lock(&fw->lock);
    uint32_t item_count = fw->item_count;
    uint64_t layout = layout_hash(fw);
    snap_u32(s, "item_count", &item_count);
    snap_u64(s, "layout", &layout);
    if (snap_loading(s) && !snap_error(s)) {
        snap_check(s, item_count == fw->item_count, "item_count",
                   "not this device's number of items (saved from another configuration?)");
        snap_check(s, layout == layout_hash(fw), "layout",
                   "the items differ from this device's (saved from another configuration?)");
    }
    uint16_t selector = fw->cur_selector;
    uint32_t offset = fw->cur_offset, dma_addr_high = fw->dma_addr_high;
    snap_u16(s, "selector", &selector);
    snap_u32(s, "offset", &offset);
    snap_u32(s, "dma_addr_high", &dma_addr_high);
    if (snap_loading(s) && !snap_error(s)) {
        int index = find_selector(fw, selector);
        uint32_t size = index >= 0 ? fw->items[index].size : 0;
        if (snap_check(s, offset <= size, "offset", "beyond the end of the selected item")) {
            fw->cur_selector = selector;
            fw->cur_item = index;
            fw->cur_offset = offset;
            fw->dma_addr_high = dma_addr_high;
        }
    }
    snap_enter(s, "writable");
    for (unsigned i = 0; i < fw->item_count; i++)
        if (fw->items[i].writable)
            snap_bytes(s, fw->items[i].name, fw->items[i].data, fw->items[i].size);
    snap_leave(s);
    /* The adopted mode, encoded as the guest writes it; checked again on
     * load against this machine's RAM. */
    uint8_t mode[RAMFB_CFG_SIZE] = {0};
    if (fw->ramfb_valid)
        ramfb_encode(&fw->ramfb, mode);
    snap_bool(s, "ramfb_valid", &fw->ramfb_valid);
    snap_bytes(s, "ramfb_mode", mode, sizeof(mode));
    if (snap_loading(s) && !snap_error(s)) {
        struct ramfb_mode parsed = {0};
        const char *why = fw->ramfb_valid ? ramfb_parse(mode, fw->mem, &parsed) : NULL;
        if (why)
            snap_fail(s, "ramfb_mode", "%s", why);
        else
            fw->ramfb = parsed;
    }
    pthread_mutex_unlock(&fw->lock);
    return snap_error(s);
}

static const struct device_ops fw_cfg_device_ops = {
    .reset = fw_cfg_reset,
    .state = fw_cfg_state,
    .kind = "fw_cfg",
    .state_version = 1,
    .destroy = fw_cfg_destroy,
};

int fw_cfg_init(struct fw_cfg *fw, const struct guest_mem *mem)
{
    memset(fw, 0, sizeof(*fw));
    fw->dev.name = "fw_cfg";
    fw->dev.ops = &fw_cfg_device_ops;
    fw->mem = mem;
    fw->cur_item = -1;
    pthread_mutex_init(&fw->lock, NULL);
    uint8_t id[4], empty_dir[4] = {0};
    le32_store(id, FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
    if (add_item(fw, FW_CFG_SIGNATURE, NULL, "QEMU", 4, false) < 0 ||
        add_item(fw, FW_CFG_ID, NULL, id, sizeof(id), false) < 0 ||
        add_item(fw, FW_CFG_FILE_DIR, NULL, empty_dir, sizeof(empty_dir), false) < 0) {
        fw_cfg_destroy(&fw->dev);
        return -1;
    }
    select_item(fw, FW_CFG_SIGNATURE);
    return 0;
}
