/* Expected-trap catcher for the vm_* and fp_* bare-metal tests
 * (include after common/test.h).
 *
 * CATCH_INSTALL points mtvec at a catcher that records the trap and resumes
 * M-mode code at the address held in s9 (then clears s9). A trap taken while
 * s9 == 0 is unexpected and fails the current test.
 *   s2 = mcause, s3 = mtval, s4 = mepc, s10 = mstatus (as seen by the catcher)
 * Tests must not keep values in s2, s3, s4, s9, s10 across a trap.
 */
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL      2
#define CAUSE_LOAD_ACCESS  5
#define CAUSE_STORE_ACCESS 7
#define CAUSE_ECALL_U      8
#define CAUSE_ECALL_S      9
#define CAUSE_ECALL_M      11
#define CAUSE_FETCH_PAGE   12
#define CAUSE_LOAD_PAGE    13
#define CAUSE_STORE_PAGE   15

#define MSTATUS_SIE   (1 << 1)
#define MSTATUS_SPP   (1 << 8)
#define MSTATUS_MPP   (3 << 11)
#define MSTATUS_FS    (3 << 13)
#define MSTATUS_MPRV  (1 << 17)
#define MSTATUS_SUM   (1 << 18)
#define MSTATUS_MXR   (1 << 19)
#define MSTATUS_TVM   (1 << 20)
#define MSTATUS_SD    (1 << 63)

/* Build with -DQEMU_QUIRKS to check a file on QEMU 7.2 where it differs
 * from the privileged spec (each such check is marked where it is used);
 * Lockstep's hart is held to the spec (built without it). */

#define CATCH_INSTALL                               \
        la t0, __catch_trap;                        \
        csrw mtvec, t0;                             \
        li s9, 0

/* Arm the catcher: the next trap resumes at `label` (in M-mode). */
#define EXPECT_TRAP(label) la s9, label

        .pushsection .text.catch, "ax", @progbits
        .balign 4
__catch_trap:
        csrr s2, mcause
        csrr s3, mtval
        csrr s4, mepc
        csrr s10, mstatus
        beqz s9, __test_fail
        mv t6, s9
        li s9, 0
        jr t6
        .popsection

/* Test n: the last trap had mcause == cause and mepc == address of `at`. */
.macro check_trap n, cause, at
        li gp, \n
        li t6, \cause
        bne s2, t6, __test_fail
        la t6, \at
        bne s4, t6, __test_fail
.endm
