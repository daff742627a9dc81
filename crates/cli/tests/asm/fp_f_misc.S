/* F extension: fmv.w.x/fmv.x.w, flw/fsw, NaN-boxing of inputs and
 * results, fmin/fmax, sign injection, feq/flt/fle and fclass (single
 * precision). Every check compares the result bits and fflags; checked
 * on QEMU 7.2. */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

TEST_BEGIN
        fp_setup

        /* ---- moves: fmv.w.x boxes the low word, fmv.x.w sign-extends ---- */
        fi 1, s, fmv.w.x, -, 0x123456783F800000, 0x3F800000, 0
        fi 2, s, fmv.w.x, -, 0x7F800001, 0x7F800001, 0      /* sNaN kept */
        fx 3, s, fmv.x.w, -, 0x80000000, , 0xFFFFFFFF80000000, 0
        fx 4, s, fmv.x.w, -, 0x7FC00000, , 0x7FC00000, 0
        fx 5, s, fmv.x.w, -, 0xBF800000, , 0xFFFFFFFFBF800000, 0
        /* fmv.x.w takes the low word even if the register is not boxed */
        fx 6, d, fmv.x.w, -, 0x123456789ABCDEF0, , 0xFFFFFFFF9ABCDEF0, 0
        fx 7, d, fmv.x.w, -, 0xFFFFFFFF12345678, , 0x12345678, 0

        /* ---- flw boxes, fsw stores the low word of any register ---- */
        la s0, fbuf
        li t0, 0x7F800001
        sw t0, 0(s0)
        li t0, 0xC0490FDB
        sw t0, 4(s0)
        flw f5, 0(s0)
        csrrw a1, fflags, zero
        fmv.x.d a0, f5
        fp_expect 8, BOX|0x7F800001, 0
        addi s1, s0, 8
        flw f6, -4(s1)
        fmv.x.d a0, f6
        csrrw a1, fflags, zero
        fp_expect 9, BOX|0xC0490FDB, 0
        li t0, 0xA5A5A5A5A5A5A5A5
        sd t0, 8(s0)
        fset f7, d, 0x1122334455667788
        fsw f7, 8(s0)
        csrrw a1, fflags, zero
        ld a0, 8(s0)
        fp_expect 10, 0xA5A5A5A555667788, 0
        fsw f6, 12(s0)
        ld a0, 8(s0)
        fp_expect 11, 0xC0490FDB55667788, 0
        fsd f5, 16(s0)                          /* fsd shows the boxing */
        ld a0, 16(s0)
        fp_expect 12, 0xFFFFFFFF7F800001, 0
        flw f8, 20(s0)                          /* upper half as a float */
        fmv.x.d a0, f8
        fp_expect 13, 0xFFFFFFFFFFFFFFFF, 0

        /* ---- inputs not NaN-boxed read as the canonical NaN ---- */
        fop 20, s, d, fadd.s, rne, 0x7FC00000, 0, 0x000000003F800000, 0xFFFFFFFF3F800000
        fop 21, s, d, fadd.s, rne, 0x7FC00000, 0, 0xFFFFFFFE3F800000, 0xFFFFFFFF3F800000
        fop 22, s, d, fsub.s, rne, 0x7FC00000, 0, 0xFFFFFFFF3F800000, 0x7FFFFFFF3F800000
        /* an unboxed sNaN pattern is just a quiet NaN: no invalid flag */
        fop 23, s, d, fmul.s, rne, 0x7FC00000, 0, 0x000000007F800001, 0xFFFFFFFF3F800000
        fop 24, s, d, fmul.s, rne, 0x7FC00000, F_NV, 0x000000003F800000, 0xFFFFFFFF7F800001
        fop 25, s, d, fdiv.s, rne, 0x7FC00000, 0, 0xFFFFFFFF3F800000, 0x0000000000000000
        fop 26, s, d, fsqrt.s, rne, 0x7FC00000, 0, 0x0000000040800000
        fop 27, s, d, fsgnj.s, -, 0xFFC00000, 0, 0x000000003F800000, 0xFFFFFFFFBF800000
        fop 28, s, d, fsgnjn.s, -, 0xC0000000, 0, 0xFFFFFFFF40000000, 0x00000000BF800000
        fop 29, s, d, fsgnjx.s, -, 0xFFC00000, 0, 0x123456783F800000, 0xFFFFFFFFBF800000
        fop 30, s, d, fmin.s, -, 0x40000000, 0, 0x000000003F800000, 0xFFFFFFFF40000000
        fop 31, s, d, fmax.s, -, 0xC0000000, 0, 0xFFFFFFFFC0000000, 0x7FF0000000000000
        fop 32, s, d, fmin.s, -, 0x7FC00000, 0, 0x000000003F800000, 0x0000000040000000
        fop 33, s, d, fmadd.s, rne, 0x7FC00000, 0, 0xFFFFFFFF3F800000, 0xFFFFFFFF3F800000, 0x000000003F800000
        fop 34, s, d, fnmsub.s, rne, 0x7FC00000, 0, 0xFFFFFFFF00000000, 0x000000007F800000, 0xFFFFFFFF3F800000
        fx 35, d, feq.s, -, 0x000000003F800000, 0x000000003F800000, 0, 0
        fx 36, d, feq.s, -, 0xFFFFFFFF3F800000, 0x000000003F800000, 0, 0
        fx 37, d, flt.s, -, 0x000000003F800000, 0xFFFFFFFF40000000, 0, F_NV
        fx 38, d, fle.s, -, 0xFFFFFFFF3F800000, 0x000000007F800001, 0, F_NV
        fx 39, d, fclass.s, -, 0x000000007F800001, , 0x200, 0
        fx 40, d, fclass.s, -, 0x00000000FF800000, , 0x200, 0
        fx 41, d, fclass.s, -, 0xFFFFFFFF7F800001, , 0x100, 0
        fx 42, d, fcvt.w.s, rtz, 0x0000000040000000, , 0x7FFFFFFF, F_NV
        fx 43, d, fcvt.lu.s, rtz, 0x00000000BF800000, , 0xFFFFFFFFFFFFFFFF, F_NV
        fcv 44, d, d, fcvt.d.s, -, 0x000000003F800000, 0x7FF8000000000000, 0
        fcv 45, d, d, fcvt.d.s, -, 0xFFFFFFFF3F800000, 0x3FF0000000000000, 0
        /* a double result register read as single is unboxed */
        fset f1, d, 0x3FF0000000000000
        fset f2, s, 0x3F800000
        fadd.d f3, f1, f1
        fadd.s f3, f3, f2
        fp_done 46, s, 0x7FC00000, 0

        /* ---- fmin / fmax (IEEE 754-2019 minimumNumber/maximumNumber) ---- */
        fs2 50, fmin.s, -, 0x3F800000, 0x40000000, 0x3F800000, 0
        fs2 51, fmin.s, -, 0x40000000, 0x3F800000, 0x3F800000, 0
        fs2 52, fmin.s, -, 0xBF800000, 0xC0000000, 0xC0000000, 0
        fs2 53, fmin.s, -, 0x80000000, 0x00000000, 0x80000000, 0 /* -0 < +0 */
        fs2 54, fmin.s, -, 0x00000000, 0x80000000, 0x80000000, 0
        /* one quiet NaN: the other operand */
        fs2 55, fmin.s, -, 0x7FC00000, 0x3F800000, 0x3F800000, 0
        fs2 56, fmin.s, -, 0x3F800000, 0x7FC12345, 0x3F800000, 0
        /* signaling NaN: invalid, other operand */
        fs2 57, fmin.s, -, 0x7F800001, 0x3F800000, 0x3F800000, F_NV
        fs2 58, fmin.s, -, 0xBF800000, 0x7F805A5A, 0xBF800000, F_NV
        fs2 59, fmin.s, -, 0x7FC12345, 0x7FC00000, 0x7FC00000, 0 /* two NaNs: canonical NaN */
        fs2 60, fmin.s, -, 0x7F800001, 0x7FC00000, 0x7FC00000, F_NV
        fs2 61, fmin.s, -, 0xFF800000, 0x7F7FFFFF, 0xFF800000, 0
        fs2 62, fmin.s, -, 0x7F800000, 0x7F7FFFFF, 0x7F7FFFFF, 0
        fs2 63, fmin.s, -, 0x00000001, 0x80000001, 0x80000001, 0
        fs2 64, fmin.s, -, 0xFFC00000, 0xBF800000, 0xBF800000, 0
        fs2 65, fmax.s, -, 0x3F800000, 0x40000000, 0x40000000, 0
        fs2 66, fmax.s, -, 0x40000000, 0x3F800000, 0x40000000, 0
        fs2 67, fmax.s, -, 0xBF800000, 0xC0000000, 0xBF800000, 0
        fs2 68, fmax.s, -, 0x80000000, 0x00000000, 0x00000000, 0 /* -0 < +0 */
        fs2 69, fmax.s, -, 0x00000000, 0x80000000, 0x00000000, 0
        /* one quiet NaN: the other operand */
        fs2 70, fmax.s, -, 0x7FC00000, 0x3F800000, 0x3F800000, 0
        fs2 71, fmax.s, -, 0x3F800000, 0x7FC12345, 0x3F800000, 0
        /* signaling NaN: invalid, other operand */
        fs2 72, fmax.s, -, 0x7F800001, 0x3F800000, 0x3F800000, F_NV
        fs2 73, fmax.s, -, 0xBF800000, 0x7F805A5A, 0xBF800000, F_NV
        fs2 74, fmax.s, -, 0x7FC12345, 0x7FC00000, 0x7FC00000, 0 /* two NaNs: canonical NaN */
        fs2 75, fmax.s, -, 0x7F800001, 0x7FC00000, 0x7FC00000, F_NV
        fs2 76, fmax.s, -, 0xFF800000, 0x7F7FFFFF, 0x7F7FFFFF, 0
        fs2 77, fmax.s, -, 0x7F800000, 0x7F7FFFFF, 0x7F800000, 0
        fs2 78, fmax.s, -, 0x00000001, 0x80000001, 0x00000001, 0
        fs2 79, fmax.s, -, 0xFFC00000, 0xBF800000, 0xBF800000, 0

        /* ---- sign injection: bits copied, NaNs untouched, no flags ---- */
        fs2 80, fsgnj.s, -, 0x3F800000, 0xC0000000, 0xBF800000, 0
        fs2 81, fsgnj.s, -, 0xBF800000, 0x40000000, 0x3F800000, 0
        fs2 82, fsgnj.s, -, 0xBF800000, 0xC0000000, 0xBF800000, 0
        fs2 83, fsgnjn.s, -, 0x3F800000, 0xC0000000, 0x3F800000, 0
        fs2 84, fsgnjn.s, -, 0x3F800000, 0x40000000, 0xBF800000, 0
        fs2 85, fsgnjn.s, -, 0x80000000, 0x80000000, 0x00000000, 0 /* fneg -0 */
        fs2 86, fsgnjx.s, -, 0xBF800000, 0xC0000000, 0x3F800000, 0
        fs2 87, fsgnjx.s, -, 0xBF800000, 0x40000000, 0xBF800000, 0
        fs2 88, fsgnjx.s, -, 0x80000000, 0x80000000, 0x00000000, 0 /* fabs -0 */
        fs2 89, fsgnj.s, -, 0x7F805A5A, 0xBF800000, 0xFF805A5A, 0 /* sNaN: no invalid */
        fs2 90, fsgnjn.s, -, 0x7FC12345, 0x3F800000, 0xFFC12345, 0
        fs2 91, fsgnjx.s, -, 0xFFC12345, 0xBF800000, 0x7FC12345, 0
        fs2 92, fsgnj.s, -, 0x7F800000, 0xFFC00000, 0xFF800000, 0
        fs2 93, fsgnjx.s, -, 0x007FFFFF, 0xFF800000, 0x807FFFFF, 0

        /* ---- feq (quiet), flt / fle (signaling) ---- */
        fx 94, s, feq.s, -, 0x3F800000, 0x3F800000, 1, 0
        fx 95, s, feq.s, -, 0x3F800000, 0x40000000, 0, 0
        fx 96, s, feq.s, -, 0x40000000, 0x3F800000, 0, 0
        fx 97, s, feq.s, -, 0x80000000, 0x00000000, 1, 0
        fx 98, s, feq.s, -, 0x00000000, 0x80000000, 1, 0
        fx 99, s, feq.s, -, 0xC0000000, 0xBF800000, 0, 0
        fx 100, s, feq.s, -, 0xFF800000, 0x7F800000, 0, 0
        fx 101, s, feq.s, -, 0x7F800000, 0x7F800000, 1, 0
        fx 102, s, feq.s, -, 0x00000001, 0x00000000, 0, 0
        fx 103, s, feq.s, -, 0x80000000, 0x80000001, 0, 0
        fx 104, s, feq.s, -, 0x7FC00000, 0x3F800000, 0, 0
        fx 105, s, feq.s, -, 0x3F800000, 0x7FC12345, 0, 0
        fx 106, s, feq.s, -, 0x7FC00000, 0x7FC00000, 0, 0
        fx 107, s, feq.s, -, 0x7F800001, 0x3F800000, 0, F_NV
        fx 108, s, feq.s, -, 0x3F800000, 0x7F805A5A, 0, F_NV
        fx 109, s, flt.s, -, 0x3F800000, 0x3F800000, 0, 0
        fx 110, s, flt.s, -, 0x3F800000, 0x40000000, 1, 0
        fx 111, s, flt.s, -, 0x40000000, 0x3F800000, 0, 0
        fx 112, s, flt.s, -, 0x80000000, 0x00000000, 0, 0
        fx 113, s, flt.s, -, 0x00000000, 0x80000000, 0, 0
        fx 114, s, flt.s, -, 0xC0000000, 0xBF800000, 1, 0
        fx 115, s, flt.s, -, 0xFF800000, 0x7F800000, 1, 0
        fx 116, s, flt.s, -, 0x7F800000, 0x7F800000, 0, 0
        fx 117, s, flt.s, -, 0x00000001, 0x00000000, 0, 0
        fx 118, s, flt.s, -, 0x80000000, 0x80000001, 0, 0
        fx 119, s, flt.s, -, 0x7FC00000, 0x3F800000, 0, F_NV
        fx 120, s, flt.s, -, 0x3F800000, 0x7FC12345, 0, F_NV
        fx 121, s, flt.s, -, 0x7FC00000, 0x7FC00000, 0, F_NV
        fx 122, s, flt.s, -, 0x7F800001, 0x3F800000, 0, F_NV
        fx 123, s, flt.s, -, 0x3F800000, 0x7F805A5A, 0, F_NV
        fx 124, s, fle.s, -, 0x3F800000, 0x3F800000, 1, 0
        fx 125, s, fle.s, -, 0x3F800000, 0x40000000, 1, 0
        fx 126, s, fle.s, -, 0x40000000, 0x3F800000, 0, 0
        fx 127, s, fle.s, -, 0x80000000, 0x00000000, 1, 0
        fx 128, s, fle.s, -, 0x00000000, 0x80000000, 1, 0
        fx 129, s, fle.s, -, 0xC0000000, 0xBF800000, 1, 0
        fx 130, s, fle.s, -, 0xFF800000, 0x7F800000, 1, 0
        fx 131, s, fle.s, -, 0x7F800000, 0x7F800000, 1, 0
        fx 132, s, fle.s, -, 0x00000001, 0x00000000, 0, 0
        fx 133, s, fle.s, -, 0x80000000, 0x80000001, 0, 0
        fx 134, s, fle.s, -, 0x7FC00000, 0x3F800000, 0, F_NV
        fx 135, s, fle.s, -, 0x3F800000, 0x7FC12345, 0, F_NV
        fx 136, s, fle.s, -, 0x7FC00000, 0x7FC00000, 0, F_NV
        fx 137, s, fle.s, -, 0x7F800001, 0x3F800000, 0, F_NV
        fx 138, s, fle.s, -, 0x3F800000, 0x7F805A5A, 0, F_NV

        /* ---- fclass: one bit per class ---- */
        fx 139, s, fclass.s, -, 0xFF800000, , 0x001, 0
        fx 140, s, fclass.s, -, 0xBF800000, , 0x002, 0
        fx 141, s, fclass.s, -, 0xFF7FFFFF, , 0x002, 0
        fx 142, s, fclass.s, -, 0x80000001, , 0x004, 0
        fx 143, s, fclass.s, -, 0x807FFFFF, , 0x004, 0
        fx 144, s, fclass.s, -, 0x80000000, , 0x008, 0
        fx 145, s, fclass.s, -, 0x00000000, , 0x010, 0
        fx 146, s, fclass.s, -, 0x00000001, , 0x020, 0
        fx 147, s, fclass.s, -, 0x007FFFFF, , 0x020, 0
        fx 148, s, fclass.s, -, 0x00800000, , 0x040, 0
        fx 149, s, fclass.s, -, 0x3F800000, , 0x040, 0
        fx 150, s, fclass.s, -, 0x7F7FFFFF, , 0x040, 0
        fx 151, s, fclass.s, -, 0x7F800000, , 0x080, 0
        fx 152, s, fclass.s, -, 0x7F800001, , 0x100, 0
        fx 153, s, fclass.s, -, 0x7F805A5A, , 0x100, 0
        fx 154, s, fclass.s, -, 0xFF800001, , 0x100, 0
        fx 155, s, fclass.s, -, 0x7FC00000, , 0x200, 0
        fx 156, s, fclass.s, -, 0x7FC12345, , 0x200, 0
        fx 157, s, fclass.s, -, 0xFFC00000, , 0x200, 0
TEST_PASS
TEST_END

        .data
        .balign 16
fbuf:   .skip 4096
