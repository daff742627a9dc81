/* Harness for Lockstep's bare-metal hart tests (our own, HTIF convention).
 *
 * A test file:   #include "common/test.h"
 *                TEST_BEGIN
 *                  ... li gp, N before each check; CHECK_EQ etc ...
 *                TEST_PASS
 *                TEST_END
 * Register conventions: gp holds the current test number (reported on
 * failure); t5/t6 are scratch for the macros and must not be relied on
 * across a macro. Any unexpected trap fails with the current test number,
 * unless the test installs its own mtvec.
 */
#define TOHOST_PASS 1
/* Reported when a failure (e.g. an unexpected trap) happens before the
 * first check sets gp: gp = 0 would otherwise encode as a pass. */
#define TEST_NUM_EARLY 2047

/* Start in M-mode: install the failing trap handler, clear state. */
#define TEST_BEGIN                                  \
        .section .text.init;                        \
        .globl _start;                              \
_start:                                             \
        la t0, __unexpected_trap;                   \
        csrw mtvec, t0;                             \
        li gp, 0;                                   \
        j __test_body;                              \
        .align 2;                                   \
__unexpected_trap:                                  \
        j __test_fail;                              \
__test_body:

/* Report success to the host and spin. */
#define TEST_PASS                                   \
        li t6, TOHOST_PASS;                         \
        la t5, tohost;                              \
        sd t6, 0(t5);                               \
1:      j 1b

/* Shared tail: failure path and the tohost/fromhost words. */
#define TEST_END                                    \
__test_fail:                                        \
        bnez gp, 2f;                                \
        li gp, TEST_NUM_EARLY;                      \
2:      slli t6, gp, 1;                             \
        ori t6, t6, 1;                              \
        la t5, tohost;                              \
        sd t6, 0(t5);                               \
1:      j 1b;                                       \
        .pushsection .tohost, "aw", @progbits;      \
        .align 6; .globl tohost; tohost: .dword 0; .size tohost, 8; \
        .align 6; .globl fromhost; fromhost: .dword 0; .size fromhost, 8; \
        .popsection

#define FAIL_NOW j __test_fail

/* Test number n: fail unless reg == val (val: any 64-bit constant). */
#define CHECK_EQ(n, reg, val)                       \
        li gp, n;                                   \
        li t6, val;                                 \
        bne reg, t6, __test_fail

/* Test number n: fail unless CSR csr == val. */
#define CHECK_CSR(n, csr, val)                      \
        li gp, n;                                   \
        csrr t5, csr;                               \
        li t6, val;                                 \
        bne t5, t6, __test_fail
