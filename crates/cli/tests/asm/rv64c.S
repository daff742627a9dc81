/* RV64C: every compressed instruction of RV64C (with D: c.fld/c.fsd/
 * c.fldsp/c.fsdsp), immediate extremes, reserved encodings (illegal, mtval =
 * the 16 instruction bits), HINTs executing as no-ops, and traps of
 * compressed instructions: mepc points at the 2-byte instruction and
 * resuming at mepc + 2 continues right after it. */
#include "common/test.h"
#include "common/trap.h"
.option rvc
.option norelax          /* exact layout for the offset checks */

#define UNMAPPED 0x40000000

/* n: the 16-bit encoding `bits` is reserved: illegal instruction with
 * mepc at it and mtval = bits. */
#define ILLEGAL16(n, bits)                          \
        EXPECT_TRAP(n, 2f);                         \
1:      .2byte bits;                                \
        FAIL_NOW;                                   \
2:      CHECK_EQ(n, s9, 2);                         \
        CHECK_EQ(n, s11, bits);                     \
        la t0, 1b;                                  \
        bne s10, t0, __test_fail

TEST_BEGIN
  li gp, 1
  INSTALL_MTRAP
  li t0, MSTATUS_FS
  csrs mstatus, t0            /* for c.fld & co */

  /* ---- quadrant 0 ---- */
  li sp, 0x123400
  c.addi4spn a0, sp, 4
  CHECK_EQ(1, a0, 0x123404)
  c.addi4spn s1, sp, 1020
  CHECK_EQ(2, s1, 0x1237fc)
  c.addi4spn a5, sp, 0x208
  CHECK_EQ(3, a5, 0x123608)

  la a1, cdata
  c.lw a0, 0(a1)
  CHECK_EQ(4, a0, 0xffffffff80000001)
  c.lw a0, 124(a1)
  CHECK_EQ(5, a0, 0x7c7c7c7c)
  c.ld a0, 0(a1)
  CHECK_EQ(6, a0, 0x1234567880000001)
  c.ld s0, 248(a1)
  CHECK_EQ(7, s0, 0xf8f8f8f8f8f8f8f8)
  la a2, cbuf
  li a3, 0x1122334455667788
  c.sw a3, 0(a2)
  c.sw a3, 124(a2)
  c.sd a3, 248(a2)
  c.sd a3, 8(a2)
  lwu a0, 0(a2)
  CHECK_EQ(8, a0, 0x55667788)
  lwu a0, 4(a2)
  CHECK_EQ(9, a0, 0)
  lwu a0, 124(a2)
  CHECK_EQ(10, a0, 0x55667788)
  ld a0, 248(a2)
  CHECK_EQ(11, a0, 0x1122334455667788)
  ld a0, 8(a2)
  CHECK_EQ(12, a0, 0x1122334455667788)
  c.fld fa0, 8(a1)
  fmv.x.d a0, fa0
  CHECK_EQ(13, a0, 0x0808080808080808)
  c.fld fs1, 248(a1)
  c.fsd fs1, 16(a2)
  ld a0, 16(a2)
  CHECK_EQ(14, a0, 0xf8f8f8f8f8f8f8f8)

  /* ---- quadrant 1 ---- */
  li a0, 0x100
  c.nop
  c.addi a0, -32
  CHECK_EQ(15, a0, 0xe0)
  c.addi a0, 31
  CHECK_EQ(16, a0, 0xff)
  li t0, -1
  c.addi t0, 1
  CHECK_EQ(17, t0, 0)
  li a0, 0x7fffffff
  c.addiw a0, 1
  CHECK_EQ(18, a0, 0xffffffff80000000)
  li t1, 0x12345678ffffffff
  c.addiw t1, 0                 /* sext.w */
  CHECK_EQ(19, t1, -1)
  li t1, 0
  c.addiw t1, -32
  CHECK_EQ(20, t1, -32)
  c.li a0, -32
  CHECK_EQ(21, a0, -32)
  c.li t2, 31
  CHECK_EQ(22, t2, 31)
  li sp, 0x10000
  c.addi16sp sp, -512
  CHECK_EQ(23, sp, 0xfe00)
  c.addi16sp sp, 496
  CHECK_EQ(24, sp, 0xfff0)
  c.addi16sp sp, 16
  CHECK_EQ(25, sp, 0x10000)
  c.lui a0, 1
  CHECK_EQ(26, a0, 0x1000)
  c.lui a0, 31
  CHECK_EQ(27, a0, 0x1f000)
  c.lui t0, 0xfffe0
  CHECK_EQ(28, t0, 0xfffffffffffe0000)
  c.lui t0, 0xfffff
  CHECK_EQ(29, t0, 0xfffffffffffff000)
  li a0, 0x8000000000000010
  c.srli a0, 1
  CHECK_EQ(30, a0, 0x4000000000000008)
  li a0, 0x8000000000000010
  c.srli a0, 63
  CHECK_EQ(31, a0, 1)
  li a1, 0x8000000000000010
  c.srai a1, 63
  CHECK_EQ(32, a1, -1)
  li a1, 0x8000000000000010
  c.srai a1, 32
  CHECK_EQ(33, a1, 0xffffffff80000000)
  li a2, 0x123456789abcdeff
  c.andi a2, -32
  CHECK_EQ(34, a2, 0x123456789abcdee0)
  li a2, 0x123456789abcdeff
  c.andi a2, 31
  CHECK_EQ(35, a2, 0x1f)
  li a2, -1
  c.andi a2, 0
  CHECK_EQ(36, a2, 0)
  li a0, 5
  li a1, 7
  c.sub a0, a1
  CHECK_EQ(37, a0, -2)
  li a0, 0xff00ff00ff00ff00
  li a1, 0x0ff00ff00ff00ff0
  c.xor a0, a1
  CHECK_EQ(38, a0, 0xf0f0f0f0f0f0f0f0)
  li a0, 0xff00ff00ff00ff00
  c.or a0, a1
  CHECK_EQ(39, a0, 0xfff0fff0fff0fff0)
  li a0, 0xff00ff00ff00ff00
  c.and a0, a1
  CHECK_EQ(40, a0, 0x0f000f000f000f00)
  li s0, 0xffffffff80000000
  li s1, 1
  c.subw s0, s1
  CHECK_EQ(41, s0, 0x7fffffff)
  li s0, 0x123456787fffffff
  c.addw s0, s1
  CHECK_EQ(42, s0, 0xffffffff80000000)
  li s0, 0
  c.subw s0, s1
  CHECK_EQ(43, s0, -1)

  /* c.j forward and backward */
  li gp, 44
  c.j 2f
1: c.j 3f
  FAIL_NOW
2: c.j 1b
  FAIL_NOW
3:
  /* c.beqz / c.bnez test all 64 bits */
  li gp, 45
  li a0, 0
  c.beqz a0, 1f
  FAIL_NOW
1: li gp, 46
  li a0, 0x100000000
  c.beqz a0, 2f
  c.bnez a0, 1f
2: FAIL_NOW
1: li gp, 47
  li a0, 0
  c.bnez a0, 2f
  j 1f
2: FAIL_NOW
1: li gp, 48                    /* backward compressed branch */
  li a0, 1
  j 2f
1: j 3f
2: c.bnez a0, 1b
  FAIL_NOW
3:

  /* ---- quadrant 2 ---- */
  li a0, 0x8000000000000001
  c.slli a0, 1
  CHECK_EQ(49, a0, 2)
  li t0, 1
  c.slli t0, 63
  CHECK_EQ(50, t0, 0x8000000000000000)
  li t0, 0x12345678
  c.slli t0, 32
  CHECK_EQ(51, t0, 0x1234567800000000)

  la sp, cdata
  c.lwsp a0, 0(sp)
  CHECK_EQ(52, a0, 0xffffffff80000001)
  c.lwsp t3, 252(sp)
  CHECK_EQ(53, t3, 0xfffffffff8f8f8f8)
  c.ldsp t4, 504(sp)
  CHECK_EQ(54, t4, 0xf0f0f0f0f0f0f0f0)
  c.ldsp a0, 8(sp)
  CHECK_EQ(55, a0, 0x0808080808080808)
  c.fldsp ft0, 504(sp)
  fmv.x.d a0, ft0
  CHECK_EQ(56, a0, 0xf0f0f0f0f0f0f0f0)
  la sp, cbuf
  li t0, 0xa1a2a3a4a5a6a7a8
  c.swsp t0, 252(sp)
  c.sdsp t0, 504(sp)
  c.swsp t0, 32(sp)
  fmv.d.x ft1, t0
  c.fsdsp ft1, 40(sp)
  lwu a0, 252(sp)
  CHECK_EQ(57, a0, 0xa5a6a7a8)
  ld a0, 504(sp)
  CHECK_EQ(58, a0, 0xa1a2a3a4a5a6a7a8)
  ld a0, 32(sp)
  CHECK_EQ(59, a0, 0xa5a6a7a8)
  ld a0, 40(sp)
  CHECK_EQ(60, a0, 0xa1a2a3a4a5a6a7a8)

  li a1, 0x5555
  c.mv a0, a1
  CHECK_EQ(61, a0, 0x5555)
  li t6, 3
  c.mv t5, t6
  CHECK_EQ(62, t5, 3)
  li a0, -1
  li a1, 0x5555
  c.add a0, a1
  CHECK_EQ(63, a0, 0x5554)

  li gp, 64
  la a1, 2f
  c.jr a1
  FAIL_NOW
2: li gp, 65
  la a1, 2f
1: c.jalr a1                      /* link = pc + 2 */
  FAIL_NOW
2: la a0, 1b
  addi a0, a0, 2
  bne ra, a0, __test_fail
  li gp, 66
  la ra, 2f
1: c.jalr ra                      /* rs1 == ra: old value is the target */
  FAIL_NOW
2: la a0, 1b
  addi a0, a0, 2
  bne ra, a0, __test_fail
  li gp, 67
  la a1, 2f + 1                   /* low bit ignored */
  c.jr a1
  FAIL_NOW
2:

  /* c.ebreak: breakpoint, mepc at the 2-byte instruction; resuming at
   * mepc + 2 runs the next instruction */
  la t0, skip_trap
  csrw mtvec, t0
  li a0, 0
  li gp, 68
1: c.ebreak
2: c.li a0, 9
  CHECK_EQ(68, s9, 3)
  la t0, 1b
  li gp, 69
  bne s10, t0, __test_fail
  CHECK_EQ(70, a0, 9)
  /* mtval: 0 or the address of the ebreak (both allowed) */
  li gp, 71
  beqz s11, 3f
  bne s11, t0, __test_fail
3:
  /* a faulting compressed load / store */
  li a1, UNMAPPED
  li a0, 0
1: c.lw a2, 4(a1)
  c.li a0, 11
  CHECK_EQ(72, s9, 5)
  la t0, 1b
  li gp, 73
  bne s10, t0, __test_fail
  CHECK_EQ(74, s11, UNMAPPED + 4)
  CHECK_EQ(75, a0, 11)
1: c.sd a1, 8(a1)
  c.li a0, 12
  CHECK_EQ(76, s9, 7)
  la t0, 1b
  li gp, 77
  bne s10, t0, __test_fail
  CHECK_EQ(78, s11, UNMAPPED + 8)
  CHECK_EQ(79, a0, 12)
  li sp, UNMAPPED
1: c.ldsp a0, 16(sp)
  c.li a0, 13
  CHECK_EQ(80, s9, 5)
  la t0, 1b
  li gp, 81
  bne s10, t0, __test_fail
  CHECK_EQ(82, s11, UNMAPPED + 16)
  CHECK_EQ(83, a0, 13)
  INSTALL_MTRAP

  /* reserved encodings */
  ILLEGAL16(84, 0x0000)           /* all zeros */
  ILLEGAL16(85, 0x0004)           /* c.addi4spn, nzuimm = 0 */
  ILLEGAL16(86, 0x6081)           /* c.lui ra, 0 */
  ILLEGAL16(87, 0x6101)           /* c.addi16sp, 0 */
  ILLEGAL16(88, 0x8002)           /* c.jr x0 */
  ILLEGAL16(89, 0x4002)           /* c.lwsp x0 */
  ILLEGAL16(90, 0x6002)           /* c.ldsp x0 */
  ILLEGAL16(91, 0x2001)           /* c.addiw x0 */
  ILLEGAL16(92, 0x9c41)           /* quadrant 1 reserved (funct2 = 10) */
  ILLEGAL16(93, 0x9c61)           /* quadrant 1 reserved (funct2 = 11) */

  /* HINTs execute as no-ops */
  li a0, 0x77
  .2byte 0x0005                   /* c.nop with nzimm = 1 */
  .2byte 0x0501                   /* c.addi a0, 0 */
  .2byte 0x4015                   /* c.li x0, 5 */
  .2byte 0x002a                   /* c.slli x0, 10 */
  .2byte 0x802a                   /* c.mv x0, a0 */
  .2byte 0x902a                   /* c.add x0, a0 */
  CHECK_EQ(94, a0, 0x77)
  CHECK_EQ(95, x0, 0)

  /* extreme offsets: c.beqz/c.bnez +254 / -256, c.j +2046 / -2048.
   * Bytes skipped over are zero (illegal), so a wrong target traps. */
  li gp, 96
  li a0, 0
  c.beqz a0, 1f
  .skip 252
1: li gp, 97
  li a0, 1
  c.j 2f
3: c.j 4f                         /* T */
  .skip 254
2: c.bnez a0, 3b                  /* T + 256 */
  .2byte 0
4: li gp, 98
  c.j 1f
  .skip 2044
1: li gp, 99
  j 2f
5: j 4f
3: c.j 5b                         /* T */
  .skip 2046
2: c.j 3b                         /* T + 2048 */
  .2byte 0
4: li a0, 100
  CHECK_EQ(100, a0, 100)
TEST_PASS

/* Record the trap, resume after the trapping instruction (2 or 4 bytes). */
  .balign 4
skip_trap:
  csrr s9, mcause
  csrr s10, mepc
  csrr s11, mtval
  lhu t5, 0(s10)
  andi t5, t5, 3
  addi t6, s10, 2
  li t4, 3
  bne t5, t4, 1f
  addi t6, t6, 2
1: csrw mepc, t6
  mret

TEST_END
TRAP_HANDLERS

  .data
  .balign 16
cdata:                            /* 64 dwords */
  .dword 0x1234567880000001       /* 0 */
  .rept 14                        /* 8 .. 119 */
  .dword 0x0808080808080808
  .endr
  .dword 0x7c7c7c7c7c7c7c7c       /* 120 */
  .fill 15, 8, 0                  /* 128 .. 247 */
  .dword 0xf8f8f8f8f8f8f8f8       /* 248 */
  .fill 31, 8, 0                  /* 256 .. 503 */
  .dword 0xf0f0f0f0f0f0f0f0       /* 504 */
  .balign 16
cbuf:
  .fill 64, 8, 0
