/* Page faults delegated to S-mode through medeleg: scause, stval, sepc and
 * sstatus.SPP as the S handler sees them; undelegated causes still reach
 * M-mode. The S handler (__s_handler) records s5..s8 and ecalls to M. */
#include "common/test.h"
#include "common/catch.h"
#include "common/vm.h"

#define RW_AD PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
#define PF_BITS ((1 << CAUSE_FETCH_PAGE)|(1 << CAUSE_LOAD_PAGE)|(1 << CAUSE_STORE_PAGE))

/* Test n: gadget g in `mode` faulted; the S handler saw `cause`, stval = s0,
 * sepc = the gadget (or s0 for a fetch fault) and SPP = mode. */
.macro expect_s_fault n, mode, g, cause, fetch=0
        li gp, \n
        li t6, CAUSE_ECALL_S                    /* the handler's ecall */
        bne s2, t6, __test_fail
        li t6, \cause
        bne s5, t6, __test_fail
        bne s6, s0, __test_fail
        .if \fetch
        bne s7, s0, __test_fail
        .else
        gadget_addr t6, \mode, \g
        bne s7, t6, __test_fail
        .endif
        srli t6, s8, 8
        andi t6, t6, 1
        li t5, \mode
        bne t6, t5, __test_fail
.endm

.macro clear_s_record
        li s5, -1
        li s6, -1
        li s7, -1
        li s8, -1
.endm

TEST_BEGIN
        vm_setup
        vm_tree s1, 3
        vm_map_base
        map_sym 0x20000000, __dp0, RW_AD
        map_sym 0x20001000, __dp1, RW_AD|PTE_U
        map_sym 0x20002000, __dp2, PTE_V|PTE_R|PTE_U|PTE_A
        csrw satp, s1
        li t0, PF_BITS
        csrw medeleg, t0
        CHECK_CSR(1, medeleg, PF_BITS)

        clear_s_record
        li a0, 0x20005000                       /* unmapped */
        run MODE_U, __g_ld
        expect_s_fault 2, MODE_U, __g_ld, CAUSE_LOAD_PAGE
        clear_s_record
        li a0, 0x20002008                       /* read-only */
        li a1, 1
        run MODE_U, __g_sd
        expect_s_fault 3, MODE_U, __g_sd, CAUSE_STORE_PAGE
        clear_s_record
        li a0, 0x20001000                       /* not executable */
        run MODE_U, __g_jr
        expect_s_fault 4, MODE_U, __g_jr, CAUSE_FETCH_PAGE, 1
        clear_s_record
        li a0, 0x20000000                       /* S page from U */
        run MODE_U, __g_lw
        expect_s_fault 5, MODE_U, __g_lw, CAUSE_LOAD_PAGE
        clear_s_record
        li a0, 0x20001000                       /* U page from S */
        run MODE_S, __g_ld
        expect_s_fault 6, MODE_S, __g_ld, CAUSE_LOAD_PAGE
        clear_s_record
        li a0, 0x8000000000000000               /* not canonical */
        li a1, 1
        run MODE_S, __g_sd
        expect_s_fault 7, MODE_S, __g_sd, CAUSE_STORE_PAGE
        clear_s_record
        li a0, 0x20000000
        run MODE_S, __g_jr
        expect_s_fault 8, MODE_S, __g_jr, CAUSE_FETCH_PAGE, 1
        /* no trap at all: the handler stays untouched */
        clear_s_record
        li a0, 0x20001000
        load_ok 9, MODE_U, MARK(1)
        li t6, -1
        bne s5, t6, __test_fail

        /* only store faults delegated: a load fault goes to M */
        li t0, 1 << CAUSE_STORE_PAGE
        csrw medeleg, t0
        clear_s_record
        li a0, 0x20005000
        load_fault 10, MODE_U
        li t6, -1
        bne s5, t6, __test_fail
        clear_s_record
        li a0, 0x20005008
        li a1, 1
        run MODE_S, __g_sd
        expect_s_fault 11, MODE_S, __g_sd, CAUSE_STORE_PAGE
        li a0, 0x20005000
        fetch_fault 12, MODE_U
        csrw medeleg, zero
        clear_s_record
        li a0, 0x20005000
        store_fault 13, MODE_U
        li t6, -1
        bne s5, t6, __test_fail
TEST_PASS
TEST_END
