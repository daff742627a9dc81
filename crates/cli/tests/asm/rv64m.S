/* RV64M: MUL/MULH/MULHSU/MULHU/MULW, DIV/DIVU/REM/REMU and their W forms,
 * including division by zero and signed overflow (no traps: fixed
 * results), rounding toward zero, and the W forms ignoring upper bits. */
#include "common/test.h"
.option norvc

#define RR(n, op, a, b, want)   li a1, a; li a2, b; op a0, a1, a2; CHECK_EQ(n, a0, want)

#define MIN64 0x8000000000000000
#define MAX64 0x7fffffffffffffff
#define ALL1  0xffffffffffffffff

TEST_BEGIN
  /* MUL: low 64 bits */
  RR(1,  mul, 3, 7, 21)
  RR(2,  mul, -3, 7, -21)
  RR(3,  mul, -3, -7, 21)
  RR(4,  mul, MAX64, 2, 0xfffffffffffffffe)
  RR(5,  mul, MIN64, -1, MIN64)
  RR(6,  mul, 0x100000000, 0x100000000, 0)
  RR(7,  mul, 0x123456789abcdef0, 0x0fedcba987654321, 0x2236d88fe5618cf0)
  RR(8,  mul, 0, -1, 0)

  /* MULH: signed x signed, high 64 bits */
  RR(9,  mulh, -1, -1, 0)
  RR(10, mulh, -1, 1, ALL1)
  RR(11, mulh, MIN64, MIN64, 0x4000000000000000)
  RR(12, mulh, MIN64, MAX64, 0xc000000000000000)
  RR(13, mulh, 0x100000000, 0x100000000, 1)
  RR(14, mulh, 0x123456789abcdef0, 0x0fedcba987654321, 0x0121fa00ad77d742)
  RR(15, mulh, -0x123456789abcdef0, 0x0fedcba987654321, 0xfede05ff528828bd)
  RR(16, mulh, 7, 3, 0)

  /* MULHU: unsigned x unsigned */
  RR(17, mulhu, -1, -1, 0xfffffffffffffffe)
  RR(18, mulhu, MIN64, 2, 1)
  RR(19, mulhu, 0xfedcba9876543210, 0x123456789abcdef0, 0x121fa00ad77d7422)
  RR(20, mulhu, -1, 1, 0)
  RR(21, mulhu, 0x100000000, 0x100000000, 1)

  /* MULHSU: rs1 signed, rs2 unsigned */
  RR(22, mulhsu, -1, -1, ALL1)              /* -1 * (2^64-1) */
  RR(23, mulhsu, 1, -1, 0)
  RR(24, mulhsu, MIN64, -1, MIN64)
  RR(25, mulhsu, -2, 3, ALL1)
  RR(26, mulhsu, MAX64, -1, 0x7ffffffffffffffe)
  RR(27, mulhsu, -0x123456789abcdef0, 0xfedcba9876543210, 0xede05ff528828bdd)
  RR(28, mulhsu, 2, MIN64, 1)

  /* MULW: low 32 bits of the product, sign-extended; upper source bits ignored */
  RR(29, mulw, 0x7fffffff, 2, -2)
  RR(30, mulw, 0xdead000000000003, 0xbeef000000000005, 15)
  RR(31, mulw, 0x10000, 0x10000, 0)
  RR(32, mulw, 0x80000000, 1, 0xffffffff80000000)
  RR(33, mulw, -3, 7, -21)
  RR(34, mulw, 0x12345678, 0x9abcdef0, 0x242d2080)

  /* DIV / DIVU: truncation toward zero */
  RR(35, div, 20, 6, 3)
  RR(36, div, -20, 6, -3)
  RR(37, div, 20, -6, -3)
  RR(38, div, -20, -6, 3)
  RR(39, div, 20, 0, ALL1)                 /* by zero: all ones */
  RR(40, div, -20, 0, ALL1)
  RR(41, div, MIN64, -1, MIN64)            /* overflow: the dividend */
  RR(42, div, MIN64, 1, MIN64)
  RR(43, divu, 20, 6, 3)
  RR(44, divu, -1, 2, MAX64)
  RR(45, divu, 20, 0, ALL1)
  RR(46, divu, MIN64, -1, 0)
  RR(47, divu, -20, 6, 0x2aaaaaaaaaaaaaa7)

  /* REM / REMU: sign of the dividend */
  RR(48, rem, 20, 6, 2)
  RR(49, rem, -20, 6, -2)
  RR(50, rem, 20, -6, 2)
  RR(51, rem, -20, -6, -2)
  RR(52, rem, 20, 0, 20)                   /* by zero: the dividend */
  RR(53, rem, -20, 0, -20)
  RR(54, rem, MIN64, -1, 0)                /* overflow: zero */
  RR(55, remu, 20, 6, 2)
  RR(56, remu, -1, 10, 5)
  RR(57, remu, -20, 0, -20)
  RR(58, remu, MIN64, -1, MIN64)

  /* DIVW / DIVUW / REMW / REMUW: 32-bit operands, sign-extended result */
  RR(59, divw, -20, 6, -3)
  RR(60, divw, 0x1234567800000014, 0xabcdef0000000006, 3)
  RR(61, divw, 0x00000000fffffffa, 2, -3)  /* low word is -6 */
  RR(62, divw, 0x80000000, -1, 0xffffffff80000000)
  RR(63, divw, 0x80000000, 0xffffffff, 0xffffffff80000000)
  RR(64, divw, 20, 0, ALL1)
  RR(65, divw, 20, 0x100000000, ALL1)      /* low word of divisor is 0 */
  RR(66, divuw, 0xfffffffa, 2, 0x7ffffffd)
  RR(67, divuw, 20, 0, ALL1)               /* 0xffffffff, sign-extended */
  RR(68, divuw, 0x80000000, 1, 0xffffffff80000000)
  RR(69, divuw, 0xffffffff00000014, 6, 3)
  RR(70, remw, -20, 6, -2)
  RR(71, remw, 0x1234567887654321, 0, 0xffffffff87654321)
  RR(72, remw, 0x80000000, -1, 0)
  RR(73, remw, 0xffffffff00000007, 0x1234567800000002, 1)
  RR(74, remw, 20, -6, 2)
  RR(75, remuw, 0xffffffff, 10, 5)
  RR(76, remuw, 0x1234567887654321, 0, 0xffffffff87654321)
  RR(77, remuw, 0x80000005, 0x80000000, 5)
  RR(78, remuw, 0x0000000180000007, 0x10, 7)
  RR(79, remuw, 0x12345678, 0x100000000, 0x12345678)

  /* register aliasing and x0 */
  li a1, 7
  mul a1, a1, a1
  CHECK_EQ(80, a1, 49)
  li a1, -7
  div a1, a1, a1
  CHECK_EQ(81, a1, 1)
  li a1, -7
  mulh a1, a1, a1
  CHECK_EQ(82, a1, 0)
  li a1, 9
  rem a1, a1, a1
  CHECK_EQ(83, a1, 0)
  li a1, 5
  div a0, a1, x0
  CHECK_EQ(84, a0, ALL1)
  li a1, 5
  remu a0, a1, x0
  CHECK_EQ(85, a0, 5)
  li a1, 5
  li a2, 6
  mul x0, a1, a2
  div x0, a1, x0
  CHECK_EQ(86, x0, 0)
  /* a product that only MULHU sees */
  li a1, 0xffffffff00000000
  li a2, 0xffffffff00000000
  mulhu a3, a1, a2
  mul a4, a1, a2
  CHECK_EQ(87, a3, 0xfffffffe00000001)
  CHECK_EQ(88, a4, 0)
TEST_PASS
TEST_END
