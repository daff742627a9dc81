/* Zicsr and the basic machine CSRs: CSRRW/S/C and immediate forms, the
 * x0 / zimm = 0 "no write" rules, read-only CSRs (illegal on write, mtval =
 * the instruction bits), misa / mhartid / mstatus fields, WARL masking of
 * xepc, the sstatus view, counters (exact instret on a deterministic
 * hart), and counter / CSR privilege checks from S and U. */
#include "common/test.h"
#include "common/trap.h"
.option norvc

/* n: the instruction at label `at` raised illegal-instruction with mtval =
 * its own encoding (resumed at the label after it). */
#define CHECK_ILLEGAL_AT(n, at)                     \
        CHECK_EQ(n, s9, 2);                         \
        la t0, at;                                  \
        bne s10, t0, __test_fail;                   \
        lwu t0, 0(t0);                              \
        bne s11, t0, __test_fail

/* n: `insn` must raise illegal-instruction (in the current mode). */
#define ILLEGAL(n, insn...)                         \
        EXPECT_TRAP(n, 2f);                         \
1:      insn;                                       \
        FAIL_NOW;                                   \
2:      CHECK_ILLEGAL_AT(n, 1b)

#define MISA_IMAFDCSU ((1 << 8) | (1 << 12) | (1 << 0) | (1 << 5) | (1 << 3) | (1 << 2) | (1 << 18) | (1 << 20))

TEST_BEGIN
  li gp, 1
  INSTALL_MTRAP
  PMP_OPEN_ALL

  /* ---- read / write / set / clear ---- */
  li a1, 0x0123456789abcdef
  csrw mscratch, a1
  csrr a0, mscratch
  CHECK_EQ(1, a0, 0x0123456789abcdef)
  li a1, 0xfedcba9876543210
  csrrw a0, mscratch, a1
  CHECK_EQ(2, a0, 0x0123456789abcdef)
  CHECK_CSR(3, mscratch, 0xfedcba9876543210)
  li a1, 0x000000000000000f
  csrrs a0, mscratch, a1
  CHECK_EQ(4, a0, 0xfedcba9876543210)
  CHECK_CSR(5, mscratch, 0xfedcba987654321f)
  li a1, 0xff00000000000003
  csrrc a0, mscratch, a1
  CHECK_EQ(6, a0, 0xfedcba987654321f)
  CHECK_CSR(7, mscratch, 0x00dcba987654321c)
  csrrwi a0, mscratch, 0x1f            /* zimm zero-extends */
  CHECK_EQ(8, a0, 0x00dcba987654321c)
  CHECK_CSR(9, mscratch, 0x1f)
  csrrci a0, mscratch, 0x11
  CHECK_EQ(10, a0, 0x1f)
  CHECK_CSR(11, mscratch, 0x0e)
  csrrsi a0, mscratch, 0x10
  CHECK_EQ(12, a0, 0x0e)
  CHECK_CSR(13, mscratch, 0x1e)
  /* rs1 = x0 / zimm = 0: read only, value unchanged */
  csrrs a0, mscratch, x0
  CHECK_EQ(14, a0, 0x1e)
  csrrc a0, mscratch, x0
  CHECK_EQ(15, a0, 0x1e)
  csrrsi a0, mscratch, 0
  csrrci a0, mscratch, 0
  CHECK_CSR(16, mscratch, 0x1e)
  /* csrrw with rs1 = x0 writes zero */
  csrrw a0, mscratch, x0
  CHECK_EQ(17, a0, 0x1e)
  CHECK_CSR(18, mscratch, 0)
  /* rd == rs1: swap */
  li a1, 0x55
  csrw mscratch, a1
  li a1, 0x66
  csrrw a1, mscratch, a1
  CHECK_EQ(19, a1, 0x55)
  CHECK_CSR(20, mscratch, 0x66)
  /* rd = x0 still writes */
  li a1, 0x77
  csrrs x0, mscratch, a1
  CHECK_CSR(21, mscratch, 0x77)

  /* ---- read-only CSRs ---- */
  csrr a0, mhartid
  CHECK_EQ(22, a0, 0)
  csrrs a0, mhartid, x0
  CHECK_EQ(23, a0, 0)
  csrrc a0, mhartid, x0
  csrrsi a0, mhartid, 0                /* no write: no trap */
  csrrci a0, mhartid, 0
  CHECK_EQ(24, a0, 0)
  li a1, 0
  ILLEGAL(25, csrw mhartid, a1)
  ILLEGAL(26, csrrw x0, mhartid, x0)   /* CSRRW always writes */
  ILLEGAL(27, csrrwi a0, mhartid, 0)
  ILLEGAL(28, csrrsi a0, mhartid, 1)
  li a1, 1
  ILLEGAL(29, csrrc a0, mhartid, a1)
  csrr a0, mvendorid
  csrr a0, marchid
  csrr a0, mimpid
  ILLEGAL(30, csrw mvendorid, a1)
  ILLEGAL(31, csrw marchid, a1)
  ILLEGAL(32, csrw mimpid, a1)
  ILLEGAL(33, csrw cycle, a1)          /* user counters are read-only */
  ILLEGAL(34, csrw instret, a1)
  ILLEGAL(35, csrs cycle, a1)
  /* rs1 != x0 holding zero still counts as a write (spec); QEMU 7.2 only
   * looks at the value and does not trap */
  li a1, 0
#ifdef QEMU_QUIRKS
  csrrs a0, mhartid, a1
  CHECK_EQ(36, a0, 0)
  csrrc a0, mhartid, a1
  CHECK_EQ(37, a0, 0)
#else
  ILLEGAL(36, csrrs a0, mhartid, a1)
  ILLEGAL(37, csrrc a0, mhartid, a1)
#endif
  /* a CSR that does not exist */
  ILLEGAL(38, csrr a0, 0x7c0)
  ILLEGAL(39, csrw 0x7c0, a1)
  /* the destination is not written when the instruction traps */
  li a0, 0x1234
  ILLEGAL(40, csrrw a0, mhartid, a1)
  CHECK_EQ(41, a0, 0x1234)

  /* ---- misa ---- */
  csrr a0, misa
  srli a1, a0, 62
  CHECK_EQ(42, a1, 2)                  /* MXL = 64 */
  li t0, MISA_IMAFDCSU
  and a1, a0, t0
  CHECK_EQ(43, a1, MISA_IMAFDCSU)
  andi a1, a0, 1 << 4                  /* not RV64E */
  CHECK_EQ(44, a1, 0)
  csrw misa, a0                        /* writable address: no trap */
  csrr a1, misa
  li gp, 45
  bne a0, a1, __test_fail

  /* ---- mstatus ---- */
  csrr a0, mstatus
  srli a1, a0, 32
  andi a1, a1, 0xf
  CHECK_EQ(46, a1, 0xa)                /* SXL = UXL = 64 */
  li t0, MSTATUS_MPP
  csrs mstatus, t0
  csrr a0, mstatus
  and a0, a0, t0
  CHECK_EQ(47, a0, MSTATUS_MPP)        /* M */
  li t0, MSTATUS_MPP
  csrc mstatus, t0
  csrr a0, mstatus
  and a0, a0, t0
  CHECK_EQ(48, a0, 0)                  /* U */
  li t0, 1 << 11
  csrs mstatus, t0
  csrr a0, mstatus
  li t0, MSTATUS_MPP
  and a0, a0, t0
  CHECK_EQ(49, a0, 1 << 11)            /* S */
#ifndef QEMU_QUIRKS
  /* MPP is WARL: 2 (no H-mode there) is not a legal value to hold */
  li t0, MSTATUS_MPP
  csrc mstatus, t0
  li t0, 2 << 11
  csrs mstatus, t0
  csrr a0, mstatus
  li t0, MSTATUS_MPP
  and a0, a0, t0
  li gp, 50
  li t0, 2 << 11
  beq a0, t0, __test_fail
#endif
  li t0, MSTATUS_MPP
  csrc mstatus, t0

  /* sstatus is a view of mstatus without the M fields */
  li t0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_TSR | MSTATUS_TW
  csrs mstatus, t0
  csrr a0, sstatus
  and a0, a0, t0
  CHECK_EQ(51, a0, 0)
  li t0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_TSR | MSTATUS_TW
  csrc sstatus, t0                     /* no effect on M fields */
  csrr a0, mstatus
  and a0, a0, t0
  CHECK_EQ(52, a0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_TSR | MSTATUS_TW)
  li t0, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP | MSTATUS_TSR | MSTATUS_TW
  csrc mstatus, t0
  li t0, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR
  csrs sstatus, t0
  csrr a0, mstatus
  and a0, a0, t0
  CHECK_EQ(53, a0, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR)
  csrr a0, sstatus
  and a0, a0, t0
  CHECK_EQ(54, a0, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_SUM | MSTATUS_MXR)
  csrc sstatus, t0
  csrr a0, mstatus
  and a0, a0, t0
  CHECK_EQ(55, a0, 0)
  csrr a0, sstatus                     /* UXL visible in sstatus */
  srli a0, a0, 32
  andi a0, a0, 3
  CHECK_EQ(56, a0, 2)

  /* ---- trap CSRs ---- */
  li a1, 0x80001234
  csrw mepc, a1
  CHECK_CSR(57, mepc, 0x80001234)
  li a1, 0x80001232                    /* bit 1 is kept (IALIGN = 16) */
  csrw sepc, a1
  CHECK_CSR(58, sepc, 0x80001232)
#ifndef QEMU_QUIRKS
  /* xepc[0] is always zero (QEMU 7.2 keeps it) */
  li a1, 0x80001237
  csrw mepc, a1
  CHECK_CSR(59, mepc, 0x80001236)
  csrw sepc, a1
  CHECK_CSR(60, sepc, 0x80001236)
#endif
  li a1, 0x80000100
  csrw mtvec, a1
  CHECK_CSR(61, mtvec, 0x80000100)
  li a1, 0x80000101                    /* vectored */
  csrw mtvec, a1
  CHECK_CSR(62, mtvec, 0x80000101)
  INSTALL_MTRAP
  li a1, 0x80000201
  csrw stvec, a1
  CHECK_CSR(63, stvec, 0x80000201)
  li a1, 0xaaaa5555
  csrw sscratch, a1
  CHECK_CSR(64, sscratch, 0xaaaa5555)
  li a1, 0x8000000000000009
  csrw scause, a1
  CHECK_CSR(65, scause, 0x8000000000000009)
  li a1, 0xd                           /* a legal (WLRL) code */
  csrw mcause, a1
  CHECK_CSR(66, mcause, 0xd)
  li a1, 0xdeadbeefcafe
  csrw mtval, a1
  CHECK_CSR(67, mtval, 0xdeadbeefcafe)
  csrw stval, a1
  CHECK_CSR(68, stval, 0xdeadbeefcafe)
  li a1, 0xaaa                         /* SSIE STIE SEIE MSIE MTIE MEIE */
  csrw mie, a1
  CHECK_CSR(69, mie, 0xaaa)
  csrw mie, zero
  li a1, 1 << 8                        /* ecall from U delegable */
  csrw medeleg, a1
  CHECK_CSR(70, medeleg, 1 << 8)
  csrw medeleg, zero
  li a1, 0x222                         /* S interrupts delegable */
  csrw mideleg, a1
  csrr a0, mideleg
  andi a0, a0, 0x222
  CHECK_EQ(71, a0, 0x222)
  csrw mideleg, zero

  /* ---- counters ---- */
  csrr a0, cycle
  csrr a1, mcycle
  li gp, 72
  bltu a1, a0, __test_fail
  csrr a0, instret
  csrr a1, instret
  li gp, 73
  bgeu a0, a1, __test_fail             /* strictly increasing */
#ifndef QEMU_QUIRKS
  /* instret counts retired instructions exactly (QEMU 7.2 without -icount
   * counts host ticks instead) */
  csrr a0, instret
  nop
  nop
  nop
  nop
  nop
  csrr a1, minstret
  sub a1, a1, a0
  CHECK_EQ(74, a1, 6)
  li a1, 1 << 40
  csrw minstret, a1                    /* the write replaces the increment */
  csrr a0, minstret
  csrr a2, instret
  CHECK_EQ(75, a0, 1 << 40)
  CHECK_EQ(76, a2, (1 << 40) + 1)
#else
  li a1, 1 << 40
  csrw minstret, a1
  csrr a0, minstret
  li gp, 75
  li t0, 1 << 40
  bltu a0, t0, __test_fail
  li t0, (1 << 40) + (1 << 36)
  bgeu a0, t0, __test_fail
#endif
  li a1, 1 << 41
  csrw mcycle, a1
  csrr a0, mcycle
  li gp, 77
  li t0, 1 << 41
  bltu a0, t0, __test_fail
  li t0, (1 << 41) + (1 << 36)
  bgeu a0, t0, __test_fail
  /* hpm counters exist (they may be read-only zero) */
  csrr a0, mhpmcounter3
  csrr a0, mhpmevent3
  csrr a0, hpmcounter3
  CHECK_EQ(78, a0, 0)

  /* time mirrors the CLINT's mtime (QEMU's spike machine provides no time
   * CSR: it traps there) */
#ifdef QEMU_QUIRKS
  ILLEGAL(79, csrr a0, time)
#else
  li a2, CLINT_MTIME
  ld a1, 0(a2)
  csrr a0, time
  ld a3, 0(a2)
  li gp, 79
  bltu a0, a1, __test_fail
  bltu a3, a0, __test_fail
#endif

  /* ---- privilege checks from S and U ---- */
  /* S-mode cannot touch M CSRs */
  EXPECT_TRAP(80, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrr a0, mscratch
  FAIL_NOW
2: CHECK_ILLEGAL_AT(80, 1b)
  EXPECT_TRAP(81, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrw mstatus, zero
  FAIL_NOW
2: CHECK_ILLEGAL_AT(81, 1b)
  EXPECT_TRAP(82, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrr a0, mhartid
  FAIL_NOW
2: CHECK_ILLEGAL_AT(82, 1b)
  /* S-mode can use its own CSRs */
  li a1, 0x5a5a
  EXPECT_TRAP(83, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrw sscratch, a1
  csrr a0, sscratch
  ecall
  FAIL_NOW
2: CHECK_EQ(83, s9, 9)
  CHECK_EQ(84, a0, 0x5a5a)
  /* U-mode cannot touch S CSRs */
  EXPECT_TRAP(85, 2f)
  GOTO_MODE(PRV_U, 1f)
1: csrr a0, sstatus
  FAIL_NOW
2: CHECK_ILLEGAL_AT(85, 1b)
  EXPECT_TRAP(86, 2f)
  GOTO_MODE(PRV_U, 1f)
1: csrw sscratch, a1
  FAIL_NOW
2: CHECK_ILLEGAL_AT(86, 1b)

  /* counter enables: mcounteren gates S (and U), scounteren gates U */
  csrw mcounteren, zero
  csrw scounteren, zero
  EXPECT_TRAP(87, 2f)
  GOTO_MODE(PRV_S, 1f)
1: rdcycle a0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(87, 1b)
  EXPECT_TRAP(88, 2f)
  GOTO_MODE(PRV_U, 1f)
1: rdinstret a0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(88, 1b)
  li t0, 1                             /* CY only */
  csrw mcounteren, t0
  li a0, -1
  EXPECT_TRAP(89, 2f)
  GOTO_MODE(PRV_S, 1f)
1: rdcycle a0
  ecall
2: CHECK_EQ(89, s9, 9)
  li gp, 90
  li t0, -1
  beq a0, t0, __test_fail
  EXPECT_TRAP(91, 2f)
  GOTO_MODE(PRV_S, 1f)
1: rdinstret a0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(91, 1b)
  EXPECT_TRAP(92, 2f)                  /* U still needs scounteren */
  GOTO_MODE(PRV_U, 1f)
1: rdcycle a0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(92, 1b)
  li t0, 5                             /* CY and IR */
  csrw mcounteren, t0
  li t0, 4                             /* IR only */
  csrw scounteren, t0
  li a0, -1
  EXPECT_TRAP(93, 2f)
  GOTO_MODE(PRV_U, 1f)
1: rdinstret a0
  ecall
2: CHECK_EQ(93, s9, 8)
  li gp, 94
  li t0, -1
  beq a0, t0, __test_fail
  EXPECT_TRAP(95, 2f)
  GOTO_MODE(PRV_U, 1f)
1: rdcycle a0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(95, 1b)
  /* S can read scounteren-gated counters regardless of scounteren */
  csrw scounteren, zero
  EXPECT_TRAP(96, 2f)
  GOTO_MODE(PRV_S, 1f)
1: rdcycle a0
  ecall
2: CHECK_EQ(96, s9, 9)
  /* S-mode writes to scounteren are its own business */
  li a1, 7
  EXPECT_TRAP(97, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrw scounteren, a1
  ecall
2: CHECK_EQ(97, s9, 9)
  csrr a0, scounteren
  andi a0, a0, 7
  CHECK_EQ(98, a0, 7)
  csrw mcounteren, zero
  csrw scounteren, zero
TEST_PASS
TEST_END
TRAP_HANDLERS
