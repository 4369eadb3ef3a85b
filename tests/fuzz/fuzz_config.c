/* The configuration layer (src/config): the input is a configuration file's
 * text, parsed and validated as `propolis-standalone CONFIG` would, error
 * paths included; an accepted configuration is looked through the way the
 * VMM's build functions do (devices, block devices, CPUID profiles). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_logs_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (config_parse("fuzz.toml", text, size, &cfg) == 0) {
        for (size_t i = 0; i < cfg.device_count; i++) {
            (void)config_driver_name(cfg.devices[i].driver);
            if (config_find_device(&cfg, cfg.devices[i].name) == NULL)
                abort();
        }
        for (size_t i = 0; i < cfg.block_dev_count; i++) {
            (void)config_block_type_name(cfg.block_devs[i].type);
            (void)config_block_size(&cfg.block_devs[i]);
            if (config_find_block_dev(&cfg, cfg.block_devs[i].name) == NULL)
                abort();
        }
        (void)config_cpuid_profile(&cfg);
        config_free(&cfg);
    } else if (memchr(cfg.error, '\0', sizeof(cfg.error)) == NULL || cfg.error[0] == '\0') {
        abort(); /* a refusal must say why */
    }
    free(text);
    return 0;
}
