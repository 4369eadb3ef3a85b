/* fw_cfg (src/firmware/fw_cfg.c) through its port handlers: selector
 * writes of any size, data reads and writes, and the DMA interface with
 * its address register written in halves or whole and its control
 * structure anywhere (in RAM, across the end of RAM, in the read-only
 * region, nowhere), reading, skipping, selecting and writing (the ramfb
 * file) items. The device holds either a few small items or everything
 * the VMM adds for a PC (ACPI, SMBIOS, e820, ...). A saved state,
 * corrupted, is loaded back too. */
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "firmware/fw_cfg.h"
#include "firmware/platform.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

static void small_items(struct fw_cfg *fw)
{
    static const uint8_t bytes[37] = {1, 2, 3};
    fw_cfg_add_bytes(fw, FW_CFG_NB_CPUS, "\x02\x00", 2);
    fw_cfg_add_bytes(fw, 0x8001, bytes, sizeof(bytes));
    fw_cfg_add_file(fw, "etc/one", bytes, 1);
    fw_cfg_add_file(fw, "etc/empty", bytes, 0);
    fw_cfg_add_file(fw, "opt/a-longer/name", bytes, sizeof(bytes));
    fw_cfg_add_ramfb(fw);
}

/* A DMA control structure at gpa (big-endian, as the guest writes it). */
static void put_dma_desc(uint64_t gpa, uint32_t control, uint32_t length, uint64_t addr)
{
    uint8_t d[FW_CFG_DMA_DESC_SIZE];
    for (int i = 0; i < 4; i++) {
        d[i] = (uint8_t)(control >> (24 - 8 * i));
        d[4 + i] = (uint8_t)(length >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++)
        d[8 + i] = (uint8_t)(addr >> (56 - 8 * i));
    guest_mem_write(&fake_mem, gpa, d, sizeof(d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    fuzz_mem_reset();
    struct fw_cfg fw;
    if (fw_cfg_init(&fw, &fake_mem) < 0)
        abort();
    if (fi_u8(&in) & 1) {
        struct platform_desc d;
        platform_desc_defaults(&d, 2, 64ull << 20, 0);
        if (fw_cfg_build(&fw, &d) < 0)
            abort();
    } else {
        small_items(&fw);
    }
    for (unsigned steps = 0; fi_more(&in) && steps < 512; steps++) {
        switch (fi_u8(&in) % 10) {
        case 0:
            fi_mem_write(&in);
            break;
        case 1: { /* selector: usually a word, sometimes any size */
            uint8_t how = fi_u8(&in);
            unsigned sz = how & 0x80 ? fi_size(&in) : 2;
            uint16_t sel = how & 0x40 ? fi_u16(&in) : (uint16_t)(how & 0x3f);
            fw_cfg_io_ops.write(&fw, 0, sz, sel);
            break;
        }
        case 2: { /* data reads */
            unsigned n = 1 + fi_u8(&in) % 64;
            unsigned sz = fi_size(&in);
            for (unsigned i = 0; i < n; i++)
                (void)fw_cfg_io_ops.read(&fw, 1, sz);
            break;
        }
        case 3: { /* any port access in the window */
            unsigned off = fi_u8(&in) % FW_CFG_IO_COUNT;
            unsigned sz = fi_size(&in);
            if (fi_u8(&in) & 1)
                fw_cfg_io_ops.write(&fw, off, sz, fi_u64(&in));
            else
                (void)fw_cfg_io_ops.read(&fw, off, sz);
            break;
        }
        case 4:
        case 5: { /* a DMA transfer: control structure in RAM, address as two halves */
            uint64_t at = fi_u8(&in) & 0x80 ? fi_gpa(&in) : 0x100 * (fi_u8(&in) & 0x3f);
            uint32_t control;
            if (fi_u8(&in) & 0x80) {
                control = fi_u32(&in);
            } else { /* selector, then the low control bits */
                control = (uint32_t)fi_u16(&in) << 16;
                control |= fi_u8(&in);
            }
            uint32_t length = fi_u8(&in) & 0x80 ? fi_u32(&in) : fi_u16(&in);
            uint64_t addr = fi_gpa(&in);
            put_dma_desc(at, control, length, addr);
            if (fi_u8(&in) & 1) {
                fw_cfg_dma_ops.write(&fw, 0, 8, __builtin_bswap64(at));
            } else {
                fw_cfg_dma_ops.write(&fw, 0, 4, __builtin_bswap32((uint32_t)(at >> 32)));
                fw_cfg_dma_ops.write(&fw, 4, 4, __builtin_bswap32((uint32_t)at));
            }
            break;
        }
        case 6: { /* the DMA registers, any offset and size */
            unsigned off = fi_u8(&in) % FW_CFG_DMA_COUNT;
            unsigned sz = fi_size(&in);
            if (fi_u8(&in) & 1)
                fw_cfg_dma_ops.write(&fw, off, sz, fi_u64(&in));
            else
                (void)fw_cfg_dma_ops.read(&fw, off, sz);
            break;
        }
        case 7: {
            struct ramfb_mode mode;
            (void)fw_cfg_ramfb_mode(&fw, &mode);
            (void)fw_cfg_file_selector(&fw, "etc/ramfb");
            break;
        }
        case 8:
            fw.dev.ops->reset(&fw.dev);
            break;
        default:
            fuzz_corrupt_state(&fw.dev, &in);
            break;
        }
    }
    fw.dev.ops->destroy(&fw.dev);
    return 0;
}
