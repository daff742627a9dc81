/* Trap-catching helpers for the integer-side hart tests (rv64*, zicsr,
 * traps, interrupts); include after common/test.h and put TRAP_HANDLERS
 * once after TEST_END. (The vm_* and fp_* tests use common/catch.h.)
 *
 * Registers reserved by these helpers (tests must not use them otherwise):
 *   s7  resume address: the next trap is expected and continues there
 *       (one shot; a trap while s7 == 0 fails the current test)
 *   s8  mstatus (or sstatus) as the trap left it
 *   s9  cause    s10  epc    s11  tval
 * The M catcher continues in M-mode, the S catcher in S-mode; both clobber
 * t5/t6.
 *
 * Typical use:
 *        EXPECT_TRAP(5, 1f)
 *        csrw mhartid, a0        # must trap
 *        FAIL_NOW
 *   1:   CHECK_EQ(5, s9, 2)
 *
 * QEMU_QUIRKS: QEMU 7.2 (our oracle) differs from the privileged spec in a
 * few places; building with -DQEMU_QUIRKS selects QEMU's behaviour for
 * exactly those checks (each is marked where it is used). Lockstep's hart
 * is held to the spec (built without it).
 */

#define MSTATUS_SIE   0x2
#define MSTATUS_MIE   0x8
#define MSTATUS_SPIE  0x20
#define MSTATUS_MPIE  0x80
#define MSTATUS_SPP   0x100
#define MSTATUS_MPP   0x1800
#define MSTATUS_FS    0x6000
#define MSTATUS_MPRV  0x20000
#define MSTATUS_SUM   0x40000
#define MSTATUS_MXR   0x80000
#define MSTATUS_TVM   0x100000
#define MSTATUS_TW    0x200000
#define MSTATUS_TSR   0x400000

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

/* Interrupt numbers; mip/mie bit i is 1 << i. */
#define IRQ_SSI 1
#define IRQ_MSI 3
#define IRQ_STI 5
#define IRQ_MTI 7
#define IRQ_SEI 9
#define IRQ_MEI 11
#define INTR (1 << 63)

#define CLINT_MSIP     0x02000000
#define CLINT_MTIMECMP 0x02004000
#define CLINT_MTIME    0x0200bff8

/* Make mtvec / stvec point at the catchers. */
#define INSTALL_MTRAP   la t6, __mtrap_catch; csrw mtvec, t6
#define INSTALL_STRAP   la t6, __strap_catch; csrw stvec, t6

/* Expect a trap (check n) that resumes at label. */
#define EXPECT_TRAP(n, label) li gp, n; la s7, label

/* Run one instruction that may or may not trap (e.g. an optional CSR);
 * needs the M catcher installed. Clobbers s7-s11 and local label 9. */
#define TRY(insn...) la s7, 9f; insn; 9: li s7, 0

/* From M-mode: drop to privilege mode `prv` at `label` through mret.
 * mstatus.MPIE is left as it is. */
#define GOTO_MODE(prv, label)                       \
        li t6, MSTATUS_MPP;                         \
        csrc mstatus, t6;                           \
        li t6, (prv) << 11;                         \
        csrs mstatus, t6;                           \
        la t6, label;                               \
        csrw mepc, t6;                              \
        mret

/* Let S/U-mode reach all memory: PMP entry 0 = NAPOT over everything,
 * RWX. Tolerates a hart without PMP (CSR access traps). */
#define PMP_OPEN_ALL                                \
        li t0, -1;                                  \
        TRY(csrw pmpaddr0, t0);                     \
        li t0, 0x1f;                                \
        TRY(csrw pmpcfg0, t0)

/* mtimecmp far in the future: no timer interrupt pending. */
#define TIMER_OFF                                   \
        li t6, CLINT_MTIMECMP;                      \
        li t5, -1;                                  \
        sd t5, 0(t6)

#define TRAP_HANDLERS                               \
        .text;                                      \
        .align 2;                                   \
__mtrap_catch:                                      \
        bnez s7, 1f;                                \
        j __test_fail;                              \
1:      csrr s9, mcause;                            \
        csrr s10, mepc;                             \
        csrr s11, mtval;                            \
        csrr s8, mstatus;                           \
        mv t6, s7;                                  \
        li s7, 0;                                   \
        jr t6;                                      \
        .align 2;                                   \
__strap_catch:                                      \
        bnez s7, 1f;                                \
        j __test_fail;                              \
1:      csrr s9, scause;                            \
        csrr s10, sepc;                             \
        csrr s11, stval;                            \
        csrr s8, sstatus;                           \
        mv t6, s7;                                  \
        li s7, 0;                                   \
        jr t6
