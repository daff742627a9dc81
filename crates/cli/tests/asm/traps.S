/* Synchronous traps and privilege transitions: ECALL from M/S/U, EBREAK,
 * illegal instructions (mtval = instruction bits), access faults on
 * unmapped physical memory, MRET/SRET effects on MIE/MPIE/MPP and
 * SIE/SPIE/SPP, medeleg to S (scause/sepc/stval, M CSRs untouched),
 * TSR / TW / TVM, and privileged instructions from lower modes.
 * (Instruction-address-misaligned cannot happen: C is always enabled.) */
#include "common/test.h"
#include "common/trap.h"
.option norvc

#define UNMAPPED 0x40000000

/* n: the trap just taken had cause `cause` and epc = address of `at`. */
#define CHECK_TRAP(n, cause, at)                    \
        CHECK_EQ(n, s9, cause);                     \
        la t0, at;                                  \
        bne s10, t0, __test_fail

/* n: illegal instruction at `at`, mtval = its encoding. */
#define CHECK_ILLEGAL_AT(n, at)                     \
        CHECK_TRAP(n, 2, at);                       \
        lwu t0, 0(t0);                              \
        bne s11, t0, __test_fail

/* n: run `insn` in mode prv; it must raise illegal-instruction into M. */
#define ILLEGAL_IN(n, prv, insn...)                 \
        EXPECT_TRAP(n, 2f);                         \
        GOTO_MODE(prv, 1f);                         \
1:      insn;                                       \
        FAIL_NOW;                                   \
2:      CHECK_ILLEGAL_AT(n, 1b)

/* mstatus field extraction into a0 from s8 (mstatus at the last trap). */
#define TRAP_MSTATUS(mask) li t0, mask; and a0, s8, t0

TEST_BEGIN
  li gp, 1
  INSTALL_MTRAP
  PMP_OPEN_ALL
  csrw medeleg, zero
  csrw mideleg, zero
  csrw mie, zero

  /* ---- ECALL ---- */
  EXPECT_TRAP(1, 2f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(1, 11, 1b)
  CHECK_EQ(2, s11, 0)
  TRAP_MSTATUS(MSTATUS_MPP)
  CHECK_EQ(3, a0, MSTATUS_MPP)             /* came from M */

  EXPECT_TRAP(4, 2f)
  GOTO_MODE(PRV_S, 1f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(4, 9, 1b)
  CHECK_EQ(5, s11, 0)
  TRAP_MSTATUS(MSTATUS_MPP)
  CHECK_EQ(6, a0, PRV_S << 11)

  EXPECT_TRAP(7, 2f)
  GOTO_MODE(PRV_U, 1f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(7, 8, 1b)
  CHECK_EQ(8, s11, 0)
  TRAP_MSTATUS(MSTATUS_MPP)
  CHECK_EQ(9, a0, PRV_U << 11)

  /* trap entry: MPIE <- MIE, MIE <- 0 */
  li t0, MSTATUS_MIE
  csrs mstatus, t0
  EXPECT_TRAP(10, 2f)
  ecall
2: TRAP_MSTATUS(MSTATUS_MIE | MSTATUS_MPIE)
  CHECK_EQ(10, a0, MSTATUS_MPIE)
  csrr a0, mstatus
  andi a0, a0, MSTATUS_MIE
  CHECK_EQ(11, a0, 0)
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  EXPECT_TRAP(12, 2f)
  ecall
2: TRAP_MSTATUS(MSTATUS_MIE | MSTATUS_MPIE)
  CHECK_EQ(12, a0, 0)

  /* ---- EBREAK ---- */
  EXPECT_TRAP(13, 2f)
1: ebreak
  FAIL_NOW
2: CHECK_TRAP(13, 3, 1b)
  /* mtval: zero or the ebreak's address (both allowed by the spec) */
  li gp, 14
  beqz s11, 3f
  bne s11, t0, __test_fail
3: EXPECT_TRAP(15, 2f)
  GOTO_MODE(PRV_U, 1f)
1: ebreak
  FAIL_NOW
2: CHECK_TRAP(15, 3, 1b)
  TRAP_MSTATUS(MSTATUS_MPP)
  CHECK_EQ(16, a0, 0)

  /* ---- illegal instructions: mtval = the instruction bits ---- */
  EXPECT_TRAP(17, 2f)
1: .word 0xffffffff
  FAIL_NOW
2: CHECK_ILLEGAL_AT(17, 1b)
  CHECK_EQ(18, s11, 0xffffffff)
  EXPECT_TRAP(19, 2f)
1: .word 0x0000000b                        /* custom-0 opcode */
  FAIL_NOW
2: CHECK_ILLEGAL_AT(19, 1b)
  CHECK_EQ(20, s11, 0xb)
  EXPECT_TRAP(21, 2f)
1: .word 0xfe000033                        /* OP with funct7 = 0x7f */
  FAIL_NOW
2: CHECK_ILLEGAL_AT(21, 1b)
  EXPECT_TRAP(22, 2f)
1: .word 0x0000005b                        /* custom-2 opcode */
  FAIL_NOW
2: CHECK_ILLEGAL_AT(22, 1b)
  /* FP instructions and fcsr with mstatus.FS = Off */
  li t0, MSTATUS_FS
  csrc mstatus, t0
  EXPECT_TRAP(23, 2f)
1: fadd.d f0, f0, f0
  FAIL_NOW
2: CHECK_ILLEGAL_AT(23, 1b)
  EXPECT_TRAP(24, 2f)
1: csrr a0, fcsr
  FAIL_NOW
2: CHECK_ILLEGAL_AT(24, 1b)
  EXPECT_TRAP(25, 2f)
1: fmv.x.d a0, f1
  FAIL_NOW
2: CHECK_ILLEGAL_AT(25, 1b)
  /* a trapping instruction does not write rd */
  li a0, 0x4321
  EXPECT_TRAP(26, 2f)
1: .word 0xfe000533                        /* "add a0" with bad funct7 */
  FAIL_NOW
2: CHECK_ILLEGAL_AT(26, 1b)
  CHECK_EQ(27, a0, 0x4321)

  /* ---- access faults on unmapped physical memory ---- */
  li a1, UNMAPPED
  li a0, 0x99
  EXPECT_TRAP(28, 2f)
1: ld a0, 0x10(a1)
  FAIL_NOW
2: CHECK_TRAP(28, 5, 1b)
  CHECK_EQ(29, s11, UNMAPPED + 0x10)
  CHECK_EQ(30, a0, 0x99)
  EXPECT_TRAP(31, 2f)
1: lbu a0, -1(a1)
  FAIL_NOW
2: CHECK_TRAP(31, 5, 1b)
  CHECK_EQ(32, s11, UNMAPPED - 1)
  EXPECT_TRAP(33, 2f)
1: sw a0, 8(a1)
  FAIL_NOW
2: CHECK_TRAP(33, 7, 1b)
  CHECK_EQ(34, s11, UNMAPPED + 8)
  EXPECT_TRAP(35, 2f)
1: sb a0, 0(a1)
  FAIL_NOW
2: CHECK_TRAP(35, 7, 1b)
  CHECK_EQ(36, s11, UNMAPPED)
  /* instruction fetch: mepc = mtval = the target */
  EXPECT_TRAP(37, 2f)
  la ra, 0
  jalr ra, 0(a1)
  FAIL_NOW
2: CHECK_EQ(37, s9, 1)
  CHECK_EQ(38, s10, UNMAPPED)
  CHECK_EQ(39, s11, UNMAPPED)
  /* the jump itself retired and linked */
  li gp, 40
  beqz ra, __test_fail
  /* the same from S-mode */
  EXPECT_TRAP(41, 2f)
  GOTO_MODE(PRV_S, 1f)
1: lw a0, 0x20(a1)
  FAIL_NOW
2: CHECK_TRAP(41, 5, 1b)
  CHECK_EQ(42, s11, UNMAPPED + 0x20)
  TRAP_MSTATUS(MSTATUS_MPP)
  CHECK_EQ(43, a0, PRV_S << 11)
  EXPECT_TRAP(44, 2f)
  GOTO_MODE(PRV_U, 1f)
1: sd a0, 0x28(a1)
  FAIL_NOW
2: CHECK_TRAP(44, 7, 1b)
  CHECK_EQ(45, s11, UNMAPPED + 0x28)

  /* ---- MRET ---- */
  /* to M: MIE <- MPIE, MPIE <- 1, MPP <- U */
  li t0, MSTATUS_MPP | MSTATUS_MPIE
  csrs mstatus, t0
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  la t0, 1f
  csrw mepc, t0
  mret
  FAIL_NOW
1: csrr a0, mstatus
  andi a1, a0, MSTATUS_MIE
  CHECK_EQ(46, a1, MSTATUS_MIE)
  andi a1, a0, MSTATUS_MPIE
  CHECK_EQ(47, a1, MSTATUS_MPIE)
  li t0, MSTATUS_MPP
  and a1, a0, t0
  CHECK_EQ(48, a1, 0)
  li t0, MSTATUS_MPP
  csrs mstatus, t0
  li t0, MSTATUS_MPIE | MSTATUS_MIE
  csrc mstatus, t0
  la t0, 1f
  csrw mepc, t0
  mret
  FAIL_NOW
1: csrr a0, mstatus
  andi a1, a0, MSTATUS_MIE | MSTATUS_MPIE
  CHECK_EQ(49, a1, MSTATUS_MPIE)
  /* to S: the MIE value set by mret shows up as MPIE at the next trap */
  li t0, MSTATUS_MPIE
  csrs mstatus, t0
  EXPECT_TRAP(50, 2f)
  GOTO_MODE(PRV_S, 1f)
1: ecall
2: CHECK_EQ(50, s9, 9)
  TRAP_MSTATUS(MSTATUS_MPIE)
  CHECK_EQ(51, a0, MSTATUS_MPIE)
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  EXPECT_TRAP(52, 2f)
  GOTO_MODE(PRV_S, 1f)
1: ecall
2: CHECK_EQ(52, s9, 9)
  TRAP_MSTATUS(MSTATUS_MPIE)
  CHECK_EQ(53, a0, 0)
#ifndef QEMU_QUIRKS
  /* MRET to a mode below M clears MPRV (QEMU 7.2 leaves it set) */
  li t0, MSTATUS_MPRV
  csrs mstatus, t0
  EXPECT_TRAP(54, 2f)
  GOTO_MODE(PRV_U, 1f)
1: ecall
2: CHECK_EQ(54, s9, 8)
  TRAP_MSTATUS(MSTATUS_MPRV)
  CHECK_EQ(55, a0, 0)
#endif
  li t0, MSTATUS_MPRV
  csrc mstatus, t0
  /* MRET from M to M keeps MPRV */
  li t0, MSTATUS_MPRV | MSTATUS_MPP
  csrs mstatus, t0
  la t0, 1f
  csrw mepc, t0
  mret
1: csrr a0, mstatus
  li t0, MSTATUS_MPRV
  and a0, a0, t0
  CHECK_EQ(56, a0, MSTATUS_MPRV)
  li t0, MSTATUS_MPRV
  csrc mstatus, t0

  /* ---- SRET ---- */
  /* from M (allowed): goes to SPP's mode at sepc */
  li t0, MSTATUS_SPP
  csrs mstatus, t0
  la t0, 1f
  csrw sepc, t0
  EXPECT_TRAP(57, 2f)
  sret
  FAIL_NOW
1: ecall
2: CHECK_EQ(57, s9, 9)
  li t0, MSTATUS_SPP
  csrc mstatus, t0
  la t0, 1f
  csrw sepc, t0
  EXPECT_TRAP(58, 2f)
  sret
  FAIL_NOW
1: ecall
2: CHECK_EQ(58, s9, 8)
  /* S to S: SIE <- SPIE, SPIE <- 1, SPP <- U */
  li a1, MSTATUS_SPP | MSTATUS_SPIE
  li a2, MSTATUS_SIE
  la a3, 3f
  EXPECT_TRAP(59, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrs sstatus, a1
  csrc sstatus, a2
  csrw sepc, a3
  sret
  FAIL_NOW
3: csrr a0, sstatus
  csrc sstatus, a2                        /* SIE off again */
  ecall
2: CHECK_EQ(59, s9, 9)
  andi a1, a0, MSTATUS_SIE
  CHECK_EQ(60, a1, MSTATUS_SIE)
  andi a1, a0, MSTATUS_SPIE
  CHECK_EQ(61, a1, MSTATUS_SPIE)
  andi a1, a0, MSTATUS_SPP
  CHECK_EQ(62, a1, 0)
  /* S to U */
  li a1, MSTATUS_SPP
  la a3, 3f
  EXPECT_TRAP(63, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrc sstatus, a1
  csrw sepc, a3
  sret
  FAIL_NOW
3: ecall
2: CHECK_EQ(63, s9, 8)
  la t0, 3b
  li gp, 64
  bne s10, t0, __test_fail

  /* ---- xRET and privileged instructions from lower modes ---- */
  ILLEGAL_IN(65, PRV_S, mret)
  ILLEGAL_IN(66, PRV_U, mret)
  ILLEGAL_IN(67, PRV_U, sret)
  ILLEGAL_IN(68, PRV_U, sfence.vma)
  ILLEGAL_IN(69, PRV_U, csrr a0, satp)
  ILLEGAL_IN(70, PRV_S, csrr a0, mstatus)
  ILLEGAL_IN(71, PRV_S, csrw mtvec, a0)
  ILLEGAL_IN(72, PRV_S, csrr a0, medeleg)
  ILLEGAL_IN(73, PRV_U, csrr a0, sscratch)
  ILLEGAL_IN(74, PRV_U, csrr a0, mscratch)

  /* TSR: sret in S traps; in M it does not */
  li t0, MSTATUS_TSR
  csrs mstatus, t0
  ILLEGAL_IN(75, PRV_S, sret)
  li t0, MSTATUS_SPP
  csrs mstatus, t0
  la t0, 1f
  csrw sepc, t0
  EXPECT_TRAP(76, 2f)
  sret
  FAIL_NOW
1: ecall
2: CHECK_EQ(76, s9, 9)
  li t0, MSTATUS_TSR
  csrc mstatus, t0
  /* TW: wfi in S or U traps */
  li t0, MSTATUS_TW
  csrs mstatus, t0
  ILLEGAL_IN(77, PRV_S, wfi)
  ILLEGAL_IN(78, PRV_U, wfi)
  li t0, MSTATUS_TW
  csrc mstatus, t0
  /* TVM: satp and sfence.vma in S trap */
  li t0, MSTATUS_TVM
  csrs mstatus, t0
  ILLEGAL_IN(79, PRV_S, csrr a0, satp)
  ILLEGAL_IN(80, PRV_S, csrw satp, zero)
  ILLEGAL_IN(81, PRV_S, sfence.vma)
  ILLEGAL_IN(82, PRV_S, sfence.vma a0, a1)
  li t0, MSTATUS_TVM
  csrc mstatus, t0
  /* without TVM, S may use them */
  EXPECT_TRAP(83, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrr a0, satp
  sfence.vma
  ecall
2: CHECK_EQ(83, s9, 9)

  /* ---- delegation to S ---- */
  INSTALL_STRAP
  li t0, (1 << 8) | (1 << 2)              /* ecall from U, illegal */
  csrw medeleg, t0
  li t0, MSTATUS_SIE
  csrs mstatus, t0
  EXPECT_TRAP(84, 2f)
  GOTO_MODE(PRV_U, 1f)
1: ecall
  FAIL_NOW
2: /* in S now, through stvec */
  CHECK_TRAP(84, 8, 1b)
  csrr a0, scause
  CHECK_EQ(84, a0, 8)
  CHECK_EQ(85, s11, 0)
  andi a0, s8, MSTATUS_SPP
  CHECK_EQ(86, a0, 0)                     /* from U */
  andi a0, s8, MSTATUS_SIE | MSTATUS_SPIE
  CHECK_EQ(87, a0, MSTATUS_SPIE)
  EXPECT_TRAP(88, 3f)
  ecall                                   /* S -> M */
3: CHECK_EQ(88, s9, 9)
  CHECK_CSR(89, mcause, 9)
  EXPECT_TRAP(90, 2f)
  GOTO_MODE(PRV_U, 1f)
1: .word 0xffffffff
  FAIL_NOW
2: CHECK_TRAP(90, 2, 1b)                  /* in S */
  CHECK_EQ(91, s11, 0xffffffff)           /* stval = instruction bits */
  csrr a0, scause
  CHECK_EQ(92, a0, 2)
  csrr a0, sepc
  la t0, 1b
  li gp, 93
  bne a0, t0, __test_fail
  EXPECT_TRAP(94, 3f)
  ecall                                   /* S -> M; M sees the ecall only */
3: CHECK_EQ(94, s9, 9)
  li gp, 95
  la t0, 3b
  addi t0, t0, -4
  bne s10, t0, __test_fail
  /* delegated exception raised in S stays in S (SPP = S) */
  EXPECT_TRAP(96, 2f)
  GOTO_MODE(PRV_S, 1f)
1: .word 0xffffffff
  FAIL_NOW
2: CHECK_TRAP(96, 2, 1b)
  andi a0, s8, MSTATUS_SPP
  CHECK_EQ(97, a0, MSTATUS_SPP)
  EXPECT_TRAP(98, 3f)
  ecall
3: CHECK_EQ(98, s9, 9)
  /* undelegated causes still go to M (ecall from S: bit 9 clear) */
  EXPECT_TRAP(99, 2f)
  GOTO_MODE(PRV_S, 1f)
1: ebreak
  FAIL_NOW
2: CHECK_TRAP(99, 3, 1b)
  /* M-mode traps are never delegated */
  li t0, (1 << 8) | (1 << 2) | (1 << 3)
  csrw medeleg, t0
  EXPECT_TRAP(100, 2f)
1: .word 0xffffffff
  FAIL_NOW
2: CHECK_ILLEGAL_AT(100, 1b)
  EXPECT_TRAP(101, 2f)
1: ebreak
  FAIL_NOW
2: CHECK_TRAP(101, 3, 1b)
  /* ecall from S delegated to S */
  li t0, 1 << 9
  csrw medeleg, t0
  EXPECT_TRAP(102, 2f)
  GOTO_MODE(PRV_S, 1f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(102, 9, 1b)                 /* in S */
  EXPECT_TRAP(103, 3f)
  ebreak                                  /* not delegated: back to M */
3: CHECK_EQ(103, s9, 3)
  csrw medeleg, zero
  li t0, MSTATUS_SIE
  csrc mstatus, t0

  /* ---- vectored mtvec: exceptions still go to BASE ---- */
  la t0, vec_table
  ori t0, t0, 1
  csrw mtvec, t0
  EXPECT_TRAP(104, 2f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(104, 11, 1b)
  EXPECT_TRAP(105, 2f)
1: .word 0xffffffff
  FAIL_NOW
2: CHECK_TRAP(105, 2, 1b)
  INSTALL_MTRAP
  /* vectored stvec likewise for a delegated exception */
  la t0, __strap_catch
  ori t0, t0, 1
  csrw stvec, t0
  li t0, 1 << 8
  csrw medeleg, t0
  EXPECT_TRAP(106, 2f)
  GOTO_MODE(PRV_U, 1f)
1: ecall
  FAIL_NOW
2: CHECK_TRAP(106, 8, 1b)
  EXPECT_TRAP(107, 3f)
  ecall
3: CHECK_EQ(107, s9, 9)
  csrw medeleg, zero
TEST_PASS

  /* vectored M table: entry 0 (exceptions) goes to the catcher, any
   * interrupt entry fails */
  .balign 64
vec_table:
  j __mtrap_catch
  .rept 15
  j __test_fail
  .endr

TEST_END
TRAP_HANDLERS
