//! Tests for `riscv::fpu`: hand-derived edge cases from the RISC-V F/D and
//! IEEE 754 rules, then randomized cross-checks against two independent
//! oracles: Berkeley SoftFloat 3e with its RISC-V specialization (vendored by
//! the `rvsim` crate, thread-local state) and, where the host is exact, the
//! host's own arithmetic (round-to-nearest-even results, integer rounding
//! functions, integer-to-float casts).

use riscv::fpu::*;
use rvsim::softfloat as sf;

const ALL_RM: [Rm; 5] = [Rm::Rne, Rm::Rtz, Rm::Rdn, Rm::Rup, Rm::Rmm];

// ---------------------------------------------------------------------------
// Hand-derived edge cases
// ---------------------------------------------------------------------------

const ONE32: u32 = 0x3f80_0000;
const TWO32: u32 = 0x4000_0000;
const INF32: u32 = 0x7f80_0000;
const NINF32: u32 = 0xff80_0000;
const MAX32: u32 = 0x7f7f_ffff;
const MIN_NORMAL32: u32 = 0x0080_0000;
const MIN_SUB32: u32 = 0x0000_0001;
const MAX_SUB32: u32 = 0x007f_ffff;
const NEG_ZERO32: u32 = 0x8000_0000;
const QNAN32: u32 = 0x7fc0_0001; // quiet, with payload
const NEG_QNAN32: u32 = 0xffc0_0000;
const SNAN32: u32 = 0x7f80_0001;

const ONE64: u64 = 0x3ff0_0000_0000_0000;
const INF64: u64 = 0x7ff0_0000_0000_0000;
const MAX64: u64 = 0x7fef_ffff_ffff_ffff;
const MIN_SUB64: u64 = 1;
const NEG_ZERO64: u64 = 0x8000_0000_0000_0000;
const QNAN64: u64 = 0x7ff8_0000_0000_0123;
const SNAN64: u64 = 0x7ff0_0000_0000_0001;

fn f64b(x: f64) -> u64 {
    x.to_bits()
}

fn f32b(x: f32) -> u32 {
    x.to_bits()
}

#[test]
fn rounding_mode_decoding() {
    assert_eq!(Rm::from_bits(0), Some(Rm::Rne));
    assert_eq!(Rm::from_bits(1), Some(Rm::Rtz));
    assert_eq!(Rm::from_bits(2), Some(Rm::Rdn));
    assert_eq!(Rm::from_bits(3), Some(Rm::Rup));
    assert_eq!(Rm::from_bits(4), Some(Rm::Rmm));
    for b in [5, 6, 7, 8, u32::MAX] {
        assert_eq!(Rm::from_bits(b), None, "rm {b}");
    }
}

#[test]
fn add_ties_in_every_mode() {
    // 1 + 2^-24 is exactly half an ulp above 1 (ulp of 1 is 2^-23).
    let half_ulp = 0x3380_0000; // 2^-24
    let up = 0x3f80_0001; // 1 + 2^-23
    let expect = [
        (Rm::Rne, ONE32),
        (Rm::Rtz, ONE32),
        (Rm::Rdn, ONE32),
        (Rm::Rup, up),
        (Rm::Rmm, up),
    ];
    for (rm, want) in expect {
        assert_eq!(add32(ONE32, half_ulp, rm), (want, NX), "{rm:?}");
        // The mirror image for negative numbers.
        let neg = add32(ONE32 | 0x8000_0000, half_ulp | 0x8000_0000, rm);
        let mirrored = match rm {
            Rm::Rdn => up,
            Rm::Rup => ONE32,
            _ => want,
        };
        assert_eq!(neg, (mirrored | 0x8000_0000, NX), "neg {rm:?}");
    }
    // A tie whose lower neighbour is odd rounds up under RNE.
    assert_eq!(add32(up, half_ulp, Rm::Rne), (0x3f80_0002, NX));
    // 1 + 3*2^-25 is above the half-way point.
    assert_eq!(add32(ONE32, 0x33c0_0000, Rm::Rne), (up, NX));
    assert_eq!(add32(ONE32, 0x33c0_0000, Rm::Rtz), (ONE32, NX));
    // f64: 1 + 2^-53 is a tie.
    let half_ulp64 = f64b(2f64.powi(-53));
    assert_eq!(add64(ONE64, half_ulp64, Rm::Rne), (ONE64, NX));
    assert_eq!(add64(ONE64, half_ulp64, Rm::Rmm), (ONE64 + 1, NX));
    assert_eq!(
        sub64(ONE64, half_ulp64, Rm::Rne),
        (f64b(1.0 - 2f64.powi(-53)), 0)
    );
}

#[test]
fn zero_signs() {
    for rm in ALL_RM {
        let exact_zero = if rm == Rm::Rdn { NEG_ZERO32 } else { 0 };
        assert_eq!(sub32(ONE32, ONE32, rm), (exact_zero, 0), "{rm:?}");
        assert_eq!(add32(0, NEG_ZERO32, rm), (exact_zero, 0), "{rm:?}");
        assert_eq!(add32(NEG_ZERO32, NEG_ZERO32, rm), (NEG_ZERO32, 0));
        assert_eq!(add32(0, 0, rm), (0, 0));
        assert_eq!(sub32(NEG_ZERO32, 0, rm), (NEG_ZERO32, 0));
        let exact_zero64 = if rm == Rm::Rdn { NEG_ZERO64 } else { 0 };
        assert_eq!(add64(ONE64, ONE64 | NEG_ZERO64, rm), (exact_zero64, 0));
        // x + 0 is x exactly, including for subnormals.
        assert_eq!(add32(MIN_SUB32, NEG_ZERO32, rm), (MIN_SUB32, 0));
        // Products of zeros carry the xor of the signs.
        assert_eq!(mul32(NEG_ZERO32, ONE32, rm), (NEG_ZERO32, 0));
        assert_eq!(mul32(NEG_ZERO32, NEG_ZERO32, rm), (0, 0));
        assert_eq!(div32(0, ONE32 | 0x8000_0000, rm), (NEG_ZERO32, 0));
        // fma: (-0) + (+0) and an exactly cancelling product.
        assert_eq!(fma32(NEG_ZERO32, ONE32, 0, rm), (exact_zero, 0));
        assert_eq!(fma32(NEG_ZERO32, ONE32, NEG_ZERO32, rm), (NEG_ZERO32, 0));
        assert_eq!(
            fma32(TWO32, TWO32, 0xc080_0000, rm), // 2*2 - 4
            (exact_zero, 0)
        );
    }
}

#[test]
fn nan_handling() {
    // Any NaN result is canonical; NV only for signaling inputs.
    let nan = CANONICAL_NAN32;
    assert_eq!(add32(QNAN32, ONE32, Rm::Rne), (nan, 0));
    assert_eq!(add32(NEG_QNAN32, ONE32, Rm::Rne), (nan, 0));
    assert_eq!(add32(ONE32, SNAN32, Rm::Rne), (nan, NV));
    assert_eq!(mul32(SNAN32, QNAN32, Rm::Rne), (nan, NV));
    assert_eq!(div32(QNAN32, 0, Rm::Rne), (nan, 0));
    assert_eq!(sqrt32(NEG_QNAN32, Rm::Rne), (nan, 0));
    assert_eq!(sqrt32(SNAN32, Rm::Rne), (nan, NV));
    assert_eq!(add64(QNAN64, ONE64, Rm::Rup), (CANONICAL_NAN64, 0));
    assert_eq!(sub64(SNAN64, ONE64, Rm::Rup), (CANONICAL_NAN64, NV));
    // Invalid operations.
    assert_eq!(add32(INF32, NINF32, Rm::Rne), (nan, NV));
    assert_eq!(sub32(INF32, INF32, Rm::Rne), (nan, NV));
    assert_eq!(add32(INF32, INF32, Rm::Rne), (INF32, 0));
    assert_eq!(mul32(INF32, NEG_ZERO32, Rm::Rne), (nan, NV));
    assert_eq!(div32(0, NEG_ZERO32, Rm::Rne), (nan, NV));
    assert_eq!(div32(INF32, NINF32, Rm::Rne), (nan, NV));
    assert_eq!(sqrt32(ONE32 | 0x8000_0000, Rm::Rne), (nan, NV));
    assert_eq!(sqrt32(NINF32, Rm::Rne), (nan, NV));
    assert_eq!(sqrt32(MIN_SUB32 | 0x8000_0000, Rm::Rne), (nan, NV));
    // fma: inf * 0 is invalid even with a quiet NaN addend (RISC-V rule).
    assert_eq!(fma32(INF32, 0, QNAN32, Rm::Rne), (nan, NV));
    assert_eq!(fma32(0, NINF32, ONE32, Rm::Rne), (nan, NV));
    assert_eq!(fma64(INF64, 0, QNAN64, Rm::Rne), (CANONICAL_NAN64, NV));
    assert_eq!(fma32(QNAN32, 0, ONE32, Rm::Rne), (nan, 0));
    assert_eq!(fma32(ONE32, ONE32, QNAN32, Rm::Rne), (nan, 0));
    assert_eq!(fma32(ONE32, ONE32, SNAN32, Rm::Rne), (nan, NV));
    assert_eq!(fma32(INF32, ONE32, NINF32, Rm::Rne), (nan, NV));
    assert_eq!(
        fma32(INF32, ONE32 | 0x8000_0000, NINF32, Rm::Rne),
        (NINF32, 0)
    );
    assert_eq!(fma32(MAX32, MAX32, NINF32, Rm::Rne), (NINF32, 0));
}

#[test]
fn division_and_sqrt_specials() {
    assert_eq!(div32(ONE32, 0, Rm::Rne), (INF32, DZ));
    assert_eq!(div32(ONE32, NEG_ZERO32, Rm::Rne), (NINF32, DZ));
    assert_eq!(div32(MIN_SUB32, 0, Rm::Rtz), (INF32, DZ));
    assert_eq!(div32(INF32, 0, Rm::Rne), (INF32, 0));
    assert_eq!(div32(ONE32, INF32, Rm::Rne), (0, 0));
    assert_eq!(div64(ONE64, 0, Rm::Rne), (INF64, DZ));
    // 1/3 = 0x3eaaaaaa.aaa...: below the half-way point.
    let third = 0x4040_0000; // 3.0
    assert_eq!(div32(ONE32, third, Rm::Rne), (0x3eaa_aaab, NX));
    assert_eq!(div32(ONE32, third, Rm::Rtz), (0x3eaa_aaaa, NX));
    assert_eq!(div32(ONE32, third, Rm::Rup), (0x3eaa_aaab, NX));
    assert_eq!(
        div64(f64b(1.0), f64b(3.0), Rm::Rdn),
        (0x3fd5_5555_5555_5555, NX)
    );
    // sqrt
    assert_eq!(sqrt32(NEG_ZERO32, Rm::Rne), (NEG_ZERO32, 0));
    assert_eq!(sqrt32(INF32, Rm::Rne), (INF32, 0));
    assert_eq!(sqrt32(f32b(4.0), Rm::Rne), (TWO32, 0));
    assert_eq!(sqrt32(f32b(2.0), Rm::Rne), (0x3fb5_04f3, NX));
    assert_eq!(sqrt32(f32b(2.0), Rm::Rtz), (0x3fb5_04f3, NX));
    assert_eq!(sqrt32(f32b(2.0), Rm::Rup), (0x3fb5_04f4, NX));
    // sqrt(2^-148) = 2^-74 exactly; from a subnormal input.
    assert_eq!(sqrt32(0x0000_0002, Rm::Rne), (f32b(2f32.powi(-74)), 0));
    assert_eq!(
        sqrt64(f64b(2.0), Rm::Rne),
        (f64b(std::f64::consts::SQRT_2), NX)
    );
    assert_eq!(sqrt64(MIN_SUB64, Rm::Rne), (f64b(2f64.powi(-537)), 0));
}

#[test]
fn overflow_depends_on_mode() {
    let neg = |x: u32| x | 0x8000_0000;
    let expect = [
        (Rm::Rne, INF32, neg(INF32)),
        (Rm::Rmm, INF32, neg(INF32)),
        (Rm::Rtz, MAX32, neg(MAX32)),
        (Rm::Rdn, MAX32, neg(INF32)),
        (Rm::Rup, INF32, neg(MAX32)),
    ];
    for (rm, pos, negative) in expect {
        assert_eq!(add32(MAX32, MAX32, rm), (pos, OF | NX), "{rm:?}");
        assert_eq!(mul32(neg(MAX32), TWO32, rm), (negative, OF | NX), "{rm:?}");
        assert_eq!(f64_to_f32(f64b(1e300), rm), (pos, OF | NX), "{rm:?}");
        assert_eq!(f64_to_f32(f64b(-1e300), rm), (negative, OF | NX), "{rm:?}");
        let pos64 = if pos == INF32 { INF64 } else { MAX64 };
        assert_eq!(mul64(MAX64, f64b(1.5), rm), (pos64, OF | NX), "{rm:?}");
    }
    // MAX + half an ulp is a tie; MAX's significand is odd so RNE overflows.
    let half_ulp = f32b(2f32.powi(103));
    assert_eq!(add32(MAX32, half_ulp, Rm::Rne), (INF32, OF | NX));
    assert_eq!(add32(MAX32, half_ulp, Rm::Rtz), (MAX32, NX));
    // Just below the tie: no overflow.
    let below = f32b(2f32.powi(102));
    assert_eq!(add32(MAX32, below, Rm::Rne), (MAX32, NX));
    assert_eq!(add32(MAX32, below, Rm::Rup), (INF32, OF | NX));
}

#[test]
fn underflow_is_tininess_after_rounding() {
    for rm in ALL_RM {
        // Exact subnormal results raise nothing.
        assert_eq!(mul32(MIN_SUB32, ONE32, rm), (MIN_SUB32, 0));
        assert_eq!(div32(MIN_NORMAL32, TWO32, rm), (0x0040_0000, 0));
        assert_eq!(sub32(0x0080_0001, MIN_NORMAL32, rm), (MIN_SUB32, 0));
    }
    // Half the smallest subnormal: a tie between 0 and MIN_SUB.
    let half = 0x3f00_0000;
    assert_eq!(mul32(MIN_SUB32, half, Rm::Rne), (0, UF | NX));
    assert_eq!(mul32(MIN_SUB32, half, Rm::Rmm), (MIN_SUB32, UF | NX));
    assert_eq!(mul32(MIN_SUB32, half, Rm::Rup), (MIN_SUB32, UF | NX));
    assert_eq!(mul32(MIN_SUB32, half, Rm::Rdn), (0, UF | NX));
    assert_eq!(
        mul32(MIN_SUB32 | 0x8000_0000, half, Rm::Rdn),
        (0x8000_0001, UF | NX)
    );
    assert_eq!(mul32(MIN_SUB32, MIN_SUB32, Rm::Rne), (0, UF | NX));
    assert_eq!(mul64(MIN_SUB64, MIN_SUB64, Rm::Rup), (MIN_SUB64, UF | NX));

    // x = 2^-126 - 2^-150 = (2^24 - 1) * 2^-150 fits 24 bits, so rounding it
    // with an unbounded exponent leaves it below 2^-126: tiny. On the
    // subnormal grid it is a tie that RNE rounds up to 2^-126: inexact.
    let x = f64b(((1u64 << 24) - 1) as f64 * 2f64.powi(-150));
    assert_eq!(f64_to_f32(x, Rm::Rne), (MIN_NORMAL32, UF | NX));
    assert_eq!(f64_to_f32(x, Rm::Rtz), (MAX_SUB32, UF | NX));
    // The same value as an exact product: (2 - 2^-23) * 2^-127.
    assert_eq!(
        mul32(0x3fff_ffff, 0x0040_0000, Rm::Rne),
        (MIN_NORMAL32, UF | NX)
    );
    // y = 2^-126 - 2^-151 needs 25 bits: rounding to 24 bits with unbounded
    // exponent is a tie that goes up to 2^-126, so it is not tiny: NX only.
    let y = f64b(((1u64 << 25) - 1) as f64 * 2f64.powi(-151));
    assert_eq!(f64_to_f32(y, Rm::Rne), (MIN_NORMAL32, NX));
    assert_eq!(f64_to_f32(y, Rm::Rmm), (MIN_NORMAL32, NX));
    assert_eq!(f64_to_f32(y, Rm::Rup), (MIN_NORMAL32, NX));
    assert_eq!(f64_to_f32(y, Rm::Rtz), (MAX_SUB32, UF | NX));
    assert_eq!(f64_to_f32(y, Rm::Rdn), (MAX_SUB32, UF | NX));
    // Far below the tie: round up only under RUP, and then it is not tiny.
    let z = f64b(2f64.powi(-126) - 2f64.powi(-170));
    assert_eq!(f64_to_f32(z, Rm::Rup), (MIN_NORMAL32, NX));
    assert_eq!(f64_to_f32(z, Rm::Rne), (MIN_NORMAL32, NX));
    assert_eq!(f64_to_f32(z, Rm::Rtz), (MAX_SUB32, UF | NX));
    // Negative mirror under RDN.
    let nz = z | NEG_ZERO64;
    assert_eq!(f64_to_f32(nz, Rm::Rdn), (MIN_NORMAL32 | 0x8000_0000, NX));
    assert_eq!(f64_to_f32(nz, Rm::Rup), (MAX_SUB32 | 0x8000_0000, UF | NX));
    // Values far below the smallest subnormal.
    assert_eq!(f64_to_f32(MIN_SUB64, Rm::Rne), (0, UF | NX));
    assert_eq!(f64_to_f32(MIN_SUB64, Rm::Rup), (MIN_SUB32, UF | NX));
    assert_eq!(
        f64_to_f32(MIN_SUB64 | NEG_ZERO64, Rm::Rmm),
        (NEG_ZERO32, UF | NX)
    );
    // binary64: (2^53 - 1) * 2^-1075 is tiny and a tie on the subnormal grid.
    let p = 0x3fff_ffff_ffff_ffff; // 2 - 2^-52
    let q = 0x0008_0000_0000_0000; // 2^-1023
    assert_eq!(mul64(p, q, Rm::Rne), (0x0010_0000_0000_0000, UF | NX));
}

#[test]
fn fma_is_fused() {
    // a = 1 + 2^-23: a*a = 1 + 2^-22 + 2^-46; the fused residual is exact.
    let a = 0x3f80_0001;
    let rounded = mul32(a, a, Rm::Rne);
    assert_eq!(rounded, (0x3f80_0002, NX));
    let residual = fma32(a, a, rounded.0 | 0x8000_0000, Rm::Rne);
    assert_eq!(residual, (f32b(2f32.powi(-46)), 0));
    // The same in binary64.
    let b = ONE64 + 1;
    let r = mul64(b, b, Rm::Rne).0;
    assert_eq!(
        fma64(b, b, r | NEG_ZERO64, Rm::Rne),
        (f64b(2f64.powi(-104)), 0)
    );
    // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: the product alone is a tie, which
    // the smallest subnormal addend breaks one way or the other.
    let t = 0x3f80_0800;
    let (even, odd) = (0x3f80_1000, 0x3f80_1001);
    assert_eq!(fma32(t, t, 0, Rm::Rne), (even, NX));
    assert_eq!(fma32(t, t, 0, Rm::Rmm), (odd, NX));
    assert_eq!(fma32(t, t, MIN_SUB32, Rm::Rne), (odd, NX));
    assert_eq!(fma32(t, t, MIN_SUB32 | 0x8000_0000, Rm::Rmm), (even, NX));
    let c = 0x3380_0000; // 2^-24: 1*1 + 2^-24 is a tie too
    assert_eq!(fma32(ONE32, ONE32, c, Rm::Rne), (ONE32, NX));
    assert_eq!(fma32(c, ONE32, ONE32, Rm::Rup), (ONE32 + 1, NX));
    // (1 + 2^-23)^2 + 2^-24 = 1 + 2^-22 + 2^-24 + 2^-46: just above the
    // tie between 1 + 2^-22 and 1 + 3 * 2^-23.
    assert_eq!(fma32(a, a, c, Rm::Rne), (0x3f80_0003, NX));
    assert_eq!(fma32(a, a, c, Rm::Rtz), (0x3f80_0002, NX));
    // Overflow and underflow through fma.
    assert_eq!(fma32(MAX32, TWO32, 0, Rm::Rtz), (MAX32, OF | NX));
    assert_eq!(fma32(MIN_SUB32, 0x3f00_0000, 0, Rm::Rne), (0, UF | NX));
    // A product that cancels the addend almost entirely.
    assert_eq!(
        fma64(f64b(3.0), f64b(1.0 / 3.0), f64b(-1.0), Rm::Rne),
        (f64b(-2f64.powi(-54)), 0)
    );
}

#[test]
fn min_max_semantics() {
    assert_eq!(min32(NEG_ZERO32, 0), (NEG_ZERO32, 0));
    assert_eq!(min32(0, NEG_ZERO32), (NEG_ZERO32, 0));
    assert_eq!(max32(NEG_ZERO32, 0), (0, 0));
    assert_eq!(max32(0, NEG_ZERO32), (0, 0));
    assert_eq!(min32(QNAN32, ONE32), (ONE32, 0));
    assert_eq!(max32(ONE32, QNAN32), (ONE32, 0));
    assert_eq!(min32(SNAN32, ONE32), (ONE32, NV));
    assert_eq!(max32(ONE32, SNAN32), (ONE32, NV));
    assert_eq!(min32(QNAN32, NEG_QNAN32), (CANONICAL_NAN32, 0));
    assert_eq!(max32(SNAN32, QNAN32), (CANONICAL_NAN32, NV));
    assert_eq!(min32(NINF32, MAX32), (NINF32, 0));
    assert_eq!(max32(NINF32, MAX32), (MAX32, 0));
    assert_eq!(
        min32(ONE32 | 0x8000_0000, MIN_SUB32),
        (ONE32 | 0x8000_0000, 0)
    );
    assert_eq!(min64(QNAN64, NEG_ZERO64), (NEG_ZERO64, 0));
    assert_eq!(max64(SNAN64, SNAN64), (CANONICAL_NAN64, NV));
    assert_eq!(max64(NEG_ZERO64, 0), (0, 0));
    assert_eq!(min64(MIN_SUB64, ONE64), (MIN_SUB64, 0));
}

#[test]
fn comparisons() {
    assert_eq!(eq32(QNAN32, QNAN32), (false, 0));
    assert_eq!(eq32(SNAN32, ONE32), (false, NV));
    assert_eq!(eq32(NEG_ZERO32, 0), (true, 0));
    assert_eq!(eq32(ONE32, ONE32), (true, 0));
    assert_eq!(lt32(QNAN32, ONE32), (false, NV));
    assert_eq!(le32(ONE32, QNAN32), (false, NV));
    assert_eq!(lt32(NEG_ZERO32, 0), (false, 0));
    assert_eq!(le32(0, NEG_ZERO32), (true, 0));
    assert_eq!(lt32(NINF32, MIN_SUB32 | 0x8000_0000), (true, 0));
    assert_eq!(lt32(MAX_SUB32, MIN_NORMAL32), (true, 0));
    assert_eq!(le32(INF32, INF32), (true, 0));
    assert_eq!(lt32(ONE32 | 0x8000_0000, TWO32 | 0x8000_0000), (false, 0));
    assert_eq!(eq64(SNAN64, SNAN64), (false, NV));
    assert_eq!(lt64(MIN_SUB64, NEG_ZERO64), (false, 0));
    assert_eq!(le64(NEG_ZERO64, 0), (true, 0));
    assert_eq!(lt64(QNAN64, INF64), (false, NV));
}

#[test]
fn classification() {
    let cases32 = [
        (NINF32, 0),
        (0xbf80_0000, 1),
        (0x8000_0001, 2),
        (NEG_ZERO32, 3),
        (0, 4),
        (MAX_SUB32, 5),
        (MIN_NORMAL32, 6),
        (MAX32, 6),
        (INF32, 7),
        (SNAN32, 8),
        (0xffbf_ffff, 8),
        (QNAN32, 9),
        (NEG_QNAN32, 9),
    ];
    for (bits, class) in cases32 {
        assert_eq!(class32(bits), 1 << class, "{bits:08x}");
    }
    let cases64 = [
        (INF64 | NEG_ZERO64, 0),
        (ONE64 | NEG_ZERO64, 1),
        (MIN_SUB64 | NEG_ZERO64, 2),
        (NEG_ZERO64, 3),
        (0, 4),
        (0x000f_ffff_ffff_ffff, 5),
        (MAX64, 6),
        (INF64, 7),
        (SNAN64, 8),
        (CANONICAL_NAN64, 9),
    ];
    for (bits, class) in cases64 {
        assert_eq!(class64(bits), 1 << class, "{bits:016x}");
    }
}

#[test]
fn float_to_int_saturates() {
    for rm in ALL_RM {
        assert_eq!(to_i32_from32(CANONICAL_NAN32, rm), (i32::MAX, NV));
        assert_eq!(to_i32_from32(NEG_QNAN32, rm), (i32::MAX, NV));
        assert_eq!(to_u32_from32(NEG_QNAN32, rm), (u32::MAX, NV));
        assert_eq!(to_i64_from64(SNAN64, rm), (i64::MAX, NV));
        assert_eq!(to_u64_from64(QNAN64, rm), (u64::MAX, NV));
        assert_eq!(to_i32_from32(INF32, rm), (i32::MAX, NV));
        assert_eq!(to_i32_from32(NINF32, rm), (i32::MIN, NV));
        assert_eq!(to_u32_from32(NINF32, rm), (0, NV));
        assert_eq!(to_u64_from32(NINF32, rm), (0, NV));
        assert_eq!(to_i64_from32(INF32, rm), (i64::MAX, NV));
        assert_eq!(to_i32_from32(f32b(2f32.powi(31)), rm), (i32::MAX, NV));
        assert_eq!(to_i32_from32(f32b(-2f32.powi(31)), rm), (i32::MIN, 0));
        assert_eq!(to_i64_from64(f64b(2f64.powi(63)), rm), (i64::MAX, NV));
        assert_eq!(to_i64_from64(f64b(-2f64.powi(63)), rm), (i64::MIN, 0));
        assert_eq!(to_u64_from64(f64b(2f64.powi(64)), rm), (u64::MAX, NV));
        assert_eq!(
            to_u64_from64(0x43ef_ffff_ffff_ffff, rm),
            (u64::MAX - 2047, 0)
        );
        assert_eq!(to_u32_from32(ONE32 | 0x8000_0000, rm), (0, NV));
        assert_eq!(to_u32_from32(NEG_ZERO32, rm), (0, 0));
        assert_eq!(to_i32_from64(MAX64, rm), (i32::MAX, NV));
        assert_eq!(to_u64_from64(MAX64 | NEG_ZERO64, rm), (0, NV));
    }
    // Values whose rounding decides whether they are in range.
    let tie_low = f64b(-2147483648.5);
    assert_eq!(to_i32_from64(tie_low, Rm::Rne), (i32::MIN, NX));
    assert_eq!(to_i32_from64(tie_low, Rm::Rtz), (i32::MIN, NX));
    assert_eq!(to_i32_from64(tie_low, Rm::Rup), (i32::MIN, NX));
    assert_eq!(to_i32_from64(tie_low, Rm::Rmm), (i32::MIN, NV));
    assert_eq!(to_i32_from64(tie_low, Rm::Rdn), (i32::MIN, NV));
    let tie_high = f64b(2147483647.5);
    assert_eq!(to_i32_from64(tie_high, Rm::Rne), (i32::MAX, NV));
    assert_eq!(to_i32_from64(tie_high, Rm::Rtz), (i32::MAX, NX));
    assert_eq!(to_i32_from64(tie_high, Rm::Rdn), (i32::MAX, NX));
    let u_tie = f64b(4294967295.5);
    assert_eq!(to_u32_from64(u_tie, Rm::Rtz), (u32::MAX, NX));
    assert_eq!(to_u32_from64(u_tie, Rm::Rne), (u32::MAX, NV));
    // Negative values that round to zero are fine for unsigned targets.
    let m03 = f32b(-0.3);
    assert_eq!(to_u32_from32(m03, Rm::Rne), (0, NX));
    assert_eq!(to_u32_from32(m03, Rm::Rtz), (0, NX));
    assert_eq!(to_u32_from32(m03, Rm::Rup), (0, NX));
    assert_eq!(to_u32_from32(m03, Rm::Rdn), (0, NV));
    assert_eq!(to_u64_from64(f64b(-0.5), Rm::Rne), (0, NX));
    assert_eq!(to_u64_from64(f64b(-0.5), Rm::Rmm), (0, NV));
    // Tie rounding: 2.5 and -2.5 in each mode.
    let expect = [
        (Rm::Rne, 2, -2),
        (Rm::Rtz, 2, -2),
        (Rm::Rdn, 2, -3),
        (Rm::Rup, 3, -2),
        (Rm::Rmm, 3, -3),
    ];
    for (rm, pos, neg) in expect {
        assert_eq!(to_i32_from32(f32b(2.5), rm), (pos, NX), "{rm:?}");
        assert_eq!(to_i64_from64(f64b(-2.5), rm), (neg, NX), "{rm:?}");
    }
    assert_eq!(to_i32_from32(f32b(3.5), Rm::Rne), (4, NX));
    assert_eq!(to_i32_from32(MIN_SUB32, Rm::Rup), (1, NX));
    assert_eq!(to_i32_from32(MIN_SUB32 | 0x8000_0000, Rm::Rdn), (-1, NX));
    assert_eq!(to_i32_from32(MIN_SUB32, Rm::Rne), (0, NX));
    // 0x5f502ab5 is the binary32 nearest 1.5e19, an integer.
    assert_eq!(
        to_u64_from32(0x5f50_2ab5, Rm::Rne),
        (15_000_000_520_515_485_696, 0)
    );
}

#[test]
fn int_to_float_rounds() {
    // 2^24 + 1 is a tie between 2^24 and 2^24 + 2.
    let v = (1 << 24) + 1;
    assert_eq!(from_i32_to32(v, Rm::Rne), (f32b(16777216.0), NX));
    assert_eq!(from_i32_to32(v, Rm::Rmm), (f32b(16777218.0), NX));
    assert_eq!(from_i32_to32(v, Rm::Rup), (f32b(16777218.0), NX));
    assert_eq!(from_i32_to32(-v, Rm::Rup), (f32b(-16777216.0), NX));
    assert_eq!(from_i32_to32(-v, Rm::Rdn), (f32b(-16777218.0), NX));
    assert_eq!(from_i32_to32(i32::MIN, Rm::Rne), (f32b(-2147483648.0), 0));
    assert_eq!(from_i32_to32(0, Rm::Rdn), (0, 0));
    assert_eq!(from_u32_to32(u32::MAX, Rm::Rtz), (0x4f7f_ffff, NX));
    assert_eq!(from_u32_to32(u32::MAX, Rm::Rne), (f32b(4294967296.0), NX));
    assert_eq!(from_i64_to32(i64::MAX, Rm::Rne), (f32b(2f32.powi(63)), NX));
    assert_eq!(from_i64_to32(i64::MIN, Rm::Rtz), (f32b(-2f32.powi(63)), 0));
    assert_eq!(from_u64_to32(u64::MAX, Rm::Rtz), (0x5f7f_ffff, NX));
    assert_eq!(from_u64_to64(u64::MAX, Rm::Rne), (f64b(2f64.powi(64)), NX));
    assert_eq!(
        from_u64_to64(u64::MAX, Rm::Rtz),
        (0x43ef_ffff_ffff_ffff, NX)
    );
    assert_eq!(
        from_i64_to64(-(1 << 53) - 1, Rm::Rne),
        (f64b(-(2f64.powi(53))), NX)
    );
    assert_eq!(
        from_i64_to64(-(1 << 53) - 1, Rm::Rmm),
        (f64b(-(2f64.powi(53)) - 2.0), NX)
    );
    for rm in ALL_RM {
        assert_eq!(from_i32_to64(i32::MIN, rm), (f64b(-2147483648.0), 0));
        assert_eq!(from_u32_to64(u32::MAX, rm), (f64b(4294967295.0), 0));
        assert_eq!(from_i32_to64(0, rm), (0, 0));
    }
}

#[test]
fn format_conversions() {
    assert_eq!(f32_to_f64(SNAN32), (CANONICAL_NAN64, NV));
    assert_eq!(f32_to_f64(NEG_QNAN32), (CANONICAL_NAN64, 0));
    assert_eq!(f32_to_f64(QNAN32), (CANONICAL_NAN64, 0));
    assert_eq!(f32_to_f64(MIN_SUB32), (f64b(2f64.powi(-149)), 0));
    assert_eq!(f32_to_f64(NEG_ZERO32), (NEG_ZERO64, 0));
    assert_eq!(f32_to_f64(NINF32), (INF64 | NEG_ZERO64, 0));
    assert_eq!(f32_to_f64(MAX32), (f64b(f32::MAX as f64), 0));
    assert_eq!(f64_to_f32(SNAN64, Rm::Rne), (CANONICAL_NAN32, NV));
    assert_eq!(
        f64_to_f32(QNAN64 | NEG_ZERO64, Rm::Rne),
        (CANONICAL_NAN32, 0)
    );
    assert_eq!(f64_to_f32(NEG_ZERO64, Rm::Rne), (NEG_ZERO32, 0));
    assert_eq!(f64_to_f32(f64b(0.1), Rm::Rne), (f32b(0.1), NX));
    assert_eq!(f64_to_f32(f64b(0.1), Rm::Rtz), (f32b(0.1) - 1, NX));
    // Rounding up into overflow: the largest f32 plus half an ulp.
    let tie = f64b(f32::MAX as f64 + 2f64.powi(103));
    assert_eq!(f64_to_f32(tie, Rm::Rne), (INF32, OF | NX));
    assert_eq!(f64_to_f32(tie, Rm::Rdn), (MAX32, NX));
}

// ---------------------------------------------------------------------------
// Randomized cross-checks
// ---------------------------------------------------------------------------

/// Cases per operation, format and rounding mode.
const CASES: usize = 50_000;

/// SplitMix64: deterministic, so any failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// A binary format's layout, for generating bit patterns.
#[derive(Clone, Copy, PartialEq)]
struct Fmt {
    exp_bits: u32,
    frac_bits: u32,
}

const FMT32: Fmt = Fmt {
    exp_bits: 8,
    frac_bits: 23,
};
const FMT64: Fmt = Fmt {
    exp_bits: 11,
    frac_bits: 52,
};

impl Fmt {
    fn max_field(self) -> u64 {
        (1 << self.exp_bits) - 1
    }
    fn bias(self) -> u64 {
        self.max_field() >> 1
    }
    fn frac_mask(self) -> u64 {
        (1 << self.frac_bits) - 1
    }
    fn sign(self) -> u64 {
        1 << (self.exp_bits + self.frac_bits)
    }
    fn all_bits(self) -> u64 {
        self.sign() | (self.sign() - 1)
    }
    fn field(self, x: u64) -> u64 {
        (x >> self.frac_bits) & self.max_field()
    }
    fn pack(self, sign: bool, field: u64, frac: u64) -> u64 {
        let s = if sign { self.sign() } else { 0 };
        s | (field.min(self.max_field()) << self.frac_bits) | (frac & self.frac_mask())
    }
    fn is_nan(self, x: u64) -> bool {
        x & !self.sign() > (self.max_field() << self.frac_bits)
    }
    fn is_snan(self, x: u64) -> bool {
        self.is_nan(x) && x & (1 << (self.frac_bits - 1)) == 0
    }
    fn canonical_nan(self) -> u64 {
        if self == FMT32 {
            CANONICAL_NAN32.into()
        } else {
            CANONICAL_NAN64
        }
    }
    /// Maps every NaN to the canonical NaN (the oracles may keep payloads).
    fn canon(self, x: u64) -> u64 {
        if self.is_nan(x) {
            self.canonical_nan()
        } else {
            x
        }
    }

    /// A fraction with structure: runs of ones or zeros, single bits, or
    /// random, so that ties and carries are common.
    fn frac(self, rng: &mut Rng) -> u64 {
        let mask = self.frac_mask();
        let bits = u64::from(self.frac_bits);
        match rng.below(9) {
            0 => 0,
            1 => mask,
            2 => 1 << rng.below(bits),
            3 => mask >> rng.below(bits),
            4 => (mask << rng.below(bits)) & mask,
            5 => rng.next() & rng.next() & mask,
            6 => (rng.next() | rng.next()) & mask,
            _ => rng.next() & mask,
        }
    }

    /// An exponent field biased towards the ends of the range and 1.0.
    fn exp_field(self, rng: &mut Rng) -> u64 {
        let max = self.max_field();
        match rng.below(10) {
            0 => 0,
            1 => max,
            2 => 1 + rng.below(3),
            3 => max - 1 - rng.below(3),
            4 | 5 => self.bias() - 4 + rng.below(9),
            _ => rng.below(max + 1),
        }
    }

    fn operand(self, rng: &mut Rng) -> u64 {
        let field = self.exp_field(rng);
        let frac = self.frac(rng);
        self.pack(rng.coin(), field, frac)
    }

    /// An operand whose exponent field is `target`, clamped into range,
    /// with a little jitter.
    fn with_field(self, rng: &mut Rng, target: i64) -> u64 {
        let jittered = target + rng.below(5) as i64 - 2;
        let field = jittered.clamp(0, self.max_field() as i64) as u64;
        // A power of two half the time: the other operand's significand then
        // passes through unchanged, and its all-ones patterns sit exactly on
        // rounding boundaries.
        let frac = if rng.coin() { 0 } else { self.frac(rng) };
        self.pack(rng.coin(), field, frac)
    }

    /// Operand pairs for `op`: independent, close to each other (for
    /// cancellation), or steering the result towards overflow/underflow.
    fn pair(self, rng: &mut Rng, op: BinOp) -> (u64, u64) {
        let a = self.operand(rng);
        let fa = self.field(a) as i64;
        let bias = self.bias() as i64;
        let mask = self.frac_mask();
        let s = rng.coin();
        match (rng.below(6), op) {
            // Products and quotients within a few ulps of 2^EMIN, where
            // tininess after rounding differs from tininess before it.
            (0, BinOp::Mul) => {
                // (1 + i*ulp) * (2^EMIN - j*2^-subnormal-ulp): with i == j the
                // product is 2^EMIN - i^2 * 2^(EMIN - 2p + 2), tiny before
                // rounding but not after.
                let a = self.pack(s, self.bias(), rng.below(6));
                let b = self.pack(rng.coin(), 0, mask - rng.below(6));
                return (a, b);
            }
            (0, BinOp::Div) => {
                let a = self.pack(s, 1, rng.below(4));
                let b = if rng.coin() {
                    self.pack(rng.coin(), self.bias(), rng.below(4))
                } else {
                    self.pack(rng.coin(), self.bias() - 1, mask - rng.below(4))
                };
                return (a, b);
            }
            _ => {}
        }
        let b = match rng.below(4) {
            0 => self.operand(rng),
            1 => {
                // Near a, possibly with opposite sign.
                let delta = rng.below(8) as i64 - 4;
                let near = (a as i64).wrapping_add(delta) as u64 & self.all_bits();
                near ^ if rng.coin() { self.sign() } else { 0 }
            }
            _ => {
                // Result exponent near the subnormal range or overflow.
                let target = match rng.below(3) {
                    0 => rng.below(4) as i64,
                    1 => -(self.frac_bits as i64) + rng.below(6) as i64,
                    _ => self.max_field() as i64 - 1 - rng.below(3) as i64,
                };
                match op {
                    BinOp::Mul => self.with_field(rng, target - fa + bias),
                    BinOp::Div => self.with_field(rng, fa - target + bias),
                    BinOp::Add | BinOp::Sub => {
                        let gap = rng.below(60) as i64;
                        self.with_field(rng, fa - gap)
                    }
                }
            }
        };
        if rng.coin() {
            (a, b)
        } else {
            (b, a)
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Collects mismatches so one run reports several.
struct Report {
    name: &'static str,
    checked: u64,
    mismatched: u64,
    samples: Vec<String>,
    /// How often each expected flag (NX, UF, OF, DZ, NV) occurred.
    flag_counts: [u64; 5],
}

impl Report {
    fn new(name: &'static str) -> Report {
        Report {
            name,
            checked: 0,
            mismatched: 0,
            samples: Vec::new(),
            flag_counts: [0; 5],
        }
    }

    /// Checks a `(value, flags)` result and tallies the expected flags.
    fn check_flagged<T: PartialEq + std::fmt::Debug>(
        &mut self,
        ours: (T, Flags),
        want: (T, Flags),
        what: impl FnOnce() -> String,
    ) {
        for (bit, count) in self.flag_counts.iter_mut().enumerate() {
            *count += u64::from(want.1 >> bit & 1);
        }
        self.check(ours, want, what);
    }

    /// Asserts that each flag in `flags` was expected at least `min` times,
    /// so the inputs really reach those cases.
    fn require_flags(&self, flags: Flags, min: u64) {
        for (bit, &count) in self.flag_counts.iter().enumerate() {
            if flags >> bit & 1 == 1 {
                assert!(
                    count >= min,
                    "{}: flag bit {bit} seen only {count} times",
                    self.name
                );
            }
        }
    }

    fn check<T: PartialEq + std::fmt::Debug>(
        &mut self,
        ours: T,
        want: T,
        what: impl FnOnce() -> String,
    ) {
        self.checked += 1;
        if ours != want {
            self.mismatched += 1;
            if self.samples.len() < 25 {
                self.samples
                    .push(format!("{}: ours {ours:x?}, expected {want:x?}", what()));
            }
        }
    }

    fn finish(self, at_least: u64) {
        assert!(
            self.mismatched == 0,
            "{}: {} of {} cases differ:\n{}",
            self.name,
            self.mismatched,
            self.checked,
            self.samples.join("\n")
        );
        assert!(
            self.checked >= at_least,
            "{}: only {} cases ran",
            self.name,
            self.checked
        );
        eprintln!(
            "{}: {} cases agree; expected NX/UF/OF/DZ/NV {:?} times",
            self.name, self.checked, self.flag_counts
        );
    }
}

// --- SoftFloat (RISC-V specialization) oracle ------------------------------

fn softfloat_mode(rm: Rm) -> u8 {
    match rm {
        Rm::Rne => sf::ROUND_NEAR_EVEN,
        Rm::Rtz => sf::ROUND_MIN_MAG,
        Rm::Rdn => sf::ROUND_MIN,
        Rm::Rup => sf::ROUND_MAX,
        Rm::Rmm => sf::ROUND_NEAR_MAXMAG,
    }
}

/// Runs one SoftFloat operation under `rm`, returning its value and flags.
fn soft<T>(rm: Rm, op: impl FnOnce() -> T) -> (T, Flags) {
    // SAFETY: these only set SoftFloat's thread-local mode and flags.
    unsafe {
        sf::set_rounding_mode(softfloat_mode(rm));
        sf::set_flags(0);
    }
    let value = op();
    // SAFETY: reads SoftFloat's thread-local flags.
    let flags = unsafe { sf::get_flags() };
    (value, flags)
}

fn soft_binary(fmt: Fmt, op: BinOp, a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    let (r, flags) = soft(rm, || {
        if fmt == FMT32 {
            let (a, b) = (sf::Sf32(a as u32), sf::Sf32(b as u32));
            // SAFETY: SoftFloat arithmetic is pure apart from its
            // thread-local mode and flags.
            let r = unsafe {
                match op {
                    BinOp::Add => sf::f32_add(a, b),
                    BinOp::Sub => sf::f32_sub(a, b),
                    BinOp::Mul => sf::f32_mul(a, b),
                    BinOp::Div => sf::f32_div(a, b),
                }
            };
            u64::from(r.0)
        } else {
            let (a, b) = (sf::Sf64(a), sf::Sf64(b));
            // SAFETY: as above.
            let r = unsafe {
                match op {
                    BinOp::Add => sf::f64_add(a, b),
                    BinOp::Sub => sf::f64_sub(a, b),
                    BinOp::Mul => sf::f64_mul(a, b),
                    BinOp::Div => sf::f64_div(a, b),
                }
            };
            r.0
        }
    });
    (fmt.canon(r), flags)
}

fn soft_fma(fmt: Fmt, a: u64, b: u64, c: u64, rm: Rm) -> (u64, Flags) {
    let (r, flags) = soft(rm, || {
        if fmt == FMT32 {
            let (a, b, c) = (sf::Sf32(a as u32), sf::Sf32(b as u32), sf::Sf32(c as u32));
            // SAFETY: as in `soft_binary`.
            u64::from(unsafe { sf::f32_mulAdd(a, b, c) }.0)
        } else {
            // SAFETY: as in `soft_binary`.
            unsafe { sf::f64_mulAdd(sf::Sf64(a), sf::Sf64(b), sf::Sf64(c)) }.0
        }
    });
    (fmt.canon(r), flags)
}

fn soft_sqrt(fmt: Fmt, a: u64, rm: Rm) -> (u64, Flags) {
    let (r, flags) = soft(rm, || {
        if fmt == FMT32 {
            // SAFETY: as in `soft_binary`.
            u64::from(unsafe { sf::f32_sqrt(sf::Sf32(a as u32)) }.0)
        } else {
            // SAFETY: as in `soft_binary`.
            unsafe { sf::f64_sqrt(sf::Sf64(a)) }.0
        }
    });
    (fmt.canon(r), flags)
}

fn ours_binary(fmt: Fmt, op: BinOp, a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    if fmt == FMT32 {
        let f = match op {
            BinOp::Add => add32,
            BinOp::Sub => sub32,
            BinOp::Mul => mul32,
            BinOp::Div => div32,
        };
        let (r, flags) = f(a as u32, b as u32, rm);
        (r.into(), flags)
    } else {
        let f = match op {
            BinOp::Add => add64,
            BinOp::Sub => sub64,
            BinOp::Mul => mul64,
            BinOp::Div => div64,
        };
        f(a, b, rm)
    }
}

fn ours_fma(fmt: Fmt, a: u64, b: u64, c: u64, rm: Rm) -> (u64, Flags) {
    if fmt == FMT32 {
        let (r, flags) = fma32(a as u32, b as u32, c as u32, rm);
        (r.into(), flags)
    } else {
        fma64(a, b, c, rm)
    }
}

fn ours_sqrt(fmt: Fmt, a: u64, rm: Rm) -> (u64, Flags) {
    if fmt == FMT32 {
        let (r, flags) = sqrt32(a as u32, rm);
        (r.into(), flags)
    } else {
        sqrt64(a, rm)
    }
}

fn arithmetic_against_softfloat(fmt: Fmt, name: &'static str, seed: u64) {
    let mut rng = Rng(seed);
    let mut report = Report::new(name);
    for rm in ALL_RM {
        for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div] {
            for _ in 0..CASES {
                let (a, b) = fmt.pair(&mut rng, op);
                report.check_flagged(
                    ours_binary(fmt, op, a, b, rm),
                    soft_binary(fmt, op, a, b, rm),
                    || format!("{op:?} {a:x} {b:x} {rm:?}"),
                );
            }
        }
        for _ in 0..CASES {
            let a = fmt.operand(&mut rng)
                & if rng.below(8) == 0 {
                    u64::MAX
                } else {
                    !fmt.sign()
                };
            report.check_flagged(ours_sqrt(fmt, a, rm), soft_sqrt(fmt, a, rm), || {
                format!("sqrt {a:x} {rm:?}")
            });
        }
        for _ in 0..CASES * 2 {
            let (a, b, c) = fma_operands(fmt, &mut rng);
            report.check_flagged(
                ours_fma(fmt, a, b, c, rm),
                soft_fma(fmt, a, b, c, rm),
                || format!("fma {a:x} {b:x} {c:x} {rm:?}"),
            );
        }
    }
    report.require_flags(NX | UF | OF | DZ | NV, 1000);
    report.finish((CASES * 5 * 7) as u64);
}

/// fma operands: independent, an addend that nearly cancels the product,
/// or one whose exponent is near the product's.
fn fma_operands(fmt: Fmt, rng: &mut Rng) -> (u64, u64, u64) {
    let (a, b) = fmt.pair(rng, BinOp::Mul);
    let product = ours_binary(fmt, BinOp::Mul, a, b, Rm::Rne).0;
    let c = match rng.below(4) {
        0 => fmt.operand(rng),
        1 => {
            let delta = rng.below(8);
            (product ^ fmt.sign()).wrapping_add(delta).wrapping_sub(4) & fmt.all_bits()
        }
        _ => {
            let shift = rng.below(2 * u64::from(fmt.frac_bits) + 8) as i64;
            fmt.with_field(rng, fmt.field(product) as i64 - shift + 4)
        }
    };
    (a, b, c)
}

#[test]
fn arithmetic32_matches_softfloat() {
    arithmetic_against_softfloat(FMT32, "binary32 arithmetic vs SoftFloat", 1);
}

#[test]
fn arithmetic64_matches_softfloat() {
    arithmetic_against_softfloat(FMT64, "binary64 arithmetic vs SoftFloat", 2);
}

#[derive(Clone, Copy, Debug)]
enum Cmp {
    Eq,
    Lt,
    Le,
}

fn soft_compare(fmt: Fmt, op: Cmp, a: u64, b: u64) -> (bool, Flags) {
    soft(Rm::Rne, || {
        if fmt == FMT32 {
            let (a, b) = (sf::Sf32(a as u32), sf::Sf32(b as u32));
            // SAFETY: as in `soft_binary`.
            unsafe {
                match op {
                    Cmp::Eq => sf::f32_eq(a, b),
                    Cmp::Lt => sf::f32_lt(a, b),
                    Cmp::Le => sf::f32_le(a, b),
                }
            }
        } else {
            let (a, b) = (sf::Sf64(a), sf::Sf64(b));
            // SAFETY: as in `soft_binary`.
            unsafe {
                match op {
                    Cmp::Eq => sf::f64_eq(a, b),
                    Cmp::Lt => sf::f64_lt(a, b),
                    Cmp::Le => sf::f64_le(a, b),
                }
            }
        }
    })
}

fn ours_compare(fmt: Fmt, op: Cmp, a: u64, b: u64) -> (bool, Flags) {
    if fmt == FMT32 {
        let f = match op {
            Cmp::Eq => eq32,
            Cmp::Lt => lt32,
            Cmp::Le => le32,
        };
        f(a as u32, b as u32)
    } else {
        let f = match op {
            Cmp::Eq => eq64,
            Cmp::Lt => lt64,
            Cmp::Le => le64,
        };
        f(a, b)
    }
}

#[test]
fn comparisons_match_softfloat() {
    let mut rng = Rng(3);
    let mut report = Report::new("comparisons vs SoftFloat");
    for fmt in [FMT32, FMT64] {
        for op in [Cmp::Eq, Cmp::Lt, Cmp::Le] {
            for _ in 0..CASES {
                let (a, b) = fmt.pair(&mut rng, BinOp::Sub);
                report.check_flagged(
                    ours_compare(fmt, op, a, b),
                    soft_compare(fmt, op, a, b),
                    || format!("{op:?} {a:x} {b:x}"),
                );
            }
        }
    }
    report.require_flags(NV, 1000);
    report.finish((CASES * 6) as u64);
}

/// binary64 operands spread around binary32's range ends, with low bits
/// arranged around the 29 bits that narrowing drops.
fn narrowing_operand(rng: &mut Rng) -> u64 {
    let field = match rng.below(6) {
        0 => 1023 - 126 - rng.below(30),
        1 => 1023 - 126 + rng.below(3),
        2 => 1023 + 127 - rng.below(3) + rng.below(5),
        _ => FMT64.exp_field(rng),
    };
    let high = FMT64.frac(rng) & !((1 << 29) - 1);
    let low = match rng.below(5) {
        0 => 0,
        1 => 1 << 28,
        2 => (1 << 28) + 1,
        3 => (1 << 28) - 1,
        _ => rng.next() & ((1 << 29) - 1),
    };
    if rng.below(50) == 0 {
        // Just below 2^-126, where tininess before and after rounding differ.
        return (0x3810_0000_0000_0000 - rng.below(1 << 31)) | if rng.coin() { 1 << 63 } else { 0 };
    }
    FMT64.pack(rng.coin(), field, high | low)
}

#[test]
fn conversions_match_softfloat() {
    let mut rng = Rng(4);
    let mut report = Report::new("format and 32-bit integer conversions vs SoftFloat");
    for _ in 0..CASES {
        let a = FMT32.operand(&mut rng);
        // SAFETY: as in `soft_binary`.
        let (r, flags) = soft(Rm::Rne, || unsafe { sf::f32_to_f64(sf::Sf32(a as u32)) }.0);
        report.check_flagged(f32_to_f64(a as u32), (FMT64.canon(r), flags), || {
            format!("f32_to_f64 {a:x}")
        });
    }
    for rm in ALL_RM {
        for _ in 0..CASES {
            let a = narrowing_operand(&mut rng);
            // SAFETY: as in `soft_binary`.
            let (r, flags) = soft(rm, || unsafe { sf::f64_to_f32(sf::Sf64(a)) }.0);
            let want = (FMT32.canon(r.into()) as u32, flags);
            report.check_flagged(f64_to_f32(a, rm), want, || {
                format!("f64_to_f32 {a:x} {rm:?}")
            });
        }
        let mode = softfloat_mode(rm);
        for _ in 0..CASES {
            let a = int_range_operand(&mut rng, FMT32) as u32;
            let b = int_range_operand(&mut rng, FMT64);
            let what = |op: &'static str, x: u64| move || format!("{op} {x:x} {rm:?}");
            let (sa, sb) = (sf::Sf32(a), sf::Sf64(b));
            // SAFETY (all four blocks): as in `soft_binary`.
            let want = soft(rm, || unsafe { sf::f32_to_i32(sa, mode, true) });
            report.check_flagged(to_i32_from32(a, rm), want, what("to_i32_from32", a.into()));
            let want = soft(rm, || unsafe { sf::f32_to_u32(sa, mode, true) });
            report.check_flagged(to_u32_from32(a, rm), want, what("to_u32_from32", a.into()));
            let want = soft(rm, || unsafe { sf::f64_to_i32(sb, mode, true) });
            report.check_flagged(to_i32_from64(b, rm), want, what("to_i32_from64", b));
            let want = soft(rm, || unsafe { sf::f64_to_u32(sb, mode, true) });
            report.check_flagged(to_u32_from64(b, rm), want, what("to_u32_from64", b));
        }
        for _ in 0..CASES {
            let v = interesting_int(&mut rng) as u32;
            let i = v as i32;
            // SAFETY (all four blocks): as in `soft_binary`.
            let want = soft(rm, || unsafe { sf::i32_to_f32(i) }.0);
            report.check_flagged(from_i32_to32(i, rm), want, || {
                format!("from_i32_to32 {i} {rm:?}")
            });
            let want = soft(rm, || unsafe { sf::u32_to_f32(v) }.0);
            report.check_flagged(from_u32_to32(v, rm), want, || {
                format!("from_u32_to32 {v} {rm:?}")
            });
            let want = soft(rm, || unsafe { sf::i32_to_f64(i) }.0);
            report.check_flagged(from_i32_to64(i, rm), want, || {
                format!("from_i32_to64 {i} {rm:?}")
            });
            let want = soft(rm, || unsafe { sf::u32_to_f64(v) }.0);
            report.check_flagged(from_u32_to64(v, rm), want, || {
                format!("from_u32_to64 {v} {rm:?}")
            });
        }
    }
    report.require_flags(NX | UF | OF | NV, 500);
    report.finish((CASES * 46) as u64);
}

/// Floats whose magnitude is near the integer formats' ranges: exponents
/// from below 1 to past 2^64, with halves and all-ones fractions common.
fn int_range_operand(rng: &mut Rng, fmt: Fmt) -> u64 {
    if rng.below(8) == 0 {
        return fmt.operand(rng);
    }
    let exp = match rng.below(4) {
        0 => 30 + rng.below(4),
        1 => 62 + rng.below(4),
        _ => rng.below(70),
    } as i64
        - 3;
    let field = (fmt.bias() as i64 + exp) as u64;
    let frac = fmt.frac(rng);
    fmt.pack(rng.coin(), field, frac)
}

/// Integers of every width, near powers of two and rounding ties.
fn interesting_int(rng: &mut Rng) -> u64 {
    let v = match rng.below(4) {
        0 => rng.next(),
        1 => {
            // A p-bit value shifted up, plus a half-ulp tie or near it.
            let k = rng.below(40) as u32;
            let base = (rng.next() >> 40) << k;
            let half = if k > 0 { 1u64 << (k - 1) } else { 0 };
            base.wrapping_add(half)
                .wrapping_add(rng.below(3))
                .wrapping_sub(1)
        }
        2 => (1u64 << rng.below(64))
            .wrapping_add(rng.below(5))
            .wrapping_sub(2),
        _ => rng.next() >> rng.below(64),
    };
    if rng.below(4) == 0 {
        v.wrapping_neg()
    } else {
        v
    }
}

// --- Host oracles -----------------------------------------------------------

/// Host arithmetic is correctly rounded to nearest-even: compare values.
#[test]
fn nearest_even_matches_host() {
    let mut rng = Rng(5);
    let mut report = Report::new("round-to-nearest-even values vs host");
    let canon32 = |x: f32| {
        if x.is_nan() {
            CANONICAL_NAN32
        } else {
            x.to_bits()
        }
    };
    let canon64 = |x: f64| {
        if x.is_nan() {
            CANONICAL_NAN64
        } else {
            x.to_bits()
        }
    };
    for _ in 0..CASES * 4 {
        let op = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div][rng.below(4) as usize];
        let (a, b) = FMT32.pair(&mut rng, op);
        let (a, b) = (a as u32, b as u32);
        let (x, y) = (f32::from_bits(a), f32::from_bits(b));
        let host = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
        };
        let ours = ours_binary(FMT32, op, a.into(), b.into(), Rm::Rne).0 as u32;
        report.check(ours, canon32(host), || format!("{op:?}32 {a:x} {b:x}"));
        let (a, b) = FMT64.pair(&mut rng, op);
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let host = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
        };
        report.check(
            ours_binary(FMT64, op, a, b, Rm::Rne).0,
            canon64(host),
            || format!("{op:?}64 {a:x} {b:x}"),
        );
    }
    for _ in 0..CASES {
        let a = FMT32.operand(&mut rng) as u32;
        report.check(
            sqrt32(a, Rm::Rne).0,
            canon32(f32::from_bits(a).sqrt()),
            || format!("sqrt32 {a:x}"),
        );
        let a = FMT64.operand(&mut rng);
        report.check(
            sqrt64(a, Rm::Rne).0,
            canon64(f64::from_bits(a).sqrt()),
            || format!("sqrt64 {a:x}"),
        );
        let (a, b, c) = fma_operands(FMT32, &mut rng);
        let (a, b, c) = (a as u32, b as u32, c as u32);
        let host = f32::from_bits(a).mul_add(f32::from_bits(b), f32::from_bits(c));
        report.check(fma32(a, b, c, Rm::Rne).0, canon32(host), || {
            format!("fma32 {a:x} {b:x} {c:x}")
        });
        let (a, b, c) = fma_operands(FMT64, &mut rng);
        let host = f64::from_bits(a).mul_add(f64::from_bits(b), f64::from_bits(c));
        report.check(fma64(a, b, c, Rm::Rne).0, canon64(host), || {
            format!("fma64 {a:x} {b:x} {c:x}")
        });
        let a = FMT32.operand(&mut rng) as u32;
        report.check(f32_to_f64(a).0, canon64(f32::from_bits(a).into()), || {
            format!("f32_to_f64 {a:x}")
        });
        let a = narrowing_operand(&mut rng);
        report.check(
            f64_to_f32(a, Rm::Rne).0,
            canon32(f64::from_bits(a) as f32),
            || format!("f64_to_f32 {a:x}"),
        );
    }
    report.finish((CASES * 14) as u64);
}

/// The host's exact integer rounding functions, one per mode.
fn host_round(x: f64, rm: Rm) -> f64 {
    match rm {
        Rm::Rne => x.round_ties_even(),
        Rm::Rtz => x.trunc(),
        Rm::Rdn => x.floor(),
        Rm::Rup => x.ceil(),
        Rm::Rmm => x.round(),
    }
}

/// RISC-V float-to-integer conversion from its definition: round, then
/// saturate with NV (NaN gives the maximum); NX only when in range.
fn reference_to_int(x: f64, rm: Rm, min: i128, max: i128) -> (i128, Flags) {
    if x.is_nan() {
        return (max, NV);
    }
    let r = host_round(x, rm);
    // The bounds are powers of two (or zero), exact in binary64.
    if r < min as f64 || r >= (max + 1) as f64 {
        return (if x < 0.0 { min } else { max }, NV);
    }
    (r as i128, if r == x { 0 } else { NX })
}

/// Widens a conversion result for comparison with [`reference_to_int`].
fn wide<T: Into<i128>>((value, flags): (T, Flags)) -> (i128, Flags) {
    (value.into(), flags)
}

#[test]
fn float_to_int_matches_host_rounding() {
    let mut rng = Rng(6);
    let mut report = Report::new("float to integer vs host rounding");
    let (i32r, u32r) = ((i32::MIN.into(), i32::MAX.into()), (0, u32::MAX.into()));
    let (i64r, u64r) = ((i64::MIN.into(), i64::MAX.into()), (0, u64::MAX.into()));
    for rm in ALL_RM {
        for _ in 0..CASES {
            let a = int_range_operand(&mut rng, FMT32) as u32;
            // Widening to binary64 is exact.
            let x = f64::from(f32::from_bits(a));
            let want = |(lo, hi): (i128, i128)| reference_to_int(x, rm, lo, hi);
            let what = |op: &'static str| move || format!("{op} {a:x} {rm:?}");
            report.check_flagged(
                wide(to_i32_from32(a, rm)),
                want(i32r),
                what("to_i32_from32"),
            );
            report.check_flagged(
                wide(to_u32_from32(a, rm)),
                want(u32r),
                what("to_u32_from32"),
            );
            report.check_flagged(
                wide(to_i64_from32(a, rm)),
                want(i64r),
                what("to_i64_from32"),
            );
            report.check_flagged(
                wide(to_u64_from32(a, rm)),
                want(u64r),
                what("to_u64_from32"),
            );

            let b = int_range_operand(&mut rng, FMT64);
            let y = f64::from_bits(b);
            let want = |(lo, hi): (i128, i128)| reference_to_int(y, rm, lo, hi);
            let what = |op: &'static str| move || format!("{op} {b:x} {rm:?}");
            report.check_flagged(
                wide(to_i32_from64(b, rm)),
                want(i32r),
                what("to_i32_from64"),
            );
            report.check_flagged(
                wide(to_u32_from64(b, rm)),
                want(u32r),
                what("to_u32_from64"),
            );
            report.check_flagged(
                wide(to_i64_from64(b, rm)),
                want(i64r),
                what("to_i64_from64"),
            );
            report.check_flagged(
                wide(to_u64_from64(b, rm)),
                want(u64r),
                what("to_u64_from64"),
            );
        }
    }
    report.require_flags(NX | NV, 1000);
    report.finish((CASES * 40) as u64);
}

/// Chooses between the two representable neighbours of the integer `v`:
/// `near` (the host's nearest-even cast) and `other` on the far side of `v`.
fn choose_neighbour<T: Copy>(v: i128, near: (T, i128), other: (T, i128), rm: Rm) -> (T, Flags) {
    let ((lo, _), (hi, _)) = if near.1 < other.1 {
        (near, other)
    } else {
        (other, near)
    };
    let result = match rm {
        Rm::Rne => near.0,
        Rm::Rtz if v > 0 => lo,
        Rm::Rtz => hi,
        Rm::Rdn => lo,
        Rm::Rup => hi,
        Rm::Rmm => {
            let (d_near, d_other) = ((near.1 - v).abs(), (other.1 - v).abs());
            match d_near.cmp(&d_other) {
                std::cmp::Ordering::Less => near.0,
                std::cmp::Ordering::Greater => other.0,
                std::cmp::Ordering::Equal if v > 0 => hi,
                std::cmp::Ordering::Equal => lo,
            }
        }
    };
    (result, NX)
}

/// Integer to binary64 from the definition, using the host's exact casts.
fn reference_from_int64(v: i128, rm: Rm) -> (u64, Flags) {
    let near = v as f64;
    // Exact: `near` is an integer below 2^65 in magnitude.
    let near_int = near as i128;
    if near_int == v {
        return (near.to_bits(), 0);
    }
    // Finite nonzero: one bit-pattern step moves one representable value
    // towards (down) or away from (up) zero.
    let bits = near.to_bits();
    let other_bits = if near_int.abs() > v.abs() {
        bits - 1
    } else {
        bits + 1
    };
    let other = f64::from_bits(other_bits);
    choose_neighbour(v, (bits, near_int), (other_bits, other as i128), rm)
}

/// Integer to binary32, likewise.
fn reference_from_int32(v: i128, rm: Rm) -> (u32, Flags) {
    let near = v as f32;
    let near_int = near as i128;
    if near_int == v {
        return (near.to_bits(), 0);
    }
    let bits = near.to_bits();
    let other_bits = if near_int.abs() > v.abs() {
        bits - 1
    } else {
        bits + 1
    };
    let other = f32::from_bits(other_bits);
    choose_neighbour(v, (bits, near_int), (other_bits, other as i128), rm)
}

#[test]
fn int_to_float_matches_host_neighbours() {
    let mut rng = Rng(7);
    let mut report = Report::new("integer to float vs host neighbours");
    for rm in ALL_RM {
        for _ in 0..CASES {
            let v = interesting_int(&mut rng);
            let (i, u) = (v as i64, v);
            let (w, wu) = (v as i32, v as u32);
            let what = |op: &'static str, x: i128| move || format!("{op} {x} {rm:?}");
            let (iw, uw) = (i128::from(i), i128::from(u));
            report.check_flagged(
                from_i64_to32(i, rm),
                reference_from_int32(iw, rm),
                what("from_i64_to32", iw),
            );
            report.check_flagged(
                from_u64_to32(u, rm),
                reference_from_int32(uw, rm),
                what("from_u64_to32", uw),
            );
            report.check_flagged(
                from_i64_to64(i, rm),
                reference_from_int64(iw, rm),
                what("from_i64_to64", iw),
            );
            report.check_flagged(
                from_u64_to64(u, rm),
                reference_from_int64(uw, rm),
                what("from_u64_to64", uw),
            );
            let (ww, wuw) = (i128::from(w), i128::from(wu));
            report.check_flagged(
                from_i32_to32(w, rm),
                reference_from_int32(ww, rm),
                what("from_i32_to32", ww),
            );
            report.check_flagged(
                from_u32_to32(wu, rm),
                reference_from_int32(wuw, rm),
                what("from_u32_to32", wuw),
            );
            report.check_flagged(
                from_i32_to64(w, rm),
                reference_from_int64(ww, rm),
                what("from_i32_to64", ww),
            );
            report.check_flagged(
                from_u32_to64(wu, rm),
                reference_from_int64(wuw, rm),
                what("from_u32_to64", wuw),
            );
        }
    }
    report.require_flags(NX, 1000);
    report.finish((CASES * 40) as u64);
}

/// fmin/fmax from the definition (IEEE 754-2019 minimumNumber and
/// maximumNumber, -0 below +0), using host comparisons.
fn reference_min_max(fmt: Fmt, a: u64, b: u64, x: f64, y: f64, want_max: bool) -> (u64, Flags) {
    let flags = if fmt.is_snan(a) || fmt.is_snan(b) {
        NV
    } else {
        0
    };
    let result = match (x.is_nan(), y.is_nan()) {
        (true, true) => fmt.canonical_nan(),
        (true, false) => b,
        (false, true) => a,
        (false, false) if x == y => {
            // Equal values differ at most in the sign of zero.
            let a_negative = a & fmt.sign() != 0;
            if a_negative != want_max {
                a
            } else {
                b
            }
        }
        (false, false) => {
            if (x < y) != want_max {
                a
            } else {
                b
            }
        }
    };
    (result, flags)
}

/// fclass from the host's classification of the value in its own format.
fn reference_class(fmt: Fmt, bits: u64, category: std::num::FpCategory) -> u64 {
    use std::num::FpCategory::*;
    let negative = bits & fmt.sign() != 0;
    let bit = match (category, negative) {
        (Nan, _) if fmt.is_snan(bits) => 8,
        (Nan, _) => 9,
        (Infinite, true) => 0,
        (Normal, true) => 1,
        (Subnormal, true) => 2,
        (Zero, true) => 3,
        (Zero, false) => 4,
        (Subnormal, false) => 5,
        (Normal, false) => 6,
        (Infinite, false) => 7,
    };
    1 << bit
}

#[test]
fn min_max_class_and_quiet_compare_match_definitions() {
    let mut rng = Rng(8);
    let mut report = Report::new("min/max/class/compare vs definitions");
    for _ in 0..CASES * 2 {
        let (a, b) = FMT32.pair(&mut rng, BinOp::Sub);
        let (a32, b32) = (a as u32, b as u32);
        // f32 -> f64 widening keeps NaN-ness and every other value exactly.
        let (x, y) = (
            f64::from(f32::from_bits(a32)),
            f64::from(f32::from_bits(b32)),
        );
        let what = |op: &'static str| move || format!("{op} {a:x} {b:x}");
        let narrow = |(r, f): (u32, Flags)| (u64::from(r), f);
        report.check_flagged(
            narrow(min32(a32, b32)),
            reference_min_max(FMT32, a, b, x, y, false),
            what("min32"),
        );
        report.check_flagged(
            narrow(max32(a32, b32)),
            reference_min_max(FMT32, a, b, x, y, true),
            what("max32"),
        );
        let category = f32::from_bits(a32).classify();
        report.check(
            class32(a32),
            reference_class(FMT32, a, category),
            what("class32"),
        );
        let quiet_nv = if FMT32.is_snan(a) || FMT32.is_snan(b) {
            NV
        } else {
            0
        };
        let signaling_nv = if x.is_nan() || y.is_nan() { NV } else { 0 };
        report.check(eq32(a32, b32), (x == y, quiet_nv), what("eq32"));
        report.check(lt32(a32, b32), (x < y, signaling_nv), what("lt32"));
        report.check(le32(a32, b32), (x <= y, signaling_nv), what("le32"));

        let (a, b) = FMT64.pair(&mut rng, BinOp::Sub);
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let what = |op: &'static str| move || format!("{op} {a:x} {b:x}");
        report.check_flagged(
            min64(a, b),
            reference_min_max(FMT64, a, b, x, y, false),
            what("min64"),
        );
        report.check_flagged(
            max64(a, b),
            reference_min_max(FMT64, a, b, x, y, true),
            what("max64"),
        );
        report.check(
            class64(a),
            reference_class(FMT64, a, x.classify()),
            what("class64"),
        );
        let quiet_nv = if FMT64.is_snan(a) || FMT64.is_snan(b) {
            NV
        } else {
            0
        };
        let signaling_nv = if x.is_nan() || y.is_nan() { NV } else { 0 };
        report.check(eq64(a, b), (x == y, quiet_nv), what("eq64"));
        report.check(lt64(a, b), (x < y, signaling_nv), what("lt64"));
        report.check(le64(a, b), (x <= y, signaling_nv), what("le64"));
    }
    report.require_flags(NV, 500);
    report.finish((CASES * 24) as u64);
}
