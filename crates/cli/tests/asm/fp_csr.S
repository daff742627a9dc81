/* fcsr, fflags and frm: layout, ignored upper bits, sticky accumulation of
 * the flags and which instructions set none; reserved rounding modes
 * (static 5/6, dynamic with frm 5/6/7) are illegal instructions; mstatus.FS:
 * with FS=Off every F/D instruction (also compressed) and every fcsr access
 * is illegal, Initial/Clean become Dirty when FP state is written, and SD
 * (bit 63) follows FS=Dirty. Confirmed on QEMU 7.2. */
#include "common/test.h"
#include "common/catch.h"
#include "common/fp.h"

#define FS_OFF     0
#define FS_INITIAL (1 << 13)
#define FS_CLEAN   (2 << 13)
#define FS_DIRTY   (3 << 13)
#define OP_FP      0x53
#define OP_FMADD   0x43

.macro set_fs v
        li t0, MSTATUS_FS
        csrc mstatus, t0
        li t0, \v
        csrs mstatus, t0
.endm

/* Test n: mstatus.FS == fs and mstatus.SD == sd. */
.macro check_fs n, fs, sd
        csrr t1, mstatus
        li gp, \n
        li t6, MSTATUS_FS
        and t6, t1, t6
        li t5, \fs
        bne t6, t5, __test_fail
        srli t6, t1, 63
        li t5, \sd
        bne t6, t5, __test_fail
.endm

/* Test n: `insn` raises an illegal-instruction exception at itself. */
.macro illegal n, insn:vararg
        la s9, .Lr\@
.Li\@:  \insn
        li gp, \n
        j __test_fail
.Lr\@:  check_trap \n, CAUSE_ILLEGAL, .Li\@
.endm

/* Test n: fflags == val (not cleared). */
.macro flags_are n, val
        CHECK_CSR(\n, fflags, \val)
.endm

TEST_BEGIN
        fp_setup
        la s0, fbuf
        mv sp, s0

        /* ---- fcsr = frm << 5 | fflags; upper bits ignored ---- */
        CHECK_CSR(1, fcsr, 0)
        csrwi fflags, 0x1f
        CHECK_CSR(2, fcsr, 0x1f)
        CHECK_CSR(3, frm, 0)
        csrwi frm, 3
        CHECK_CSR(4, fcsr, 0x7f)
        CHECK_CSR(5, fflags, 0x1f)
        li t0, 0xa5
        csrw fcsr, t0
        CHECK_CSR(6, frm, 5)
        CHECK_CSR(7, fflags, 5)
        li t0, -1
        csrw fcsr, t0
        CHECK_CSR(8, fcsr, 0xff)
        csrw fcsr, zero
        li t0, -1
        csrw fflags, t0
        CHECK_CSR(9, fcsr, 0x1f)
        li t0, -1
        csrw frm, t0
        CHECK_CSR(10, fcsr, 0xff)
        csrrwi a0, frm, 1
        CHECK_EQ(11, a0, 7)
        CHECK_CSR(12, fcsr, 0x3f)
        csrrwi a0, fflags, 0
        CHECK_EQ(13, a0, 0x1f)
        csrrsi a0, fflags, 0x5
        CHECK_EQ(14, a0, 0)
        csrrci a0, fflags, 0x1
        CHECK_EQ(15, a0, 5)
        CHECK_CSR(16, fcsr, 0x24)
        csrrw a0, fcsr, zero
        CHECK_EQ(17, a0, 0x24)
        CHECK_CSR(18, frm, 0)

        /* ---- flags are sticky and accumulate ---- */
        fset f1, s, 0x3F800000                  /* 1.0 */
        fset f2, s, 0x33800000                  /* ulp/2 */
        fset f4, s, 0x00000000
        fset f5, s, 0x7F7FFFFF                  /* MAX */
        fset f6, s, 0x00000001                  /* min subnormal */
        fset f7, s, 0x7F800001                  /* sNaN */
        fset f8, s, 0x7FC00000                  /* qNaN */
        fadd.s f3, f1, f1
        flags_are 20, 0
        fadd.s f3, f1, f2
        flags_are 21, F_NX
        fdiv.s f3, f1, f4
        flags_are 22, F_NX|F_DZ
        fadd.s f3, f1, f1                       /* exact: flags stay */
        flags_are 23, F_NX|F_DZ
        fsub.s f3, f4, f1
        fsqrt.s f3, f3
        flags_are 24, F_NX|F_DZ|F_NV
        fmul.s f3, f5, f5
        flags_are 25, F_NX|F_DZ|F_NV|F_OF
        fmul.s f3, f6, f2
        flags_are 26, 0x1f
        csrci fflags, F_NV|F_OF
        flags_are 27, F_NX|F_DZ|F_UF
        csrw fflags, zero
        fcvt.d.s f3, f7                         /* conversions and compares */
        flags_are 28, F_NV
        csrw fflags, zero
        flt.s a0, f8, f1
        flags_are 29, F_NV
        csrw fflags, zero
        feq.s a0, f8, f1
        flags_are 30, 0
        fmin.s f3, f7, f1
        flags_are 31, F_NV
        csrw fflags, zero
        fcvt.w.s a0, f1
        fcvt.s.w f3, a0
        flags_are 32, 0
        li a0, 0x7FFFFFFF
        fcvt.s.w f3, a0
        flags_are 33, F_NX
        csrw fflags, zero
        /* none of these set flags, even on a signaling NaN */
        fsgnj.s f3, f7, f7
        fsgnjn.s f3, f7, f1
        fsgnjx.s f3, f7, f7
        fclass.s a0, f7
        fmv.x.w a0, f7
        fmv.w.x f3, a0
        fsw f7, 0(s0)
        flw f3, 0(s0)
        fsd f7, 8(s0)
        fld f3, 8(s0)
        flags_are 34, 0
        /* an op's flags are not affected by the previous value of fflags */
        csrwi fflags, F_DZ
        fadd.s f3, f1, f2
        flags_are 35, F_DZ|F_NX
        csrw fflags, zero

        /* ---- reserved rounding modes ---- */
        li a0, 0x55
        fset f3, s, 0x12345678
        csrwi frm, 5
        illegal 40, fadd.s f3, f1, f1, dyn
        fmv.x.d a1, f3                          /* f3 not written */
        li t6, BOX|0x12345678
        li gp, 40
        bne a1, t6, __test_fail
        flags_are 41, 0
        csrwi frm, 6
        illegal 42, fmul.d f3, f1, f1, dyn
        csrwi frm, 7
        illegal 43, fcvt.w.s a0, f1, dyn
        CHECK_EQ(43, a0, 0x55)
        illegal 44, fsqrt.d f3, f1, dyn
        illegal 45, fmadd.s f3, f1, f1, f1, dyn
        illegal 46, fcvt.s.d f3, f1, dyn
        illegal 47, fcvt.s.l f3, a0, dyn
        illegal 48, fdiv.s f3, f1, f1, dyn
        /* with frm invalid, static modes and instructions without a
         * rounding mode still work */
        fadd.s f3, f1, f1, rne
        fmv.x.d a1, f3
        CHECK_EQ(49, a1, BOX|0x40000000)
        fmin.s f3, f1, f4
        fsgnj.s f3, f3, f1
        feq.s a1, f1, f1
        fclass.s a2, f1
        CHECK_EQ(50, a1, 1)
        CHECK_EQ(51, a2, 0x40)
        fmv.x.d a1, f3
        CHECK_EQ(52, a1, BOX)
        CHECK_CSR(53, frm, 7)
        csrwi frm, 0
        /* static rm = 5 or 6 */
        illegal 54, .insn r OP_FP, 5, 0x00, f3, f1, f1      /* fadd.s */
        illegal 55, .insn r OP_FP, 6, 0x01, f3, f1, f1      /* fadd.d */
        illegal 56, .insn r OP_FP, 5, 0x60, x10, f1, x0     /* fcvt.w.s */
        illegal 57, .insn r4 OP_FMADD, 6, 0, f3, f1, f1, f1 /* fmadd.s */
        illegal 58, .insn r OP_FP, 6, 0x2c, f3, f1, x0      /* fsqrt.s */
        .insn r OP_FP, 4, 0x00, f3, f1, f2                  /* rm=4 (rmm): fine */
        fmv.x.d a1, f3
        CHECK_EQ(59, a1, BOX|0x3F800001)
        flags_are 60, F_NX
        csrw fflags, zero

        /* ---- mstatus.FS = Off: everything FP is illegal ---- */
        check_fs 70, FS_DIRTY, 1                /* after all of the above */
        li t0, 0x1111
        sd t0, 0(s0)
        set_fs FS_OFF
        check_fs 71, FS_OFF, 0
        li a0, 0x55
        illegal 72, flw f1, 0(s0)
        illegal 73, fsw f1, 0(s0)
        illegal 74, fld f1, 0(s0)
        illegal 75, fsd f1, 0(s0)
        illegal 76, fadd.s f3, f1, f2
        illegal 77, fmadd.d f3, f1, f2, f4
        illegal 78, fmv.x.w a0, f1
        illegal 79, fmv.w.x f1, a0
        illegal 80, fmv.d.x f1, a0
        illegal 81, fmv.x.d a0, f1
        illegal 82, fcvt.w.s a0, f1
        illegal 83, fcvt.s.w f1, a0
        illegal 84, fcvt.d.s f1, f2
        illegal 85, feq.d a0, f1, f2
        illegal 86, fclass.s a0, f1
        illegal 87, fsgnj.d f3, f1, f2
        illegal 88, fmin.s f3, f1, f2
        illegal 89, fsqrt.d f3, f1
        illegal 90, c.fld fa0, 0(s0)
        illegal 91, c.fsd fa0, 0(s0)
        illegal 92, c.fldsp f1, 0(sp)
        illegal 93, c.fsdsp f1, 0(sp)
        illegal 94, csrr a0, fflags
        illegal 95, csrr a0, frm
        illegal 96, csrr a0, fcsr
        illegal 97, csrw fcsr, zero
        illegal 98, csrwi fflags, 1
        illegal 99, csrrsi a0, frm, 1
        CHECK_EQ(100, a0, 0x55)                 /* no register written */
        ld t1, 0(s0)
        CHECK_EQ(101, t1, 0x1111)               /* no memory written */
        check_fs 102, FS_OFF, 0

        /* ---- Initial / Clean become Dirty when FP state is written ---- */
        set_fs FS_INITIAL
        check_fs 110, FS_INITIAL, 0
        fmv.w.x f1, zero
        check_fs 111, FS_DIRTY, 1
        csrr t1, sstatus                        /* the S view agrees */
        srli t6, t1, 13
        andi t6, t6, 3
        CHECK_EQ(112, t6, 3)
        srli t6, t1, 63
        CHECK_EQ(113, t6, 1)
        set_fs FS_CLEAN
        check_fs 114, FS_CLEAN, 0
        csrwi fflags, 1
        check_fs 115, FS_DIRTY, 1
        set_fs FS_CLEAN
        csrwi frm, 0
        check_fs 116, FS_DIRTY, 1
        set_fs FS_CLEAN
        fadd.d f3, f1, f1
        check_fs 117, FS_DIRTY, 1
        set_fs FS_CLEAN
        flw f5, 0(s0)
        check_fs 118, FS_DIRTY, 1
        set_fs FS_CLEAN
        c.fldsp f6, 0(sp)
        check_fs 119, FS_DIRTY, 1
        set_fs FS_INITIAL
        fcvt.s.l f7, zero
        check_fs 120, FS_DIRTY, 1
        csrw fflags, zero
        set_fs FS_CLEAN
        fset f1, s, 0x7F800001                  /* sNaN */
        set_fs FS_CLEAN
        fcvt.w.s a0, f1                         /* writes only fflags */
#ifndef QEMU_QUIRKS
        /* fflags changed, so the FP state is Dirty (Spike does this);
         * QEMU 7.2 leaves FS Clean when only fflags change. */
        check_fs 121, FS_DIRTY, 1
#endif
        flags_are 122, F_NV

        /* ---- misa reports F and D ---- */
        csrr t1, misa
        srli t6, t1, 5
        andi t6, t6, 1
        CHECK_EQ(130, t6, 1)
        srli t6, t1, 3
        andi t6, t6, 1
        CHECK_EQ(131, t6, 1)
TEST_PASS
TEST_END

        .data
        .balign 16
fbuf:   .skip 64
