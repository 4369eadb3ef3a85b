#include "firmware/smbios.h"

#include <string.h>

#include "common/bytes.h"
#include "common/log.h"

/* One structure being assembled: the formatted area, then its strings. */
struct smbios_struct {
    struct bytebuf *out;
    size_t at;
    struct bytebuf strings;
    unsigned string_count;
    uint8_t scratch[8]; /* absorbs field writes once the output has failed */
};

static void struct_begin(struct smbios_struct *s, struct bytebuf *out, uint8_t type, uint8_t length,
                         uint16_t handle)
{
    *s = (struct smbios_struct){.out = out};
    s->at = bytebuf_zeros(out, length);
    if (out->failed)
        return;
    out->data[s->at] = type;
    out->data[s->at + 1] = length;
    le16_store(out->data + s->at + 2, handle);
}

static uint8_t *field(struct smbios_struct *s, size_t offset)
{
    if (s->out->failed)
        return s->scratch;
    return s->out->data + s->at + offset;
}

/* Adds a string and stores its number at offset; empty strings are "none". */
static void struct_string(struct smbios_struct *s, size_t offset, const char *text)
{
    size_t len = strnlen(text, PLATFORM_STRING_MAX);
    if (len == 0) {
        *field(s, offset) = 0;
        return;
    }
    bytebuf_append(&s->strings, text, len);
    bytebuf_u8(&s->strings, 0);
    *field(s, offset) = (uint8_t)++s->string_count;
}

static void struct_end(struct smbios_struct *s, size_t *max_size)
{
    if (s->string_count == 0) {
        bytebuf_zeros(s->out, 2); /* empty string set: double NUL */
    } else {
        bytebuf_append(s->out, s->strings.data, s->strings.len);
        bytebuf_u8(s->out, 0);
    }
    if (s->strings.failed)
        s->out->failed = true;
    bytebuf_free(&s->strings);
    size_t size = s->out->len - s->at;
    if (size > *max_size)
        *max_size = size;
}

static void put_field16(struct smbios_struct *s, size_t offset, uint16_t v)
{
    le16_store(field(s, offset), v);
}

static void put_field32(struct smbios_struct *s, size_t offset, uint32_t v)
{
    le32_store(field(s, offset), v);
}

static void put_field64(struct smbios_struct *s, size_t offset, uint64_t v)
{
    le64_store(field(s, offset), v);
}

/* The brand string without the padding spaces vendors put around it. */
static void trimmed_brand(const char *brand, char *out, size_t outlen)
{
    size_t len = strnlen(brand, 48);
    size_t start = 0;
    while (start < len && brand[start] == ' ')
        start++;
    while (len > start && (brand[len - 1] == ' ' || brand[len - 1] == '\0'))
        len--;
    size_t n = len - start < outlen - 1 ? len - start : outlen - 1;
    memcpy(out, brand + start, n);
    out[n] = '\0';
}

static void type0_bios(struct bytebuf *t, const struct platform_desc *d, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 0, 0x18, SMBIOS_HANDLE_TYPE0);
    struct_string(&s, 0x04, "Oxide");
    struct_string(&s, 0x05, d->bootrom_version);
    put_field16(&s, 0x06, 0); /* no legacy BIOS segment: UEFI */
    struct_string(&s, 0x08, "Bureaucracy 41, 3186 YOLD");
    uint64_t blocks = d->bootrom_size / (64 * 1024);
    *field(&s, 0x09) = (uint8_t)(blocks == 0 ? 0 : blocks > 256 ? 0xff : blocks - 1);
    put_field64(&s, 0x0a, 1u << 3);           /* BIOS characteristics not supported */
    *field(&s, 0x12) = 1u << 0;               /* extension 1: ACPI */
    *field(&s, 0x13) = (1u << 3) | (1u << 4); /* extension 2: UEFI, virtual machine */
    *field(&s, 0x14) = 0;                     /* system BIOS major release */
    *field(&s, 0x15) = 0;                     /* minor */
    *field(&s, 0x16) = 0xff;                  /* no embedded controller */
    *field(&s, 0x17) = 0xff;
    struct_end(&s, max);
}

static void type1_system(struct bytebuf *t, const struct platform_desc *d, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 1, 0x1b, SMBIOS_HANDLE_TYPE1);
    struct_string(&s, 0x04, "Oxide");
    struct_string(&s, 0x05, "OxVM");
    if (d->has_uuid) {
        /* SMBIOS 2.6+: the first three fields are little-endian. */
        uint8_t *u = field(&s, 0x08);
        const uint8_t *in = d->uuid;
        const uint8_t order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
        for (int i = 0; i < 16; i++)
            u[i] = in[order[i]];
    }
    *field(&s, 0x18) = 0x06; /* wake-up type: power switch */
    struct_end(&s, max);
}

static void type4_processor(struct bytebuf *t, const struct platform_desc *d, size_t *max)
{
    uint32_t eax = d->cpuid1_eax;
    uint32_t family = (eax >> 8) & 0xf;
    if (family == 0xf)
        family += (eax >> 20) & 0xff;
    uint16_t smbios_family = 0x02; /* unknown */
    const char *manufacturer = "";
    if (d->cpu_vendor == PLATFORM_CPU_VENDOR_INTEL) {
        manufacturer = "Intel";
    } else if (d->cpu_vendor == PLATFORM_CPU_VENDOR_AMD) {
        manufacturer = "Advanced Micro Devices, Inc.";
        if (family >= 0x17)
            smbios_family = 0x6b; /* Zen */
    }
    char brand[49];
    trimmed_brand(d->cpu_brand, brand, sizeof(brand));

    struct smbios_struct s;
    struct_begin(&s, t, 4, 0x30, SMBIOS_HANDLE_TYPE4);
    *field(&s, 0x05) = 0x03; /* central processor */
    *field(&s, 0x06) = (uint8_t)smbios_family;
    struct_string(&s, 0x07, manufacturer);
    put_field64(&s, 0x08, (uint64_t)d->cpuid1_eax | ((uint64_t)d->cpuid1_edx << 32));
    struct_string(&s, 0x10, brand);
    *field(&s, 0x18) = 0x41;       /* socket populated, CPU enabled */
    *field(&s, 0x19) = 0x02;       /* upgrade: unknown */
    put_field16(&s, 0x1a, 0xffff); /* no cache information */
    put_field16(&s, 0x1c, 0xffff);
    put_field16(&s, 0x1e, 0xffff);
    /* One socket holding every vCPU as a core, as propolis reports it. */
    *field(&s, 0x23) = (uint8_t)d->cpus;
    *field(&s, 0x24) = (uint8_t)d->cpus;
    *field(&s, 0x25) = (uint8_t)d->cpus;
    put_field16(&s, 0x26, (1u << 2) | (d->cpus > 1 ? 1u << 3 : 0)); /* 64-bit, multi-core */
    put_field16(&s, 0x28, smbios_family);
    put_field16(&s, 0x2a, (uint16_t)d->cpus);
    put_field16(&s, 0x2c, (uint16_t)d->cpus);
    put_field16(&s, 0x2e, (uint16_t)d->cpus);
    struct_end(&s, max);
}

static void type16_memory_array(struct bytebuf *t, uint64_t ram, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 16, 0x17, SMBIOS_HANDLE_TYPE16);
    *field(&s, 0x04) = 0x03; /* location: system board */
    *field(&s, 0x05) = 0x03; /* use: system memory */
    *field(&s, 0x06) = 0x02; /* error correction: unknown */
    uint64_t kib = ram / 1024;
    if (kib < 0x80000000u) {
        put_field32(&s, 0x07, (uint32_t)kib);
    } else {
        put_field32(&s, 0x07, 0x80000000u);
        put_field64(&s, 0x0f, ram);
    }
    put_field16(&s, 0x0b, 0xfffe); /* no error information */
    put_field16(&s, 0x0d, 1);      /* one memory device */
    struct_end(&s, max);
}

static void type17_memory_device(struct bytebuf *t, uint64_t ram, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 17, 0x28, SMBIOS_HANDLE_TYPE17);
    put_field16(&s, 0x04, SMBIOS_HANDLE_TYPE16);
    put_field16(&s, 0x06, 0xfffe);
    put_field16(&s, 0x08, 0xffff); /* widths unknown */
    put_field16(&s, 0x0a, 0xffff);
    uint64_t mib = ram / (1024 * 1024);
    if (mib < 0x7fff) {
        put_field16(&s, 0x0c, (uint16_t)mib);
    } else {
        put_field16(&s, 0x0c, 0x7fff);
        put_field32(&s, 0x1c, (uint32_t)(mib > 0x7fffffffu ? 0x7fffffffu : mib));
    }
    *field(&s, 0x0e) = 0x02;       /* form factor: unknown */
    *field(&s, 0x12) = 0x02;       /* memory type: unknown */
    put_field16(&s, 0x13, 0x0002); /* type detail: unknown */
    struct_end(&s, max);
}

static void type19_mapped_range(struct bytebuf *t, uint16_t handle, uint64_t base, uint64_t size,
                                size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 19, 0x1f, handle);
    uint64_t end = base + size - 1;
    if (end / 1024 < 0xffffffffu) {
        put_field32(&s, 0x04, (uint32_t)(base / 1024));
        put_field32(&s, 0x08, (uint32_t)(end / 1024));
    } else {
        put_field32(&s, 0x04, 0xffffffffu);
        put_field32(&s, 0x08, 0xffffffffu);
        put_field64(&s, 0x0f, base);
        put_field64(&s, 0x17, end);
    }
    put_field16(&s, 0x0c, SMBIOS_HANDLE_TYPE16);
    *field(&s, 0x0e) = 1; /* partition width */
    struct_end(&s, max);
}

static void type32_boot(struct bytebuf *t, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 32, 0x0b, SMBIOS_HANDLE_TYPE32);
    *field(&s, 0x0a) = 0; /* no errors detected */
    struct_end(&s, max);
}

static void type127_end(struct bytebuf *t, size_t *max)
{
    struct smbios_struct s;
    struct_begin(&s, t, 127, 4, SMBIOS_HANDLE_TYPE127);
    struct_end(&s, max);
}

int smbios_build(const struct platform_desc *d, struct bytebuf *tables, struct bytebuf *anchor)
{
    *tables = (struct bytebuf){0};
    *anchor = (struct bytebuf){0};
    if (d->cpus == 0 || d->cpus > PLATFORM_MAX_CPUS || d->lowmem_size == 0) {
        log_error("SMBIOS: bad machine shape");
        return -1;
    }
    uint64_t ram = d->lowmem_size + d->highmem_size;
    size_t max = 0;
    type0_bios(tables, d, &max);
    type1_system(tables, d, &max);
    type4_processor(tables, d, &max);
    type16_memory_array(tables, ram, &max);
    type17_memory_device(tables, ram, &max);
    type19_mapped_range(tables, SMBIOS_HANDLE_TYPE19, 0, d->lowmem_size, &max);
    if (d->highmem_size)
        type19_mapped_range(tables, SMBIOS_HANDLE_TYPE19 + 1, 4ull << 30, d->highmem_size, &max);
    type32_boot(tables, &max);
    type127_end(tables, &max);

    bytebuf_zeros(anchor, SMBIOS3_ANCHOR_SIZE);
    if (tables->failed || anchor->failed || tables->len > 0xffffffffu) {
        log_error("SMBIOS: table generation failed");
        bytebuf_free(tables);
        bytebuf_free(anchor);
        return -1;
    }
    uint8_t *p = anchor->data;
    memcpy(p, "_SM3_", 5);
    p[6] = SMBIOS3_ANCHOR_SIZE;
    p[7] = 3; /* version 3.0.0 */
    p[8] = 0;
    p[9] = 0;
    p[10] = 1; /* entry point revision */
    le32_store(p + 12, (uint32_t)tables->len);
    /* Table address 0: the firmware places the table and fixes this up. */
    p[5] = (uint8_t)(0x100 - byte_sum(p, SMBIOS3_ANCHOR_SIZE));
    return 0;
}
