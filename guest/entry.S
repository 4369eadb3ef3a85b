/*
 * Test guest entry: reset vector (16-bit), protected-mode page table setup
 * (32-bit), long-mode entry for the BSP and the APs (64-bit), and the
 * interrupt/exception stubs.
 *
 * Sections (see guest.ld): .reset (last 16 bytes of the ROM), .text16 (real
 * mode, near the end of the ROM), .text32 (protected mode), .tramp (AP
 * real-mode trampoline, copied to TRAMP_ADDR by the BSP), .text (64-bit).
 * The build disassembles each with the right mode and rejects instructions
 * this host's CPL0 emulator cannot execute.
 */
#include "layout.h"

#define MSR_EFER 0xC0000080
#define EFER_LME 0x100
#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR0_CD_NW 0x60000000
#define CR4_PAE 0x20

/* ------------------------------------------------------------------ */
/* First bytes of the image (0xFFFF0000): an identification string.     */
	.section .romhdr, "a"
	.ascii	"testguest bootrom\0"

/* ------------------------------------------------------------------ */
/* Reset vector: 0xFFFFFFF0, real mode, CS base 0xFFFF0000, IP 0xFFF0.  */
	.section .reset, "ax"
	.code16
	.globl reset_vector
reset_vector:
	mov	$0x402, %dx		/* startup marker for the benchmark */
	mov	$'S', %al
	out	%al, %dx
	jmp	start16

/* ------------------------------------------------------------------ */
	.section .text16, "ax"
	.code16
start16:
	cli
	cld
	lgdtl	%cs:(gdt_ptr - ROM_BASE)
	mov	%cr0, %eax
	or	$CR0_PE, %eax
	mov	%eax, %cr0
	ljmpl	$SEL_CODE32, $pm32_bsp

/* ------------------------------------------------------------------ */
/* AP trampoline: copied to TRAMP_ADDR; entered with CS = TRAMP_ADDR>>4.
 * Position independent: only offsets from tramp_start are used.          */
	.section .tramp, "ax"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	cld
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	(tramp_gdt_data - tramp_start)
	mov	%cr0, %eax
	or	$CR0_PE, %eax
	mov	%eax, %cr0
	ljmpl	$SEL_CODE32, $pm32_ap
	.balign	4
tramp_gdt_data:
	.word	gdt_end - gdt - 1
	.long	gdt
tramp_end:

/* ------------------------------------------------------------------ */
	.section .text32, "ax"
	.code32

.macro LOAD_DATA_SEGS
	mov	$SEL_DATA, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	%ax, %fs
	mov	%ax, %gs
.endm

.macro ENABLE_LONG_MODE
	mov	%cr4, %eax
	or	$CR4_PAE, %eax
	mov	%eax, %cr4
	mov	$PML4_ADDR, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$EFER_LME, %eax
	wrmsr
	mov	%cr0, %eax
	and	$~CR0_CD_NW, %eax
	or	$(CR0_PG | CR0_PE), %eax
	mov	%eax, %cr0
.endm

pm32_bsp:
	LOAD_DATA_SEGS
	/* Zero PML4 and PDPT (RAM may hold anything after a warm reset). */
	mov	$PML4_ADDR, %edi
	xor	%eax, %eax
	mov	$(2 * 4096 / 4), %ecx
	rep stosl
	movl	$(PDPT_ADDR + 3), PML4_ADDR
	movl	$(PD_LOW_ADDR + 0x0000 + 3), PDPT_ADDR + 0
	movl	$(PD_LOW_ADDR + 0x1000 + 3), PDPT_ADDR + 8
	movl	$(PD_LOW_ADDR + 0x2000 + 3), PDPT_ADDR + 16
	movl	$(PD_LOW_ADDR + 0x3000 + 3), PDPT_ADDR + 24
	/* Identity map 0..4 GiB with 2 MiB pages (P, RW, PS). */
	mov	$PD_LOW_ADDR, %edi
	mov	$0x83, %eax
	xor	%edx, %edx
	mov	$2048, %ecx
1:	mov	%eax, (%edi)
	mov	%edx, 4(%edi)
	add	$0x200000, %eax
	add	$8, %edi
	dec	%ecx
	jnz	1b
	/* LAPIC page: uncached (PCD | PWT). */
	orl	$0x18, PD_LOW_ADDR + (LAPIC_BASE >> 21) * 8
	ENABLE_LONG_MODE
	ljmp	$SEL_CODE64, $lm64_bsp

pm32_ap:
	LOAD_DATA_SEGS
	ENABLE_LONG_MODE
	ljmp	$SEL_CODE64, $lm64_ap

/* ------------------------------------------------------------------ */
	.section .text, "ax"
	.code64
lm64_bsp:
	LOAD_DATA_SEGS
	mov	$STACK_TOP, %esp
	/* Zero .bss (a few KiB). */
	mov	$__bss_start, %edi
	mov	$__bss_end, %ecx
	sub	%edi, %ecx
	shr	$3, %ecx
	xor	%eax, %eax
	rep stosq
	call	cmain
2:	cli
	hlt
	jmp	2b

/* AP in long mode: take a slot, record the APIC id and the CPUID leaves
 * the BSP listed, check in, park. */
lm64_ap:
	mov	$SEL_DATA, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	$1, %eax
	lock xadd %eax, AP_TICKET_ADDR
	inc	%eax			/* slot 0 is the BSP */
	cmp	$MAX_CPUS, %eax
	jae	3f
	mov	$(LAPIC_BASE + 0x20), %esi
	mov	(%rsi), %ebx
	shr	$24, %ebx
	mov	%ebx, AP_IDS_ADDR(, %rax, 4)
	/* The `cpuid` command's leaves, as this CPU sees them (layout.h). */
	cmp	$CPUID_DUMP_CPUS, %eax
	jae	3f
	mov	%eax, %edi
	shl	$CPUID_DUMP_SLOT_SHIFT, %rdi
	add	$CPUID_DUMP_ADDR, %rdi
	mov	CPUID_LIST_ADDR, %r8d
	mov	$(CPUID_LIST_ADDR + 4), %esi
5:	test	%r8d, %r8d
	jz	3f
	mov	(%rsi), %eax
	mov	4(%rsi), %ecx
	cpuid
	mov	%eax, (%rdi)
	mov	%ebx, 4(%rdi)
	mov	%ecx, 8(%rdi)
	mov	%edx, 12(%rdi)
	add	$8, %rsi
	add	$16, %rdi
	dec	%r8d
	jmp	5b
3:	lock incl AP_DONE_ADDR
4:	cli
	hlt
	jmp	4b

/* Exceptions 0..31: push a dummy error code where the CPU pushes none,
 * then the vector; exc_common hands the frame to the C handler.         */
.macro EXC vec
exc_\vec:
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	push	$0
	.endif
	push	$\vec
	jmp	exc_common
.endm

.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC	\v
.endr

exc_common:
	cld
	mov	%rsp, %rdi		/* frame: vec, err, rip, cs, rflags, rsp, ss */
	and	$-16, %rsp
	call	exc_handler
5:	cli
	hlt
	jmp	5b

/* Interrupts: save the caller-saved registers, call irq_dispatch(vector). */
.macro IRQ vec
irq_\vec:
	push	$\vec
	jmp	irq_common
.endm

.irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,64,255
	IRQ	\v
.endr

irq_common:
	/* CPU frame (40 bytes) + vector (8): rsp is 16-aligned minus 48. */
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	cld
	mov	72(%rsp), %rdi
	sub	$8, %rsp		/* 48 + 72 + 8 = 128: aligned for the call */
	call	irq_dispatch
	add	$8, %rsp
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rax
	add	$8, %rsp		/* vector */
	iretq

/* CPL3 sessions (the drivers, cpl3.h). user_enter(fn, arg, stack) runs
 * fn(arg) at CPL3 on `stack` and returns fn's result. fn returns into
 * user_start's ud2; the #UD gate (user_ud_entry, installed by
 * cpl3.c) sees a CPL3 frame and resumes after user_enter with the
 * saved callee-saved registers. A #UD at CPL0 takes the ordinary
 * exception path (exc_6). TSS.RSP0 is the kernel stack at entry, so
 * exceptions and interrupts taken at CPL3 land below everything in use. */
	.globl user_enter, user_ud_entry
user_enter:
	push	%rbp
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	mov	%rsp, user_saved_rsp
	mov	%rsp, user_tss + 4	/* TSS.RSP0 */
	mov	$(SEL_UDATA | 3), %eax
	push	%rax			/* SS */
	push	%rdx			/* RSP */
	push	$0x2			/* RFLAGS: IF clear, IOPL 0 */
	mov	$(SEL_UCODE | 3), %eax
	push	%rax			/* CS */
	mov	$user_start, %eax
	push	%rax			/* RIP */
	iretq

user_start:				/* CPL3: rdi = fn, rsi = arg */
	mov	%rdi, %rax
	mov	%rsi, %rdi
	call	*%rax
	ud2

user_ud_entry:
	testb	$3, 8(%rsp)		/* frame: rip, cs, ... (no error code) */
	jz	exc_6
	mov	$SEL_DATA, %cx
	mov	%cx, %ds
	mov	%cx, %es
	mov	%cx, %ss
	mov	user_saved_rsp, %rsp
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	pop	%rbp
	ret

/* ------------------------------------------------------------------ */
	.section .rodata, "a"
	.balign	8
	.globl exc_stubs, irq_stubs, irq_stub_vectors
exc_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	exc_\v
.endr
irq_stubs:
.irp v, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,64,255
	.quad	irq_\v
.endr
irq_stub_vectors:
	.byte	32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,64,255

/* GDT in ROM: accessed bits preset so the CPU never writes to it. */
	.balign	16
gdt:
	.quad	0
	.quad	0x00CF9B000000FFFF	/* 0x08: 32-bit code */
	.quad	0x00CF93000000FFFF	/* 0x10: data */
	.quad	0x00AF9B000000FFFF	/* 0x18: 64-bit code */
gdt_end:
	.balign	4
gdt_ptr:
	.word	gdt_end - gdt - 1
	.long	gdt
