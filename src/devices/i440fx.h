/* i440FX PCI host bridge (0.0.0, 8086:1237 rev 2, class 0x060000). It owns
 * the configuration mechanisms: 0xCF8/0xCFC and the ECAM window. PAM
 * (0x59-0x5F) and SMRAM (0x72) registers are stored for firmware that
 * programs them; a hook reports PAM changes to whoever maps the BIOS area. */
#ifndef DEVICES_I440FX_H
#define DEVICES_I440FX_H

#include <stdint.h>

#include "pci/pci.h"

#define I440FX_DEVICE_ID 0x1237
#define I440FX_REVISION 0x02
#define I440FX_PAM0 0x59
#define I440FX_PAM_COUNT 7
#define I440FX_SMRAM 0x72
#define I440FX_SMRAM_POWER_ON 0x02 /* C_BASE_SEG = 010b, fixed */

struct i440fx_hooks {
    /* Optional: PAM registers changed (firmware shadowing the BIOS). Called
     * with the bridge's config lock held. */
    void (*pam_changed)(void *opaque, const uint8_t pam[I440FX_PAM_COUNT]);
    void *opaque;
};

struct i440fx {
    struct pci_device pci;
    struct i440fx_hooks hooks;
};

void i440fx_init(struct i440fx *hb, struct i440fx_hooks hooks);
/* Places the bridge at 0.0.0 and claims 0xCF8, 0xCFC and the ECAM window
 * (PC_ECAM_BASE, PC_ECAM_SIZE). Returns -1 (logged) on failure. */
int i440fx_attach(struct i440fx *hb, struct pci_bus *bus);

#endif
