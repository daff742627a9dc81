/* F/D test support. Include after common/test.h and common/catch.h.
 *
 * Each check macro loads its operands into f1, f2, f4 (single-precision
 * patterns through fmv.w.x, i.e. NaN-boxed; doubles through fmv.d.x), runs
 * one instruction with its result in f3 (or a0), reads and clears fflags
 * into a1 right after it, and fails test n unless both the result bits and
 * the flags are exact. A single-precision result is checked as the whole
 * 64-bit register, so its NaN-boxing is checked too.
 * rm is a static rounding mode (rne, rtz, rdn, rup, rmm, dyn), or - for
 * instructions without one. Macro arguments must not contain spaces.
 */
#define F_NX 0x01
#define F_UF 0x02
#define F_OF 0x04
#define F_DZ 0x08
#define F_NV 0x10

#define FRM_RNE 0
#define FRM_RTZ 1
#define FRM_RDN 2
#define FRM_RUP 3
#define FRM_RMM 4

#define BOX 0xFFFFFFFF00000000

/* M-mode set-up: catcher, FS = Initial, fcsr = 0. */
.macro fp_setup
        CATCH_INSTALL
        li t0, MSTATUS_FS
        csrc mstatus, t0
        li t0, 1 << 13
        csrs mstatus, t0
        csrw fcsr, zero
.endm

/* freg = value: kind s = 32-bit pattern, NaN-boxed; d = 64-bit pattern
 * (also used to plant a raw, possibly not NaN-boxed, 64-bit pattern). */
.macro fset freg, kind, v
        li t0, \v
        .ifc \kind,s
        fmv.w.x \freg, t0
        .else
        fmv.d.x \freg, t0
        .endif
.endm

/* Test n: a0 == res and a1 (the flags) == flags. */
.macro fp_expect n, res, flags
        li gp, \n
        li t6, \res
        bne a0, t6, __test_fail
        li t6, \flags
        bne a1, t6, __test_fail
.endm

/* Test n: a1 = fflags (then cleared), a0 = f3 as 64 bits; result of kind
 * k (s: expected NaN-boxed). */
.macro fp_done n, k, res, flags
        csrrw a1, fflags, zero
        fmv.x.d a0, f3
        .ifc \k,s
        fp_expect \n, BOX|(\res), \flags
        .else
        fp_expect \n, \res, \flags
        .endif
.endm

/* Emit `op rd, rs...[, rm]`. */
.macro fp_emit op, rm, regs:vararg
        .ifc \rm,-
        \op \regs
        .else
        \op \regs, \rm
        .endif
.endm

/* f3 = op(a[, b[, c]]), result of kind k (s or d), operands of kind ka. */
.macro fop n, k, ka, op, rm, res, flags, a, b, c
        fset f1, \ka, \a
        .ifb \b
        fp_emit \op, \rm, f3, f1
        .else
        fset f2, \ka, \b
        .ifb \c
        fp_emit \op, \rm, f3, f1, f2
        .else
        fset f4, \ka, \c
        fp_emit \op, \rm, f3, f1, f2, f4
        .endif
        .endif
        fp_done \n, \k, \res, \flags
.endm

/* Single and double precision, 1-3 operands. */
.macro fs1 n, op, rm, a, res, flags
        fop \n, s, s, \op, \rm, \res, \flags, \a
.endm
.macro fs2 n, op, rm, a, b, res, flags
        fop \n, s, s, \op, \rm, \res, \flags, \a, \b
.endm
.macro fs3 n, op, rm, a, b, c, res, flags
        fop \n, s, s, \op, \rm, \res, \flags, \a, \b, \c
.endm
.macro fd1 n, op, rm, a, res, flags
        fop \n, d, d, \op, \rm, \res, \flags, \a
.endm
.macro fd2 n, op, rm, a, b, res, flags
        fop \n, d, d, \op, \rm, \res, \flags, \a, \b
.endm
.macro fd3 n, op, rm, a, b, c, res, flags
        fop \n, d, d, \op, \rm, \res, \flags, \a, \b, \c
.endm

/* Test n: integer result a0 = op(f1[, f2]) (compare, class, fcvt to int,
 * fmv to int); operands of kind k; res is the full 64-bit register. */
.macro fx n, k, op, rm, a, b, res, flags
        fset f1, \k, \a
        .ifb \b
        fp_emit \op, \rm, a0, f1
        .else
        fset f2, \k, \b
        fp_emit \op, \rm, a0, f1, f2
        .endif
        csrrw a1, fflags, zero
        fp_expect \n, \res, \flags
.endm

/* Test n: f3 = op(integer x) (fcvt from int, fmv from int), result kind k. */
.macro fi n, k, op, rm, x, res, flags
        li t1, \x
        fp_emit \op, \rm, f3, t1
        fp_done \n, \k, \res, \flags
.endm

/* Test n: f3 = op(f1) converting kind ka to kind k (fcvt.s.d, fcvt.d.s). */
.macro fcv n, k, ka, op, rm, a, res, flags
        fop \n, \k, \ka, \op, \rm, \res, \flags, \a
.endm

/* Set the dynamic rounding mode. */
.macro set_frm mode
        csrwi frm, \mode
.endm
