/* Sv39 translation: 4 KiB pages, 2 MiB and 1 GiB superpages, sign-extended
 * VAs, invalid and malformed PTEs, hardware A/D updates, sfence.vma after a
 * PTE change, satp writes (switch, Bare, unsupported modes), TVM, sret to U. */
#include "common/test.h"
#include "common/catch.h"
#include "common/vm.h"

#define RW_AD  PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
#define URW_AD PTE_V|PTE_R|PTE_W|PTE_U|PTE_A|PTE_D

TEST_BEGIN
        vm_setup
        vm_tree s1, 3
        vm_map_base
        map_sym 0x20000000, __dp0, RW_AD
        map_sym 0x20001000, __dp1, URW_AD
        map_sym 0x21000000, __gadgets, PTE_V|PTE_X|PTE_A
        map 0x00600000, PA_RAM, RW_AD, 1
        map 0x40000000, PA_RAM, PTE_V|PTE_R|PTE_W|PTE_X|PTE_U|PTE_A|PTE_D, 2
        map 0xFFFFFFFFC0000000, PA_RAM, PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D, 2
        csrw satp, s1

        /* ---- plain 4 KiB pages ---- */
        li a0, 0x20000000
        load_ok 1, MODE_S, MARK(0)
        li a0, 0x20001000
        load_ok 2, MODE_U, MARK(1)
        li a0, 0x20000008
        li a1, 0x1234567890abcdef
        store_ok 3, MODE_S
        check_mem 4, __dp0+8, 0x1234567890abcdef
        li a0, 0x20001008
        li a1, 0x0fedcba987654321
        store_ok 5, MODE_U
        check_mem 6, __dp1+8, 0x0fedcba987654321
        li a0, 0x21000000
        fetch_ok 7, MODE_S
        li a0, USER_VA
        fetch_ok 8, MODE_U
        /* lw through translation sign-extends the low word of the marker */
        li a0, 0x20000004
        li a1, 0
        run MODE_S, __g_lw
        expect_ecall 9, MODE_S
        CHECK_EQ(9, a1, 0xFFFFFFFFD0D0D0D0)

        /* ---- superpages ---- */
        va_of 0x40000000, __dp2
        load_ok 10, MODE_U, MARK(2)
        va_of 0x00600000, __dp2
        load_ok 11, MODE_S, MARK(2)
        va_of 0x00600000, __dp5
        addi a0, a0, 8
        li a1, 0x5555aaaa5555aaaa
        store_ok 12, MODE_S
        check_mem 13, __dp5+8, 0x5555aaaa5555aaaa
        va_of 0xFFFFFFFFC0000000, __dp3
        load_ok 14, MODE_S, MARK(3)
        va_of 0x40000000, __g_ecall
        fetch_ok 15, MODE_U
        va_of 0xFFFFFFFFC0000000, __g_ecall
        fetch_ok 16, MODE_S
        /* the same physical word through three different mappings */
        va_of 0x40000000, __dp1
        load_ok 17, MODE_U, MARK(1)

        /* ---- invalid and malformed PTEs ---- */
        map_sym 0x20008000, __dp0, PTE_R|PTE_W|PTE_X|PTE_A|PTE_D   /* V=0 */
        map_sym 0x20009000, __dp0, PTE_V                    /* pointer at level 0 */
        map 0x00800000, PA_RAM+0x1000, PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D, 1
        map 0x140000000, PA_RAM+0x200000, PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D, 2
        li a0, 0x20008000
        load_fault 20, MODE_S
        li a0, 0x20008000
        store_fault 21, MODE_S
        li a0, 0x20008000
        fetch_fault 22, MODE_S
        li a0, 0x20008010
        load_fault 23, MODE_U
        li a0, 0x20009000
        load_fault 24, MODE_S
        li a0, 0x20009008
        store_fault 25, MODE_S
        li a0, 0x20009000
        fetch_fault 26, MODE_S
        li a0, 0x30000000                   /* level-1 entry invalid */
        load_fault 27, MODE_S
        li a0, 0x100000000                  /* root entry invalid */
        load_fault 28, MODE_S
        li a0, 0x100000000
        store_fault 29, MODE_U
        li a0, 0x00800000                   /* misaligned 2 MiB superpage */
        load_fault 30, MODE_S
        li a0, 0x00800008
        store_fault 31, MODE_S
        li a0, 0x00800000
        fetch_fault 32, MODE_S
        li a0, 0x140000000                  /* misaligned 1 GiB superpage */
        load_fault 33, MODE_S
        li a0, 0x140000000
        fetch_fault 34, MODE_S

        /* ---- VA must be bits 63..39 == bit 38 ---- */
        li a0, 0x8000000020000000           /* low 39 bits map __dp0 */
        load_fault 40, MODE_S
        li a0, 0x0000008020000000
        store_fault 41, MODE_S
        li a0, 0xFFFFFF8020000000           /* bit 38 clear, upper bits set */
        load_fault 42, MODE_U
        li a0, 0x0000004000000000           /* bit 38 set, upper bits clear */
        load_fault 43, MODE_S
        li a0, 0x8000000021000000           /* low bits map code */
        fetch_fault 44, MODE_S
        li a0, 0xFFFFFFC000000000           /* canonical, unmapped */
        load_fault 45, MODE_S
        li a0, 0x0000003FFFFFF000           /* top of the low half, unmapped */
        load_fault 46, MODE_S

        /* ---- hardware A/D updates ---- */
        map_sym 0x20003000, __dp3, PTE_V|PTE_R|PTE_W
        mv s11, a0
        check_pte_is 50, s11, __dp3, PTE_V|PTE_R|PTE_W
        li a0, 0x20003000
        load_ok 51, MODE_S, MARK(3)
        check_pte_is 52, s11, __dp3, PTE_V|PTE_R|PTE_W|PTE_A
        li a0, 0x20003008
        li a1, 77
        store_ok 53, MODE_S
        check_pte_is 54, s11, __dp3, PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
        map_sym 0x20004000, __dp4, PTE_V|PTE_R|PTE_W
        mv s11, a0
        li a0, 0x20004008
        li a1, 78
        store_ok 55, MODE_S
        check_pte_is 56, s11, __dp4, PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
        map_sym 0x20005000, __dp5, PTE_V|PTE_R|PTE_W|PTE_U
        mv s11, a0
        li a0, 0x20005000
        load_ok 57, MODE_U, MARK(5)
        check_pte_is 58, s11, __dp5, PTE_V|PTE_R|PTE_W|PTE_U|PTE_A
        map_sym 0x21001000, __gadgets, PTE_V|PTE_X
        mv s11, a0
        li a0, 0x21001000
        fetch_ok 59, MODE_S
        check_pte_is 60, s11, __gadgets, PTE_V|PTE_X|PTE_A
        map 0x00A00000, PA_RAM, PTE_V|PTE_R|PTE_W, 1
        mv s11, a0
        va_of 0x00A00000, __dp6
        addi a0, a0, 8
        li a1, 79
        store_ok 61, MODE_S
        check_pte_is 62, s11, _start, PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
        /* a faulting access leaves A and D alone */
        map_sym 0x20006000, __dp6, PTE_V|PTE_R
        mv s11, a0
        li a0, 0x20006008
        li a1, 80
        store_fault 63, MODE_S
        check_pte_is 64, s11, __dp6, PTE_V|PTE_R
        check_mem 65, __dp6+8, 79
        li a0, 0x20006000
        load_ok 66, MODE_S, MARK(6)
        check_pte_is 67, s11, __dp6, PTE_V|PTE_R|PTE_A
        /* U access to an S page faults without setting A */
        map_sym 0x20007000, __dp7, PTE_V|PTE_R|PTE_W
        mv s11, a0
        li a0, 0x20007000
        load_fault 68, MODE_U
        check_pte_is 69, s11, __dp7, PTE_V|PTE_R|PTE_W

        /* ---- PTE change + sfence.vma ---- */
        map_sym 0x2000A000, __dp4, RW_AD
        li a0, 0x2000A000
        load_ok 70, MODE_S, MARK(4)
        map_sym 0x2000A000, __dp5, RW_AD        /* M rewrites the leaf */
        li a0, 0x2000A000
        load_ok 71, MODE_S, MARK(5)             /* run does sfence.vma */
        /* S-mode sfence.vma with an address operand */
        li a0, 0x2000A000
        li a1, 0
        run MODE_S, __g_ld, 0
        expect_ecall 72, MODE_S
        CHECK_EQ(72, a1, MARK(5))
        map_sym 0x2000A000, __dp6, RW_AD
        li a0, 0x2000A000
        li a1, 0
        run MODE_S, __g_sfence_ld, 0
        expect_ecall 73, MODE_S
        CHECK_EQ(73, a1, MARK(6))
        /* invalidate the leaf: the next access faults */
        map_sym 0x2000A000, __dp6, PTE_R|PTE_W|PTE_A|PTE_D
        li a0, 0x2000A000
        load_fault 74, MODE_S
        /* sfence.vma is illegal in U-mode, and in S-mode when TVM=1 */
        run MODE_U, __g_sfence
        li gp, 75
        li t6, CAUSE_ILLEGAL
        bne s2, t6, __test_fail
        li t0, MSTATUS_TVM
        csrs mstatus, t0
        run MODE_S, __g_sfence
        li gp, 76
        li t6, CAUSE_ILLEGAL
        bne s2, t6, __test_fail
        run MODE_S, __g_csrr_satp
        li gp, 77
        li t6, CAUSE_ILLEGAL
        bne s2, t6, __test_fail
        li t0, MSTATUS_TVM
        csrc mstatus, t0
        li a1, 0
        run MODE_S, __g_csrr_satp
        expect_ecall 78, MODE_S
        bne a1, s1, __test_fail

        /* ---- satp writes ---- */
        csrr t0, satp
        li gp, 80
        bne t0, s1, __test_fail
        li t0, 5 << 60                          /* reserved mode: ignored */
        or t0, t0, s1
        csrw satp, t0
        csrr t0, satp
        li gp, 81
        bne t0, s1, __test_fail
        li t0, 15 << 60                         /* reserved mode */
        csrw satp, t0
        csrr t0, satp
        li gp, 82
        bne t0, s1, __test_fail
        li t0, 11 << 60                         /* Sv64: not implemented */
        csrw satp, t0
        csrr t0, satp
        li gp, 83
        bne t0, s1, __test_fail
        /* a second tree maps 0x20000000 to __dp1; S switches to it */
        vm_tree s11, 3
        vm_map_base
        map_sym 0x20000000, __dp1, RW_AD
        li a0, 0x20000000
        mv a2, s11
        li a1, 0
        run MODE_S, __g_satp_ld
        expect_ecall 84, MODE_S
        CHECK_EQ(84, a1, MARK(1))
        csrr t0, satp
        li gp, 85
        bne t0, s11, __test_fail
        csrw satp, s1
        li a0, 0x20000000
        load_ok 86, MODE_S, MARK(0)
        /* U-mode fetch of the physical gadget page: faults under Sv39
         * (the identity mapping is S-only), runs under Bare */
        la a0, __g_ecall
        fetch_fault 87, MODE_U
        csrw satp, zero
        la a0, __g_ecall
        run MODE_U, __g_jr, 1, 0
        expect_ecall 88, MODE_U
        bne s4, s0, __test_fail
        la a0, __dp2
        li a1, 0
        run MODE_U, __g_ld, 1, 0
        expect_ecall 89, MODE_U
        CHECK_EQ(89, a1, MARK(2))
        la a0, __dp2
        load_ok 90, MODE_S, MARK(2)
        csrw satp, s1
        /* M-mode ignores satp */
        la t0, __dp3
        ld t0, 0(t0)
        CHECK_EQ(91, t0, MARK(3))

        /* ---- S enters U through sret ---- */
        li a0, 0x20001000
        gadget_addr a2, MODE_U, __g_ld
        li a1, 0
        run MODE_S, __g_sret_u
        expect_ecall 95, MODE_U
        CHECK_EQ(95, a1, MARK(1))
        li a0, 0x20000000
        gadget_addr a2, MODE_U, __g_ld
        li a1, 0
        run MODE_S, __g_sret_u
        li gp, 96                               /* U load of an S page */
        li t6, CAUSE_LOAD_PAGE
        bne s2, t6, __test_fail
        bne s3, a0, __test_fail
        bne s4, a2, __test_fail
TEST_PASS
TEST_END
