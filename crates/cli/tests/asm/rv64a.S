/* RV64A: LR/SC success and failure, every AMO in .w and .d (sign extension
 * of .w results, signed vs unsigned min/max, upper bits of rs2 ignored by
 * .w), aq/rl forms, and misaligned / faulting atomics trapping with the
 * right mcause, mepc and mtval. */
#include "common/test.h"
#include "common/trap.h"
.option norvc

/* n: 32-bit AMO on a word holding init with rs2 = operand: rd gets
 * want_old (sign-extended), memory becomes want_mem, the next word stays. */
#define AMO_W(n, op, init, operand, want_old, want_mem) \
        la a1, buf;                                 \
        li t0, init;                                \
        sw t0, 0(a1);                               \
        li t0, 0x5a5a5a5a;                          \
        sw t0, 4(a1);                               \
        li a2, operand;                             \
        op a0, a2, (a1);                            \
        lwu a3, 0(a1);                              \
        lwu a4, 4(a1);                              \
        CHECK_EQ(n, a4, 0x5a5a5a5a);                \
        CHECK_EQ(n, a3, want_mem);                  \
        CHECK_EQ(n, a0, want_old)

/* n: same for a 64-bit AMO (the next dword stays). */
#define AMO_D(n, op, init, operand, want_old, want_mem) \
        la a1, buf;                                 \
        li t0, init;                                \
        sd t0, 0(a1);                               \
        li t0, 0x5a5a5a5a5a5a5a5a;                  \
        sd t0, 8(a1);                               \
        li a2, operand;                             \
        op a0, a2, (a1);                            \
        ld a3, 0(a1);                               \
        ld a4, 8(a1);                               \
        CHECK_EQ(n, a4, 0x5a5a5a5a5a5a5a5a);        \
        CHECK_EQ(n, a3, want_mem);                  \
        CHECK_EQ(n, a0, want_old)

/* QEMU 7.2 reports misaligned AMOs as load-address-misaligned (4) and AMO
 * access faults as load access faults (5); the spec says store/AMO (6, 7). */
#ifdef QEMU_QUIRKS
#define CAUSE_AMO_MISALIGNED 4
#define CAUSE_AMO_ACCESS     5
#else
#define CAUSE_AMO_MISALIGNED 6
#define CAUSE_AMO_ACCESS     7
#endif

#define UNMAPPED 0x40000000

TEST_BEGIN
  li gp, 1
  INSTALL_MTRAP

  /* LR.W sign-extends; SC.W with a valid reservation succeeds (rd = 0) */
  la a1, buf
  li t0, 0x80000001
  sw t0, 0(a1)
  li t0, 0x11111111
  sw t0, 4(a1)
  lr.w a0, (a1)
  CHECK_EQ(1, a0, 0xffffffff80000001)
  li a2, 0xffffffff00000042     /* only the low word is stored */
  sc.w a3, a2, (a1)
  CHECK_EQ(2, a3, 0)
  lwu a0, 0(a1)
  CHECK_EQ(3, a0, 0x42)
  lwu a0, 4(a1)
  CHECK_EQ(4, a0, 0x11111111)
  /* the SC consumed the reservation: a second SC fails (rd = 1) */
  li a2, 0x99
  sc.w a3, a2, (a1)
  CHECK_EQ(5, a3, 1)
  lwu a0, 0(a1)
  CHECK_EQ(6, a0, 0x42)

  /* LR.D / SC.D */
  la a1, buf
  li t0, 0x8000000000000007
  sd t0, 0(a1)
  lr.d a0, (a1)
  CHECK_EQ(7, a0, 0x8000000000000007)
  li a2, 0x0123456789abcdef
  sc.d a3, a2, (a1)
  CHECK_EQ(8, a3, 0)
  ld a0, 0(a1)
  CHECK_EQ(9, a0, 0x0123456789abcdef)
  sc.d a3, a2, (a1)
  CHECK_EQ(10, a3, 1)

  /* SC to an address outside the reservation (another page) fails, writes
   * nothing, and still clears the reservation */
  la a1, buf
  la a4, far_word
  li t0, 0x77
  sd t0, 0(a4)
  lr.d a0, (a1)
  li a2, 0x1234
  sc.d a3, a2, (a4)
  CHECK_EQ(11, a3, 1)
  ld a0, 0(a4)
  CHECK_EQ(12, a0, 0x77)
  sc.d a3, a2, (a1)
  CHECK_EQ(13, a3, 1)
  ld a0, 0(a1)
  CHECK_EQ(14, a0, 0x0123456789abcdef)

  /* aq/rl forms behave the same */
  la a1, buf
  sd zero, 0(a1)
  lr.w.aq a0, (a1)
  li a2, 5
  sc.w.rl a3, a2, (a1)
  CHECK_EQ(15, a3, 0)
  lr.d.aqrl a0, (a1)
  CHECK_EQ(16, a0, 5)
  li a2, 6
  sc.d.aqrl a3, a2, (a1)
  CHECK_EQ(17, a3, 0)
  ld a0, 0(a1)
  CHECK_EQ(18, a0, 6)

  /* an LR/SC retry loop: atomic increment, 10 times */
  la a1, buf
  sd zero, 0(a1)
  li a4, 10
1: lr.d a0, (a1)
  addi a0, a0, 3
  sc.d a3, a0, (a1)
  bnez a3, 1b
  addi a4, a4, -1
  bnez a4, 1b
  ld a0, 0(a1)
  CHECK_EQ(19, a0, 30)

  /* AMO*.W: rd = sign-extended old word; rs2[63:32] ignored */
  AMO_W(20, amoswap.w, 0x80000000, 0xdeadbeef12345678, 0xffffffff80000000, 0x12345678)
  AMO_W(21, amoadd.w,  0x7fffffff, 1, 0x7fffffff, 0x80000000)
  AMO_W(22, amoadd.w,  0xffffffff, 0x1200000002, 0xffffffffffffffff, 0x00000001)
  AMO_W(23, amoxor.w,  0xf0f0f0f0, 0xffffffff0ff00ff0, 0xfffffffff0f0f0f0, 0xff00ff00)
  AMO_W(24, amoand.w,  0xf0f0f0f0, 0xff00ff00, 0xfffffffff0f0f0f0, 0xf000f000)
  AMO_W(25, amoor.w,   0x0000f0f0, 0x0f0f0000, 0xf0f0, 0x0f0ff0f0)
  AMO_W(26, amomin.w,  0x80000000, 1, 0xffffffff80000000, 0x80000000)
  AMO_W(27, amomin.w,  5, 0xfffffffb, 5, 0xfffffffb)
  AMO_W(28, amomax.w,  0x80000000, 1, 0xffffffff80000000, 1)
  AMO_W(29, amomax.w,  0xfffffffe, 0xffffffff, 0xfffffffffffffffe, 0xffffffff)
  AMO_W(30, amominu.w, 0x80000000, 1, 0xffffffff80000000, 1)
  AMO_W(31, amominu.w, 0x80000000, 0xffffffff00000001, 0xffffffff80000000, 1)
  AMO_W(32, amomaxu.w, 0x80000000, 1, 0xffffffff80000000, 0x80000000)
  AMO_W(33, amomaxu.w, 0x00000002, 0x0000000100000001, 2, 2)
  AMO_W(34, amomin.w,  0x00000003, 0x7fffffff00000004, 3, 3)
  AMO_W(35, amomax.w,  0x00000003, 0x8000000000000004, 3, 4)
  AMO_W(36, amoadd.w.aqrl, 10, 20, 10, 30)
  AMO_W(37, amoswap.w.aq, 1, 2, 1, 2)
  AMO_W(38, amoor.w.rl, 1, 2, 1, 3)

  /* AMO*.D */
  AMO_D(39, amoswap.d, 0x8000000000000000, 0x0123456789abcdef, 0x8000000000000000, 0x0123456789abcdef)
  AMO_D(40, amoadd.d,  0x7fffffffffffffff, 1, 0x7fffffffffffffff, 0x8000000000000000)
  AMO_D(41, amoadd.d,  0xffffffffffffffff, 2, 0xffffffffffffffff, 1)
  AMO_D(42, amoxor.d,  0xf0f0f0f0f0f0f0f0, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0, 0xff00ff00ff00ff00)
  AMO_D(43, amoand.d,  0xf0f0f0f0f0f0f0f0, 0xff00ff0000ff00ff, 0xf0f0f0f0f0f0f0f0, 0xf000f00000f000f0)
  AMO_D(44, amoor.d,   0xf000000000000000, 0x000000000000000f, 0xf000000000000000, 0xf00000000000000f)
  AMO_D(45, amomin.d,  0x8000000000000000, 1, 0x8000000000000000, 0x8000000000000000)
  AMO_D(46, amomin.d,  5, -5, 5, -5)
  AMO_D(47, amomax.d,  0x8000000000000000, 1, 0x8000000000000000, 1)
  AMO_D(48, amomax.d,  -2, -1, -2, -1)
  AMO_D(49, amominu.d, 0x8000000000000000, 1, 0x8000000000000000, 1)
  AMO_D(50, amominu.d, 5, -5, 5, 5)
  AMO_D(51, amomaxu.d, 0x8000000000000000, 1, 0x8000000000000000, 0x8000000000000000)
  AMO_D(52, amomaxu.d, 5, -5, 5, -5)
  AMO_D(53, amomin.d,  0x100000000, 0xffffffff, 0x100000000, 0xffffffff)
  AMO_D(54, amoadd.d.aqrl, 100, -1, 100, 99)

  /* rd == rs2: rd gets the old value, memory the old rs2 */
  la a1, buf
  li t0, 0x1111
  sd t0, 0(a1)
  li a2, 0x2222
  amoswap.d a2, a2, (a1)
  CHECK_EQ(55, a2, 0x1111)
  ld a0, 0(a1)
  CHECK_EQ(56, a0, 0x2222)
  li a2, 0x10
  amoadd.w a2, a2, (a1)
  CHECK_EQ(57, a2, 0x2222)
  lwu a0, 0(a1)
  CHECK_EQ(58, a0, 0x2232)
  /* rd = x0: memory still updated */
  li a2, 3
  amoadd.d x0, a2, (a1)
  ld a0, 0(a1)
  CHECK_EQ(59, a0, 0x2235)
  CHECK_EQ(60, x0, 0)
  /* rd == rs1 */
  la a1, buf
  li a2, 1
  amoadd.d a1, a2, (a1)
  CHECK_EQ(61, a1, 0x2235)
  la a1, buf
  ld a0, 0(a1)
  CHECK_EQ(62, a0, 0x2236)

  /* misaligned AMOs raise store/AMO address-misaligned; mepc = the AMO,
   * mtval = the address; neither memory nor rd change */
  la a1, buf
  li t0, 0x0102030405060708
  sd t0, 0(a1)
  sd t0, 8(a1)
  addi a1, a1, 2
  li a0, 0x77
  li a2, 1
  EXPECT_TRAP(63, 2f)
1: amoadd.w a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(63, s9, CAUSE_AMO_MISALIGNED)
  la t0, 1b
  li gp, 64
  bne s10, t0, __test_fail
  li gp, 65
  bne s11, a1, __test_fail
  CHECK_EQ(66, a0, 0x77)
  la a1, buf
  addi a1, a1, 4
  EXPECT_TRAP(67, 2f)
1: amoswap.d a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(67, s9, CAUSE_AMO_MISALIGNED)
  la t0, 1b
  li gp, 68
  bne s10, t0, __test_fail
  li gp, 69
  bne s11, a1, __test_fail
  CHECK_EQ(70, a0, 0x77)
  la a1, buf
  addi a1, a1, 1
  EXPECT_TRAP(71, 2f)
1: amomaxu.d a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(71, s9, CAUSE_AMO_MISALIGNED)
  li gp, 72
  bne s11, a1, __test_fail
  la a1, buf
  addi a1, a1, 6
  EXPECT_TRAP(73, 2f)
1: amoor.w a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(73, s9, CAUSE_AMO_MISALIGNED)
  li gp, 74
  bne s11, a1, __test_fail
  la a1, buf
  ld a0, 0(a1)
  CHECK_EQ(75, a0, 0x0102030405060708)
  ld a0, 8(a1)
  CHECK_EQ(76, a0, 0x0102030405060708)

  /* misaligned LR: load address-misaligned */
  la a1, buf
  addi a1, a1, 2
  li a0, 0x77
  EXPECT_TRAP(77, 2f)
1: lr.w a0, (a1)
  FAIL_NOW
2: CHECK_EQ(77, s9, 4)
  la t0, 1b
  li gp, 78
  bne s10, t0, __test_fail
  li gp, 79
  bne s11, a1, __test_fail
  CHECK_EQ(80, a0, 0x77)
  la a1, buf
  addi a1, a1, 4
  EXPECT_TRAP(81, 2f)
1: lr.d a0, (a1)
  FAIL_NOW
2: CHECK_EQ(81, s9, 4)
  li gp, 82
  bne s11, a1, __test_fail

  /* misaligned SC: store/AMO address-misaligned, nothing written.
   * (QEMU 7.2 instead fails the SC without trapping: rd = 1.) */
  la a1, buf
  addi a1, a1, 2
  li a2, -1
  li a0, 0x77
#ifdef QEMU_QUIRKS
  sc.w a0, a2, (a1)
  CHECK_EQ(83, a0, 1)
#else
  EXPECT_TRAP(83, 2f)
1: sc.w a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(83, s9, 6)
  li gp, 84
  bne s11, a1, __test_fail
  CHECK_EQ(85, a0, 0x77)
#endif
  la a1, buf
  addi a1, a1, 4
#ifdef QEMU_QUIRKS
  sc.d a0, a2, (a1)
  CHECK_EQ(86, a0, 1)
#else
  EXPECT_TRAP(86, 2f)
1: sc.d a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(86, s9, 6)
  li gp, 87
  bne s11, a1, __test_fail
#endif
  la a1, buf
  ld a0, 0(a1)
  CHECK_EQ(88, a0, 0x0102030405060708)
  ld a0, 8(a1)
  CHECK_EQ(89, a0, 0x0102030405060708)

  /* atomics on a physical address nothing maps: access faults */
  li a1, UNMAPPED
  li a2, 1
  EXPECT_TRAP(90, 2f)
1: amoadd.w a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(90, s9, CAUSE_AMO_ACCESS)
  la t0, 1b
  li gp, 91
  bne s10, t0, __test_fail
  li gp, 92
  bne s11, a1, __test_fail
  EXPECT_TRAP(93, 2f)
1: amoswap.d a0, a2, (a1)
  FAIL_NOW
2: CHECK_EQ(93, s9, CAUSE_AMO_ACCESS)
  EXPECT_TRAP(94, 2f)
1: lr.d a0, (a1)
  FAIL_NOW
2: CHECK_EQ(94, s9, 5)
  li gp, 95
  bne s11, a1, __test_fail
TEST_PASS
TEST_END
TRAP_HANDLERS

  .data
  .balign 16
buf:
  .dword 0, 0
  .balign 4096
far_word:
  .dword 0
