#include "devices/i440fx.h"

#include "core/machine.h"
#include "devices/pc_layout.h"

_Static_assert(PC_ECAM_BASE == ECAM_BASE && PC_ECAM_SIZE == ECAM_SIZE,
               "the machine and the chipset disagree on the ECAM window");

#define SMRAM_WRITABLE 0x78 /* D_OPEN, D_CLS, D_LCK, G_SMRAME */

static bool touches(unsigned offset, unsigned size, unsigned start, unsigned len)
{
    return offset < start + len && start < offset + size;
}

static void i440fx_config_write(struct pci_device *pdev, unsigned offset, unsigned size,
                                uint32_t value)
{
    struct i440fx *hb = container_of(pdev, struct i440fx, pci);
    if (touches(offset, size, I440FX_PAM0, I440FX_PAM_COUNT) && hb->hooks.pam_changed)
        hb->hooks.pam_changed(hb->hooks.opaque, &pdev->config[I440FX_PAM0]);
}

static const struct pci_device_ops i440fx_pci_ops = {.config_write = i440fx_config_write};

static void i440fx_reset(struct device *dev)
{
    struct i440fx *hb = container_of(dev, struct i440fx, pci.dev);
    pci_device_reset(&hb->pci);
    if (hb->pci.bus)
        pci_bus_reset(hb->pci.bus);
    if (hb->hooks.pam_changed)
        hb->hooks.pam_changed(hb->hooks.opaque, &hb->pci.config[I440FX_PAM0]);
}

static void i440fx_destroy(struct device *dev)
{
    struct i440fx *hb = container_of(dev, struct i440fx, pci.dev);
    pci_device_destroy(&hb->pci);
}

/* What 0xCF8 keeps (CONFADD: enable, bus, devfn, dword register). */
#define CONFIG_ADDRESS_BITS 0x80fffffcu

/* Config space (PAM, SMRAM) and the bus's configuration address latch,
 * which this bridge owns: a guest saved between its 0xCF8 and 0xCFC
 * accesses continues with the function it selected. */
static int i440fx_state(struct device *dev, struct snap *s)
{
    struct i440fx *hb = container_of(dev, struct i440fx, pci.dev);
    struct pci_bus *bus = hb->pci.bus;
    snap_enter(s, "pci");
    pci_device_state(&hb->pci, s);
    snap_leave(s);
    uint32_t config_address = 0;
    if (bus && !snap_loading(s)) {
        pthread_mutex_lock(&bus->lock);
        config_address = bus->config_address;
        pthread_mutex_unlock(&bus->lock);
    }
    snap_u32(s, "config_address", &config_address);
    if (!snap_loading(s) || snap_error(s))
        return snap_error(s);
    if (!snap_check(s, !(config_address & ~CONFIG_ADDRESS_BITS), "config_address",
                    "bits CONFADD does not keep"))
        return -1;
    if (bus) {
        pthread_mutex_lock(&bus->lock);
        bus->config_address = config_address;
        pthread_mutex_unlock(&bus->lock);
    }
    if (hb->hooks.pam_changed) {
        pthread_mutex_lock(&hb->pci.lock);
        hb->hooks.pam_changed(hb->hooks.opaque, &hb->pci.config[I440FX_PAM0]);
        pthread_mutex_unlock(&hb->pci.lock);
    }
    return 0;
}

static const struct device_ops i440fx_device_ops = {
    .drop_decodes = pci_device_drop_decodes,
    .reset = i440fx_reset,
    .state = i440fx_state,
    .kind = "i440fx",
    .state_version = 1,
    .destroy = i440fx_destroy,
};

void i440fx_init(struct i440fx *hb, struct i440fx_hooks hooks)
{
    static const struct pci_ids ids = {
        .vendor_id = PCI_VENDOR_ID_INTEL,
        .device_id = I440FX_DEVICE_ID,
        .subsystem_vendor_id = PCI_SUBVENDOR_ID_QEMU,
        .subsystem_id = PCI_SUBDEVICE_ID_QEMU,
        .class_code = 0x060000,
        .revision = I440FX_REVISION,
    };
    pci_device_init(&hb->pci, "i440fx", &i440fx_device_ops, &ids, &i440fx_pci_ops);
    hb->hooks = hooks;
    pci_set_byte(&hb->pci, I440FX_SMRAM, I440FX_SMRAM_POWER_ON);
    pci_set_wmask(&hb->pci, I440FX_SMRAM, 1, SMRAM_WRITABLE);
}

int i440fx_attach(struct i440fx *hb, struct pci_bus *bus)
{
    if (pci_bus_add(bus, &hb->pci, PC_I440FX_DEVFN) < 0)
        return -1;
    if (!pci_bus_map_config_space(bus, PC_ECAM_BASE, PC_ECAM_SIZE)) {
        log_error("i440fx: cannot claim the PCI configuration ports or ECAM window");
        return -1;
    }
    return 0;
}
