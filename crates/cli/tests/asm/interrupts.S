/* Interrupts: mip/mie and the sip/sie views through mideleg, software
 * (SSIP via mip, MSIP via the CLINT), timer (MTIP via mtimecmp), S-level
 * pending bits written by M, priorities (MSI > MTI > SEI > SSI > STI; MEI
 * needs a PLIC and is not reachable here), the global-enable rules per
 * privilege mode, delegation to S, vectored mtvec, mcause bit 63, and WFI.
 * Nothing depends on how fast mtime runs: waits are bounded loops. */
#include "common/test.h"
#include "common/trap.h"
.option norvc

#define MIP_SSIP (1 << IRQ_SSI)
#define MIP_MSIP (1 << IRQ_MSI)
#define MIP_STIP (1 << IRQ_STI)
#define MIP_MTIP (1 << IRQ_MTI)
#define MIP_SEIP (1 << IRQ_SEI)
#define S_BITS   (MIP_SSIP | MIP_STIP | MIP_SEIP)

#define WAIT_LIMIT 10000000    /* generous: QEMU's mtime is host time */

#define MSIP_WRITE(v)  li t6, CLINT_MSIP; li t5, v; sw t5, 0(t6)
/* mtimecmp = mtime + delta */
#define TIMER_IN(delta)                             \
        li t6, CLINT_MTIME;                         \
        ld t5, 0(t6);                               \
        addi t5, t5, delta;                         \
        li t6, CLINT_MTIMECMP;                      \
        sd t5, 0(t6)
#define TIMER_NOW                                   \
        li t6, CLINT_MTIMECMP;                      \
        sd zero, 0(t6)

/* Spin until mip & bit, at most WAIT_LIMIT rounds; check n. */
#define WAIT_PENDING(n, bit)                        \
        li gp, n;                                   \
        li t1, WAIT_LIMIT;                          \
1:      csrr t0, mip;                               \
        andi t0, t0, bit;                           \
        bnez t0, 2f;                                \
        addi t1, t1, -1;                            \
        bnez t1, 1b;                                \
        j __test_fail;                              \
2:

/* Reset interrupt state: nothing pending, enabled or delegated. */
#define QUIET                                       \
        csrw mie, zero;                             \
        csrw mideleg, zero;                         \
        li t0, S_BITS;                              \
        csrc mip, t0;                               \
        li t0, MSTATUS_MIE | MSTATUS_SIE;           \
        csrc mstatus, t0;                           \
        MSIP_WRITE(0);                              \
        TIMER_OFF

TEST_BEGIN
  li gp, 1
  INSTALL_MTRAP
  INSTALL_STRAP
  PMP_OPEN_ALL
  csrw medeleg, zero
  QUIET

  /* ---- pending bits ---- */
  csrr a0, mip
  andi a0, a0, MIP_SSIP | MIP_MSIP | MIP_STIP | MIP_MTIP | MIP_SEIP
  CHECK_EQ(1, a0, 0)
  csrsi mip, MIP_SSIP
  csrr a0, mip
  andi a0, a0, MIP_SSIP
  CHECK_EQ(2, a0, MIP_SSIP)
  li t0, MIP_STIP | MIP_SEIP
  csrs mip, t0
  csrr a0, mip
  andi a0, a0, S_BITS
  CHECK_EQ(3, a0, S_BITS)
  li t0, S_BITS
  csrc mip, t0
  csrr a0, mip
  andi a0, a0, S_BITS
  CHECK_EQ(4, a0, 0)
  /* MSIP and MTIP come from the CLINT, not from CSR writes */
  li t0, MIP_MSIP | MIP_MTIP
  csrs mip, t0
  csrr a0, mip
  andi a0, a0, MIP_MSIP | MIP_MTIP
  CHECK_EQ(5, a0, 0)
  MSIP_WRITE(1)
  WAIT_PENDING(6, MIP_MSIP)
  li t6, CLINT_MSIP
  lw a0, 0(t6)
  CHECK_EQ(7, a0, 1)
  MSIP_WRITE(0)
  csrr a0, mip
  andi a0, a0, MIP_MSIP
  CHECK_EQ(8, a0, 0)
  TIMER_NOW
  WAIT_PENDING(9, MIP_MTIP)
  TIMER_OFF
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  CHECK_EQ(10, a0, 0)
  TIMER_IN(20)                        /* fires on its own a bit later */
  WAIT_PENDING(11, MIP_MTIP)
  TIMER_OFF

  /* ---- sip / sie are mip / mie masked by mideleg ---- */
  li t0, S_BITS
  csrw mie, t0
  csrs mip, t0
  csrr a0, sie
  CHECK_EQ(12, a0, 0)
  csrr a0, sip
  CHECK_EQ(13, a0, 0)
  li t0, MIP_SSIP | MIP_STIP
  csrw mideleg, t0
  csrr a0, sie
  CHECK_EQ(14, a0, MIP_SSIP | MIP_STIP)
  csrr a0, sip
  andi a0, a0, S_BITS
  CHECK_EQ(15, a0, MIP_SSIP | MIP_STIP)
  /* writes through sie touch only delegated bits */
  csrw mie, zero
  li t0, S_BITS
  csrw sie, t0
  CHECK_CSR(16, mie, MIP_SSIP | MIP_STIP)
  csrw sie, zero
  CHECK_CSR(17, mie, 0)
  /* sip: SSIP is writable when delegated, STIP/SEIP never */
  li t0, S_BITS
  csrc mip, t0
  li t0, S_BITS
  csrs sip, t0
  csrr a0, mip
  andi a0, a0, S_BITS
  CHECK_EQ(18, a0, MIP_SSIP)
  csrci sip, MIP_SSIP
  csrr a0, mip
  andi a0, a0, S_BITS
  CHECK_EQ(19, a0, 0)
  csrw mideleg, zero
  csrsi sip, MIP_SSIP                 /* not delegated: no effect */
  csrr a0, mip
  andi a0, a0, MIP_SSIP
  CHECK_EQ(20, a0, 0)
  /* S-mode sees the same view */
  li t0, MIP_SSIP
  csrs mip, t0
  EXPECT_TRAP(21, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrr a0, sip
  ecall
2: CHECK_EQ(21, s9, 9)
  CHECK_EQ(22, a0, 0)                 /* SSIP pending but not delegated */
  li t0, MIP_SSIP
  csrw mideleg, t0
  EXPECT_TRAP(23, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrr a0, sip
  csrci sip, MIP_SSIP
  ecall
2: CHECK_EQ(23, s9, 9)
  andi a0, a0, MIP_SSIP
  CHECK_EQ(24, a0, MIP_SSIP)
  csrr a0, mip
  andi a0, a0, MIP_SSIP
  CHECK_EQ(25, a0, 0)                 /* cleared by S */
  QUIET

  /* ---- M-mode: mie bit and mstatus.MIE both needed ---- */
  li gp, 26                           /* s7 = 0: any trap here fails */
  csrsi mip, MIP_SSIP
  li t0, MSTATUS_MIE
  csrs mstatus, t0                    /* pending, enabled globally, not in mie */
  nop
  csrc mstatus, t0
  csrsi mie, MIP_SSIP                 /* in mie, MIE = 0 */
  nop
  li t0, MSTATUS_MIE | MSTATUS_MPIE
  csrc mstatus, t0
  EXPECT_TRAP(26, 2f)
  csrsi mstatus, MSTATUS_MIE
3: FAIL_NOW
2: CHECK_EQ(26, s9, INTR | IRQ_SSI)
  la t0, 3b
  li gp, 27
  bne s10, t0, __test_fail            /* taken right after the enabling write */
  CHECK_EQ(28, s11, 0)
  andi a0, s8, MSTATUS_MIE | MSTATUS_MPIE
  CHECK_EQ(29, a0, MSTATUS_MPIE)
  li t0, MSTATUS_MPP
  and a0, s8, t0
  CHECK_EQ(30, a0, MSTATUS_MPP)
  QUIET
  /* STI and SEI set by M are taken the same way */
  li t0, MIP_STIP
  csrs mip, t0
  csrs mie, t0
  EXPECT_TRAP(31, 2f)
  csrsi mstatus, MSTATUS_MIE
  FAIL_NOW
2: CHECK_EQ(31, s9, INTR | IRQ_STI)
  QUIET
  li t0, MIP_SEIP
  csrs mip, t0
  csrs mie, t0
  EXPECT_TRAP(32, 2f)
  csrsi mstatus, MSTATUS_MIE
  FAIL_NOW
2: CHECK_EQ(32, s9, INTR | IRQ_SEI)
  QUIET
  /* MSI from the CLINT */
  csrsi mie, MIP_MSIP
  csrsi mstatus, MSTATUS_MIE
  EXPECT_TRAP(33, 2f)
  MSIP_WRITE(1)
  li t1, WAIT_LIMIT
1: addi t1, t1, -1
  bnez t1, 1b
  FAIL_NOW
2: CHECK_EQ(33, s9, INTR | IRQ_MSI)
  QUIET
  /* MTI from mtimecmp, waiting in wfi */
  li t0, MIP_MTIP
  csrs mie, t0
  csrsi mstatus, MSTATUS_MIE
  EXPECT_TRAP(34, 2f)
  TIMER_IN(20)
  li t1, WAIT_LIMIT
1: wfi
  addi t1, t1, -1
  bnez t1, 1b
  FAIL_NOW
2: CHECK_EQ(34, s9, INTR | IRQ_MTI)
  QUIET

  /* ---- priority among pending M-handled interrupts ----
   * All five pending and enabled; each trap must name the next interrupt
   * of prio_m (checks 36..40), whose source is then cleared. */
  MSIP_WRITE(1)
  TIMER_NOW
  li t0, S_BITS
  csrs mip, t0
  WAIT_PENDING(35, MIP_MSIP)
  WAIT_PENDING(35, MIP_MTIP)
  li t0, S_BITS | MIP_MSIP | MIP_MTIP
  csrw mie, t0
  la s0, prio_m
  li s1, 36
1: mv gp, s1
  la s7, 2f
  csrsi mstatus, MSTATUS_MIE
  FAIL_NOW
2: ld a0, 0(s0)
  li t0, INTR
  or t0, t0, a0
  bne s9, t0, __test_fail
  call clear_source
  addi s0, s0, 8
  addi s1, s1, 1
  li t0, 41
  bltu s1, t0, 1b
  QUIET

  /* ---- global enables in lower modes ---- */
  /* an M-handled interrupt is taken in S even with MIE = 0 */
  csrsi mip, MIP_SSIP
  csrsi mie, MIP_SSIP
  li t0, MSTATUS_MPIE
  csrc mstatus, t0                    /* MIE stays 0 after mret */
  EXPECT_TRAP(41, 2f)
  GOTO_MODE(PRV_S, 1f)
1: FAIL_NOW
2: CHECK_EQ(41, s9, INTR | IRQ_SSI)
  la t0, 1b
  li gp, 42
  bne s10, t0, __test_fail            /* before the first S instruction */
  li t0, MSTATUS_MPP
  and a0, s8, t0
  CHECK_EQ(43, a0, PRV_S << 11)
  QUIET
  /* ... and in U */
  MSIP_WRITE(1)
  WAIT_PENDING(44, MIP_MSIP)
  csrsi mie, MIP_MSIP
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  EXPECT_TRAP(45, 2f)
  GOTO_MODE(PRV_U, 1f)
1: FAIL_NOW
2: CHECK_EQ(45, s9, INTR | IRQ_MSI)
  la t0, 1b
  li gp, 46
  bne s10, t0, __test_fail
  li t0, MSTATUS_MPP
  and a0, s8, t0
  CHECK_EQ(47, a0, 0)
  QUIET
  /* timer in U with MIE = 0, reached while U spins */
  li t0, MIP_MTIP
  csrs mie, t0
  li t0, MSTATUS_MPIE
  csrc mstatus, t0
  li t1, WAIT_LIMIT
  EXPECT_TRAP(48, 2f)
  TIMER_IN(20)
  GOTO_MODE(PRV_U, 1f)
1: addi t1, t1, -1
  bnez t1, 1b
  FAIL_NOW
2: CHECK_EQ(48, s9, INTR | IRQ_MTI)
  QUIET

  /* ---- delegated interrupts ---- */
  /* never taken in M, even with MIE = 1 */
  li gp, 49                           /* s7 = 0: any trap here fails */
  li t0, MIP_SSIP
  csrw mideleg, t0
  csrs mie, t0
  csrs mip, t0
  csrsi mstatus, MSTATUS_MIE
  nop
  nop
  li t0, MSTATUS_MIE
  csrc mstatus, t0
  /* in S: only with SIE = 1; goes to stvec */
  li t0, MSTATUS_SIE
  csrc mstatus, t0
  EXPECT_TRAP(50, 2f)
  GOTO_MODE(PRV_S, 1f)
1: nop
  nop
  csrsi sstatus, MSTATUS_SIE
3: FAIL_NOW
2: /* in S */
  CHECK_EQ(50, s9, INTR | IRQ_SSI)
  la t0, 3b
  li gp, 51
  bne s10, t0, __test_fail
  andi a0, s8, MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP
  CHECK_EQ(52, a0, MSTATUS_SPIE | MSTATUS_SPP)
  csrr a0, scause
  CHECK_EQ(53, a0, INTR | IRQ_SSI)
  csrr a0, stval
  CHECK_EQ(54, a0, 0)
  csrci sip, MIP_SSIP                 /* S acknowledges its own interrupt */
  EXPECT_TRAP(55, 3f)
  ecall
3: CHECK_EQ(55, s9, 9)
  csrr a0, mip
  andi a0, a0, MIP_SSIP
  CHECK_EQ(56, a0, 0)
  /* in U: taken regardless of SIE */
  csrsi mip, MIP_SSIP
  li t0, MSTATUS_SIE
  csrc mstatus, t0
  EXPECT_TRAP(57, 2f)
  GOTO_MODE(PRV_U, 1f)
1: FAIL_NOW
2: CHECK_EQ(57, s9, INTR | IRQ_SSI)   /* in S */
  la t0, 1b
  li gp, 58
  bne s10, t0, __test_fail
  andi a0, s8, MSTATUS_SPP
  CHECK_EQ(59, a0, 0)
  csrci sip, MIP_SSIP
  EXPECT_TRAP(60, 3f)
  ecall
3: CHECK_EQ(60, s9, 9)
  /* an M-level interrupt beats a pending delegated one in S */
  csrsi mip, MIP_SSIP
  MSIP_WRITE(1)
  WAIT_PENDING(61, MIP_MSIP)
  li t0, MIP_MSIP | MIP_SSIP
  csrw mie, t0
  li t0, MSTATUS_SIE | MSTATUS_MPIE
  csrs mstatus, t0
  EXPECT_TRAP(62, 2f)
  GOTO_MODE(PRV_S, 1f)
1: FAIL_NOW
2: CHECK_EQ(62, s9, INTR | IRQ_MSI)
  li t0, MSTATUS_MPP
  and a0, s8, t0
  CHECK_EQ(63, a0, PRV_S << 11)
  QUIET
  /* priority among delegated ones, taken in S (checks 64..66 follow
   * prio_s); S returns to M with ecall and M clears the source */
  li t0, S_BITS
  csrw mideleg, t0
  csrw mie, t0
  csrs mip, t0
  la s0, prio_s
  li s1, 64
4: li t0, MSTATUS_SIE
  csrs mstatus, t0
  mv gp, s1
  la s7, 2f
  GOTO_MODE(PRV_S, 1f)
1: FAIL_NOW
2: ld a0, 0(s0)                       /* in S */
  li t0, INTR
  or t0, t0, a0
  bne s9, t0, __test_fail
  la s7, 3f
  ecall
3: li t0, 9                           /* in M */
  bne s9, t0, __test_fail
  call clear_source
  addi s0, s0, 8
  addi s1, s1, 1
  li t0, 67
  bltu s1, t0, 4b
  QUIET
  /* S-mode may take its next interrupt without leaving S */
  li t0, MIP_SSIP | MIP_STIP
  csrw mideleg, t0
  csrw mie, t0
  li t0, MIP_STIP
  csrs mip, t0
  EXPECT_TRAP(67, 2f)
  GOTO_MODE(PRV_S, 1f)
1: csrsi sip, MIP_SSIP                /* S raises its own software interrupt */
  csrsi sstatus, MSTATUS_SIE
  FAIL_NOW
2: CHECK_EQ(67, s9, INTR | IRQ_SSI)
  csrr a0, sstatus
  andi a0, a0, MSTATUS_SPP
  CHECK_EQ(68, a0, MSTATUS_SPP)
  EXPECT_TRAP(69, 3f)
  ecall
3: CHECK_EQ(69, s9, 9)
  QUIET

  /* ---- vectored mtvec: interrupt i goes to BASE + 4 * i ---- */
  la t0, vec_table
  ori t0, t0, 1
  csrw mtvec, t0
  li s6, -1
  csrsi mip, MIP_SSIP
  csrsi mie, MIP_SSIP
  EXPECT_TRAP(70, 2f)
  csrsi mstatus, MSTATUS_MIE
  FAIL_NOW
2: CHECK_EQ(70, s6, IRQ_SSI)
  CHECK_EQ(71, s9, INTR | IRQ_SSI)
  QUIET
  li s6, -1
  li t0, MIP_MTIP
  csrs mie, t0
  TIMER_NOW
  WAIT_PENDING(72, MIP_MTIP)
  EXPECT_TRAP(73, 2f)
  csrsi mstatus, MSTATUS_MIE
  FAIL_NOW
2: CHECK_EQ(73, s6, IRQ_MTI)
  QUIET
  li s6, -1
  EXPECT_TRAP(74, 2f)
  ecall                               /* exceptions use entry 0 */
  FAIL_NOW
2: CHECK_EQ(74, s6, 0)
  CHECK_EQ(75, s9, 11)
  INSTALL_MTRAP
  /* vectored stvec for a delegated interrupt */
  la t0, svec_table
  ori t0, t0, 1
  csrw stvec, t0
  li s6, -1
  li t0, MIP_STIP
  csrw mideleg, t0
  csrs mie, t0
  csrs mip, t0
  EXPECT_TRAP(76, 2f)
  GOTO_MODE(PRV_U, 1f)
1: FAIL_NOW
2: CHECK_EQ(76, s6, IRQ_STI)          /* in S */
  CHECK_EQ(77, s9, INTR | IRQ_STI)
  EXPECT_TRAP(78, 3f)
  ecall
3: CHECK_EQ(78, s9, 9)
  INSTALL_STRAP
  QUIET

  /* ---- WFI ---- */
  /* wakes for a pending interrupt enabled in mie even with MIE = 0; no
   * trap is taken (s7 = 0 makes any trap fail) */
  li s7, 0
  li t0, MIP_MTIP
  csrs mie, t0
  TIMER_IN(20)
  WAIT_PENDING(79, MIP_MTIP)          /* loop uses no wfi: sanity */
  TIMER_OFF
  TIMER_IN(20)
  li gp, 80
  li t1, WAIT_LIMIT
1: wfi
  csrr t0, mip
  andi t0, t0, MIP_MTIP
  bnez t0, 2f
  addi t1, t1, -1
  bnez t1, 1b
  FAIL_NOW
2: QUIET
  /* already pending: returns at once */
  csrsi mip, MIP_SSIP
  csrsi mie, MIP_SSIP
  li gp, 81                           /* s7 = 0: any trap here fails */
  wfi
  wfi
  QUIET
  /* in S with TW = 0: a delegated, enabled-but-masked interrupt wakes it */
  li t0, MIP_SSIP
  csrw mideleg, t0
  csrs mie, t0
  csrs mip, t0
  li t0, MSTATUS_SIE | MSTATUS_TW
  csrc mstatus, t0
  EXPECT_TRAP(82, 2f)
  GOTO_MODE(PRV_S, 1f)
1: wfi
  ecall
  FAIL_NOW
2: CHECK_EQ(82, s9, 9)
  QUIET
  /* an interrupt that arrives during wfi is taken after it: mepc is past
   * the wfi (wfi may also return early; then the spin takes it) */
  li t0, MIP_MTIP
  csrs mie, t0
  csrsi mstatus, MSTATUS_MIE
  EXPECT_TRAP(83, 2f)
  TIMER_IN(50)
3: wfi
4: li t1, WAIT_LIMIT
1: addi t1, t1, -1
  bnez t1, 1b
5: FAIL_NOW
2: CHECK_EQ(83, s9, INTR | IRQ_MTI)
  li gp, 84
  la t0, 4b
  bltu s10, t0, __test_fail
  la t0, 5b
  bgtu s10, t0, __test_fail
  QUIET
TEST_PASS

/* Clear the source of interrupt a0 (M-mode). */
clear_source:
  li t0, IRQ_MSI
  bne a0, t0, 1f
  MSIP_WRITE(0)
  li t1, WAIT_LIMIT                   /* MSIP must drop before going on */
3: csrr t0, mip
  andi t0, t0, MIP_MSIP
  beqz t0, 2f
  addi t1, t1, -1
  bnez t1, 3b
  j __test_fail
1: li t0, IRQ_MTI
  bne a0, t0, 1f
  TIMER_OFF
  ret
1: li t0, 1
  sll t0, t0, a0
  csrc mip, t0
2: ret

  /* vectored tables: entry i records i in s6 and joins the catcher */
  .balign 64
vec_table:
  .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
  j vec_entry_\i
  .endr
  .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
vec_entry_\i:
  li s6, \i
  j __mtrap_catch
  .endr
  .balign 64
svec_table:
  .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
  j svec_entry_\i
  .endr
  .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
svec_entry_\i:
  li s6, \i
  j __strap_catch
  .endr

TEST_END
TRAP_HANDLERS

  .data
  .balign 8
/* Order in which simultaneously pending interrupts must be taken. QEMU 7.2
 * (without AIA) takes the lowest-numbered pending interrupt first instead
 * of the spec's MEI, MSI, MTI, SEI, SSI, STI order. */
prio_m:
#ifdef QEMU_QUIRKS
  .dword IRQ_SSI, IRQ_MSI, IRQ_STI, IRQ_MTI, IRQ_SEI
#else
  .dword IRQ_MSI, IRQ_MTI, IRQ_SEI, IRQ_SSI, IRQ_STI
#endif
prio_s:
#ifdef QEMU_QUIRKS
  .dword IRQ_SSI, IRQ_STI, IRQ_SEI
#else
  .dword IRQ_SEI, IRQ_SSI, IRQ_STI
#endif
