/* Virtual-memory test support: page tables built at run time in M-mode,
 * gadgets run in S or U mode, faults caught back in M-mode.
 * Include after common/test.h and common/catch.h.
 *
 * Registers: s0 = VA of the last `run` (a0 on entry), s5..s8 = scause,
 * stval, sepc, sstatus recorded by the S-mode handler (__s_handler), plus
 * the catcher's s2, s3, s4, s9, s10. vm_map clobbers t0-t4, a4-a7.
 * Macro arguments must not contain spaces (write PTE_V|PTE_R, not PTE_V | PTE_R).
 */
#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_G 0x20
#define PTE_A 0x40
#define PTE_D 0x80

#define SATP_MODE_SV39 8
#define SATP_MODE_SV48 9

#define MODE_U 0
#define MODE_S 1
#define MODE_M 3

#define PA_RAM   0x80000000
/* VA of the user alias of the gadget page (mapped by vm_map_base). */
#define USER_VA  0x10000000
/* First word of data page __dp<i>. */
#define MARK(i)  (0xD0D0D0D000000000 + (i))
#define POOL_PAGES 40

/* M-mode set-up: catcher, PMP open to S/U, no delegation, S handler. */
.macro vm_setup
        CATCH_INSTALL
        li t0, -1                   /* NAPOT region covering everything */
        csrw pmpaddr0, t0
        li t0, 0x1f                 /* R|W|X, A=NAPOT */
        csrw pmpcfg0, t0
        csrw medeleg, zero
        csrw mideleg, zero
        csrw satp, zero
        la t0, __s_handler
        csrw stvec, t0
        call vm_pool_reset
.endm

/* Start a new, empty tree with `levels` levels (3 = Sv39, 4 = Sv48); it
 * becomes the one vm_map edits. Leaves its satp value in `reg`. */
.macro vm_tree reg, levels
        li a0, \levels
        call vm_new_root
        mv \reg, a0
.endm

/* Map va -> pa (a constant) with a leaf PTE of `flags` at `level`
 * (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB, 3 = 512 GiB). a0 = address of the PTE. */
.macro map va, pa, flags, level=0
        li a0, \va
        li a1, \pa
        li a2, \flags
        li a3, \level
        call vm_map
.endm

/* Same, pa = address of symbol sym. */
.macro map_sym va, sym, flags, level=0
        li a0, \va
        la a1, \sym
        li a2, \flags
        li a3, \level
        call vm_map
.endm

/* Identity 1 GiB superpage over RAM for S-mode, and the gadget page at
 * USER_VA for U-mode. */
.macro vm_map_base
        map PA_RAM, PA_RAM, PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D, 2
        map_sym USER_VA, __gadgets, PTE_V|PTE_R|PTE_X|PTE_U|PTE_A, 0
.endm

/* a0 = va_base + (sym - PA_RAM): sym's alias when RAM is mapped at va_base. */
.macro va_of va_base, sym
        la a0, \sym
        li t5, PA_RAM
        sub a0, a0, t5
        li t5, \va_base
        add a0, a0, t5
.endm

/* reg = address of gadget g as `mode` sees it (U: the USER_VA alias,
 * unless alias=0, e.g. when translation is Bare). */
.macro gadget_addr reg, mode, g, alias=1
        la \reg, \g
        .if (\mode == MODE_U) && \alias
        la t5, __gadgets
        sub \reg, \reg, t5
        li t5, USER_VA
        add \reg, \reg, t5
        .endif
.endm

/* Enter `mode` at gadget g through mret (after sfence.vma unless fence=0),
 * with the caller's a0..a3; back in M-mode after the gadget's trap. */
.macro run mode, g, fence=1, alias=1
        mv s0, a0
        li s2, -1
        li s3, -1
        li s4, -1
        gadget_addr t0, \mode, \g, \alias
        la s9, .Lback\@
        li t5, MSTATUS_MPP
        csrc mstatus, t5
        li t5, (\mode) << 11
        csrs mstatus, t5
        csrw mepc, t0
        .if \fence
        sfence.vma
        .endif
        mret
.Lback\@:
.endm

/* Test n: the gadget finished with its ecall from `mode`. */
.macro expect_ecall n, mode
        li gp, \n
        li t6, CAUSE_ECALL_U + (\mode)
        bne s2, t6, __test_fail
.endm

/* Test n: the first instruction of gadget g trapped with `cause` and
 * mtval = s0 (the VA it was given); alias as for gadget_addr. */
.macro expect_fault n, mode, g, cause, alias=1
        li gp, \n
        li t6, \cause
        bne s2, t6, __test_fail
        bne s3, s0, __test_fail
        gadget_addr t6, \mode, \g, \alias
        bne s4, t6, __test_fail
.endm

/* Test n: a 64-bit load from VA a0 in `mode` returns val. */
.macro load_ok n, mode, val
        li a1, 0
        run \mode, __g_ld
        expect_ecall \n, \mode
        li t6, \val
        bne a1, t6, __test_fail
.endm

/* Test n: a load from VA a0 in `mode` faults with `cause`. */
.macro load_fault n, mode, cause=CAUSE_LOAD_PAGE
        li a1, 0
        run \mode, __g_ld
        expect_fault \n, \mode, __g_ld, \cause
        bnez a1, __test_fail
.endm

/* Test n: storing a1 to VA a0 in `mode` completes. */
.macro store_ok n, mode
        run \mode, __g_sd
        expect_ecall \n, \mode
.endm

/* Test n: storing a1 to VA a0 in `mode` faults with `cause`. */
.macro store_fault n, mode, cause=CAUSE_STORE_PAGE
        run \mode, __g_sd
        expect_fault \n, \mode, __g_sd, \cause
.endm

/* Test n: jumping to VA a0 (an ecall) in `mode` executes it there. */
.macro fetch_ok n, mode
        run \mode, __g_jr
        expect_ecall \n, \mode
        bne s4, s0, __test_fail
.endm

/* Test n: jumping to VA a0 in `mode` faults on the fetch with `cause`,
 * mepc = mtval = a0. */
.macro fetch_fault n, mode, cause=CAUSE_FETCH_PAGE
        run \mode, __g_jr
        li gp, \n
        li t6, \cause
        bne s2, t6, __test_fail
        bne s3, s0, __test_fail
        bne s4, s0, __test_fail
.endm

/* Test n: the 64-bit word at physical address of sym equals val. */
.macro check_mem n, sym, val
        la t5, \sym
        ld t5, 0(t5)
        li gp, \n
        li t6, \val
        bne t5, t6, __test_fail
.endm

/* Test n: PTE at address reg has (pte & mask) == val. */
.macro check_pte n, reg, mask, val
        ld t5, 0(\reg)
        li t6, \mask
        and t5, t5, t6
        li gp, \n
        li t6, \val
        bne t5, t6, __test_fail
.endm

/* Test n: PTE at address reg is exactly (sym >> 12) << 10 | flags. */
.macro check_pte_is n, reg, sym, flags
        la t6, \sym
        srli t6, t6, 12
        slli t6, t6, 10
        ori t6, t6, \flags
        ld t5, 0(\reg)
        li gp, \n
        bne t5, t6, __test_fail
.endm

/* reg = address of the PTE for va at level (the tables must exist). */
.macro pte_addr reg, va, level=0
        li a0, \va
        li a3, \level
        call vm_pte
        mv \reg, a0
.endm

/* ---- library code (M-mode, physical addresses) ---- */
        .pushsection .text.vmlib, "ax", @progbits
vm_pool_reset:
        la t0, __vm_pool
        la t1, __vm_next
        sd t0, 0(t1)
        ret

/* a4 = a fresh zeroed page from the pool (fails the test when empty).
 * Clobbers a5, a6. */
__vm_alloc:
        la a5, __vm_next
        ld a4, 0(a5)
        la a6, __vm_pool_end
        bgeu a4, a6, __test_fail
        li a6, 4096
        add a6, a4, a6
        sd a6, 0(a5)
        mv a5, a4
1:      sd zero, 0(a5)
        addi a5, a5, 8
        bltu a5, a6, 1b
        ret

/* a0 = levels (3 or 4) -> a0 = satp value of a new empty tree, made current. */
vm_new_root:
        mv a7, ra
        call __vm_alloc
        srli a4, a4, 12
        addi a0, a0, 5              /* 3 -> 8 (Sv39), 4 -> 9 (Sv48) */
        slli a0, a0, 60
        or a0, a0, a4
        la t0, __vm_cur
        sd a0, 0(t0)
        mv ra, a7
        ret

/* a0 = satp value of an existing tree: make it the one vm_map edits. */
vm_use:
        la t0, __vm_cur
        sd a0, 0(t0)
        ret

/* a0 = va, a1 = pa, a2 = low PTE bits, a3 = leaf level.
 * Walks the current tree from the root, allocating missing tables, and
 * writes the leaf PTE. Returns a0 = address of the leaf PTE. */
vm_map:
        la t0, __vm_cur
        ld t0, 0(t0)
        srli t1, t0, 60
        addi t1, t1, -6             /* root level: Sv39 2, Sv48 3 */
        slli t0, t0, 20
        srli t0, t0, 20
        slli t0, t0, 12             /* root table address */
1:      li t2, 9
        mul t2, t2, t1
        addi t2, t2, 12
        srl t2, a0, t2
        andi t2, t2, 511
        slli t2, t2, 3
        add t2, t0, t2              /* &pte at this level */
        beq t1, a3, 3f
        ld t3, 0(t2)
        andi t4, t3, PTE_V
        bnez t4, 2f
        mv a7, ra
        call __vm_alloc
        mv ra, a7
        srli t3, a4, 12
        slli t3, t3, 10
        ori t3, t3, PTE_V
        sd t3, 0(t2)
2:      srli t3, t3, 10
        slli t0, t3, 12             /* next-level table */
        addi t1, t1, -1
        j 1b
3:      srli t3, a1, 12
        slli t3, t3, 10
        or t3, t3, a2
        sd t3, 0(t2)
        mv a0, t2
        ret

/* a0 = va, a3 = level -> a0 = address of the PTE at that level of the
 * current tree; fails the test if a table on the way is missing. */
vm_pte:
        la t0, __vm_cur
        ld t0, 0(t0)
        srli t1, t0, 60
        addi t1, t1, -6
        slli t0, t0, 20
        srli t0, t0, 20
        slli t0, t0, 12
1:      li t2, 9
        mul t2, t2, t1
        addi t2, t2, 12
        srl t2, a0, t2
        andi t2, t2, 511
        slli t2, t2, 3
        add t2, t0, t2
        beq t1, a3, 2f
        ld t3, 0(t2)
        andi t4, t3, PTE_V
        beqz t4, __test_fail
        srli t3, t3, 10
        slli t0, t3, 12
        addi t1, t1, -1
        j 1b
2:      mv a0, t2
        ret
        .popsection

/* ---- gadget page: run in S (identity) or U (USER_VA alias) ---- */
        .pushsection .text.gadgets, "ax", @progbits
        .balign 4096
__gadgets:
__g_ecall:                          /* offset 0: target for code aliases */
        ecall
__g_ld:
        ld a1, 0(a0)
        ecall
__g_sd:
        sd a1, 0(a0)
        ecall
__g_jr:
        jr a0
__g_lw:
        lw a1, 0(a0)
        ecall
__g_amoswap:
        amoswap.d a1, a1, (a0)
        ecall
__g_lr:
        lr.d a1, (a0)
        ecall
__g_csrs_ld:                        /* S: set sstatus bits a2, then load */
        csrs sstatus, a2
        ld a1, 0(a0)
        ecall
__g_csrc_ld:                        /* S: clear sstatus bits a2, then load */
        csrc sstatus, a2
        ld a1, 0(a0)
        ecall
__g_sfence_ld:                      /* S: sfence.vma for VA a0, then load */
        sfence.vma a0
        ld a1, 0(a0)
        ecall
__g_satp_ld:                        /* S: switch satp to a2, then load */
        csrw satp, a2
        sfence.vma
        ld a1, 0(a0)
        ecall
__g_csrr_satp:                      /* S: a1 = satp */
        csrr a1, satp
        ecall
__g_sfence:                         /* S/U: sfence.vma */
        sfence.vma
        ecall
__g_sret_u:                         /* S: sret to U at address a2 */
        csrw sepc, a2
        li a3, MSTATUS_SPP
        csrc sstatus, a3
        sret
        .balign 4
__s_handler:                        /* S trap handler: record, ecall to M */
        csrr s5, scause
        csrr s6, stval
        csrr s7, sepc
        csrr s8, sstatus
        ecall
        .balign 4096
        .popsection

/* ---- data pages (first dword of __dp<i> = MARK(i)) and the table pool ---- */
        .pushsection .data.vmpages, "aw", @progbits
        .balign 4096
        .irp i, 0, 1, 2, 3, 4, 5, 6, 7
__dp\i: .dword MARK(\i)
        .dword ~MARK(\i)
        .balign 4096
        .endr
__vm_next:
        .dword 0
__vm_cur:
        .dword 0
        .popsection

        .pushsection .bss.vmpool, "aw", @nobits
        .balign 4096
__vm_pool:
        .skip POOL_PAGES * 4096
__vm_pool_end:
        .popsection
