/* RV64I control transfer: conditional branches (taken / not taken, signed
 * vs unsigned, forward / backward, extreme offsets), JAL, JALR (offset,
 * low bit cleared, rd == rs1, rd = x0). 32-bit encodings only. */
#include "common/test.h"
.option norvc
.option norelax          /* keep exact layout: offsets below are measured */

/* n: `op a, b` must branch (forward). */
#define TAKEN(n, op, a, b)                          \
        li gp, n; li a1, a; li a2, b;               \
        op a1, a2, 1f;                              \
        j __test_fail;                              \
1:

/* n: `op a, b` must fall through. */
#define NOT_TAKEN(n, op, a, b)                      \
        li gp, n; li a1, a; li a2, b;               \
        op a1, a2, 1f;                              \
        j 2f;                                       \
1:      j __test_fail;                              \
2:

/* n: `op a, b` must branch backwards. */
#define TAKEN_BACK(n, op, a, b)                     \
        li gp, n; li a1, a; li a2, b;               \
        j 2f;                                       \
1:      j 3f;                                       \
2:      op a1, a2, 1b;                              \
        j __test_fail;                              \
3:

#define MIN64 0x8000000000000000
#define MAX64 0x7fffffffffffffff

TEST_BEGIN
  TAKEN(1, beq, 5, 5)
  NOT_TAKEN(2, beq, 5, 6)
  NOT_TAKEN(3, beq, 0x100000005, 5)        /* all 64 bits compared */
  TAKEN(4, bne, 5, 6)
  NOT_TAKEN(5, bne, -1, -1)
  TAKEN(6, bne, MIN64, 0)

  TAKEN(7, blt, -1, 0)
  NOT_TAKEN(8, blt, 0, -1)
  NOT_TAKEN(9, blt, 3, 3)
  TAKEN(10, blt, MIN64, MAX64)
  NOT_TAKEN(11, blt, MAX64, MIN64)
  TAKEN(12, bge, 0, -1)
  TAKEN(13, bge, 3, 3)
  NOT_TAKEN(14, bge, -1, 0)
  TAKEN(15, bge, MAX64, MIN64)

  TAKEN(16, bltu, 0, -1)
  NOT_TAKEN(17, bltu, -1, 0)
  NOT_TAKEN(18, bltu, 3, 3)
  TAKEN(19, bltu, MAX64, MIN64)
  TAKEN(20, bgeu, -1, 0)
  TAKEN(21, bgeu, 3, 3)
  NOT_TAKEN(22, bgeu, 0, -1)
  NOT_TAKEN(23, bgeu, MAX64, MIN64)

  TAKEN_BACK(24, beq, 9, 9)
  TAKEN_BACK(25, bne, 9, 8)
  TAKEN_BACK(26, blt, -9, 8)
  TAKEN_BACK(27, bge, 9, -8)
  TAKEN_BACK(28, bltu, 8, -9)
  TAKEN_BACK(29, bgeu, -8, 9)

  /* same register on both sides */
  li gp, 30
  li a1, -3
  beq a1, a1, 1f
  j __test_fail
1: blt a1, a1, __test_fail
  bltu a1, a1, __test_fail
  li gp, 31
  bge a1, a1, 1f
  j __test_fail
1: bgeu a1, a1, 1f
  j __test_fail
1:
  /* x0 operands */
  li gp, 32
  li a1, -1
  blt a1, x0, 1f
  j __test_fail
1: bltu x0, a1, 1f
  j __test_fail
1: bne x0, x0, __test_fail
  /* branches do not write registers */
  li a1, 11
  li a2, 12
  bne a1, a2, 1f
1: CHECK_EQ(33, a1, 11)
  CHECK_EQ(34, a2, 12)

  /* largest forward branch offset (+4094): the target is 2 mod 4 */
  li gp, 35
  li a1, 1
  .balign 4
  beq a1, a1, far_fwd
  j __test_fail
  .skip 4086
far_fwd:
  /* pc is 2 mod 4 here; keep going with 4-byte instructions */
  li gp, 36
  la a0, far_fwd
  andi a0, a0, 3
  CHECK_EQ(36, a0, 2)
  /* largest backward branch offset (-4096) */
  li gp, 37
  j 1f
far_back:
  j far_back_done
  .skip 4092
1: beq a1, a1, far_back
  j __test_fail
far_back_done:

  /* JAL: link = pc + 4; forward, backward and long jumps */
  li gp, 38
1: jal ra, 2f
  j __test_fail
2: la a0, 1b
  addi a0, a0, 4
  bne ra, a0, __test_fail
  li gp, 39
  j 2f
1: jal a5, 3f                  /* reached backwards */
  j __test_fail
2: j 1b
3: la a0, 1b
  addi a0, a0, 4
  bne a5, a0, __test_fail
  li gp, 40
1: jal a5, jal_far             /* > 1 MiB away is impossible; 64 KiB is not */
  j __test_fail
jal_far_back:
  li gp, 41
  la a0, 1b
  addi a0, a0, 4
  bne a5, a0, __test_fail
  j 1f
  /* JAL with rd = x0 does not link */
1: li gp, 42
  li a0, 0
  jal x0, 2f
  j __test_fail
2: CHECK_EQ(42, x0, 0)

  /* JALR: target = (rs1 + imm) & ~1, link = pc + 4 */
  li gp, 43
  la a1, 2f
1: jalr ra, 0(a1)
  j __test_fail
2: la a0, 1b
  addi a0, a0, 4
  bne ra, a0, __test_fail
  li gp, 44
  la a1, 2f - 16
  jalr ra, 16(a1)
  j __test_fail
2: li gp, 45
  la a1, 2f + 2000
  jalr ra, -2000(a1)
  j __test_fail
2: li gp, 46
  la a1, 2f + 1              /* low bit of the sum is ignored */
  jalr ra, 0(a1)
  j __test_fail
2: li gp, 47
  la a1, 2f
  jalr ra, 1(a1)
  j __test_fail
2: li gp, 48
  la a1, 2f
1: jalr a1, 0(a1)            /* rd == rs1: target uses the old value */
  j __test_fail
2: la a0, 1b
  addi a0, a0, 4
  bne a1, a0, __test_fail
  li gp, 49
  la a1, 2f
  jalr x0, 0(a1)             /* jr: no link */
  j __test_fail
2: CHECK_EQ(49, x0, 0)
  /* JALR to a 2-mod-4 address (legal with C in misa) */
  li gp, 50
  la a1, odd_half
  andi a0, a1, 3
  CHECK_EQ(50, a0, 2)
  li gp, 51
  li a2, 0
1: jalr ra, 0(a1)
  li gp, 52
  la a0, 1b
  addi a0, a0, 4
  bne ra, a0, __test_fail
  CHECK_EQ(53, a2, 0x53)

  /* call / return nesting through ra and a saved link */
  li a0, 0
  call sub_outer
  CHECK_EQ(54, a0, 0x20)  /* ((0 + 1) * 2 + 14) + 16 */
TEST_PASS

sub_outer:
  mv s0, ra
  addi a0, a0, 1
  call sub_inner
  addi a0, a0, 0x10
  mv ra, s0
  ret
sub_inner:
  slli a0, a0, 1
  addi a0, a0, 0xe
  ret

  /* a 4-byte instruction sequence that starts 2 mod 4 (its own section,
   * so the offset is known: norvc .balign cannot pad by 2 bytes) */
  .pushsection .text.odd_half, "ax", @progbits
  .balign 4
  .half 0
odd_half:
  li a2, 0x53
  ret
  .popsection

  .skip 0x10000
jal_far:
  jal x0, jal_far_back
TEST_END
