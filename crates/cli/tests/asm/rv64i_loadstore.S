/* RV64I loads and stores: every width, sign / zero extension, little
 * endianness, immediate offsets (negative, +-2 KiB), stores touching only
 * their own bytes, base-register aliasing, loads into x0, FENCE.I making
 * stored instructions visible, and misaligned accesses (which may either
 * work or trap with address-misaligned: both are accepted, but each must
 * be exact). */
#include "common/test.h"
#include "common/trap.h"
.option norvc

/* n: misaligned load at addr: either rd = want, or a load-address-
 * misaligned trap with mtval = addr and rd untouched. */
#define MISALIGNED_LD(n, op, addr, want)            \
        la a1, addr;                                \
        li s9, 0;                                   \
        li a0, 0x5555;                              \
        la s7, 1f;                                  \
        op a0, 0(a1);                               \
        li s7, 0;                                   \
1:      beqz s9, 2f;                                \
        CHECK_EQ(n, s9, 4);                         \
        bne s11, a1, __test_fail;                   \
        CHECK_EQ(n, a0, 0x5555);                    \
        j 3f;                                       \
2:      CHECK_EQ(n, a0, want);                      \
3:

/* n: misaligned store of val at buf + off: either the 16-byte buffer
 * (0xaa-filled) becomes lo / hi, or a store-address-misaligned trap with
 * mtval = the address and the buffer untouched. */
#define MISALIGNED_ST(n, op, off, val, lo, hi)      \
        call fill_buf;                              \
        la a1, buf + off;                           \
        li a2, val;                                 \
        li s9, 0;                                   \
        la s7, 1f;                                  \
        op a2, 0(a1);                               \
        li s7, 0;                                   \
1:      la t0, buf;                                 \
        ld a3, 0(t0);                               \
        ld a4, 8(t0);                               \
        beqz s9, 2f;                                \
        CHECK_EQ(n, s9, 6);                         \
        bne s11, a1, __test_fail;                   \
        CHECK_EQ(n, a3, AA);                        \
        CHECK_EQ(n, a4, AA);                        \
        j 3f;                                       \
2:      CHECK_EQ(n, a3, lo);                        \
        CHECK_EQ(n, a4, hi);                        \
3:

/* n: load `op` at byte offset off of src must give want. */
#define LD(n, op, off, want)  la a1, src; op a0, off(a1); CHECK_EQ(n, a0, want)
/* n: after storing `val` with `op` at offset off of a 16-byte buffer filled
 * with 0xaa, the two dwords of the buffer are lo / hi. */
#define ST(n, op, off, val, lo, hi)                 \
        call fill_buf;                              \
        la a1, buf;                                 \
        li a2, val;                                 \
        op a2, off(a1);                             \
        ld a3, 0(a1);                               \
        ld a4, 8(a1);                               \
        CHECK_EQ(n, a3, lo);                        \
        CHECK_EQ(n, a4, hi)

#define AA 0xaaaaaaaaaaaaaaaa

TEST_BEGIN
  /* byte loads: src = 11 82 33 84 55 86 77 88 | f0 0f e1 1e d2 2d c3 3c */
  LD(1,  lb,  0, 0x11)
  LD(2,  lb,  1, 0xffffffffffffff82)
  LD(3,  lbu, 1, 0x82)
  LD(4,  lb,  7, 0xffffffffffffff88)
  LD(5,  lbu, 7, 0x88)
  LD(6,  lb,  15, 0x3c)
  LD(7,  lbu, 8, 0xf0)
  LD(8,  lb,  8, 0xfffffffffffffff0)
  /* halfwords */
  LD(9,  lh,  0, 0xffffffffffff8211)
  LD(10, lhu, 0, 0x8211)
  LD(11, lh,  2, 0xffffffffffff8433)
  LD(12, lhu, 6, 0x8877)
  LD(13, lh,  8, 0x0ff0)
  LD(14, lhu, 8, 0x0ff0)
  LD(15, lh,  14, 0x3cc3)
  LD(16, lh,  10, 0x1ee1)
  /* words */
  LD(17, lw,  0, 0xffffffff84338211)
  LD(18, lwu, 0, 0x84338211)
  LD(19, lw,  4, 0xffffffff88778655)
  LD(20, lwu, 4, 0x88778655)
  LD(21, lw,  8, 0x1ee10ff0)
  LD(22, lwu, 12, 0x3cc32dd2)
  LD(23, lw,  12, 0x3cc32dd2)
  /* doublewords */
  LD(24, ld,  0, 0x8877865584338211)
  LD(25, ld,  8, 0x3cc32dd21ee10ff0)

  /* negative and extreme immediate offsets */
  la a1, src + 8
  lb a0, -8(a1)
  CHECK_EQ(26, a0, 0x11)
  lw a0, -4(a1)
  CHECK_EQ(27, a0, 0xffffffff88778655)
  la a1, src + 3 - 2047
  lbu a0, 2047(a1)
  CHECK_EQ(28, a0, 0x84)
  la a1, src + 2048
  ld a0, -2048(a1)
  CHECK_EQ(29, a0, 0x8877865584338211)
  la a1, src + 2048 + 8
  lhu a0, -2048(a1)
  CHECK_EQ(30, a0, 0x0ff0)

  /* the base register may be the destination */
  la a0, src
  ld a0, 8(a0)
  CHECK_EQ(31, a0, 0x3cc32dd21ee10ff0)
  /* a load into x0 is performed but discarded */
  la a1, src
  lw x0, 0(a1)
  ld x0, 8(a1)
  CHECK_EQ(32, x0, 0)

  /* stores write exactly their own bytes */
  ST(33, sb, 0,  0x12345678abcdef01, 0xaaaaaaaaaaaaaa01, AA)
  ST(34, sb, 3,  0xff, 0xaaaaaaaaffaaaaaa, AA)
  ST(35, sb, 15, 0x7e, AA, 0x7eaaaaaaaaaaaaaa)
  ST(36, sh, 0,  0x12345678abcdef01, 0xaaaaaaaaaaaaef01, AA)
  ST(37, sh, 6,  0x1234, 0x1234aaaaaaaaaaaa, AA)
  ST(38, sh, 10, 0xbeef, AA, 0xaaaaaaaabeefaaaa)
  ST(39, sw, 0,  0x12345678abcdef01, 0xaaaaaaaaabcdef01, AA)
  ST(40, sw, 4,  0xdeadbeef, 0xdeadbeefaaaaaaaa, AA)
  ST(41, sw, 8,  0x01020304, AA, 0xaaaaaaaa01020304)
  ST(42, sd, 0,  0x12345678abcdef01, 0x12345678abcdef01, AA)
  ST(43, sd, 8,  -1, AA, -1)

  /* little endian: the low byte of a dword lives at the lowest address */
  call fill_buf
  la a1, buf
  li a2, 0x0807060504030201
  sd a2, 0(a1)
  lbu a0, 0(a1)
  CHECK_EQ(44, a0, 0x01)
  lbu a0, 7(a1)
  CHECK_EQ(45, a0, 0x08)
  lhu a0, 2(a1)
  CHECK_EQ(46, a0, 0x0403)
  lwu a0, 4(a1)
  CHECK_EQ(47, a0, 0x08070605)
  /* narrow stores assemble into a dword */
  li a2, 0x11
  sb a2, 8(a1)
  li a2, 0x2233
  sh a2, 10(a1)
  li a2, 0x00c0ffee
  sw a2, 12(a1)
  ld a0, 8(a1)
  CHECK_EQ(48, a0, 0x00c0ffee2233aa11)

  /* negative store offsets and rs2 == rs1 */
  call fill_buf
  la a1, buf + 16
  li a2, 0x55
  sb a2, -16(a1)
  li a2, 0x6677
  sh a2, -2(a1)
  la a1, buf
  ld a3, 0(a1)
  ld a4, 8(a1)
  CHECK_EQ(49, a3, 0xaaaaaaaaaaaaaa55)
  CHECK_EQ(50, a4, 0x6677aaaaaaaaaaaa)
  la a1, buf
  sd a1, 0(a1)                /* stores the address itself */
  ld a0, 0(a1)
  la a2, buf
  li gp, 51
  bne a0, a2, __test_fail
  la a1, buf + 2040
  li a2, 0x5a5a
  sd a2, -2040(a1)
  la a1, buf - 2047
  ld a0, 2047(a1)
  CHECK_EQ(52, a0, 0x5a5a)
  /* storing x0 writes zeros */
  call fill_buf
  la a1, buf
  sw x0, 4(a1)
  ld a0, 0(a1)
  CHECK_EQ(53, a0, 0x00000000aaaaaaaa)

  /* FENCE.I: a stored instruction is what executes next time */
  call smc_func
  CHECK_EQ(54, a0, 1)
  la a1, smc_func
  li a2, 0x00200513          /* addi a0, x0, 2 */
  sw a2, 0(a1)
  fence.i
  call smc_func
  CHECK_EQ(55, a0, 2)
  li a2, 0x7ff00513          /* addi a0, x0, 2047 */
  sw a2, 0(a1)
  fence.i
  call smc_func
  CHECK_EQ(56, a0, 2047)

  /* FENCE variants are accepted */
  fence
  fence rw, rw
  fence r, w
  fence.tso
  fence iorw, iorw
  li a0, 57
  CHECK_EQ(57, a0, 57)

  /* misaligned accesses: emulated or trapped, but exact either way */
  li gp, 58
  INSTALL_MTRAP
  MISALIGNED_LD(58, lh,  src + 1, 0x3382)
  MISALIGNED_LD(59, lhu, src + 7, 0xf088)
  MISALIGNED_LD(60, lh,  src + 7, 0xfffffffffffff088)
  MISALIGNED_LD(61, lw,  src + 1, 0x55843382)
  MISALIGNED_LD(62, lw,  src + 5, 0xfffffffff0887786)
  MISALIGNED_LD(63, lwu, src + 5, 0xf0887786)
  MISALIGNED_LD(64, ld,  src + 1, 0xf088778655843382)
  MISALIGNED_LD(65, ld,  src + 7, 0xc32dd21ee10ff088)
  MISALIGNED_LD(66, ld,  pgx + 4, 0x0c0b0a0908070605)   /* crosses a page */
  MISALIGNED_LD(67, lw,  pgx + 6, 0x0a090807)
  MISALIGNED_ST(68, sh, 1,  0x1234, 0xaaaaaaaaaa1234aa, AA)
  MISALIGNED_ST(69, sw, 3,  0x11223344, 0xaa11223344aaaaaa, AA)
  MISALIGNED_ST(70, sw, 6,  0x11223344, 0x3344aaaaaaaaaaaa, 0xaaaaaaaaaaaa1122)
  MISALIGNED_ST(71, sd, 1,  0x0102030405060708, 0x02030405060708aa, 0xaaaaaaaaaaaaaa01)
  MISALIGNED_ST(72, sd, 7,  0x0102030405060708, 0x08aaaaaaaaaaaaaa, 0xaa01020304050607)
TEST_PASS

fill_buf:
  la t0, buf
  li t1, AA
  sd t1, 0(t0)
  sd t1, 8(t0)
  ret

TEST_END
TRAP_HANDLERS

  .data
  .balign 16
src:
  .byte 0x11, 0x82, 0x33, 0x84, 0x55, 0x86, 0x77, 0x88
  .byte 0xf0, 0x0f, 0xe1, 0x1e, 0xd2, 0x2d, 0xc3, 0x3c
  .balign 16
buf:
  .dword 0, 0
  .balign 4
smc_func:                     /* rewritten by the FENCE.I checks */
  .word 0x00100513            /* addi a0, x0, 1 */
  .word 0x00008067            /* ret */
  .balign 4096
  .skip 4088
pgx:                          /* straddles a page boundary */
  .dword 0x0807060504030201
  .dword 0x100f0e0d0c0b0a09
