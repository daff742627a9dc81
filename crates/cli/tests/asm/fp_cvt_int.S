/* F/D to integer: fcvt.{w,wu,l,lu}.{s,d} with rounding in every static
 * mode and through frm, saturation with invalid at and just beyond each
 * range limit, NaN -> largest positive, results of W/WU sign-extended
 * from 32 bits. Result and fflags checked; confirmed on QEMU 7.2. */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

TEST_BEGIN
        fp_setup

        /* ---- single -> integer ---- */
        /* fcvt.w.s */
        fx 1, s, fcvt.w.s, rne, 0x00000000, , 0x0000000000000000, 0
        fx 2, s, fcvt.w.s, rne, 0x80000000, , 0x0000000000000000, 0
        fx 3, s, fcvt.w.s, rne, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 4, s, fcvt.w.s, rtz, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 5, s, fcvt.w.s, rdn, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 6, s, fcvt.w.s, rup, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 7, s, fcvt.w.s, rmm, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 8, s, fcvt.w.s, rne, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 9, s, fcvt.w.s, rtz, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 10, s, fcvt.w.s, rdn, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 11, s, fcvt.w.s, rup, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 12, s, fcvt.w.s, rmm, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 13, s, fcvt.w.s, rne, 0x40200000, , 0x0000000000000002, F_NX /* tie to even */
        fx 14, s, fcvt.w.s, rne, 0x3F000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 15, s, fcvt.w.s, rtz, 0xBF000000, , 0x0000000000000000, F_NX
        fx 16, s, fcvt.w.s, rdn, 0xBF000000, , 0xFFFFFFFFFFFFFFFF, F_NX
        fx 17, s, fcvt.w.s, rne, 0xBF800000, , 0xFFFFFFFFFFFFFFFF, 0
        fx 18, s, fcvt.w.s, rne, 0x00000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 19, s, fcvt.w.s, rup, 0x00000001, , 0x0000000000000001, F_NX
        fx 20, s, fcvt.w.s, rdn, 0x80000001, , 0xFFFFFFFFFFFFFFFF, F_NX
        /* NaN: largest positive */
        fx 21, s, fcvt.w.s, rne, 0x7FC00000, , 0x000000007FFFFFFF, F_NV
        fx 22, s, fcvt.w.s, rne, 0xFF800001, , 0x000000007FFFFFFF, F_NV
        fx 23, s, fcvt.w.s, rne, 0x7F800000, , 0x000000007FFFFFFF, F_NV
        fx 24, s, fcvt.w.s, rne, 0xFF800000, , 0xFFFFFFFF80000000, F_NV
        fx 25, s, fcvt.w.s, rne, 0x7F7FFFFF, , 0x000000007FFFFFFF, F_NV
        fx 26, s, fcvt.w.s, rne, 0xFF7FFFFF, , 0xFFFFFFFF80000000, F_NV
        fx 27, s, fcvt.w.s, rtz, 0x4EFFFFFF, , 0x000000007FFFFF80, 0 /* limit, from inside */
        fx 28, s, fcvt.w.s, rtz, 0x4F000000, , 0x000000007FFFFFFF, F_NV /* next float out */
        fx 29, s, fcvt.w.s, rtz, 0xCF000000, , 0xFFFFFFFF80000000, 0 /* limit, from inside */
        fx 30, s, fcvt.w.s, rtz, 0xCF000001, , 0xFFFFFFFF80000000, F_NV /* next float out */
        /* fcvt.wu.s */
        fx 31, s, fcvt.wu.s, rne, 0x00000000, , 0x0000000000000000, 0
        fx 32, s, fcvt.wu.s, rne, 0x80000000, , 0x0000000000000000, 0
        fx 33, s, fcvt.wu.s, rne, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 34, s, fcvt.wu.s, rtz, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 35, s, fcvt.wu.s, rdn, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 36, s, fcvt.wu.s, rup, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 37, s, fcvt.wu.s, rmm, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 38, s, fcvt.wu.s, rne, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 39, s, fcvt.wu.s, rtz, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 40, s, fcvt.wu.s, rdn, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 41, s, fcvt.wu.s, rup, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 42, s, fcvt.wu.s, rmm, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 43, s, fcvt.wu.s, rne, 0x40200000, , 0x0000000000000002, F_NX /* tie to even */
        fx 44, s, fcvt.wu.s, rne, 0x3F000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 45, s, fcvt.wu.s, rtz, 0xBF000000, , 0x0000000000000000, F_NX
        fx 46, s, fcvt.wu.s, rdn, 0xBF000000, , 0x0000000000000000, F_NV
        fx 47, s, fcvt.wu.s, rne, 0xBF800000, , 0x0000000000000000, F_NV
        fx 48, s, fcvt.wu.s, rne, 0x00000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 49, s, fcvt.wu.s, rup, 0x00000001, , 0x0000000000000001, F_NX
        fx 50, s, fcvt.wu.s, rdn, 0x80000001, , 0x0000000000000000, F_NV
        /* NaN: largest positive */
        fx 51, s, fcvt.wu.s, rne, 0x7FC00000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 52, s, fcvt.wu.s, rne, 0xFF800001, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 53, s, fcvt.wu.s, rne, 0x7F800000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 54, s, fcvt.wu.s, rne, 0xFF800000, , 0x0000000000000000, F_NV
        fx 55, s, fcvt.wu.s, rne, 0x7F7FFFFF, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 56, s, fcvt.wu.s, rne, 0xFF7FFFFF, , 0x0000000000000000, F_NV
        fx 57, s, fcvt.wu.s, rtz, 0x4F7FFFFF, , 0xFFFFFFFFFFFFFF00, 0 /* limit, from inside */
        fx 58, s, fcvt.wu.s, rtz, 0x4F800000, , 0xFFFFFFFFFFFFFFFF, F_NV /* next float out */
        /* fcvt.l.s */
        fx 59, s, fcvt.l.s, rne, 0x00000000, , 0x0000000000000000, 0
        fx 60, s, fcvt.l.s, rne, 0x80000000, , 0x0000000000000000, 0
        fx 61, s, fcvt.l.s, rne, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 62, s, fcvt.l.s, rtz, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 63, s, fcvt.l.s, rdn, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 64, s, fcvt.l.s, rup, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 65, s, fcvt.l.s, rmm, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 66, s, fcvt.l.s, rne, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 67, s, fcvt.l.s, rtz, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 68, s, fcvt.l.s, rdn, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 69, s, fcvt.l.s, rup, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 70, s, fcvt.l.s, rmm, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 71, s, fcvt.l.s, rne, 0x40200000, , 0x0000000000000002, F_NX /* tie to even */
        fx 72, s, fcvt.l.s, rne, 0x3F000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 73, s, fcvt.l.s, rtz, 0xBF000000, , 0x0000000000000000, F_NX
        fx 74, s, fcvt.l.s, rdn, 0xBF000000, , 0xFFFFFFFFFFFFFFFF, F_NX
        fx 75, s, fcvt.l.s, rne, 0xBF800000, , 0xFFFFFFFFFFFFFFFF, 0
        fx 76, s, fcvt.l.s, rne, 0x00000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 77, s, fcvt.l.s, rup, 0x00000001, , 0x0000000000000001, F_NX
        fx 78, s, fcvt.l.s, rdn, 0x80000001, , 0xFFFFFFFFFFFFFFFF, F_NX
        /* NaN: largest positive */
        fx 79, s, fcvt.l.s, rne, 0x7FC00000, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 80, s, fcvt.l.s, rne, 0xFF800001, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 81, s, fcvt.l.s, rne, 0x7F800000, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 82, s, fcvt.l.s, rne, 0xFF800000, , 0x8000000000000000, F_NV
        fx 83, s, fcvt.l.s, rne, 0x7F7FFFFF, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 84, s, fcvt.l.s, rne, 0xFF7FFFFF, , 0x8000000000000000, F_NV
        fx 85, s, fcvt.l.s, rtz, 0x5EFFFFFF, , 0x7FFFFF8000000000, 0 /* limit, from inside */
        fx 86, s, fcvt.l.s, rtz, 0x5F000000, , 0x7FFFFFFFFFFFFFFF, F_NV /* next float out */
        fx 87, s, fcvt.l.s, rtz, 0xDF000000, , 0x8000000000000000, 0 /* limit, from inside */
        fx 88, s, fcvt.l.s, rtz, 0xDF000001, , 0x8000000000000000, F_NV /* next float out */
        /* fcvt.lu.s */
        fx 89, s, fcvt.lu.s, rne, 0x00000000, , 0x0000000000000000, 0
        fx 90, s, fcvt.lu.s, rne, 0x80000000, , 0x0000000000000000, 0
        fx 91, s, fcvt.lu.s, rne, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 92, s, fcvt.lu.s, rtz, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 93, s, fcvt.lu.s, rdn, 0x3FC00000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 94, s, fcvt.lu.s, rup, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 95, s, fcvt.lu.s, rmm, 0x3FC00000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 96, s, fcvt.lu.s, rne, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 97, s, fcvt.lu.s, rtz, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 98, s, fcvt.lu.s, rdn, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 99, s, fcvt.lu.s, rup, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 100, s, fcvt.lu.s, rmm, 0xC0200000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 101, s, fcvt.lu.s, rne, 0x40200000, , 0x0000000000000002, F_NX /* tie to even */
        fx 102, s, fcvt.lu.s, rne, 0x3F000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 103, s, fcvt.lu.s, rtz, 0xBF000000, , 0x0000000000000000, F_NX
        fx 104, s, fcvt.lu.s, rdn, 0xBF000000, , 0x0000000000000000, F_NV
        fx 105, s, fcvt.lu.s, rne, 0xBF800000, , 0x0000000000000000, F_NV
        fx 106, s, fcvt.lu.s, rne, 0x00000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 107, s, fcvt.lu.s, rup, 0x00000001, , 0x0000000000000001, F_NX
        fx 108, s, fcvt.lu.s, rdn, 0x80000001, , 0x0000000000000000, F_NV
        /* NaN: largest positive */
        fx 109, s, fcvt.lu.s, rne, 0x7FC00000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 110, s, fcvt.lu.s, rne, 0xFF800001, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 111, s, fcvt.lu.s, rne, 0x7F800000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 112, s, fcvt.lu.s, rne, 0xFF800000, , 0x0000000000000000, F_NV
        fx 113, s, fcvt.lu.s, rne, 0x7F7FFFFF, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 114, s, fcvt.lu.s, rne, 0xFF7FFFFF, , 0x0000000000000000, F_NV
        fx 115, s, fcvt.lu.s, rtz, 0x5F7FFFFF, , 0xFFFFFF0000000000, 0 /* limit, from inside */
        fx 116, s, fcvt.lu.s, rtz, 0x5F800000, , 0xFFFFFFFFFFFFFFFF, F_NV /* next float out */

        /* ---- double -> integer ---- */
        /* fcvt.w.d */
        fx 117, d, fcvt.w.d, rne, 0x0000000000000000, , 0x0000000000000000, 0
        fx 118, d, fcvt.w.d, rne, 0x8000000000000000, , 0x0000000000000000, 0
        fx 119, d, fcvt.w.d, rne, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 120, d, fcvt.w.d, rtz, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 121, d, fcvt.w.d, rdn, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 122, d, fcvt.w.d, rup, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 123, d, fcvt.w.d, rmm, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 124, d, fcvt.w.d, rne, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 125, d, fcvt.w.d, rtz, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 126, d, fcvt.w.d, rdn, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 127, d, fcvt.w.d, rup, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 128, d, fcvt.w.d, rmm, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        /* tie to even */
        fx 129, d, fcvt.w.d, rne, 0x4004000000000000, , 0x0000000000000002, F_NX
        fx 130, d, fcvt.w.d, rne, 0x3FE0000000000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 131, d, fcvt.w.d, rtz, 0xBFE0000000000000, , 0x0000000000000000, F_NX
        fx 132, d, fcvt.w.d, rdn, 0xBFE0000000000000, , 0xFFFFFFFFFFFFFFFF, F_NX
        fx 133, d, fcvt.w.d, rne, 0xBFF0000000000000, , 0xFFFFFFFFFFFFFFFF, 0
        fx 134, d, fcvt.w.d, rne, 0x0000000000000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 135, d, fcvt.w.d, rup, 0x0000000000000001, , 0x0000000000000001, F_NX
        fx 136, d, fcvt.w.d, rdn, 0x8000000000000001, , 0xFFFFFFFFFFFFFFFF, F_NX
        /* NaN: largest positive */
        fx 137, d, fcvt.w.d, rne, 0x7FF8000000000000, , 0x000000007FFFFFFF, F_NV
        fx 138, d, fcvt.w.d, rne, 0xFFF0000000000001, , 0x000000007FFFFFFF, F_NV
        fx 139, d, fcvt.w.d, rne, 0x7FF0000000000000, , 0x000000007FFFFFFF, F_NV
        fx 140, d, fcvt.w.d, rne, 0xFFF0000000000000, , 0xFFFFFFFF80000000, F_NV
        fx 141, d, fcvt.w.d, rne, 0x7FEFFFFFFFFFFFFF, , 0x000000007FFFFFFF, F_NV
        fx 142, d, fcvt.w.d, rne, 0xFFEFFFFFFFFFFFFF, , 0xFFFFFFFF80000000, F_NV
        /* limit, from inside */
        fx 143, d, fcvt.w.d, rtz, 0x41DFFFFFFFC00000, , 0x000000007FFFFFFF, 0
        /* next float out */
        fx 144, d, fcvt.w.d, rtz, 0x41DFFFFFFFC00001, , 0x000000007FFFFFFF, F_NX
        /* limit, from inside */
        fx 145, d, fcvt.w.d, rtz, 0xC1E0000000000000, , 0xFFFFFFFF80000000, 0
        /* next float out */
        fx 146, d, fcvt.w.d, rtz, 0xC1E0000000000001, , 0xFFFFFFFF80000000, F_NX
        /* max + 1/2: tie rounds out of range */
        fx 147, d, fcvt.w.d, rne, 0x41DFFFFFFFE00000, , 0x000000007FFFFFFF, F_NV
        fx 148, d, fcvt.w.d, rtz, 0x41DFFFFFFFE00000, , 0x000000007FFFFFFF, F_NX
        fx 149, d, fcvt.w.d, rmm, 0xC1E0000000100000, , 0xFFFFFFFF80000000, F_NV
        fx 150, d, fcvt.w.d, rne, 0xC1E0000000100000, , 0xFFFFFFFF80000000, F_NX
        /* fcvt.wu.d */
        fx 151, d, fcvt.wu.d, rne, 0x0000000000000000, , 0x0000000000000000, 0
        fx 152, d, fcvt.wu.d, rne, 0x8000000000000000, , 0x0000000000000000, 0
        fx 153, d, fcvt.wu.d, rne, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 154, d, fcvt.wu.d, rtz, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 155, d, fcvt.wu.d, rdn, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 156, d, fcvt.wu.d, rup, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 157, d, fcvt.wu.d, rmm, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 158, d, fcvt.wu.d, rne, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 159, d, fcvt.wu.d, rtz, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 160, d, fcvt.wu.d, rdn, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 161, d, fcvt.wu.d, rup, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 162, d, fcvt.wu.d, rmm, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        /* tie to even */
        fx 163, d, fcvt.wu.d, rne, 0x4004000000000000, , 0x0000000000000002, F_NX
        fx 164, d, fcvt.wu.d, rne, 0x3FE0000000000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 165, d, fcvt.wu.d, rtz, 0xBFE0000000000000, , 0x0000000000000000, F_NX
        fx 166, d, fcvt.wu.d, rdn, 0xBFE0000000000000, , 0x0000000000000000, F_NV
        fx 167, d, fcvt.wu.d, rne, 0xBFF0000000000000, , 0x0000000000000000, F_NV
        /* subnormal */
        fx 168, d, fcvt.wu.d, rne, 0x0000000000000001, , 0x0000000000000000, F_NX
        fx 169, d, fcvt.wu.d, rup, 0x0000000000000001, , 0x0000000000000001, F_NX
        fx 170, d, fcvt.wu.d, rdn, 0x8000000000000001, , 0x0000000000000000, F_NV
        /* NaN: largest positive */
        fx 171, d, fcvt.wu.d, rne, 0x7FF8000000000000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 172, d, fcvt.wu.d, rne, 0xFFF0000000000001, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 173, d, fcvt.wu.d, rne, 0x7FF0000000000000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 174, d, fcvt.wu.d, rne, 0xFFF0000000000000, , 0x0000000000000000, F_NV
        fx 175, d, fcvt.wu.d, rne, 0x7FEFFFFFFFFFFFFF, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 176, d, fcvt.wu.d, rne, 0xFFEFFFFFFFFFFFFF, , 0x0000000000000000, F_NV
        /* limit, from inside */
        fx 177, d, fcvt.wu.d, rtz, 0x41EFFFFFFFE00000, , 0xFFFFFFFFFFFFFFFF, 0
        /* next float out */
        fx 178, d, fcvt.wu.d, rtz, 0x41EFFFFFFFE00001, , 0xFFFFFFFFFFFFFFFF, F_NX
        /* max + 1/2: tie rounds out of range */
        fx 179, d, fcvt.wu.d, rne, 0x41EFFFFFFFF00000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 180, d, fcvt.wu.d, rtz, 0x41EFFFFFFFF00000, , 0xFFFFFFFFFFFFFFFF, F_NX
        fx 181, d, fcvt.wu.d, rmm, 0xBFE0000000000000, , 0x0000000000000000, F_NV
        fx 182, d, fcvt.wu.d, rne, 0xBFE0000000000000, , 0x0000000000000000, F_NX
        /* fcvt.l.d */
        fx 183, d, fcvt.l.d, rne, 0x0000000000000000, , 0x0000000000000000, 0
        fx 184, d, fcvt.l.d, rne, 0x8000000000000000, , 0x0000000000000000, 0
        fx 185, d, fcvt.l.d, rne, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 186, d, fcvt.l.d, rtz, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 187, d, fcvt.l.d, rdn, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 188, d, fcvt.l.d, rup, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 189, d, fcvt.l.d, rmm, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 190, d, fcvt.l.d, rne, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 191, d, fcvt.l.d, rtz, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 192, d, fcvt.l.d, rdn, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        fx 193, d, fcvt.l.d, rup, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFE, F_NX /* -2.5 */
        fx 194, d, fcvt.l.d, rmm, 0xC004000000000000, , 0xFFFFFFFFFFFFFFFD, F_NX /* -2.5 */
        /* tie to even */
        fx 195, d, fcvt.l.d, rne, 0x4004000000000000, , 0x0000000000000002, F_NX
        fx 196, d, fcvt.l.d, rne, 0x3FE0000000000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 197, d, fcvt.l.d, rtz, 0xBFE0000000000000, , 0x0000000000000000, F_NX
        fx 198, d, fcvt.l.d, rdn, 0xBFE0000000000000, , 0xFFFFFFFFFFFFFFFF, F_NX
        fx 199, d, fcvt.l.d, rne, 0xBFF0000000000000, , 0xFFFFFFFFFFFFFFFF, 0
        fx 200, d, fcvt.l.d, rne, 0x0000000000000001, , 0x0000000000000000, F_NX /* subnormal */
        fx 201, d, fcvt.l.d, rup, 0x0000000000000001, , 0x0000000000000001, F_NX
        fx 202, d, fcvt.l.d, rdn, 0x8000000000000001, , 0xFFFFFFFFFFFFFFFF, F_NX
        /* NaN: largest positive */
        fx 203, d, fcvt.l.d, rne, 0x7FF8000000000000, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 204, d, fcvt.l.d, rne, 0xFFF0000000000001, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 205, d, fcvt.l.d, rne, 0x7FF0000000000000, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 206, d, fcvt.l.d, rne, 0xFFF0000000000000, , 0x8000000000000000, F_NV
        fx 207, d, fcvt.l.d, rne, 0x7FEFFFFFFFFFFFFF, , 0x7FFFFFFFFFFFFFFF, F_NV
        fx 208, d, fcvt.l.d, rne, 0xFFEFFFFFFFFFFFFF, , 0x8000000000000000, F_NV
        /* limit, from inside */
        fx 209, d, fcvt.l.d, rtz, 0x43DFFFFFFFFFFFFF, , 0x7FFFFFFFFFFFFC00, 0
        /* next float out */
        fx 210, d, fcvt.l.d, rtz, 0x43E0000000000000, , 0x7FFFFFFFFFFFFFFF, F_NV
        /* limit, from inside */
        fx 211, d, fcvt.l.d, rtz, 0xC3E0000000000000, , 0x8000000000000000, 0
        /* next float out */
        fx 212, d, fcvt.l.d, rtz, 0xC3E0000000000001, , 0x8000000000000000, F_NV
        /* fcvt.lu.d */
        fx 213, d, fcvt.lu.d, rne, 0x0000000000000000, , 0x0000000000000000, 0
        fx 214, d, fcvt.lu.d, rne, 0x8000000000000000, , 0x0000000000000000, 0
        fx 215, d, fcvt.lu.d, rne, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 216, d, fcvt.lu.d, rtz, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 217, d, fcvt.lu.d, rdn, 0x3FF8000000000000, , 0x0000000000000001, F_NX /* 1.5 */
        fx 218, d, fcvt.lu.d, rup, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 219, d, fcvt.lu.d, rmm, 0x3FF8000000000000, , 0x0000000000000002, F_NX /* 1.5 */
        fx 220, d, fcvt.lu.d, rne, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 221, d, fcvt.lu.d, rtz, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 222, d, fcvt.lu.d, rdn, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 223, d, fcvt.lu.d, rup, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        fx 224, d, fcvt.lu.d, rmm, 0xC004000000000000, , 0x0000000000000000, F_NV /* -2.5 */
        /* tie to even */
        fx 225, d, fcvt.lu.d, rne, 0x4004000000000000, , 0x0000000000000002, F_NX
        fx 226, d, fcvt.lu.d, rne, 0x3FE0000000000000, , 0x0000000000000000, F_NX
        /* rounds to -0: no invalid */
        fx 227, d, fcvt.lu.d, rtz, 0xBFE0000000000000, , 0x0000000000000000, F_NX
        fx 228, d, fcvt.lu.d, rdn, 0xBFE0000000000000, , 0x0000000000000000, F_NV
        fx 229, d, fcvt.lu.d, rne, 0xBFF0000000000000, , 0x0000000000000000, F_NV
        /* subnormal */
        fx 230, d, fcvt.lu.d, rne, 0x0000000000000001, , 0x0000000000000000, F_NX
        fx 231, d, fcvt.lu.d, rup, 0x0000000000000001, , 0x0000000000000001, F_NX
        fx 232, d, fcvt.lu.d, rdn, 0x8000000000000001, , 0x0000000000000000, F_NV
        /* NaN: largest positive */
        fx 233, d, fcvt.lu.d, rne, 0x7FF8000000000000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 234, d, fcvt.lu.d, rne, 0xFFF0000000000001, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 235, d, fcvt.lu.d, rne, 0x7FF0000000000000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 236, d, fcvt.lu.d, rne, 0xFFF0000000000000, , 0x0000000000000000, F_NV
        fx 237, d, fcvt.lu.d, rne, 0x7FEFFFFFFFFFFFFF, , 0xFFFFFFFFFFFFFFFF, F_NV
        fx 238, d, fcvt.lu.d, rne, 0xFFEFFFFFFFFFFFFF, , 0x0000000000000000, F_NV
        /* limit, from inside */
        fx 239, d, fcvt.lu.d, rtz, 0x43EFFFFFFFFFFFFF, , 0xFFFFFFFFFFFFF800, 0
        /* next float out */
        fx 240, d, fcvt.lu.d, rtz, 0x43F0000000000000, , 0xFFFFFFFFFFFFFFFF, F_NV

        /* ---- dynamic rounding ---- */
        set_frm FRM_RNE
        fx 241, s, fcvt.w.s, dyn, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* rne */
        fx 242, d, fcvt.lu.d, dyn, 0x400C000000000000, , 0x0000000000000004, F_NX
        set_frm FRM_RTZ
        fx 243, s, fcvt.w.s, dyn, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* rtz */
        fx 244, d, fcvt.lu.d, dyn, 0x400C000000000000, , 0x0000000000000003, F_NX
        set_frm FRM_RDN
        fx 245, s, fcvt.w.s, dyn, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* rdn */
        fx 246, d, fcvt.lu.d, dyn, 0x400C000000000000, , 0x0000000000000003, F_NX
        set_frm FRM_RUP
        fx 247, s, fcvt.w.s, dyn, 0xC0200000, , 0xFFFFFFFFFFFFFFFE, F_NX /* rup */
        fx 248, d, fcvt.lu.d, dyn, 0x400C000000000000, , 0x0000000000000004, F_NX
        set_frm FRM_RMM
        fx 249, s, fcvt.w.s, dyn, 0xC0200000, , 0xFFFFFFFFFFFFFFFD, F_NX /* rmm */
        fx 250, d, fcvt.lu.d, dyn, 0x400C000000000000, , 0x0000000000000004, F_NX
        set_frm FRM_RNE
TEST_PASS
TEST_END
