/* Integer to F/D, fcvt.{s,d}.{w,wu,l,lu} (W/WU sources use the low 32
 * bits only; results +0, never -0), and fcvt.s.d (rounding, overflow,
 * underflow with tininess after rounding, NaNs) and fcvt.d.s (exact), in
 * static and dynamic rounding modes. Result and fflags checked;
 * confirmed on QEMU 7.2. */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

TEST_BEGIN
        fp_setup

        /* ---- integer -> single ---- */
        fi 1, s, fcvt.s.w, rne, 0x0000000000000000, 0x00000000, 0 /* +0, never -0 */
        fi 2, s, fcvt.s.w, rne, 0x0000000000000001, 0x3F800000, 0
        fi 3, s, fcvt.s.w, rne, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        /* W/WU use the low 32 bits only */
        fi 4, s, fcvt.s.w, rne, 0xFFFFFFFF00000003, 0x40400000, 0
        fi 5, s, fcvt.s.w, rne, 0x00000000FFFFFFFF, 0xBF800000, 0
        fi 6, s, fcvt.s.w, rne, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 7, s, fcvt.s.w, rtz, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 8, s, fcvt.s.w, rdn, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 9, s, fcvt.s.w, rup, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 10, s, fcvt.s.w, rmm, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 11, s, fcvt.s.w, rne, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 12, s, fcvt.s.w, rtz, 0xFFFFFFFFFEFFFFFD, 0xCB800001, F_NX /* -(2^p + 3): tie */
        fi 13, s, fcvt.s.w, rdn, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 14, s, fcvt.s.w, rup, 0xFFFFFFFFFEFFFFFD, 0xCB800001, F_NX /* -(2^p + 3): tie */
        fi 15, s, fcvt.s.w, rmm, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 16, s, fcvt.s.w, rne, 0x0000000001000003, 0x4B800002, F_NX
        fi 17, s, fcvt.s.w, rne, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 18, s, fcvt.s.w, rtz, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 19, s, fcvt.s.w, rdn, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 20, s, fcvt.s.w, rup, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 21, s, fcvt.s.w, rmm, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 22, s, fcvt.s.w, rne, 0x0000000080000000, 0xCF000000, 0
        fi 23, s, fcvt.s.w, rne, 0x7FFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 24, s, fcvt.s.w, rtz, 0x7FFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 25, s, fcvt.s.w, rup, 0x7FFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 26, s, fcvt.s.w, rne, 0x8000000000000000, 0x00000000, 0
        fi 27, s, fcvt.s.w, rdn, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 28, s, fcvt.s.w, rtz, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 29, s, fcvt.s.wu, rne, 0x0000000000000000, 0x00000000, 0 /* +0, never -0 */
        fi 30, s, fcvt.s.wu, rne, 0x0000000000000001, 0x3F800000, 0
        fi 31, s, fcvt.s.wu, rne, 0xFFFFFFFFFFFFFFFF, 0x4F800000, F_NX
        /* W/WU use the low 32 bits only */
        fi 32, s, fcvt.s.wu, rne, 0xFFFFFFFF00000003, 0x40400000, 0
        fi 33, s, fcvt.s.wu, rne, 0x00000000FFFFFFFF, 0x4F800000, F_NX
        fi 34, s, fcvt.s.wu, rne, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 35, s, fcvt.s.wu, rtz, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 36, s, fcvt.s.wu, rdn, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 37, s, fcvt.s.wu, rup, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 38, s, fcvt.s.wu, rmm, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 39, s, fcvt.s.wu, rne, 0xFFFFFFFFFEFFFFFD, 0x4F7F0000, F_NX /* -(2^p + 3): tie */
        fi 40, s, fcvt.s.wu, rtz, 0xFFFFFFFFFEFFFFFD, 0x4F7EFFFF, F_NX /* -(2^p + 3): tie */
        fi 41, s, fcvt.s.wu, rdn, 0xFFFFFFFFFEFFFFFD, 0x4F7EFFFF, F_NX /* -(2^p + 3): tie */
        fi 42, s, fcvt.s.wu, rup, 0xFFFFFFFFFEFFFFFD, 0x4F7F0000, F_NX /* -(2^p + 3): tie */
        fi 43, s, fcvt.s.wu, rmm, 0xFFFFFFFFFEFFFFFD, 0x4F7F0000, F_NX /* -(2^p + 3): tie */
        fi 44, s, fcvt.s.wu, rne, 0x0000000001000003, 0x4B800002, F_NX
        fi 45, s, fcvt.s.wu, rne, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 46, s, fcvt.s.wu, rtz, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 47, s, fcvt.s.wu, rdn, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 48, s, fcvt.s.wu, rup, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 49, s, fcvt.s.wu, rmm, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 50, s, fcvt.s.wu, rne, 0x0000000080000000, 0x4F000000, 0
        fi 51, s, fcvt.s.wu, rne, 0x7FFFFFFFFFFFFFFF, 0x4F800000, F_NX
        fi 52, s, fcvt.s.wu, rtz, 0x7FFFFFFFFFFFFFFF, 0x4F7FFFFF, F_NX
        fi 53, s, fcvt.s.wu, rup, 0x7FFFFFFFFFFFFFFF, 0x4F800000, F_NX
        fi 54, s, fcvt.s.wu, rne, 0x8000000000000000, 0x00000000, 0
        fi 55, s, fcvt.s.wu, rdn, 0xFFFFFFFFFFFFFFFF, 0x4F7FFFFF, F_NX
        fi 56, s, fcvt.s.wu, rtz, 0xFFFFFFFFFFFFFFFF, 0x4F7FFFFF, F_NX
        fi 57, s, fcvt.s.l, rne, 0x0000000000000000, 0x00000000, 0 /* +0, never -0 */
        fi 58, s, fcvt.s.l, rne, 0x0000000000000001, 0x3F800000, 0
        fi 59, s, fcvt.s.l, rne, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 60, s, fcvt.s.l, rne, 0xFFFFFFFF00000003, 0xCF800000, F_NX
        fi 61, s, fcvt.s.l, rne, 0x00000000FFFFFFFF, 0x4F800000, F_NX
        fi 62, s, fcvt.s.l, rne, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 63, s, fcvt.s.l, rtz, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 64, s, fcvt.s.l, rdn, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 65, s, fcvt.s.l, rup, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 66, s, fcvt.s.l, rmm, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 67, s, fcvt.s.l, rne, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 68, s, fcvt.s.l, rtz, 0xFFFFFFFFFEFFFFFD, 0xCB800001, F_NX /* -(2^p + 3): tie */
        fi 69, s, fcvt.s.l, rdn, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 70, s, fcvt.s.l, rup, 0xFFFFFFFFFEFFFFFD, 0xCB800001, F_NX /* -(2^p + 3): tie */
        fi 71, s, fcvt.s.l, rmm, 0xFFFFFFFFFEFFFFFD, 0xCB800002, F_NX /* -(2^p + 3): tie */
        fi 72, s, fcvt.s.l, rne, 0x0000000001000003, 0x4B800002, F_NX
        fi 73, s, fcvt.s.l, rne, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 74, s, fcvt.s.l, rtz, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 75, s, fcvt.s.l, rdn, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 76, s, fcvt.s.l, rup, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 77, s, fcvt.s.l, rmm, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 78, s, fcvt.s.l, rne, 0x0000000080000000, 0x4F000000, 0
        fi 79, s, fcvt.s.l, rne, 0x7FFFFFFFFFFFFFFF, 0x5F000000, F_NX
        fi 80, s, fcvt.s.l, rtz, 0x7FFFFFFFFFFFFFFF, 0x5EFFFFFF, F_NX
        fi 81, s, fcvt.s.l, rup, 0x7FFFFFFFFFFFFFFF, 0x5F000000, F_NX
        fi 82, s, fcvt.s.l, rne, 0x8000000000000000, 0xDF000000, 0
        fi 83, s, fcvt.s.l, rdn, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 84, s, fcvt.s.l, rtz, 0xFFFFFFFFFFFFFFFF, 0xBF800000, 0
        fi 85, s, fcvt.s.lu, rne, 0x0000000000000000, 0x00000000, 0 /* +0, never -0 */
        fi 86, s, fcvt.s.lu, rne, 0x0000000000000001, 0x3F800000, 0
        fi 87, s, fcvt.s.lu, rne, 0xFFFFFFFFFFFFFFFF, 0x5F800000, F_NX
        fi 88, s, fcvt.s.lu, rne, 0xFFFFFFFF00000003, 0x5F800000, F_NX
        fi 89, s, fcvt.s.lu, rne, 0x00000000FFFFFFFF, 0x4F800000, F_NX
        fi 90, s, fcvt.s.lu, rne, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 91, s, fcvt.s.lu, rtz, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 92, s, fcvt.s.lu, rdn, 0x0000000001000001, 0x4B800000, F_NX /* 2^p + 1: tie */
        fi 93, s, fcvt.s.lu, rup, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 94, s, fcvt.s.lu, rmm, 0x0000000001000001, 0x4B800001, F_NX /* 2^p + 1: tie */
        fi 95, s, fcvt.s.lu, rne, 0xFFFFFFFFFEFFFFFD, 0x5F800000, F_NX /* -(2^p + 3): tie */
        fi 96, s, fcvt.s.lu, rtz, 0xFFFFFFFFFEFFFFFD, 0x5F7FFFFF, F_NX /* -(2^p + 3): tie */
        fi 97, s, fcvt.s.lu, rdn, 0xFFFFFFFFFEFFFFFD, 0x5F7FFFFF, F_NX /* -(2^p + 3): tie */
        fi 98, s, fcvt.s.lu, rup, 0xFFFFFFFFFEFFFFFD, 0x5F800000, F_NX /* -(2^p + 3): tie */
        fi 99, s, fcvt.s.lu, rmm, 0xFFFFFFFFFEFFFFFD, 0x5F800000, F_NX /* -(2^p + 3): tie */
        fi 100, s, fcvt.s.lu, rne, 0x0000000001000003, 0x4B800002, F_NX
        fi 101, s, fcvt.s.lu, rne, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 102, s, fcvt.s.lu, rtz, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 103, s, fcvt.s.lu, rdn, 0x000000007FFFFFFF, 0x4EFFFFFF, F_NX
        fi 104, s, fcvt.s.lu, rup, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 105, s, fcvt.s.lu, rmm, 0x000000007FFFFFFF, 0x4F000000, F_NX
        fi 106, s, fcvt.s.lu, rne, 0x0000000080000000, 0x4F000000, 0
        fi 107, s, fcvt.s.lu, rne, 0x7FFFFFFFFFFFFFFF, 0x5F000000, F_NX
        fi 108, s, fcvt.s.lu, rtz, 0x7FFFFFFFFFFFFFFF, 0x5EFFFFFF, F_NX
        fi 109, s, fcvt.s.lu, rup, 0x7FFFFFFFFFFFFFFF, 0x5F000000, F_NX
        fi 110, s, fcvt.s.lu, rne, 0x8000000000000000, 0x5F000000, 0
        fi 111, s, fcvt.s.lu, rdn, 0xFFFFFFFFFFFFFFFF, 0x5F7FFFFF, F_NX
        fi 112, s, fcvt.s.lu, rtz, 0xFFFFFFFFFFFFFFFF, 0x5F7FFFFF, F_NX

        /* ---- integer -> double ---- */
        /* fcvt.d.w is always exact (no rounding mode) */
        fi 113, d, fcvt.d.w, -, 0x0000000000000000, 0x0000000000000000, 0
        fi 114, d, fcvt.d.w, -, 0x0000000000000001, 0x3FF0000000000000, 0
        fi 115, d, fcvt.d.w, -, 0xFFFFFFFFFFFFFFFF, 0xBFF0000000000000, 0
        fi 116, d, fcvt.d.w, -, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 117, d, fcvt.d.w, -, 0x0000000080000000, 0xC1E0000000000000, 0
        fi 118, d, fcvt.d.w, -, 0x00000000FFFFFFFF, 0xBFF0000000000000, 0
        fi 119, d, fcvt.d.w, -, 0xFFFFFFFF00000003, 0x4008000000000000, 0
        fi 120, d, fcvt.d.w, -, 0x00000000FFFFFFFF, 0xBFF0000000000000, 0
        fi 121, d, fcvt.d.w, -, 0x7FFFFFFF00000000, 0x0000000000000000, 0
        fi 122, d, fcvt.d.w, -, 0x123456789ABCDEF0, 0xC1D950C844000000, 0
        /* fcvt.d.wu is always exact (no rounding mode) */
        fi 123, d, fcvt.d.wu, -, 0x0000000000000000, 0x0000000000000000, 0
        fi 124, d, fcvt.d.wu, -, 0x0000000000000001, 0x3FF0000000000000, 0
        fi 125, d, fcvt.d.wu, -, 0xFFFFFFFFFFFFFFFF, 0x41EFFFFFFFE00000, 0
        fi 126, d, fcvt.d.wu, -, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 127, d, fcvt.d.wu, -, 0x0000000080000000, 0x41E0000000000000, 0
        fi 128, d, fcvt.d.wu, -, 0x00000000FFFFFFFF, 0x41EFFFFFFFE00000, 0
        fi 129, d, fcvt.d.wu, -, 0xFFFFFFFF00000003, 0x4008000000000000, 0
        fi 130, d, fcvt.d.wu, -, 0x00000000FFFFFFFF, 0x41EFFFFFFFE00000, 0
        fi 131, d, fcvt.d.wu, -, 0x7FFFFFFF00000000, 0x0000000000000000, 0
        fi 132, d, fcvt.d.wu, -, 0x123456789ABCDEF0, 0x41E3579BDE000000, 0
        fi 133, d, fcvt.d.l, rne, 0x0000000000000000, 0x0000000000000000, 0 /* +0, never -0 */
        fi 134, d, fcvt.d.l, rne, 0x0000000000000001, 0x3FF0000000000000, 0
        fi 135, d, fcvt.d.l, rne, 0xFFFFFFFFFFFFFFFF, 0xBFF0000000000000, 0
        fi 136, d, fcvt.d.l, rne, 0xFFFFFFFF00000003, 0xC1EFFFFFFFA00000, 0
        fi 137, d, fcvt.d.l, rne, 0x00000000FFFFFFFF, 0x41EFFFFFFFE00000, 0
        /* 2^p + 1: tie */
        fi 138, d, fcvt.d.l, rne, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 139, d, fcvt.d.l, rtz, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 140, d, fcvt.d.l, rdn, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 141, d, fcvt.d.l, rup, 0x0020000000000001, 0x4340000000000001, F_NX
        /* 2^p + 1: tie */
        fi 142, d, fcvt.d.l, rmm, 0x0020000000000001, 0x4340000000000001, F_NX
        /* -(2^p + 3): tie */
        fi 143, d, fcvt.d.l, rne, 0xFFDFFFFFFFFFFFFD, 0xC340000000000002, F_NX
        /* -(2^p + 3): tie */
        fi 144, d, fcvt.d.l, rtz, 0xFFDFFFFFFFFFFFFD, 0xC340000000000001, F_NX
        /* -(2^p + 3): tie */
        fi 145, d, fcvt.d.l, rdn, 0xFFDFFFFFFFFFFFFD, 0xC340000000000002, F_NX
        /* -(2^p + 3): tie */
        fi 146, d, fcvt.d.l, rup, 0xFFDFFFFFFFFFFFFD, 0xC340000000000001, F_NX
        /* -(2^p + 3): tie */
        fi 147, d, fcvt.d.l, rmm, 0xFFDFFFFFFFFFFFFD, 0xC340000000000002, F_NX
        fi 148, d, fcvt.d.l, rne, 0x0020000000000003, 0x4340000000000002, F_NX
        fi 149, d, fcvt.d.l, rne, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 150, d, fcvt.d.l, rtz, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 151, d, fcvt.d.l, rdn, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 152, d, fcvt.d.l, rup, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 153, d, fcvt.d.l, rmm, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 154, d, fcvt.d.l, rne, 0x0000000080000000, 0x41E0000000000000, 0
        fi 155, d, fcvt.d.l, rne, 0x7FFFFFFFFFFFFFFF, 0x43E0000000000000, F_NX
        fi 156, d, fcvt.d.l, rtz, 0x7FFFFFFFFFFFFFFF, 0x43DFFFFFFFFFFFFF, F_NX
        fi 157, d, fcvt.d.l, rup, 0x7FFFFFFFFFFFFFFF, 0x43E0000000000000, F_NX
        fi 158, d, fcvt.d.l, rne, 0x8000000000000000, 0xC3E0000000000000, 0
        fi 159, d, fcvt.d.l, rdn, 0xFFFFFFFFFFFFFFFF, 0xBFF0000000000000, 0
        fi 160, d, fcvt.d.l, rtz, 0xFFFFFFFFFFFFFFFF, 0xBFF0000000000000, 0
        fi 161, d, fcvt.d.lu, rne, 0x0000000000000000, 0x0000000000000000, 0 /* +0, never -0 */
        fi 162, d, fcvt.d.lu, rne, 0x0000000000000001, 0x3FF0000000000000, 0
        fi 163, d, fcvt.d.lu, rne, 0xFFFFFFFFFFFFFFFF, 0x43F0000000000000, F_NX
        fi 164, d, fcvt.d.lu, rne, 0xFFFFFFFF00000003, 0x43EFFFFFFFE00000, F_NX
        fi 165, d, fcvt.d.lu, rne, 0x00000000FFFFFFFF, 0x41EFFFFFFFE00000, 0
        /* 2^p + 1: tie */
        fi 166, d, fcvt.d.lu, rne, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 167, d, fcvt.d.lu, rtz, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 168, d, fcvt.d.lu, rdn, 0x0020000000000001, 0x4340000000000000, F_NX
        /* 2^p + 1: tie */
        fi 169, d, fcvt.d.lu, rup, 0x0020000000000001, 0x4340000000000001, F_NX
        /* 2^p + 1: tie */
        fi 170, d, fcvt.d.lu, rmm, 0x0020000000000001, 0x4340000000000001, F_NX
        /* -(2^p + 3): tie */
        fi 171, d, fcvt.d.lu, rne, 0xFFDFFFFFFFFFFFFD, 0x43EFFC0000000000, F_NX
        /* -(2^p + 3): tie */
        fi 172, d, fcvt.d.lu, rtz, 0xFFDFFFFFFFFFFFFD, 0x43EFFBFFFFFFFFFF, F_NX
        /* -(2^p + 3): tie */
        fi 173, d, fcvt.d.lu, rdn, 0xFFDFFFFFFFFFFFFD, 0x43EFFBFFFFFFFFFF, F_NX
        /* -(2^p + 3): tie */
        fi 174, d, fcvt.d.lu, rup, 0xFFDFFFFFFFFFFFFD, 0x43EFFC0000000000, F_NX
        /* -(2^p + 3): tie */
        fi 175, d, fcvt.d.lu, rmm, 0xFFDFFFFFFFFFFFFD, 0x43EFFC0000000000, F_NX
        fi 176, d, fcvt.d.lu, rne, 0x0020000000000003, 0x4340000000000002, F_NX
        fi 177, d, fcvt.d.lu, rne, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 178, d, fcvt.d.lu, rtz, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 179, d, fcvt.d.lu, rdn, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 180, d, fcvt.d.lu, rup, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 181, d, fcvt.d.lu, rmm, 0x000000007FFFFFFF, 0x41DFFFFFFFC00000, 0
        fi 182, d, fcvt.d.lu, rne, 0x0000000080000000, 0x41E0000000000000, 0
        fi 183, d, fcvt.d.lu, rne, 0x7FFFFFFFFFFFFFFF, 0x43E0000000000000, F_NX
        fi 184, d, fcvt.d.lu, rtz, 0x7FFFFFFFFFFFFFFF, 0x43DFFFFFFFFFFFFF, F_NX
        fi 185, d, fcvt.d.lu, rup, 0x7FFFFFFFFFFFFFFF, 0x43E0000000000000, F_NX
        fi 186, d, fcvt.d.lu, rne, 0x8000000000000000, 0x43E0000000000000, 0
        fi 187, d, fcvt.d.lu, rdn, 0xFFFFFFFFFFFFFFFF, 0x43EFFFFFFFFFFFFF, F_NX
        fi 188, d, fcvt.d.lu, rtz, 0xFFFFFFFFFFFFFFFF, 0x43EFFFFFFFFFFFFF, F_NX

        /* ---- double -> single ---- */
        fcv 189, s, d, fcvt.s.d, rne, 0x3FF0000000000000, 0x3F800000, 0
        fcv 190, s, d, fcvt.s.d, rne, 0x8000000000000000, 0x80000000, 0
        fcv 191, s, d, fcvt.s.d, rne, 0x3FD5555555555555, 0x3EAAAAAB, F_NX /* 1/3 */
        fcv 192, s, d, fcvt.s.d, rtz, 0x3FD5555555555555, 0x3EAAAAAA, F_NX /* 1/3 */
        fcv 193, s, d, fcvt.s.d, rdn, 0x3FD5555555555555, 0x3EAAAAAA, F_NX /* 1/3 */
        fcv 194, s, d, fcvt.s.d, rup, 0x3FD5555555555555, 0x3EAAAAAB, F_NX /* 1/3 */
        fcv 195, s, d, fcvt.s.d, rmm, 0x3FD5555555555555, 0x3EAAAAAB, F_NX /* 1/3 */
        /* -(1 + 2^-24): tie */
        fcv 196, s, d, fcvt.s.d, rne, 0xBFF0000010000000, 0xBF800000, F_NX
        /* -(1 + 2^-24): tie */
        fcv 197, s, d, fcvt.s.d, rtz, 0xBFF0000010000000, 0xBF800000, F_NX
        /* -(1 + 2^-24): tie */
        fcv 198, s, d, fcvt.s.d, rdn, 0xBFF0000010000000, 0xBF800001, F_NX
        /* -(1 + 2^-24): tie */
        fcv 199, s, d, fcvt.s.d, rup, 0xBFF0000010000000, 0xBF800000, F_NX
        /* -(1 + 2^-24): tie */
        fcv 200, s, d, fcvt.s.d, rmm, 0xBFF0000010000000, 0xBF800001, F_NX
        fcv 201, s, d, fcvt.s.d, rne, 0x7FEFFFFFFFFFFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        fcv 202, s, d, fcvt.s.d, rtz, 0x7FEFFFFFFFFFFFFF, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fcv 203, s, d, fcvt.s.d, rdn, 0x7FEFFFFFFFFFFFFF, 0x7F7FFFFF, F_OF|F_NX /* overflow */
        fcv 204, s, d, fcvt.s.d, rup, 0x7FEFFFFFFFFFFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        fcv 205, s, d, fcvt.s.d, rmm, 0x7FEFFFFFFFFFFFFF, 0x7F800000, F_OF|F_NX /* overflow */
        /* rounds up to 2^128: overflow */
        fcv 206, s, d, fcvt.s.d, rne, 0x47EFFFFFF0000000, 0x7F800000, F_OF|F_NX
        fcv 207, s, d, fcvt.s.d, rtz, 0x47EFFFFFF0000000, 0x7F7FFFFF, F_NX
        fcv 208, s, d, fcvt.s.d, rne, 0x47EFFFFFE0000000, 0x7F7FFFFF, 0 /* FLT_MAX exactly */
        /* tiny only before rounding */
        fcv 209, s, d, fcvt.s.d, rne, 0x380FFFFFF0000000, 0x00800000, F_NX
        /* tiny only before rounding */
        fcv 210, s, d, fcvt.s.d, rtz, 0x380FFFFFF0000000, 0x007FFFFF, F_UF|F_NX
        /* tiny only before rounding */
        fcv 211, s, d, fcvt.s.d, rdn, 0x380FFFFFF0000000, 0x007FFFFF, F_UF|F_NX
        /* tiny only before rounding */
        fcv 212, s, d, fcvt.s.d, rup, 0x380FFFFFF0000000, 0x00800000, F_NX
        /* tiny only before rounding */
        fcv 213, s, d, fcvt.s.d, rmm, 0x380FFFFFF0000000, 0x00800000, F_NX
        /* half the smallest subnormal */
        fcv 214, s, d, fcvt.s.d, rne, 0x3690000000000000, 0x00000000, F_UF|F_NX
        /* half the smallest subnormal */
        fcv 215, s, d, fcvt.s.d, rup, 0x3690000000000000, 0x00000001, F_UF|F_NX
        /* 1.5 * minsub: tie to even */
        fcv 216, s, d, fcvt.s.d, rne, 0x36A8000000000000, 0x00000002, F_UF|F_NX
        /* smallest subnormal, exact */
        fcv 217, s, d, fcvt.s.d, rne, 0x36A0000000000000, 0x00000001, 0
        fcv 218, s, d, fcvt.s.d, rne, 0x37D0000000000000, 0x00080000, 0
        /* double subnormal -> 0 */
        fcv 219, s, d, fcvt.s.d, rne, 0x0000000000000001, 0x00000000, F_UF|F_NX
        fcv 220, s, d, fcvt.s.d, rup, 0x8000000000000001, 0x80000000, F_UF|F_NX
        fcv 221, s, d, fcvt.s.d, rdn, 0x8000000000000001, 0x80000001, F_UF|F_NX
        fcv 222, s, d, fcvt.s.d, rne, 0x7FF0000000000000, 0x7F800000, 0
        fcv 223, s, d, fcvt.s.d, rne, 0xFFF0000000000000, 0xFF800000, 0
        /* NaN payload dropped */
        fcv 224, s, d, fcvt.s.d, rne, 0x7FF8000000012345, 0x7FC00000, 0
        fcv 225, s, d, fcvt.s.d, rne, 0xFFF8000000000000, 0x7FC00000, 0
        fcv 226, s, d, fcvt.s.d, rne, 0x7FF0000000000001, 0x7FC00000, F_NV /* invalid */

        /* ---- single -> double (exact) ---- */
        /* (fcvt.d.s has no rounding mode operand) */
        fcv 227, d, s, fcvt.d.s, -, 0x3F800000, 0x3FF0000000000000, 0
        fcv 228, d, s, fcvt.d.s, -, 0x3EAAAAAB, 0x3FD5555560000000, 0
        fcv 229, d, s, fcvt.d.s, -, 0xFF7FFFFF, 0xC7EFFFFFE0000000, 0
        /* subnormal becomes normal */
        fcv 230, d, s, fcvt.d.s, -, 0x00000001, 0x36A0000000000000, 0
        fcv 231, d, s, fcvt.d.s, -, 0x807FFFFF, 0xB80FFFFFC0000000, 0
        fcv 232, d, s, fcvt.d.s, -, 0x80000000, 0x8000000000000000, 0
        fcv 233, d, s, fcvt.d.s, -, 0xFF800000, 0xFFF0000000000000, 0
        fcv 234, d, s, fcvt.d.s, -, 0x7FC12345, 0x7FF8000000000000, 0 /* payload dropped */
        fcv 235, d, s, fcvt.d.s, -, 0xFFC00000, 0x7FF8000000000000, 0
        fcv 236, d, s, fcvt.d.s, -, 0x7F800001, 0x7FF8000000000000, F_NV /* invalid */
        fcv 237, d, s, fcvt.d.s, -, 0xFF805A5A, 0x7FF8000000000000, F_NV

        /* ---- dynamic rounding ---- */
        set_frm FRM_RNE
        fi 238, s, fcvt.s.l, dyn, 0x0000000001000001, 0x4B800000, F_NX
        fi 239, d, fcvt.d.lu, dyn, 0xFFFFFFFFFFFFFFFF, 0x43F0000000000000, F_NX
        fcv 240, s, d, fcvt.s.d, dyn, 0x3FD5555555555555, 0x3EAAAAAB, F_NX
        set_frm FRM_RTZ
        fi 241, s, fcvt.s.l, dyn, 0x0000000001000001, 0x4B800000, F_NX
        fi 242, d, fcvt.d.lu, dyn, 0xFFFFFFFFFFFFFFFF, 0x43EFFFFFFFFFFFFF, F_NX
        fcv 243, s, d, fcvt.s.d, dyn, 0x3FD5555555555555, 0x3EAAAAAA, F_NX
        set_frm FRM_RDN
        fi 244, s, fcvt.s.l, dyn, 0x0000000001000001, 0x4B800000, F_NX
        fi 245, d, fcvt.d.lu, dyn, 0xFFFFFFFFFFFFFFFF, 0x43EFFFFFFFFFFFFF, F_NX
        fcv 246, s, d, fcvt.s.d, dyn, 0x3FD5555555555555, 0x3EAAAAAA, F_NX
        set_frm FRM_RUP
        fi 247, s, fcvt.s.l, dyn, 0x0000000001000001, 0x4B800001, F_NX
        fi 248, d, fcvt.d.lu, dyn, 0xFFFFFFFFFFFFFFFF, 0x43F0000000000000, F_NX
        fcv 249, s, d, fcvt.s.d, dyn, 0x3FD5555555555555, 0x3EAAAAAB, F_NX
        set_frm FRM_RMM
        fi 250, s, fcvt.s.l, dyn, 0x0000000001000001, 0x4B800001, F_NX
        fi 251, d, fcvt.d.lu, dyn, 0xFFFFFFFFFFFFFFFF, 0x43F0000000000000, F_NX
        fcv 252, s, d, fcvt.s.d, dyn, 0x3FD5555555555555, 0x3EAAAAAB, F_NX
        set_frm FRM_RNE
TEST_PASS
TEST_END
