/* Sv48 translation: four levels, 4 KiB / 2 MiB / 1 GiB / 512 GiB pages,
 * the 48-bit sign-extension rule, malformed PTEs, A/D on a 512 GiB leaf,
 * and switching satp between Sv39, Sv48 and Bare. */
#include "common/test.h"
#include "common/catch.h"
#include "common/vm.h"

#define RW_AD   PTE_V|PTE_R|PTE_W|PTE_A|PTE_D
#define RWX_AD  PTE_V|PTE_R|PTE_W|PTE_X|PTE_A|PTE_D
#define URW_AD  PTE_V|PTE_R|PTE_W|PTE_U|PTE_A|PTE_D
#define G512    0x8000000000

TEST_BEGIN
        vm_setup
        vm_tree s1, 4
        vm_map_base
        map_sym 0x20000000, __dp0, RW_AD
        map_sym 0x20001000, __dp1, URW_AD
        map_sym 0x21000000, __gadgets, PTE_V|PTE_X|PTE_A
        map 0x00600000, PA_RAM, RW_AD, 1
        map 0x40000000, PA_RAM, RWX_AD|PTE_U, 2
        map G512, 0, RWX_AD, 3                          /* index 1 */
        map 2*G512, 0, PTE_V|PTE_R|PTE_X|PTE_U|PTE_A, 3 /* index 2 */
        map 0xFFFF800000000000, 0, RWX_AD, 3            /* index 256 */
        map 0xFFFFFFFFC0000000, PA_RAM, RWX_AD, 2       /* index 511/511 */
        csrw satp, s1
        csrr t0, satp
        li gp, 1
        bne t0, s1, __test_fail

        /* ---- each page size ---- */
        li a0, 0x20000000
        load_ok 2, MODE_S, MARK(0)
        li a0, 0x20001000
        load_ok 3, MODE_U, MARK(1)
        li a0, 0x20000008
        li a1, 0x0102030405060708
        store_ok 4, MODE_S
        check_mem 5, __dp0+8, 0x0102030405060708
        li a0, 0x21000000
        fetch_ok 6, MODE_S
        li a0, USER_VA
        fetch_ok 7, MODE_U
        va_of 0x00600000, __dp2
        load_ok 8, MODE_S, MARK(2)
        va_of 0x40000000, __dp3
        load_ok 9, MODE_U, MARK(3)
        va_of G512+PA_RAM, __dp4                  /* 512 GiB page at PA 0 */
        load_ok 10, MODE_S, MARK(4)
        va_of G512+PA_RAM, __dp4
        addi a0, a0, 8
        li a1, 0x1111222233334444
        store_ok 11, MODE_S
        check_mem 12, __dp4+8, 0x1111222233334444
        va_of G512+PA_RAM, __g_ecall
        fetch_ok 13, MODE_S
        va_of 2*G512+PA_RAM, __dp5
        load_ok 14, MODE_U, MARK(5)
        va_of 2*G512+PA_RAM, __g_ecall
        fetch_ok 15, MODE_U
        va_of 2*G512+PA_RAM, __dp5
        addi a0, a0, 8
        store_fault 16, MODE_U                    /* no W */
        va_of 2*G512+PA_RAM, __dp5
        load_fault 17, MODE_S                     /* U page from S, SUM=0 */
        va_of 0xFFFF800000000000+PA_RAM, __dp6    /* high half, 512 GiB */
        load_ok 18, MODE_S, MARK(6)
        va_of 0xFFFFFFFFC0000000, __dp7           /* high half, 1 GiB */
        load_ok 19, MODE_S, MARK(7)
        va_of 0xFFFFFFFFC0000000, __g_ecall
        fetch_ok 20, MODE_S

        /* ---- VA must be bits 63..48 == bit 47 ---- */
        va_of 0x0000800000000000+PA_RAM, __dp6    /* low 48 bits are mapped */
        load_fault 21, MODE_S
        li a0, 0xFFFF000020000000                 /* low 48 bits are mapped */
        load_fault 22, MODE_S
        li a0, 0xFFFF000020000008
        store_fault 23, MODE_S
        li a0, 0x0001000021000000
        fetch_fault 24, MODE_S
        li a0, 0x4000000000000000
        load_fault 25, MODE_U
        li a0, 0xFFFF7FFFFFFFF000                 /* bit 47 clear */
        load_fault 26, MODE_S

        /* ---- invalid and malformed PTEs ---- */
        li a0, 4*G512                             /* root entry invalid */
        load_fault 30, MODE_S
        li a0, 0x7FFFFFFFF000                     /* top of low half */
        store_fault 31, MODE_S
        map 3*G512, PA_RAM, RWX_AD, 3             /* misaligned 512 GiB */
        li a0, 3*G512
        load_fault 32, MODE_S
        li a0, 3*G512
        fetch_fault 33, MODE_S
        map 3*G512+0x40000000, 0, RWX_AD, 3       /* PPN ok, index 3 */
        /* (rewrites the same root entry: now an aligned leaf at PA 0) */
        va_of 3*G512+PA_RAM, __dp7
        load_ok 34, MODE_S, MARK(7)
        map 0x140000000, PA_RAM+0x200000, RWX_AD, 2 /* misaligned 1 GiB */
        li a0, 0x140000000
        load_fault 35, MODE_S
        map 0x00800000, PA_RAM+0x1000, RWX_AD, 1  /* misaligned 2 MiB */
        li a0, 0x00800008
        store_fault 36, MODE_S
        map_sym 0x20009000, __dp0, PTE_V          /* pointer at level 0 */
        li a0, 0x20009000
        load_fault 37, MODE_S
        map_sym 0x2000A000, __dp0, PTE_R|PTE_W|PTE_A|PTE_D  /* V=0 */
        li a0, 0x2000A000
        load_fault 38, MODE_U

        /* ---- A/D on a 512 GiB leaf ---- */
        map 5*G512, 0, PTE_V|PTE_R|PTE_W, 3
        mv s11, a0
        va_of 5*G512+PA_RAM, __dp3
        load_ok 40, MODE_S, MARK(3)
        ld t0, 0(s11)
        CHECK_EQ(41, t0, PTE_V|PTE_R|PTE_W|PTE_A)
        va_of 5*G512+PA_RAM, __dp3
        addi a0, a0, 8
        li a1, 42
        store_ok 42, MODE_S
        ld t0, 0(s11)
        CHECK_EQ(43, t0, PTE_V|PTE_R|PTE_W|PTE_A|PTE_D)

        /* ---- switching between Sv39, Sv48 and Bare ---- */
        vm_tree s11, 3
        vm_map_base
        map_sym 0x20000000, __dp3, RW_AD
        csrw satp, s11
        csrr t0, satp
        li gp, 50
        bne t0, s11, __test_fail
        li a0, 0x20000000
        load_ok 51, MODE_S, MARK(3)
        va_of G512+PA_RAM, __dp4                  /* not canonical in Sv39 */
        load_fault 52, MODE_S
        csrw satp, s1
        li a0, 0x20000000
        load_ok 53, MODE_S, MARK(0)
        va_of G512+PA_RAM, __dp4
        load_ok 54, MODE_S, MARK(4)
        /* S-mode switches Sv48 -> Sv39 and back */
        li a0, 0x20000000
        mv a2, s11
        li a1, 0
        run MODE_S, __g_satp_ld
        expect_ecall 55, MODE_S
        CHECK_EQ(55, a1, MARK(3))
        li a0, 0x20000000
        mv a2, s1
        li a1, 0
        run MODE_S, __g_satp_ld
        expect_ecall 56, MODE_S
        CHECK_EQ(56, a1, MARK(0))
        csrr t0, satp
        li gp, 57
        bne t0, s1, __test_fail
        /* S-mode switches to Bare: the load is physical */
        la a0, __dp5
        li a2, 0
        li a1, 0
        run MODE_S, __g_satp_ld
        expect_ecall 58, MODE_S
        CHECK_EQ(58, a1, MARK(5))
        CHECK_CSR(59, satp, 0)
        /* a reserved mode leaves Bare in place, then Sv48 again */
        li t0, 12 << 60
        or t0, t0, s1
        csrw satp, t0
        CHECK_CSR(60, satp, 0)
        csrw satp, s1
        li a0, 0x20001000
        load_ok 61, MODE_U, MARK(1)
TEST_PASS
TEST_END
