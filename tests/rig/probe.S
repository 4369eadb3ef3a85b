/* A 64 KiB bootrom that tells whether host KVM runs unmodified guests:
 * it writes 'S' to the 0x402 debug port, executes x87 math at CPL0 (which a
 * paravirtual KVM's instruction emulator cannot do), then writes "K\n".
 * "SK" on the port: direct mode works.  Build: as --32, objcopy -O binary. */
        .code16
        .text
start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $0x402, %dx
        mov     $'S', %al
        outb    %al, %dx
        fninit
        fld1
        fstps   0x500
        fnstsw  %ax
        mov     $0x402, %dx
        mov     $'K', %al
        outb    %al, %dx
        mov     $'\n', %al
        outb    %al, %dx
1:      hlt
        jmp     1b

        .org    0xfff0          /* reset vector: CS base 0xffff0000, IP 0xfff0 */
        jmp     start
        .org    0x10000
