/* Single-precision arithmetic: fadd, fsub, fmul, fdiv, fsqrt. Special operands
 * (signed zeros, infinities, quiet/signaling NaNs), ties and inexact
 * results in all five static rounding modes and through frm (dyn),
 * overflow, underflow with tininess detected after rounding, and
 * subnormal inputs and outputs. Every check compares the result bits
 * and fflags. Expected values derived from IEEE 754-2008 and the
 * RISC-V F/D chapters; confirmed on QEMU 7.2 (SoftFloat). */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

TEST_BEGIN
        fp_setup

        /* ---- fadd / fsub ---- */
        fs2 1, fadd.s, rne, 0x3F800000, 0x40000000, 0x40400000, 0 /* 1 + 2 = 3 */
        fs2 2, fadd.s, rne, 0x3FC00000, 0x40100000, 0x40700000, 0 /* 1.5 + 2.25, exact */
        fs2 3, fsub.s, rne, 0x40000000, 0x40400000, 0xBF800000, 0 /* 2 - 3 = -1 */
        fs2 4, fadd.s, rne, 0xBF800000, 0x3F800000, 0x00000000, 0 /* exact zero: +0 */
        /* exact zero rounding down: -0 */
        fs2 5, fadd.s, rdn, 0xBF800000, 0x3F800000, 0x80000000, 0
        fs2 6, fsub.s, rne, 0x3F800000, 0x3F800000, 0x00000000, 0 /* +0 */
        fs2 7, fsub.s, rdn, 0x3F800000, 0x3F800000, 0x80000000, 0 /* -0 */
        fs2 8, fadd.s, rne, 0x80000000, 0x80000000, 0x80000000, 0 /* -0 + -0 = -0 */
        fs2 9, fadd.s, rne, 0x00000000, 0x80000000, 0x00000000, 0 /* +0 + -0 = +0 */
        /* ... but -0 rounding down */
        fs2 10, fadd.s, rdn, 0x00000000, 0x80000000, 0x80000000, 0
        fs2 11, fsub.s, rne, 0x80000000, 0x00000000, 0x80000000, 0 /* -0 - +0 = -0 */
        fs2 12, fsub.s, rup, 0x00000000, 0x00000000, 0x00000000, 0 /* +0 - +0 = +0 */
        fs2 13, fadd.s, rne, 0x7F800000, 0x3F800000, 0x7F800000, 0
        fs2 14, fadd.s, rne, 0x7F800000, 0xFF800000, 0x7FC00000, F_NV /* inf - inf: invalid */
        fs2 15, fsub.s, rne, 0x7F800000, 0x7F800000, 0x7FC00000, F_NV /* invalid */
        fs2 16, fsub.s, rne, 0xFF800000, 0x7F800000, 0xFF800000, 0
        fs2 17, fadd.s, rne, 0x7FC00000, 0x3F800000, 0x7FC00000, 0 /* quiet NaN: no flag */
        fs2 18, fadd.s, rne, 0x3F800000, 0x7FC12345, 0x7FC00000, 0 /* payload not propagated */
        /* negative NaN in, canonical out */
        fs2 19, fadd.s, rne, 0xFFC00000, 0x3F800000, 0x7FC00000, 0
        /* signaling NaN: invalid */
        fs2 20, fadd.s, rne, 0x7F800001, 0x3F800000, 0x7FC00000, F_NV
        /* any sNaN operand: invalid */
        fs2 21, fsub.s, rne, 0x7FC00000, 0x7F805A5A, 0x7FC00000, F_NV
        fs2 22, fadd.s, rne, 0x7F800000, 0x7F800001, 0x7FC00000, F_NV
        fs2 23, fadd.s, rne, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* 1 + ulp/2: tie */
        fs2 24, fadd.s, rtz, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* 1 + ulp/2: tie */
        fs2 25, fadd.s, rdn, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* 1 + ulp/2: tie */
        fs2 26, fadd.s, rup, 0x3F800000, 0x33800000, 0x3F800001, F_NX /* 1 + ulp/2: tie */
        fs2 27, fadd.s, rmm, 0x3F800000, 0x33800000, 0x3F800001, F_NX /* 1 + ulp/2: tie */
        fs2 28, fadd.s, rne, 0xBF800000, 0xB3800000, 0xBF800000, F_NX /* -1 - ulp/2: tie */
        fs2 29, fadd.s, rtz, 0xBF800000, 0xB3800000, 0xBF800000, F_NX /* -1 - ulp/2: tie */
        fs2 30, fadd.s, rdn, 0xBF800000, 0xB3800000, 0xBF800001, F_NX /* -1 - ulp/2: tie */
        fs2 31, fadd.s, rup, 0xBF800000, 0xB3800000, 0xBF800000, F_NX /* -1 - ulp/2: tie */
        fs2 32, fadd.s, rmm, 0xBF800000, 0xB3800000, 0xBF800001, F_NX /* -1 - ulp/2: tie */
        /* tie, odd -> rounds up to even */
        fs2 33, fadd.s, rne, 0x3F800001, 0x33800000, 0x3F800002, F_NX
        fs2 34, fadd.s, rmm, 0x3F800001, 0x33800000, 0x3F800002, F_NX
        fs2 35, fadd.s, rtz, 0x3F800001, 0x33800000, 0x3F800001, F_NX
        fs2 36, fadd.s, rne, 0x3F800000, 0x33C00000, 0x3F800001, F_NX /* 1 + 3/4 ulp */
        fs2 37, fadd.s, rtz, 0x3F800000, 0x33C00000, 0x3F800000, F_NX /* 1 + 3/4 ulp */
        fs2 38, fadd.s, rdn, 0x3F800000, 0x33C00000, 0x3F800000, F_NX /* 1 + 3/4 ulp */
        fs2 39, fadd.s, rup, 0x3F800000, 0x33C00000, 0x3F800001, F_NX /* 1 + 3/4 ulp */
        fs2 40, fadd.s, rmm, 0x3F800000, 0x33C00000, 0x3F800001, F_NX /* 1 + 3/4 ulp */
        /* 1 - ulp/4 (below 1: tie) */
        fs2 41, fsub.s, rne, 0x3F800000, 0x33000000, 0x3F800000, F_NX
        fs2 42, fadd.s, rne, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 43, fadd.s, rtz, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fs2 44, fadd.s, rdn, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fs2 45, fadd.s, rup, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 46, fadd.s, rmm, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        /* negative overflow */
        fs2 47, fadd.s, rne, 0xFF7FFFFF, 0xFF7FFFFF, 0xFF800000, F_OF|F_NX
        /* negative overflow */
        fs2 48, fadd.s, rtz, 0xFF7FFFFF, 0xFF7FFFFF, 0xFF7FFFFF, F_OF|F_NX
        /* negative overflow */
        fs2 49, fadd.s, rdn, 0xFF7FFFFF, 0xFF7FFFFF, 0xFF800000, F_OF|F_NX
        /* negative overflow */
        fs2 50, fadd.s, rup, 0xFF7FFFFF, 0xFF7FFFFF, 0xFF7FFFFF, F_OF|F_NX
        /* negative overflow */
        fs2 51, fadd.s, rmm, 0xFF7FFFFF, 0xFF7FFFFF, 0xFF800000, F_OF|F_NX
        /* MAX + half ulp: tie rounds to 2^(emax+1) */
        fs2 52, fadd.s, rne, 0x7F7FFFFF, 0x73000000, 0x7F800000, F_OF|F_NX
        fs2 53, fadd.s, rtz, 0x7F7FFFFF, 0x73000000, 0x7F7FFFFF, F_NX /* inexact, no overflow */
        fs2 54, fadd.s, rne, 0x00000001, 0x00000001, 0x00000002, 0 /* subnormals, exact */
        /* normal - subnormal = max subnormal, exact */
        fs2 55, fsub.s, rne, 0x00800000, 0x00000001, 0x007FFFFF, 0
        /* max subnormal + min subnormal = min normal */
        fs2 56, fadd.s, rne, 0x007FFFFF, 0x00000001, 0x00800000, 0
        fs2 57, fsub.s, rne, 0x00000001, 0x00000001, 0x00000000, 0
        /* 1 + tiny: inexact only */
        fs2 58, fadd.s, rne, 0x3F800000, 0x00000001, 0x3F800000, F_NX
        fs2 59, fadd.s, rup, 0x3F800000, 0x00000001, 0x3F800001, F_NX
        fs2 60, fsub.s, rdn, 0x3F800000, 0x00000001, 0x3F7FFFFF, F_NX

        /* ---- fmul ---- */
        fs2 61, fmul.s, rne, 0x40000000, 0x40400000, 0x40C00000, 0
        fs2 62, fmul.s, rne, 0xC0000000, 0x40400000, 0xC0C00000, 0
        fs2 63, fmul.s, rne, 0x3FC00000, 0x3FC00000, 0x40100000, 0
        fs2 64, fmul.s, rne, 0x80000000, 0x40A00000, 0x80000000, 0 /* -0 * 5 = -0 */
        fs2 65, fmul.s, rne, 0xBF800000, 0x00000000, 0x80000000, 0
        fs2 66, fmul.s, rne, 0x00000000, 0xFF800000, 0x7FC00000, F_NV /* 0 * inf: invalid */
        fs2 67, fmul.s, rne, 0xFF800000, 0x00000000, 0x7FC00000, F_NV
        fs2 68, fmul.s, rne, 0x7F800000, 0xC0000000, 0xFF800000, 0
        fs2 69, fmul.s, rne, 0x7FC00000, 0x00000000, 0x7FC00000, 0
        fs2 70, fmul.s, rne, 0x3F800000, 0x7F800001, 0x7FC00000, F_NV
        fs2 71, fmul.s, rne, 0x3F800001, 0x3F800001, 0x3F800002, F_NX /* (1+u)^2 = 1+2u+u^2 */
        fs2 72, fmul.s, rup, 0x3F800001, 0x3F800001, 0x3F800003, F_NX
        fs2 73, fmul.s, rne, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 74, fmul.s, rtz, 0x7F7FFFFF, 0x40000000, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fs2 75, fmul.s, rdn, 0x7F7FFFFF, 0x40000000, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fs2 76, fmul.s, rup, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 77, fmul.s, rmm, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 78, fmul.s, rdn, 0x7F7FFFFF, 0xC0000000, 0xFF800000, F_OF|F_NX
        fs2 79, fmul.s, rup, 0x7F7FFFFF, 0xC0000000, 0xFF7FFFFF, F_OF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fs2 80, fmul.s, rne, 0x3F800001, 0x007FFFFF, 0x00800000, F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fs2 81, fmul.s, rtz, 0x3F800001, 0x007FFFFF, 0x007FFFFF, F_UF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fs2 82, fmul.s, rdn, 0x3F800001, 0x007FFFFF, 0x007FFFFF, F_UF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fs2 83, fmul.s, rup, 0x3F800001, 0x007FFFFF, 0x00800000, F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fs2 84, fmul.s, rmm, 0x3F800001, 0x007FFFFF, 0x00800000, F_NX
        /* min subnormal / 2: tie */
        fs2 85, fmul.s, rne, 0x00000001, 0x3F000000, 0x00000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fs2 86, fmul.s, rtz, 0x00000001, 0x3F000000, 0x00000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fs2 87, fmul.s, rdn, 0x00000001, 0x3F000000, 0x00000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fs2 88, fmul.s, rup, 0x00000001, 0x3F000000, 0x00000001, F_UF|F_NX
        /* min subnormal / 2: tie */
        fs2 89, fmul.s, rmm, 0x00000001, 0x3F000000, 0x00000001, F_UF|F_NX
        fs2 90, fmul.s, rne, 0x80000001, 0x3F000000, 0x80000000, F_UF|F_NX
        fs2 91, fmul.s, rdn, 0x80000001, 0x3F000000, 0x80000001, F_UF|F_NX
        /* 3 * minsub / 2: tie to even */
        fs2 92, fmul.s, rne, 0x00000003, 0x3F000000, 0x00000002, F_UF|F_NX
        /* exact subnormal: no flags */
        fs2 93, fmul.s, rne, 0x00000004, 0x3F000000, 0x00000002, 0
        fs2 94, fmul.s, rne, 0x00800000, 0x3F000000, 0x00400000, 0 /* min normal / 2: exact */
        /* underflow to zero */
        fs2 95, fmul.s, rne, 0x00800000, 0x00800000, 0x00000000, F_UF|F_NX
        fs2 96, fmul.s, rup, 0x00800000, 0x00800000, 0x00000001, F_UF|F_NX
        /* subnormal * 2^(p-1) = min normal */
        fs2 97, fmul.s, rne, 0x00000001, 0x4B000000, 0x00800000, 0

        /* ---- fdiv ---- */
        fs2 98, fdiv.s, rne, 0x3F800000, 0x40400000, 0x3EAAAAAB, F_NX /* 1/3 */
        fs2 99, fdiv.s, rtz, 0x3F800000, 0x40400000, 0x3EAAAAAA, F_NX /* 1/3 */
        fs2 100, fdiv.s, rdn, 0x3F800000, 0x40400000, 0x3EAAAAAA, F_NX /* 1/3 */
        fs2 101, fdiv.s, rup, 0x3F800000, 0x40400000, 0x3EAAAAAB, F_NX /* 1/3 */
        fs2 102, fdiv.s, rmm, 0x3F800000, 0x40400000, 0x3EAAAAAB, F_NX /* 1/3 */
        fs2 103, fdiv.s, rdn, 0xBF800000, 0x40400000, 0xBEAAAAAB, F_NX
        fs2 104, fdiv.s, rup, 0xBF800000, 0x40400000, 0xBEAAAAAA, F_NX
        fs2 105, fdiv.s, rne, 0x40000000, 0x40400000, 0x3F2AAAAB, F_NX
        fs2 106, fdiv.s, rne, 0x40C00000, 0x40400000, 0x40000000, 0 /* exact */
        fs2 107, fdiv.s, rne, 0x3F800000, 0x00000000, 0x7F800000, F_DZ /* divide by zero */
        fs2 108, fdiv.s, rne, 0xBF800000, 0x00000000, 0xFF800000, F_DZ
        fs2 109, fdiv.s, rne, 0x3F800000, 0x80000000, 0xFF800000, F_DZ
        fs2 110, fdiv.s, rne, 0x00000000, 0x00000000, 0x7FC00000, F_NV /* 0/0: invalid */
        fs2 111, fdiv.s, rne, 0x7F800000, 0xFF800000, 0x7FC00000, F_NV /* inf/inf: invalid */
        fs2 112, fdiv.s, rne, 0x7F800000, 0x00000000, 0x7F800000, 0 /* inf/0: inf, no flag */
        fs2 113, fdiv.s, rne, 0x00000000, 0x7F800000, 0x00000000, 0
        fs2 114, fdiv.s, rne, 0xBF800000, 0x7F800000, 0x80000000, 0
        fs2 115, fdiv.s, rne, 0x80000000, 0x40400000, 0x80000000, 0
        fs2 116, fdiv.s, rne, 0x7F800001, 0x3F800000, 0x7FC00000, F_NV
        fs2 117, fdiv.s, rne, 0x3F800000, 0x7FC00000, 0x7FC00000, 0
        /* NaN/0: no divide-by-zero */
        fs2 118, fdiv.s, rne, 0x7FC00000, 0x00000000, 0x7FC00000, 0
        fs2 119, fdiv.s, rne, 0x7F7FFFFF, 0x3F000000, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 120, fdiv.s, rtz, 0x7F7FFFFF, 0x3F000000, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fs2 121, fdiv.s, rup, 0x7F7FFFFF, 0x3F000000, 0x7F800000, F_OF|F_NX /* overflow */
        fs2 122, fdiv.s, rne, 0x00800000, 0x40800000, 0x00200000, 0 /* exact subnormal */
        /* inexact subnormal: underflow */
        fs2 123, fdiv.s, rne, 0x00800000, 0x40400000, 0x002AAAAB, F_UF|F_NX
        fs2 124, fdiv.s, rup, 0x00000001, 0x40400000, 0x00000001, F_UF|F_NX
        fs2 125, fdiv.s, rne, 0x00000001, 0x40400000, 0x00000000, F_UF|F_NX /* rounds to zero */
        fs2 126, fdiv.s, rne, 0x00000001, 0x7F7FFFFF, 0x00000000, F_UF|F_NX

        /* ---- fsqrt ---- */
        fs1 127, fsqrt.s, rne, 0x40800000, 0x40000000, 0
        fs1 128, fsqrt.s, rne, 0x3E800000, 0x3F000000, 0
        fs1 129, fsqrt.s, rne, 0x40000000, 0x3FB504F3, F_NX /* sqrt 2 */
        fs1 130, fsqrt.s, rtz, 0x40000000, 0x3FB504F3, F_NX /* sqrt 2 */
        fs1 131, fsqrt.s, rdn, 0x40000000, 0x3FB504F3, F_NX /* sqrt 2 */
        fs1 132, fsqrt.s, rup, 0x40000000, 0x3FB504F4, F_NX /* sqrt 2 */
        fs1 133, fsqrt.s, rmm, 0x40000000, 0x3FB504F3, F_NX /* sqrt 2 */
        fs1 134, fsqrt.s, rne, 0x40400000, 0x3FDDB3D7, F_NX
        fs1 135, fsqrt.s, rne, 0x00000000, 0x00000000, 0
        fs1 136, fsqrt.s, rne, 0x80000000, 0x80000000, 0 /* sqrt(-0) = -0 */
        fs1 137, fsqrt.s, rne, 0xBF800000, 0x7FC00000, F_NV /* invalid */
        fs1 138, fsqrt.s, rne, 0x80000001, 0x7FC00000, F_NV /* invalid */
        fs1 139, fsqrt.s, rne, 0x7F800000, 0x7F800000, 0
        fs1 140, fsqrt.s, rne, 0xFF800000, 0x7FC00000, F_NV /* invalid */
        fs1 141, fsqrt.s, rne, 0x7FC00000, 0x7FC00000, 0
        fs1 142, fsqrt.s, rne, 0x7F800001, 0x7FC00000, F_NV
        fs1 143, fsqrt.s, rne, 0x00000002, 0x1A800000, 0 /* subnormal, exact */
        fs1 144, fsqrt.s, rne, 0x00000001, 0x1A3504F3, F_NX /* subnormal, inexact */
        fs1 145, fsqrt.s, rup, 0x00000001, 0x1A3504F4, F_NX
        fs1 146, fsqrt.s, rne, 0x7F7FFFFF, 0x5F7FFFFF, F_NX
        fs1 147, fsqrt.s, rup, 0x7F7FFFFF, 0x5F800000, F_NX

        /* ---- dynamic rounding: frm selects the mode for rm = dyn ---- */
        set_frm FRM_RNE
        fs2 148, fadd.s, dyn, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* tie, rne */
        fs2 149, fadd.s, dyn, 0xBF800000, 0xB3C00000, 0xBF800001, F_NX
        fs2 150, fdiv.s, dyn, 0xBF800000, 0x40400000, 0xBEAAAAAB, F_NX
        fs2 151, fmul.s, dyn, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX
        CHECK_CSR(152, frm, FRM_RNE)
        set_frm FRM_RTZ
        fs2 153, fadd.s, dyn, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* tie, rtz */
        fs2 154, fadd.s, dyn, 0xBF800000, 0xB3C00000, 0xBF800000, F_NX
        fs2 155, fdiv.s, dyn, 0xBF800000, 0x40400000, 0xBEAAAAAA, F_NX
        fs2 156, fmul.s, dyn, 0x7F7FFFFF, 0x40000000, 0x7F7FFFFF, F_OF|F_NX
        CHECK_CSR(157, frm, FRM_RTZ)
        set_frm FRM_RDN
        fs2 158, fadd.s, dyn, 0x3F800000, 0x33800000, 0x3F800000, F_NX /* tie, rdn */
        fs2 159, fadd.s, dyn, 0xBF800000, 0xB3C00000, 0xBF800001, F_NX
        fs2 160, fdiv.s, dyn, 0xBF800000, 0x40400000, 0xBEAAAAAB, F_NX
        fs2 161, fmul.s, dyn, 0x7F7FFFFF, 0x40000000, 0x7F7FFFFF, F_OF|F_NX
        CHECK_CSR(162, frm, FRM_RDN)
        set_frm FRM_RUP
        fs2 163, fadd.s, dyn, 0x3F800000, 0x33800000, 0x3F800001, F_NX /* tie, rup */
        fs2 164, fadd.s, dyn, 0xBF800000, 0xB3C00000, 0xBF800000, F_NX
        fs2 165, fdiv.s, dyn, 0xBF800000, 0x40400000, 0xBEAAAAAA, F_NX
        fs2 166, fmul.s, dyn, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX
        CHECK_CSR(167, frm, FRM_RUP)
        set_frm FRM_RMM
        fs2 168, fadd.s, dyn, 0x3F800000, 0x33800000, 0x3F800001, F_NX /* tie, rmm */
        fs2 169, fadd.s, dyn, 0xBF800000, 0xB3C00000, 0xBF800001, F_NX
        fs2 170, fdiv.s, dyn, 0xBF800000, 0x40400000, 0xBEAAAAAB, F_NX
        fs2 171, fmul.s, dyn, 0x7F7FFFFF, 0x40000000, 0x7F800000, F_OF|F_NX
        CHECK_CSR(172, frm, FRM_RMM)
        set_frm FRM_RUP
        /* a static mode overrides frm */
        fs2 173, fadd.s, rtz, 0x3F800000, 0x33C00000, 0x3F800000, F_NX
        fs2 174, fadd.s, rdn, 0x3F800000, 0x33800000, 0x3F800000, F_NX
        set_frm FRM_RNE
TEST_PASS
TEST_END
