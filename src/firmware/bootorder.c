#include "firmware/bootorder.h"

#include <stdio.h>

#include "common/log.h"

int bootorder_path(const struct platform_boot_device *dev, char *out, size_t outlen)
{
    /* Devices behind bridges would need a bridge node; we have none. */
    if (dev->bus != 0 || dev->dev > 31 || dev->func > 7)
        return -1;
    char unit[8];
    if (dev->func)
        snprintf(unit, sizeof(unit), "%x,%x", dev->dev, dev->func);
    else
        snprintf(unit, sizeof(unit), "%x", dev->dev);
    int n;
    switch (dev->kind) {
    case BOOT_DEVICE_VIRTIO_BLOCK:
        /* OVMF maps "scsi@S/disk@0,0" to the virtio-blk device at S. */
        n = snprintf(out, outlen, "/pci@i0cf8/scsi@%s/disk@0,0", unit);
        break;
    case BOOT_DEVICE_NVME:
        /* OVMF only recognises NVMe under QEMU's vendor,device name. */
        n = snprintf(out, outlen, "/pci@i0cf8/pci8086,5845@%s/namespace@1,0", unit);
        break;
    case BOOT_DEVICE_NIC:
        n = snprintf(out, outlen, "/pci@i0cf8/ethernet@%s", unit);
        break;
    case BOOT_DEVICE_PCI:
        n = snprintf(out, outlen, "/pci@i0cf8/device@%s", unit);
        break;
    default:
        return -1;
    }
    return (n < 0 || (size_t)n >= outlen) ? -1 : n;
}

int bootorder_build(const struct platform_boot_device *devs, unsigned count, struct bytebuf *out)
{
    *out = (struct bytebuf){0};
    for (unsigned i = 0; i < count; i++) {
        char path[BOOTORDER_PATH_MAX];
        int n = bootorder_path(&devs[i], path, sizeof(path));
        if (n < 0) {
            log_error("bootorder: device %u.%u.%u cannot be a boot device", devs[i].bus,
                      devs[i].dev, devs[i].func);
            bytebuf_free(out);
            return -1;
        }
        bytebuf_append(out, path, (size_t)n);
        bytebuf_u8(out, '\n');
    }
    bytebuf_append(out, "HALT", 5); /* with the terminating NUL */
    if (out->failed) {
        bytebuf_free(out);
        return -1;
    }
    return 0;
}
