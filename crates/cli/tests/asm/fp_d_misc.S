/* D extension: fmv.d.x/fmv.x.d, fld/fsd and c.fld/c.fsd/c.fldsp/
 * c.fsdsp, fmin/fmax, sign injection, feq/flt/fle and fclass (double
 * precision). Every check compares the result bits and fflags; checked
 * on QEMU 7.2. */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

TEST_BEGIN
        fp_setup

        /* ---- fmv.d.x / fmv.x.d copy all 64 bits, no flags ---- */
        fi 1, d, fmv.d.x, -, 0x7FF0000000000001, 0x7FF0000000000001, 0
        fi 2, d, fmv.d.x, -, 0xFFFFFFFF3F800000, 0xFFFFFFFF3F800000, 0
        fx 3, d, fmv.x.d, -, 0xFFF8000000001234, , 0xFFF8000000001234, 0
        fx 4, d, fmv.x.d, -, 0x8000000000000000, , 0x8000000000000000, 0

        /* ---- fld / fsd, and the compressed forms ---- */
        la s0, fbuf
        li t0, 0x7FF0000000000001              /* sNaN: loaded as is */
        sd t0, 0(s0)
        li t0, 0xC00921FB54442D18
        sd t0, 8(s0)
        fld f5, 0(s0)
        csrrw a1, fflags, zero
        fmv.x.d a0, f5
        fp_expect 5, 0x7FF0000000000001, 0
        addi s1, s0, 16
        fld f6, -8(s1)
        fmv.x.d a0, f6
        fp_expect 6, 0xC00921FB54442D18, 0
        fsd f5, 16(s0)
        fsd f6, 2040(s0)                        /* large offset */
        ld a0, 16(s0)
        fp_expect 7, 0x7FF0000000000001, 0
        ld a0, 2040(s0)
        fp_expect 8, 0xC00921FB54442D18, 0
        fld f7, 2040(s0)
        fmv.x.d a0, f7
        fp_expect 9, 0xC00921FB54442D18, 0
        /* c.fld / c.fsd: rd', rs1' in f8-f15 / x8-x15, offset up to 248 */
        mv a2, s0
        li t0, 0x0123456789ABCDEF
        sd t0, 248(a2)
        c.fld fa1, 248(a2)
        fmv.x.d a0, fa1
        fp_expect 10, 0x0123456789ABCDEF, 0
        c.fld fs0, 8(a2)
        fmv.x.d a0, fs0
        fp_expect 11, 0xC00921FB54442D18, 0
        c.fsd fs0, 240(a2)
        ld a0, 240(a2)
        fp_expect 12, 0xC00921FB54442D18, 0
        c.fsd fa1, 0(a2)
        ld a0, 0(a2)
        fp_expect 13, 0x0123456789ABCDEF, 0
        /* c.fldsp / c.fsdsp: any f register, offset up to 504 from sp */
        mv sp, s0
        li t0, 0x3FF0000000000000
        sd t0, 504(sp)
        c.fldsp f31, 504(sp)
        fmv.x.d a0, f31
        fp_expect 14, 0x3FF0000000000000, 0
        c.fldsp f0, 8(sp)
        fmv.x.d a0, f0
        fp_expect 15, 0xC00921FB54442D18, 0
        c.fsdsp f31, 256(sp)
        ld a0, 256(sp)
        fp_expect 16, 0x3FF0000000000000, 0
        c.fsdsp f0, 496(sp)
        ld a0, 496(sp)
        fp_expect 17, 0xC00921FB54442D18, 0
        csrrw a1, fflags, zero
        fp_expect 18, 0xC00921FB54442D18, 0     /* loads/stores: no flags */
        /* a double op on a NaN-boxed single: just a negative quiet NaN */
        fop 19, d, d, fadd.d, rne, 0x7FF8000000000000, 0, 0xFFFFFFFF3F800000, 0x3FF0000000000000
        fx 20, d, fclass.d, -, 0xFFFFFFFF3F800000, , 0x200, 0

        /* ---- fmin / fmax (IEEE 754-2019 minimumNumber/maximumNumber) ---- */
        fd2 50, fmin.d, -, 0x3FF0000000000000, 0x4000000000000000, 0x3FF0000000000000, 0
        fd2 51, fmin.d, -, 0x4000000000000000, 0x3FF0000000000000, 0x3FF0000000000000, 0
        fd2 52, fmin.d, -, 0xBFF0000000000000, 0xC000000000000000, 0xC000000000000000, 0
        /* -0 < +0 */
        fd2 53, fmin.d, -, 0x8000000000000000, 0x0000000000000000, 0x8000000000000000, 0
        fd2 54, fmin.d, -, 0x0000000000000000, 0x8000000000000000, 0x8000000000000000, 0
        /* one quiet NaN: the other operand */
        fd2 55, fmin.d, -, 0x7FF8000000000000, 0x3FF0000000000000, 0x3FF0000000000000, 0
        fd2 56, fmin.d, -, 0x3FF0000000000000, 0x7FF8000000012345, 0x3FF0000000000000, 0
        /* signaling NaN: invalid, other operand */
        fd2 57, fmin.d, -, 0x7FF0000000000001, 0x3FF0000000000000, 0x3FF0000000000000, F_NV
        fd2 58, fmin.d, -, 0xBFF0000000000000, 0x7FF0000000005A5A, 0xBFF0000000000000, F_NV
        /* two NaNs: canonical NaN */
        fd2 59, fmin.d, -, 0x7FF8000000012345, 0x7FF8000000000000, 0x7FF8000000000000, 0
        fd2 60, fmin.d, -, 0x7FF0000000000001, 0x7FF8000000000000, 0x7FF8000000000000, F_NV
        fd2 61, fmin.d, -, 0xFFF0000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFF0000000000000, 0
        fd2 62, fmin.d, -, 0x7FF0000000000000, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0
        fd2 63, fmin.d, -, 0x0000000000000001, 0x8000000000000001, 0x8000000000000001, 0
        fd2 64, fmin.d, -, 0xFFF8000000000000, 0xBFF0000000000000, 0xBFF0000000000000, 0
        fd2 65, fmax.d, -, 0x3FF0000000000000, 0x4000000000000000, 0x4000000000000000, 0
        fd2 66, fmax.d, -, 0x4000000000000000, 0x3FF0000000000000, 0x4000000000000000, 0
        fd2 67, fmax.d, -, 0xBFF0000000000000, 0xC000000000000000, 0xBFF0000000000000, 0
        /* -0 < +0 */
        fd2 68, fmax.d, -, 0x8000000000000000, 0x0000000000000000, 0x0000000000000000, 0
        fd2 69, fmax.d, -, 0x0000000000000000, 0x8000000000000000, 0x0000000000000000, 0
        /* one quiet NaN: the other operand */
        fd2 70, fmax.d, -, 0x7FF8000000000000, 0x3FF0000000000000, 0x3FF0000000000000, 0
        fd2 71, fmax.d, -, 0x3FF0000000000000, 0x7FF8000000012345, 0x3FF0000000000000, 0
        /* signaling NaN: invalid, other operand */
        fd2 72, fmax.d, -, 0x7FF0000000000001, 0x3FF0000000000000, 0x3FF0000000000000, F_NV
        fd2 73, fmax.d, -, 0xBFF0000000000000, 0x7FF0000000005A5A, 0xBFF0000000000000, F_NV
        /* two NaNs: canonical NaN */
        fd2 74, fmax.d, -, 0x7FF8000000012345, 0x7FF8000000000000, 0x7FF8000000000000, 0
        fd2 75, fmax.d, -, 0x7FF0000000000001, 0x7FF8000000000000, 0x7FF8000000000000, F_NV
        fd2 76, fmax.d, -, 0xFFF0000000000000, 0x7FEFFFFFFFFFFFFF, 0x7FEFFFFFFFFFFFFF, 0
        fd2 77, fmax.d, -, 0x7FF0000000000000, 0x7FEFFFFFFFFFFFFF, 0x7FF0000000000000, 0
        fd2 78, fmax.d, -, 0x0000000000000001, 0x8000000000000001, 0x0000000000000001, 0
        fd2 79, fmax.d, -, 0xFFF8000000000000, 0xBFF0000000000000, 0xBFF0000000000000, 0

        /* ---- sign injection: bits copied, NaNs untouched, no flags ---- */
        fd2 80, fsgnj.d, -, 0x3FF0000000000000, 0xC000000000000000, 0xBFF0000000000000, 0
        fd2 81, fsgnj.d, -, 0xBFF0000000000000, 0x4000000000000000, 0x3FF0000000000000, 0
        fd2 82, fsgnj.d, -, 0xBFF0000000000000, 0xC000000000000000, 0xBFF0000000000000, 0
        fd2 83, fsgnjn.d, -, 0x3FF0000000000000, 0xC000000000000000, 0x3FF0000000000000, 0
        fd2 84, fsgnjn.d, -, 0x3FF0000000000000, 0x4000000000000000, 0xBFF0000000000000, 0
        /* fneg -0 */
        fd2 85, fsgnjn.d, -, 0x8000000000000000, 0x8000000000000000, 0x0000000000000000, 0
        fd2 86, fsgnjx.d, -, 0xBFF0000000000000, 0xC000000000000000, 0x3FF0000000000000, 0
        fd2 87, fsgnjx.d, -, 0xBFF0000000000000, 0x4000000000000000, 0xBFF0000000000000, 0
        /* fabs -0 */
        fd2 88, fsgnjx.d, -, 0x8000000000000000, 0x8000000000000000, 0x0000000000000000, 0
        /* sNaN: no invalid */
        fd2 89, fsgnj.d, -, 0x7FF0000000005A5A, 0xBFF0000000000000, 0xFFF0000000005A5A, 0
        fd2 90, fsgnjn.d, -, 0x7FF8000000012345, 0x3FF0000000000000, 0xFFF8000000012345, 0
        fd2 91, fsgnjx.d, -, 0xFFF8000000012345, 0xBFF0000000000000, 0x7FF8000000012345, 0
        fd2 92, fsgnj.d, -, 0x7FF0000000000000, 0xFFF8000000000000, 0xFFF0000000000000, 0
        fd2 93, fsgnjx.d, -, 0x000FFFFFFFFFFFFF, 0xFFF0000000000000, 0x800FFFFFFFFFFFFF, 0

        /* ---- feq (quiet), flt / fle (signaling) ---- */
        fx 94, d, feq.d, -, 0x3FF0000000000000, 0x3FF0000000000000, 1, 0
        fx 95, d, feq.d, -, 0x3FF0000000000000, 0x4000000000000000, 0, 0
        fx 96, d, feq.d, -, 0x4000000000000000, 0x3FF0000000000000, 0, 0
        fx 97, d, feq.d, -, 0x8000000000000000, 0x0000000000000000, 1, 0
        fx 98, d, feq.d, -, 0x0000000000000000, 0x8000000000000000, 1, 0
        fx 99, d, feq.d, -, 0xC000000000000000, 0xBFF0000000000000, 0, 0
        fx 100, d, feq.d, -, 0xFFF0000000000000, 0x7FF0000000000000, 0, 0
        fx 101, d, feq.d, -, 0x7FF0000000000000, 0x7FF0000000000000, 1, 0
        fx 102, d, feq.d, -, 0x0000000000000001, 0x0000000000000000, 0, 0
        fx 103, d, feq.d, -, 0x8000000000000000, 0x8000000000000001, 0, 0
        fx 104, d, feq.d, -, 0x7FF8000000000000, 0x3FF0000000000000, 0, 0
        fx 105, d, feq.d, -, 0x3FF0000000000000, 0x7FF8000000012345, 0, 0
        fx 106, d, feq.d, -, 0x7FF8000000000000, 0x7FF8000000000000, 0, 0
        fx 107, d, feq.d, -, 0x7FF0000000000001, 0x3FF0000000000000, 0, F_NV
        fx 108, d, feq.d, -, 0x3FF0000000000000, 0x7FF0000000005A5A, 0, F_NV
        fx 109, d, flt.d, -, 0x3FF0000000000000, 0x3FF0000000000000, 0, 0
        fx 110, d, flt.d, -, 0x3FF0000000000000, 0x4000000000000000, 1, 0
        fx 111, d, flt.d, -, 0x4000000000000000, 0x3FF0000000000000, 0, 0
        fx 112, d, flt.d, -, 0x8000000000000000, 0x0000000000000000, 0, 0
        fx 113, d, flt.d, -, 0x0000000000000000, 0x8000000000000000, 0, 0
        fx 114, d, flt.d, -, 0xC000000000000000, 0xBFF0000000000000, 1, 0
        fx 115, d, flt.d, -, 0xFFF0000000000000, 0x7FF0000000000000, 1, 0
        fx 116, d, flt.d, -, 0x7FF0000000000000, 0x7FF0000000000000, 0, 0
        fx 117, d, flt.d, -, 0x0000000000000001, 0x0000000000000000, 0, 0
        fx 118, d, flt.d, -, 0x8000000000000000, 0x8000000000000001, 0, 0
        fx 119, d, flt.d, -, 0x7FF8000000000000, 0x3FF0000000000000, 0, F_NV
        fx 120, d, flt.d, -, 0x3FF0000000000000, 0x7FF8000000012345, 0, F_NV
        fx 121, d, flt.d, -, 0x7FF8000000000000, 0x7FF8000000000000, 0, F_NV
        fx 122, d, flt.d, -, 0x7FF0000000000001, 0x3FF0000000000000, 0, F_NV
        fx 123, d, flt.d, -, 0x3FF0000000000000, 0x7FF0000000005A5A, 0, F_NV
        fx 124, d, fle.d, -, 0x3FF0000000000000, 0x3FF0000000000000, 1, 0
        fx 125, d, fle.d, -, 0x3FF0000000000000, 0x4000000000000000, 1, 0
        fx 126, d, fle.d, -, 0x4000000000000000, 0x3FF0000000000000, 0, 0
        fx 127, d, fle.d, -, 0x8000000000000000, 0x0000000000000000, 1, 0
        fx 128, d, fle.d, -, 0x0000000000000000, 0x8000000000000000, 1, 0
        fx 129, d, fle.d, -, 0xC000000000000000, 0xBFF0000000000000, 1, 0
        fx 130, d, fle.d, -, 0xFFF0000000000000, 0x7FF0000000000000, 1, 0
        fx 131, d, fle.d, -, 0x7FF0000000000000, 0x7FF0000000000000, 1, 0
        fx 132, d, fle.d, -, 0x0000000000000001, 0x0000000000000000, 0, 0
        fx 133, d, fle.d, -, 0x8000000000000000, 0x8000000000000001, 0, 0
        fx 134, d, fle.d, -, 0x7FF8000000000000, 0x3FF0000000000000, 0, F_NV
        fx 135, d, fle.d, -, 0x3FF0000000000000, 0x7FF8000000012345, 0, F_NV
        fx 136, d, fle.d, -, 0x7FF8000000000000, 0x7FF8000000000000, 0, F_NV
        fx 137, d, fle.d, -, 0x7FF0000000000001, 0x3FF0000000000000, 0, F_NV
        fx 138, d, fle.d, -, 0x3FF0000000000000, 0x7FF0000000005A5A, 0, F_NV

        /* ---- fclass: one bit per class ---- */
        fx 139, d, fclass.d, -, 0xFFF0000000000000, , 0x001, 0
        fx 140, d, fclass.d, -, 0xBFF0000000000000, , 0x002, 0
        fx 141, d, fclass.d, -, 0xFFEFFFFFFFFFFFFF, , 0x002, 0
        fx 142, d, fclass.d, -, 0x8000000000000001, , 0x004, 0
        fx 143, d, fclass.d, -, 0x800FFFFFFFFFFFFF, , 0x004, 0
        fx 144, d, fclass.d, -, 0x8000000000000000, , 0x008, 0
        fx 145, d, fclass.d, -, 0x0000000000000000, , 0x010, 0
        fx 146, d, fclass.d, -, 0x0000000000000001, , 0x020, 0
        fx 147, d, fclass.d, -, 0x000FFFFFFFFFFFFF, , 0x020, 0
        fx 148, d, fclass.d, -, 0x0010000000000000, , 0x040, 0
        fx 149, d, fclass.d, -, 0x3FF0000000000000, , 0x040, 0
        fx 150, d, fclass.d, -, 0x7FEFFFFFFFFFFFFF, , 0x040, 0
        fx 151, d, fclass.d, -, 0x7FF0000000000000, , 0x080, 0
        fx 152, d, fclass.d, -, 0x7FF0000000000001, , 0x100, 0
        fx 153, d, fclass.d, -, 0x7FF0000000005A5A, , 0x100, 0
        fx 154, d, fclass.d, -, 0xFFF0000000000001, , 0x100, 0
        fx 155, d, fclass.d, -, 0x7FF8000000000000, , 0x200, 0
        fx 156, d, fclass.d, -, 0x7FF8000000012345, , 0x200, 0
        fx 157, d, fclass.d, -, 0xFFF8000000000000, , 0x200, 0
TEST_PASS
TEST_END

        .data
        .balign 16
fbuf:   .skip 4096
