/* Double-precision arithmetic: fadd, fsub, fmul, fdiv, fsqrt. Special operands
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
        /* 1 + 2 = 3 */
        fd2 1, fadd.d, rne, 0x3FF0000000000000, 0x4000000000000000, 0x4008000000000000, 0
        /* 1.5 + 2.25, exact */
        fd2 2, fadd.d, rne, 0x3FF8000000000000, 0x4002000000000000, 0x400E000000000000, 0
        /* 2 - 3 = -1 */
        fd2 3, fsub.d, rne, 0x4000000000000000, 0x4008000000000000, 0xBFF0000000000000, 0
        /* exact zero: +0 */
        fd2 4, fadd.d, rne, 0xBFF0000000000000, 0x3FF0000000000000, 0x0000000000000000, 0
        /* exact zero rounding down: -0 */
        fd2 5, fadd.d, rdn, 0xBFF0000000000000, 0x3FF0000000000000, 0x8000000000000000, 0
        /* +0 */
        fd2 6, fsub.d, rne, 0x3FF0000000000000, 0x3FF0000000000000, 0x0000000000000000, 0
        /* -0 */
        fd2 7, fsub.d, rdn, 0x3FF0000000000000, 0x3FF0000000000000, 0x8000000000000000, 0
        /* -0 + -0 = -0 */
        fd2 8, fadd.d, rne, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, 0
        /* +0 + -0 = +0 */
        fd2 9, fadd.d, rne, 0x0000000000000000, 0x8000000000000000, 0x0000000000000000, 0
        /* ... but -0 rounding down */
        fd2 10, fadd.d, rdn, 0x0000000000000000, 0x8000000000000000, 0x8000000000000000, 0
        /* -0 - +0 = -0 */
        fd2 11, fsub.d, rne, 0x8000000000000000, 0x0000000000000000, 0x8000000000000000, 0
        /* +0 - +0 = +0 */
        fd2 12, fsub.d, rup, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000, 0
        fd2 13, fadd.d, rne, 0x7FF0000000000000, 0x3FF0000000000000, 0x7FF0000000000000, 0
        /* inf - inf: invalid */
        fd2 14, fadd.d, rne, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, F_NV
        /* invalid */
        fd2 15, fsub.d, rne, 0x7FF0000000000000, 0x7FF0000000000000, 0x7FF8000000000000, F_NV
        fd2 16, fsub.d, rne, 0xFFF0000000000000, 0x7FF0000000000000, 0xFFF0000000000000, 0
        /* quiet NaN: no flag */
        fd2 17, fadd.d, rne, 0x7FF8000000000000, 0x3FF0000000000000, 0x7FF8000000000000, 0
        /* payload not propagated */
        fd2 18, fadd.d, rne, 0x3FF0000000000000, 0x7FF8000000012345, 0x7FF8000000000000, 0
        /* negative NaN in, canonical out */
        fd2 19, fadd.d, rne, 0xFFF8000000000000, 0x3FF0000000000000, 0x7FF8000000000000, 0
        /* signaling NaN: invalid */
        fd2 20, fadd.d, rne, 0x7FF0000000000001, 0x3FF0000000000000, 0x7FF8000000000000, F_NV
        /* any sNaN operand: invalid */
        fd2 21, fsub.d, rne, 0x7FF8000000000000, 0x7FF0000000005A5A, 0x7FF8000000000000, F_NV
        fd2 22, fadd.d, rne, 0x7FF0000000000000, 0x7FF0000000000001, 0x7FF8000000000000, F_NV
        /* 1 + ulp/2: tie */
        fd2 23, fadd.d, rne, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        /* 1 + ulp/2: tie */
        fd2 24, fadd.d, rtz, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        /* 1 + ulp/2: tie */
        fd2 25, fadd.d, rdn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        /* 1 + ulp/2: tie */
        fd2 26, fadd.d, rup, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000001, F_NX
        /* 1 + ulp/2: tie */
        fd2 27, fadd.d, rmm, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000001, F_NX
        /* -1 - ulp/2: tie */
        fd2 28, fadd.d, rne, 0xBFF0000000000000, 0xBCA0000000000000, 0xBFF0000000000000, F_NX
        /* -1 - ulp/2: tie */
        fd2 29, fadd.d, rtz, 0xBFF0000000000000, 0xBCA0000000000000, 0xBFF0000000000000, F_NX
        /* -1 - ulp/2: tie */
        fd2 30, fadd.d, rdn, 0xBFF0000000000000, 0xBCA0000000000000, 0xBFF0000000000001, F_NX
        /* -1 - ulp/2: tie */
        fd2 31, fadd.d, rup, 0xBFF0000000000000, 0xBCA0000000000000, 0xBFF0000000000000, F_NX
        /* -1 - ulp/2: tie */
        fd2 32, fadd.d, rmm, 0xBFF0000000000000, 0xBCA0000000000000, 0xBFF0000000000001, F_NX
        /* tie, odd -> rounds up to even */
        fd2 33, fadd.d, rne, 0x3FF0000000000001, 0x3CA0000000000000, 0x3FF0000000000002, F_NX
        fd2 34, fadd.d, rmm, 0x3FF0000000000001, 0x3CA0000000000000, 0x3FF0000000000002, F_NX
        fd2 35, fadd.d, rtz, 0x3FF0000000000001, 0x3CA0000000000000, 0x3FF0000000000001, F_NX
        /* 1 + 3/4 ulp */
        fd2 36, fadd.d, rne, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000001, F_NX
        /* 1 + 3/4 ulp */
        fd2 37, fadd.d, rtz, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000000, F_NX
        /* 1 + 3/4 ulp */
        fd2 38, fadd.d, rdn, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000000, F_NX
        /* 1 + 3/4 ulp */
        fd2 39, fadd.d, rup, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000001, F_NX
        /* 1 + 3/4 ulp */
        fd2 40, fadd.d, rmm, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000001, F_NX
        /* 1 - ulp/4 (below 1: tie) */
        fd2 41, fsub.d, rne, 0x3FF0000000000000, 0x3C90000000000000, 0x3FF0000000000000, F_NX
        /* overflow */
        fd2 42, fadd.d, rne, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, F_OF|F_NX
        /* overflow */
        fd2 43, fadd.d, rtz, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        /* overflow */
        fd2 44, fadd.d, rdn, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        /* overflow */
        fd2 45, fadd.d, rup, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, F_OF|F_NX
        /* overflow */
        fd2 46, fadd.d, rmm, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, F_OF|F_NX
        /* negative overflow */
        fd2 47, fadd.d, rne, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0xFFF0000000000000, F_OF|F_NX
        /* negative overflow */
        fd2 48, fadd.d, rtz, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, F_OF|F_NX
        /* negative overflow */
        fd2 49, fadd.d, rdn, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0xFFF0000000000000, F_OF|F_NX
        /* negative overflow */
        fd2 50, fadd.d, rup, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, F_OF|F_NX
        /* negative overflow */
        fd2 51, fadd.d, rmm, 0xFFEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0xFFF0000000000000, F_OF|F_NX
        /* MAX + half ulp: tie rounds to 2^(emax+1) */
        fd2 52, fadd.d, rne, 0x7FEFFFFFFFFFFFFF, 0x7C90000000000000, 0x7FF0000000000000, F_OF|F_NX
        /* inexact, no overflow */
        fd2 53, fadd.d, rtz, 0x7FEFFFFFFFFFFFFF, 0x7C90000000000000, 0x7FEFFFFFFFFFFFFF, F_NX
        /* subnormals, exact */
        fd2 54, fadd.d, rne, 0x0000000000000001, 0x0000000000000001, 0x0000000000000002, 0
        /* normal - subnormal = max subnormal, exact */
        fd2 55, fsub.d, rne, 0x0010000000000000, 0x0000000000000001, 0x000FFFFFFFFFFFFF, 0
        /* max subnormal + min subnormal = min normal */
        fd2 56, fadd.d, rne, 0x000FFFFFFFFFFFFF, 0x0000000000000001, 0x0010000000000000, 0
        fd2 57, fsub.d, rne, 0x0000000000000001, 0x0000000000000001, 0x0000000000000000, 0
        /* 1 + tiny: inexact only */
        fd2 58, fadd.d, rne, 0x3FF0000000000000, 0x0000000000000001, 0x3FF0000000000000, F_NX
        fd2 59, fadd.d, rup, 0x3FF0000000000000, 0x0000000000000001, 0x3FF0000000000001, F_NX
        fd2 60, fsub.d, rdn, 0x3FF0000000000000, 0x0000000000000001, 0x3FEFFFFFFFFFFFFF, F_NX

        /* ---- fmul ---- */
        fd2 61, fmul.d, rne, 0x4000000000000000, 0x4008000000000000, 0x4018000000000000, 0
        fd2 62, fmul.d, rne, 0xC000000000000000, 0x4008000000000000, 0xC018000000000000, 0
        fd2 63, fmul.d, rne, 0x3FF8000000000000, 0x3FF8000000000000, 0x4002000000000000, 0
        /* -0 * 5 = -0 */
        fd2 64, fmul.d, rne, 0x8000000000000000, 0x4014000000000000, 0x8000000000000000, 0
        fd2 65, fmul.d, rne, 0xBFF0000000000000, 0x0000000000000000, 0x8000000000000000, 0
        /* 0 * inf: invalid */
        fd2 66, fmul.d, rne, 0x0000000000000000, 0xFFF0000000000000, 0x7FF8000000000000, F_NV
        fd2 67, fmul.d, rne, 0xFFF0000000000000, 0x0000000000000000, 0x7FF8000000000000, F_NV
        fd2 68, fmul.d, rne, 0x7FF0000000000000, 0xC000000000000000, 0xFFF0000000000000, 0
        fd2 69, fmul.d, rne, 0x7FF8000000000000, 0x0000000000000000, 0x7FF8000000000000, 0
        fd2 70, fmul.d, rne, 0x3FF0000000000000, 0x7FF0000000000001, 0x7FF8000000000000, F_NV
        /* (1+u)^2 = 1+2u+u^2 */
        fd2 71, fmul.d, rne, 0x3FF0000000000001, 0x3FF0000000000001, 0x3FF0000000000002, F_NX
        fd2 72, fmul.d, rup, 0x3FF0000000000001, 0x3FF0000000000001, 0x3FF0000000000003, F_NX
        /* overflow */
        fd2 73, fmul.d, rne, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        /* overflow */
        fd2 74, fmul.d, rtz, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        /* overflow */
        fd2 75, fmul.d, rdn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        /* overflow */
        fd2 76, fmul.d, rup, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        /* overflow */
        fd2 77, fmul.d, rmm, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        fd2 78, fmul.d, rdn, 0x7FEFFFFFFFFFFFFF, 0xC000000000000000, 0xFFF0000000000000, F_OF|F_NX
        fd2 79, fmul.d, rup, 0x7FEFFFFFFFFFFFFF, 0xC000000000000000, 0xFFEFFFFFFFFFFFFF, F_OF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fd2 80, fmul.d, rne, 0x3FF0000000000001, 0x000FFFFFFFFFFFFF, 0x0010000000000000, F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fd2 81, fmul.d, rtz, 0x3FF0000000000001, 0x000FFFFFFFFFFFFF, 0x000FFFFFFFFFFFFF, F_UF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fd2 82, fmul.d, rdn, 0x3FF0000000000001, 0x000FFFFFFFFFFFFF, 0x000FFFFFFFFFFFFF, F_UF|F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fd2 83, fmul.d, rup, 0x3FF0000000000001, 0x000FFFFFFFFFFFFF, 0x0010000000000000, F_NX
        /* (1+u)*maxsub: tiny before rounding, not after (RNE) */
        fd2 84, fmul.d, rmm, 0x3FF0000000000001, 0x000FFFFFFFFFFFFF, 0x0010000000000000, F_NX
        /* min subnormal / 2: tie */
        fd2 85, fmul.d, rne, 0x0000000000000001, 0x3FE0000000000000, 0x0000000000000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fd2 86, fmul.d, rtz, 0x0000000000000001, 0x3FE0000000000000, 0x0000000000000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fd2 87, fmul.d, rdn, 0x0000000000000001, 0x3FE0000000000000, 0x0000000000000000, F_UF|F_NX
        /* min subnormal / 2: tie */
        fd2 88, fmul.d, rup, 0x0000000000000001, 0x3FE0000000000000, 0x0000000000000001, F_UF|F_NX
        /* min subnormal / 2: tie */
        fd2 89, fmul.d, rmm, 0x0000000000000001, 0x3FE0000000000000, 0x0000000000000001, F_UF|F_NX
        fd2 90, fmul.d, rne, 0x8000000000000001, 0x3FE0000000000000, 0x8000000000000000, F_UF|F_NX
        fd2 91, fmul.d, rdn, 0x8000000000000001, 0x3FE0000000000000, 0x8000000000000001, F_UF|F_NX
        /* 3 * minsub / 2: tie to even */
        fd2 92, fmul.d, rne, 0x0000000000000003, 0x3FE0000000000000, 0x0000000000000002, F_UF|F_NX
        /* exact subnormal: no flags */
        fd2 93, fmul.d, rne, 0x0000000000000004, 0x3FE0000000000000, 0x0000000000000002, 0
        /* min normal / 2: exact */
        fd2 94, fmul.d, rne, 0x0010000000000000, 0x3FE0000000000000, 0x0008000000000000, 0
        /* underflow to zero */
        fd2 95, fmul.d, rne, 0x0010000000000000, 0x0010000000000000, 0x0000000000000000, F_UF|F_NX
        fd2 96, fmul.d, rup, 0x0010000000000000, 0x0010000000000000, 0x0000000000000001, F_UF|F_NX
        /* subnormal * 2^(p-1) = min normal */
        fd2 97, fmul.d, rne, 0x0000000000000001, 0x4330000000000000, 0x0010000000000000, 0

        /* ---- fdiv ---- */
        /* 1/3 */
        fd2 98, fdiv.d, rne, 0x3FF0000000000000, 0x4008000000000000, 0x3FD5555555555555, F_NX
        /* 1/3 */
        fd2 99, fdiv.d, rtz, 0x3FF0000000000000, 0x4008000000000000, 0x3FD5555555555555, F_NX
        /* 1/3 */
        fd2 100, fdiv.d, rdn, 0x3FF0000000000000, 0x4008000000000000, 0x3FD5555555555555, F_NX
        /* 1/3 */
        fd2 101, fdiv.d, rup, 0x3FF0000000000000, 0x4008000000000000, 0x3FD5555555555556, F_NX
        /* 1/3 */
        fd2 102, fdiv.d, rmm, 0x3FF0000000000000, 0x4008000000000000, 0x3FD5555555555555, F_NX
        fd2 103, fdiv.d, rdn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555556, F_NX
        fd2 104, fdiv.d, rup, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555555, F_NX
        fd2 105, fdiv.d, rne, 0x4000000000000000, 0x4008000000000000, 0x3FE5555555555555, F_NX
        /* exact */
        fd2 106, fdiv.d, rne, 0x4018000000000000, 0x4008000000000000, 0x4000000000000000, 0
        /* divide by zero */
        fd2 107, fdiv.d, rne, 0x3FF0000000000000, 0x0000000000000000, 0x7FF0000000000000, F_DZ
        fd2 108, fdiv.d, rne, 0xBFF0000000000000, 0x0000000000000000, 0xFFF0000000000000, F_DZ
        fd2 109, fdiv.d, rne, 0x3FF0000000000000, 0x8000000000000000, 0xFFF0000000000000, F_DZ
        /* 0/0: invalid */
        fd2 110, fdiv.d, rne, 0x0000000000000000, 0x0000000000000000, 0x7FF8000000000000, F_NV
        /* inf/inf: invalid */
        fd2 111, fdiv.d, rne, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, F_NV
        /* inf/0: inf, no flag */
        fd2 112, fdiv.d, rne, 0x7FF0000000000000, 0x0000000000000000, 0x7FF0000000000000, 0
        fd2 113, fdiv.d, rne, 0x0000000000000000, 0x7FF0000000000000, 0x0000000000000000, 0
        fd2 114, fdiv.d, rne, 0xBFF0000000000000, 0x7FF0000000000000, 0x8000000000000000, 0
        fd2 115, fdiv.d, rne, 0x8000000000000000, 0x4008000000000000, 0x8000000000000000, 0
        fd2 116, fdiv.d, rne, 0x7FF0000000000001, 0x3FF0000000000000, 0x7FF8000000000000, F_NV
        fd2 117, fdiv.d, rne, 0x3FF0000000000000, 0x7FF8000000000000, 0x7FF8000000000000, 0
        /* NaN/0: no divide-by-zero */
        fd2 118, fdiv.d, rne, 0x7FF8000000000000, 0x0000000000000000, 0x7FF8000000000000, 0
        /* overflow */
        fd2 119, fdiv.d, rne, 0x7FEFFFFFFFFFFFFF, 0x3FE0000000000000, 0x7FF0000000000000, F_OF|F_NX
        /* overflow */
        fd2 120, fdiv.d, rtz, 0x7FEFFFFFFFFFFFFF, 0x3FE0000000000000, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        /* overflow */
        fd2 121, fdiv.d, rup, 0x7FEFFFFFFFFFFFFF, 0x3FE0000000000000, 0x7FF0000000000000, F_OF|F_NX
        /* exact subnormal */
        fd2 122, fdiv.d, rne, 0x0010000000000000, 0x4010000000000000, 0x0004000000000000, 0
        /* inexact subnormal: underflow */
        fd2 123, fdiv.d, rne, 0x0010000000000000, 0x4008000000000000, 0x0005555555555555, F_UF|F_NX
        fd2 124, fdiv.d, rup, 0x0000000000000001, 0x4008000000000000, 0x0000000000000001, F_UF|F_NX
        /* rounds to zero */
        fd2 125, fdiv.d, rne, 0x0000000000000001, 0x4008000000000000, 0x0000000000000000, F_UF|F_NX
        fd2 126, fdiv.d, rne, 0x0000000000000001, 0x7FEFFFFFFFFFFFFF, 0x0000000000000000, F_UF|F_NX

        /* ---- fsqrt ---- */
        fd1 127, fsqrt.d, rne, 0x4010000000000000, 0x4000000000000000, 0
        fd1 128, fsqrt.d, rne, 0x3FD0000000000000, 0x3FE0000000000000, 0
        fd1 129, fsqrt.d, rne, 0x4000000000000000, 0x3FF6A09E667F3BCD, F_NX /* sqrt 2 */
        fd1 130, fsqrt.d, rtz, 0x4000000000000000, 0x3FF6A09E667F3BCC, F_NX /* sqrt 2 */
        fd1 131, fsqrt.d, rdn, 0x4000000000000000, 0x3FF6A09E667F3BCC, F_NX /* sqrt 2 */
        fd1 132, fsqrt.d, rup, 0x4000000000000000, 0x3FF6A09E667F3BCD, F_NX /* sqrt 2 */
        fd1 133, fsqrt.d, rmm, 0x4000000000000000, 0x3FF6A09E667F3BCD, F_NX /* sqrt 2 */
        fd1 134, fsqrt.d, rne, 0x4008000000000000, 0x3FFBB67AE8584CAA, F_NX
        fd1 135, fsqrt.d, rne, 0x0000000000000000, 0x0000000000000000, 0
        fd1 136, fsqrt.d, rne, 0x8000000000000000, 0x8000000000000000, 0 /* sqrt(-0) = -0 */
        fd1 137, fsqrt.d, rne, 0xBFF0000000000000, 0x7FF8000000000000, F_NV /* invalid */
        fd1 138, fsqrt.d, rne, 0x8000000000000001, 0x7FF8000000000000, F_NV /* invalid */
        fd1 139, fsqrt.d, rne, 0x7FF0000000000000, 0x7FF0000000000000, 0
        fd1 140, fsqrt.d, rne, 0xFFF0000000000000, 0x7FF8000000000000, F_NV /* invalid */
        fd1 141, fsqrt.d, rne, 0x7FF8000000000000, 0x7FF8000000000000, 0
        fd1 142, fsqrt.d, rne, 0x7FF0000000000001, 0x7FF8000000000000, F_NV
        /* subnormal, exact */
        fd1 143, fsqrt.d, rne, 0x0000000000000002, 0x1E66A09E667F3BCD, F_NX
        /* subnormal, inexact */
        fd1 144, fsqrt.d, rne, 0x0000000000000001, 0x1E60000000000000, 0
        fd1 145, fsqrt.d, rup, 0x0000000000000001, 0x1E60000000000000, 0
        fd1 146, fsqrt.d, rne, 0x7FEFFFFFFFFFFFFF, 0x5FEFFFFFFFFFFFFF, F_NX
        fd1 147, fsqrt.d, rup, 0x7FEFFFFFFFFFFFFF, 0x5FF0000000000000, F_NX

        /* ---- dynamic rounding: frm selects the mode for rm = dyn ---- */
        set_frm FRM_RNE
        /* tie, rne */
        fd2 148, fadd.d, dyn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        fd2 149, fadd.d, dyn, 0xBFF0000000000000, 0xBCA8000000000000, 0xBFF0000000000001, F_NX
        fd2 150, fdiv.d, dyn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555555, F_NX
        fd2 151, fmul.d, dyn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        CHECK_CSR(152, frm, FRM_RNE)
        set_frm FRM_RTZ
        /* tie, rtz */
        fd2 153, fadd.d, dyn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        fd2 154, fadd.d, dyn, 0xBFF0000000000000, 0xBCA8000000000000, 0xBFF0000000000000, F_NX
        fd2 155, fdiv.d, dyn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555555, F_NX
        fd2 156, fmul.d, dyn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        CHECK_CSR(157, frm, FRM_RTZ)
        set_frm FRM_RDN
        /* tie, rdn */
        fd2 158, fadd.d, dyn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        fd2 159, fadd.d, dyn, 0xBFF0000000000000, 0xBCA8000000000000, 0xBFF0000000000001, F_NX
        fd2 160, fdiv.d, dyn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555556, F_NX
        fd2 161, fmul.d, dyn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FEFFFFFFFFFFFFF, F_OF|F_NX
        CHECK_CSR(162, frm, FRM_RDN)
        set_frm FRM_RUP
        /* tie, rup */
        fd2 163, fadd.d, dyn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000001, F_NX
        fd2 164, fadd.d, dyn, 0xBFF0000000000000, 0xBCA8000000000000, 0xBFF0000000000000, F_NX
        fd2 165, fdiv.d, dyn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555555, F_NX
        fd2 166, fmul.d, dyn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        CHECK_CSR(167, frm, FRM_RUP)
        set_frm FRM_RMM
        /* tie, rmm */
        fd2 168, fadd.d, dyn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000001, F_NX
        fd2 169, fadd.d, dyn, 0xBFF0000000000000, 0xBCA8000000000000, 0xBFF0000000000001, F_NX
        fd2 170, fdiv.d, dyn, 0xBFF0000000000000, 0x4008000000000000, 0xBFD5555555555555, F_NX
        fd2 171, fmul.d, dyn, 0x7FEFFFFFFFFFFFFF, 0x4000000000000000, 0x7FF0000000000000, F_OF|F_NX
        CHECK_CSR(172, frm, FRM_RMM)
        set_frm FRM_RUP
        /* a static mode overrides frm */
        fd2 173, fadd.d, rtz, 0x3FF0000000000000, 0x3CA8000000000000, 0x3FF0000000000000, F_NX
        fd2 174, fadd.d, rdn, 0x3FF0000000000000, 0x3CA0000000000000, 0x3FF0000000000000, F_NX
        set_frm FRM_RNE
TEST_PASS
TEST_END
