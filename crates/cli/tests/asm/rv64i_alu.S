/* RV64I integer computation: register-register, register-immediate,
 * LUI/AUIPC, the 32-bit W forms, shift-amount masking, x0 rules.
 * Every instruction here is a 32-bit encoding (norvc). */
#include "common/test.h"
.option norvc

/* n: rd = op(a, b) for a register-register op (operands in a1, a2). */
#define RR(n, op, a, b, want)   li a1, a; li a2, b; op a0, a1, a2; CHECK_EQ(n, a0, want)
/* n: rd = op(a, imm) for a register-immediate op. */
#define RI(n, op, a, imm, want) li a1, a; op a0, a1, imm; CHECK_EQ(n, a0, want)

#define MIN64 0x8000000000000000
#define MAX64 0x7fffffffffffffff

TEST_BEGIN
  /* ADD / SUB: wrap-around, no overflow trap */
  RR(1,  add, 1, 2, 3)
  RR(2,  add, MAX64, 1, MIN64)
  RR(3,  add, -1, 1, 0)
  RR(4,  add, -1, -1, -2)
  RR(5,  sub, 3, 5, -2)
  RR(6,  sub, MIN64, 1, MAX64)
  RR(7,  sub, 0, 1, -1)
  RR(8,  sub, 0x123456789abcdef0, 0x123456789abcdef0, 0)

  /* SLT / SLTU: signed vs unsigned */
  RR(9,  slt, -1, 1, 1)
  RR(10, slt, 1, -1, 0)
  RR(11, slt, 7, 7, 0)
  RR(12, slt, MIN64, MAX64, 1)
  RR(13, slt, MAX64, MIN64, 0)
  RR(14, sltu, -1, 1, 0)
  RR(15, sltu, 1, -1, 1)
  RR(16, sltu, 0, 0, 0)
  RR(17, sltu, MAX64, MIN64, 1)

  /* logic */
  RR(18, xor, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0)
  RR(19, or,  0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xfff0fff0fff0fff0)
  RR(20, and, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0x0f000f000f000f00)

  /* 64-bit register shifts use rs2[5:0] */
  RR(21, sll, 1, 63, MIN64)
  RR(22, sll, 0x0123456789abcdef, 64, 0x0123456789abcdef)
  RR(23, sll, 0x0123456789abcdef, 65, 0x02468acf13579bde)
  RR(24, sll, 3, -1, MIN64)
  RR(25, sll, 0x0123456789abcdef, 0, 0x0123456789abcdef)
  RR(26, srl, MIN64, 63, 1)
  RR(27, srl, -1, 1, MAX64)
  RR(28, srl, 0x0123456789abcdef, 64, 0x0123456789abcdef)
  RR(29, srl, 0xf000000000000000, 0x44, 0x0f00000000000000)
  RR(30, sra, MIN64, 63, -1)
  RR(31, sra, -256, 4, -16)
  RR(32, sra, MAX64, 62, 1)
  RR(33, sra, 0x8000000000000000, 0x7f, -1)
  RR(34, sra, 0xf0f0000000000000, 64, 0xf0f0000000000000)

  /* ADDI and friends: 12-bit sign-extended immediates */
  RI(35, addi, 0, -2048, -2048)
  RI(36, addi, 0, 2047, 2047)
  RI(37, addi, MAX64, 1, MIN64)
  RI(38, addi, 5, -5, 0)
  RI(39, slti, -1, 0, 1)
  RI(40, slti, 0, -1, 0)
  RI(41, slti, 5, 5, 0)
  RI(42, slti, MIN64, -2048, 1)
  RI(43, sltiu, 0, -1, 1)            /* imm sign-extends to 2^64-1 */
  RI(44, sltiu, -1, -1, 0)
  RI(45, sltiu, 5, 1, 0)
  RI(46, sltiu, 0, 1, 1)
  RI(47, sltiu, 0xfffffffffffff7ff, -2048, 1)
  RI(48, xori, 0x00ff00ff00ff00ff, -1, 0xff00ff00ff00ff00)
  RI(49, xori, 0x0f, 0x7f0, 0x7ff)
  RI(50, ori, 0, -2048, 0xfffffffffffff800)
  RI(51, ori, 0x1000, 0x123, 0x1123)
  RI(52, andi, -1, 0x7ff, 0x7ff)
  RI(53, andi, 0x123456789abcdeff, -16, 0x123456789abcdef0)
  RI(54, andi, 0x123456789abcdeff, 0, 0)

  /* immediate shifts, shamt up to 63 */
  RI(55, slli, 1, 63, MIN64)
  RI(56, slli, 0x0123456789abcdef, 4, 0x123456789abcdef0)
  RI(57, slli, 0x0123456789abcdef, 0, 0x0123456789abcdef)
  RI(58, srli, -1, 63, 1)
  RI(59, srli, -1, 0, -1)
  RI(60, srli, 0x8000000000000000, 32, 0x80000000)
  RI(61, srai, MIN64, 63, -1)
  RI(62, srai, MAX64, 62, 1)
  RI(63, srai, 0x8000000000000000, 32, 0xffffffff80000000)
  RI(64, srai, 0x4000000000000000, 1, 0x2000000000000000)

  /* LUI: 32-bit result sign-extended to 64 */
  li gp, 65
  lui a0, 0x12345
  CHECK_EQ(65, a0, 0x12345000)
  lui a0, 0x80000
  CHECK_EQ(66, a0, 0xffffffff80000000)
  lui a0, 0xfffff
  CHECK_EQ(67, a0, 0xfffffffffffff000)
  lui a0, 0x7ffff
  CHECK_EQ(68, a0, 0x7ffff000)
  lui a0, 0
  CHECK_EQ(69, a0, 0)

  /* AUIPC: pc of the auipc itself plus the sign-extended upper immediate */
1: auipc a0, 0
  la a1, 1b
  li gp, 70
  bne a0, a1, __test_fail
2: auipc a0, 1
  la a1, 2b
  sub a0, a0, a1
  CHECK_EQ(71, a0, 0x1000)
3: auipc a0, 0x80000
  la a1, 3b
  sub a0, a0, a1
  CHECK_EQ(72, a0, 0xffffffff80000000)
4: auipc a0, 0x7ffff
  la a1, 4b
  sub a0, a0, a1
  CHECK_EQ(73, a0, 0x7ffff000)

  /* 32-bit W ops: use low 32 bits of the sources, sign-extend the result */
  RR(74, addw, 0x7fffffff, 1, 0xffffffff80000000)
  RR(75, addw, 0xdeadbeef00000001, 0x1234567800000002, 3)
  RR(76, addw, -1, 1, 0)
  RR(77, addw, 0xffffffff, 0xffffffff, -2)
  RR(78, subw, 0, 1, -1)
  RR(79, subw, 0xffffffff80000000, 1, 0x7fffffff)
  RR(80, subw, 0x1234567800000005, 0xabcdef0000000003, 2)
  RR(81, sllw, 1, 31, 0xffffffff80000000)
  RR(82, sllw, 0xffff000012345678, 32, 0x12345678)    /* rs2[4:0] = 0 */
  RR(83, sllw, 0x0000000012345678, 33, 0x2468acf0)    /* rs2[4:0] = 1 */
  RR(84, sllw, 0x12345678, 4, 0x23456780)
  RR(85, sllw, 0xc0000000, 1, 0xffffffff80000000)
  RR(86, srlw, 0xffffffff80000000, 31, 1)
  RR(87, srlw, 0x0000000080000000, 0, 0xffffffff80000000)
  RR(88, srlw, -1, 1, 0x7fffffff)
  RR(89, srlw, 0x1234567880000000, 32, 0xffffffff80000000)
  RR(90, srlw, 0x00000000f0000000, 36, 0x0f000000)
  RR(91, sraw, 0x0000000080000000, 31, -1)
  RR(92, sraw, 0x7fffffff, 30, 1)
  RR(93, sraw, 0x0000000080000000, 4, 0xfffffffff8000000)
  RR(94, sraw, 0x0000000080000000, 63, -1)            /* rs2[4:0] = 31 */
  RR(95, sraw, 0x7fffffff00000010, 0x24, 1)           /* rs2[4:0] = 4 */

  RI(96, addiw, 0x7fffffff, 1, 0xffffffff80000000)
  RI(97, addiw, 0x00000000ffffffff, 0, -1)            /* sext.w */
  RI(98, addiw, 0, -2048, -2048)
  RI(99, addiw, 0x1234567800000000, 2047, 2047)
  RI(100, slliw, 1, 31, 0xffffffff80000000)
  RI(101, slliw, 0xdeadbeef00000003, 4, 0x30)
  RI(102, slliw, 0x12345678, 0, 0x12345678)
  RI(103, srliw, 0x80000000, 31, 1)
  RI(104, srliw, -1, 0, -1)
  RI(105, srliw, 0x80000000, 0, 0xffffffff80000000)
  RI(106, srliw, 0xffffffff, 1, 0x7fffffff)
  RI(107, srliw, 0xabcdef0012345678, 4, 0x01234567)
  RI(108, sraiw, 0x80000000, 31, -1)
  RI(109, sraiw, 0x0000000080000000, 1, 0xffffffffc0000000)
  RI(110, sraiw, 0x7fffffff, 31, 0)
  RI(111, sraiw, 0xffffffff7fffffff, 0, 0x7fffffff)

  /* writes to x0 are discarded */
  li gp, 112
  addi x0, x0, 5
  bnez x0, __test_fail
  li a1, 7
  add x0, a1, a1
  CHECK_EQ(113, x0, 0)
  lui x0, 0x12345
  CHECK_EQ(114, x0, 0)
  auipc x0, 1
  CHECK_EQ(115, x0, 0)
  slli x0, a1, 3
  CHECK_EQ(116, x0, 0)
  addiw x0, a1, 1
  CHECK_EQ(117, x0, 0)
  mv a0, x0
  CHECK_EQ(118, a0, 0)

  /* x0 as a source, and rd aliasing its sources */
  RR(119, sub, 0, 5, -5)
  li a1, 5
  sub a0, x0, a1
  CHECK_EQ(120, a0, -5)
  li a1, 5
  sltu a0, x0, a1            /* snez */
  CHECK_EQ(121, a0, 1)
  li a1, 0x21
  add a1, a1, a1
  CHECK_EQ(122, a1, 0x42)
  li a1, 0x21
  sub a1, a1, a1
  CHECK_EQ(123, a1, 0)
  li a1, 3
  sll a1, a1, a1
  CHECK_EQ(124, a1, 24)
  li a1, 0x80000000
  sraw a1, a1, a1            /* shamt = 0: just sign-extend */
  CHECK_EQ(125, a1, 0xffffffff80000000)
  li a1, -9
  slt a1, a1, a1
  CHECK_EQ(126, a1, 0)

  /* every register can hold a value (x1..x31, sampled) */
  li ra, 0x1111
  li sp, 0x2222
  li tp, 0x4444
  li s0, 0x8888
  li s1, 0x9999
  li a7, 0x7777
  li s6, 0x6666
  li t3, 0x3333
  li t4, 0x5555
  CHECK_EQ(127, ra, 0x1111)
  CHECK_EQ(128, sp, 0x2222)
  CHECK_EQ(129, tp, 0x4444)
  CHECK_EQ(130, s0, 0x8888)
  CHECK_EQ(131, s1, 0x9999)
  CHECK_EQ(132, a7, 0x7777)
  CHECK_EQ(133, s6, 0x6666)
  CHECK_EQ(134, t3, 0x3333)
  CHECK_EQ(135, t4, 0x5555)

  /* NOP and HINT encodings (rd = x0) have no architectural effect */
  li a0, 0x5a
  nop
  addi x0, a0, 1
  slti x0, a0, 1
  CHECK_EQ(136, a0, 0x5a)
  CHECK_EQ(137, x0, 0)
TEST_PASS
TEST_END
