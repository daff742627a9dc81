//! IEEE-754 binary32/binary64 arithmetic exactly as the RISC-V F and D
//! extensions define it, on raw bit patterns.
//!
//! Why our own integer implementation rather than a crate or the host FPU:
//! the host FPU has no per-call rounding mode or flags in stable Rust, and
//! results must not depend on the host. `rustc_apfloat` has no square root
//! and signals underflow when the *bounded-exponent* result is subnormal,
//! which differs from RISC-V (tininess after rounding with an unbounded
//! exponent) at the subnormal/normal boundary. `simple-soft-float` no longer
//! builds on current Rust, and Berkeley SoftFloat bindings keep rounding mode
//! and flags in (thread-)global state. The algorithms here are short and
//! exact: every operation computes the exact result, or a value that is the
//! exact result rounded to odd at a bit at least two places below the final
//! rounding position (the "sticky" bit), and one shared [`round_pack`] does
//! the single IEEE rounding, so every mode and flag follows from one place.
//!
//! RISC-V specifics: every NaN result is the canonical NaN; underflow is
//! raised when the result is tiny *after* rounding and inexact; float to
//! integer conversions saturate (NaN gives the largest positive value) and
//! raise only NV when saturating; `fma(inf, 0, qNaN)` raises NV.
//!
//! No function here keeps state: each returns its result with the flags it
//! raised, and the caller ORs them into `fflags`.

/// A RISC-V rounding mode (the static `rm` field or `frm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rm {
    /// Round to nearest, ties to even.
    Rne,
    /// Round towards zero.
    Rtz,
    /// Round down (towards -inf).
    Rdn,
    /// Round up (towards +inf).
    Rup,
    /// Round to nearest, ties to max magnitude.
    Rmm,
}

impl Rm {
    /// Decodes an `rm`/`frm` value; 5, 6 (reserved) and 7 (dynamic) are not
    /// rounding modes and give `None`.
    pub fn from_bits(b: u32) -> Option<Rm> {
        match b {
            0 => Some(Rm::Rne),
            1 => Some(Rm::Rtz),
            2 => Some(Rm::Rdn),
            3 => Some(Rm::Rup),
            4 => Some(Rm::Rmm),
            _ => None,
        }
    }
}

/// Accrued exception flags, laid out as in the `fflags` CSR.
pub type Flags = u8;
/// Inexact.
pub const NX: Flags = 1;
/// Underflow.
pub const UF: Flags = 2;
/// Overflow.
pub const OF: Flags = 4;
/// Divide by zero.
pub const DZ: Flags = 8;
/// Invalid operation.
pub const NV: Flags = 16;

/// The canonical binary32 NaN.
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
/// The canonical binary64 NaN.
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

/// Parameters of one binary interchange format; bit patterns travel as u64.
trait Format {
    const EXP_BITS: u32;
    const FRAC_BITS: u32;
    const BIAS: i32 = (1 << (Self::EXP_BITS - 1)) - 1;
    /// Exponent of the smallest normal number.
    const EMIN: i32 = 1 - Self::BIAS;
    /// Exponent of the largest finite number.
    const EMAX: i32 = Self::BIAS;
    /// Significand precision in bits, hidden bit included.
    const PREC: u32 = Self::FRAC_BITS + 1;
    const SIGN: u64 = 1 << (Self::EXP_BITS + Self::FRAC_BITS);
    const FRAC_MASK: u64 = (1 << Self::FRAC_BITS) - 1;
    const QUIET_BIT: u64 = 1 << (Self::FRAC_BITS - 1);
    /// Positive infinity, which is also the exponent field mask.
    const INF: u64 = ((1 << Self::EXP_BITS) - 1) << Self::FRAC_BITS;
    const MAX_FINITE: u64 = Self::INF - 1;
    const NAN: u64 = Self::INF | Self::QUIET_BIT;
}

struct F32;
struct F64;

impl Format for F32 {
    const EXP_BITS: u32 = 8;
    const FRAC_BITS: u32 = 23;
}

impl Format for F64 {
    const EXP_BITS: u32 = 11;
    const FRAC_BITS: u32 = 52;
}

/// What a bit pattern denotes, sign aside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    QNan,
    SNan,
    Inf,
    Zero,
    /// `sig * 2^exp`, `sig != 0` (no normalisation of subnormals).
    Finite {
        sig: u64,
        exp: i32,
    },
}

#[derive(Clone, Copy)]
struct Unpacked {
    sign: bool,
    kind: Kind,
}

impl Kind {
    fn is_nan(self) -> bool {
        matches!(self, Kind::QNan | Kind::SNan)
    }
}

fn unpack<F: Format>(a: u64) -> Unpacked {
    let sign = a & F::SIGN != 0;
    let field = ((a & F::INF) >> F::FRAC_BITS) as i32;
    let frac = a & F::FRAC_MASK;
    let all_ones = (1 << F::EXP_BITS) - 1;
    let kind = if field == all_ones {
        match frac {
            0 => Kind::Inf,
            f if f & F::QUIET_BIT != 0 => Kind::QNan,
            _ => Kind::SNan,
        }
    } else if field == 0 {
        if frac == 0 {
            Kind::Zero
        } else {
            Kind::Finite {
                sig: frac,
                exp: F::EMIN - F::FRAC_BITS as i32,
            }
        }
    } else {
        Kind::Finite {
            sig: frac | (1 << F::FRAC_BITS),
            exp: field - F::BIAS - F::FRAC_BITS as i32,
        }
    };
    Unpacked { sign, kind }
}

fn is_nan<F: Format>(a: u64) -> bool {
    a & !F::SIGN > F::INF
}

fn is_snan<F: Format>(a: u64) -> bool {
    is_nan::<F>(a) && a & F::QUIET_BIT == 0
}

fn sign_bit<F: Format>(sign: bool) -> u64 {
    if sign {
        F::SIGN
    } else {
        0
    }
}

/// The canonical NaN, with NV if any operand was a signaling NaN.
fn nan_result<F: Format>(operands: &[u64]) -> (u64, Flags) {
    let signaling = operands.iter().any(|&x| is_snan::<F>(x));
    (F::NAN, if signaling { NV } else { 0 })
}

/// Rounds `sig` to an integer after dropping its low `shift` bits
/// (`shift >= 1`; any size). Returns the rounded value and whether it is
/// inexact. `sign` is the sign of the number, needed by the directed modes.
fn round_shift(sig: u64, shift: u32, sign: bool, rm: Rm) -> (u64, bool) {
    let (kept, rem, half) = match shift {
        0..=63 => (sig >> shift, sig & ((1 << shift) - 1), 1u64 << (shift - 1)),
        64 => (0, sig, 1 << 63),
        // Every bit is below the half-way bit: nonzero but under a half.
        _ => (0, u64::from(sig != 0), 2),
    };
    let up = match rm {
        Rm::Rne => rem > half || (rem == half && kept & 1 == 1),
        Rm::Rmm => rem >= half,
        Rm::Rtz => false,
        Rm::Rdn => sign && rem != 0,
        Rm::Rup => !sign && rem != 0,
    };
    (kept + u64::from(up), rem != 0)
}

/// The result of an overflow: infinity or the largest finite number,
/// depending on whether the rounding mode rounds away from zero.
fn overflow<F: Format>(sign: bool, rm: Rm) -> (u64, Flags) {
    let to_inf = match rm {
        Rm::Rne | Rm::Rmm => true,
        Rm::Rtz => false,
        Rm::Rdn => sign,
        Rm::Rup => !sign,
    };
    let mag = if to_inf { F::INF } else { F::MAX_FINITE };
    (sign_bit::<F>(sign) | mag, OF | NX)
}

/// Rounds the nonzero value `(-1)^sign * sig * 2^exp` to format `F`.
///
/// `sig` may carry a sticky bit in its least significant bit (the exact value
/// rounded to odd there); callers guarantee that bit lies at least two places
/// below the rounding position, i.e. a sticky `sig` has at least `PREC + 2`
/// significant bits (callers here give 31 or more for binary32 and 62 or
/// more for binary64).
fn round_pack<F: Format>(sign: bool, exp: i32, sig: u64, rm: Rm) -> (u64, Flags) {
    debug_assert!(sig != 0);
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    // Unbiased exponent of the leading bit.
    let e = exp - lz as i32 + 63;
    if e > F::EMAX {
        return overflow::<F>(sign, rm);
    }
    let norm_shift = 64 - F::PREC;
    if e >= F::EMIN {
        let (kept, inexact) = round_shift(sig, norm_shift, sign, rm);
        // `kept` includes the hidden bit, so a carry out of the significand
        // lands in the exponent field, as it should.
        let bits = (((e + F::BIAS - 1) as u64) << F::FRAC_BITS) + kept;
        if bits >= F::INF {
            return overflow::<F>(sign, rm);
        }
        return (sign_bit::<F>(sign) | bits, if inexact { NX } else { 0 });
    }
    // Below the normal range: round at the subnormal quantum. A result that
    // rounds up to the smallest normal packs correctly (hidden bit becomes
    // exponent field 1).
    let shift = norm_shift + (F::EMIN - e) as u32;
    let (kept, inexact) = round_shift(sig, shift.min(65), sign, rm);
    let mut flags = 0;
    if inexact {
        // Tininess after rounding: would the value, rounded to full precision
        // with an unbounded exponent, still be below 2^EMIN?
        let carries_to_normal =
            e == F::EMIN - 1 && round_shift(sig, norm_shift, sign, rm).0 >> F::PREC != 0;
        flags = if carries_to_normal { NX } else { NX | UF };
    }
    (sign_bit::<F>(sign) | kept, flags)
}

/// `x * 2^exp` as a 64-bit significand with sticky bit and exponent, for
/// [`round_pack`]. `x != 0`.
fn round_pack_wide<F: Format>(sign: bool, exp: i32, x: u128, rm: Rm) -> (u64, Flags) {
    let lz = x.leading_zeros();
    if lz >= 64 {
        return round_pack::<F>(sign, exp, x as u64, rm);
    }
    let shift = 64 - lz;
    let sticky = x & ((1 << shift) - 1) != 0;
    let sig = (x >> shift) as u64 | u64::from(sticky);
    round_pack::<F>(sign, exp + shift as i32, sig, rm)
}

/// `x >> d` with every shifted-out bit ORed into the result's lowest bit.
fn shift_right_jam(x: u128, d: u32) -> u128 {
    match d {
        0 => x,
        1..=127 => (x >> d) | u128::from(x << (128 - d) != 0),
        _ => u128::from(x != 0),
    }
}

/// 64-bit [`shift_right_jam`].
fn shift_right_jam64(x: u64, d: u32) -> u64 {
    match d {
        0 => x,
        1..=63 => (x >> d) | u64::from(x << (64 - d) != 0),
        _ => u64::from(x != 0),
    }
}

/// Sign of an exact zero sum of operands with different signs.
fn zero_sum_sign(rm: Rm) -> bool {
    rm == Rm::Rdn
}

/// Adds two signed magnitudes `(sign, exp, x)` meaning `±x * 2^exp`: the one
/// with the smaller exponent is shifted to the other's with a sticky bit.
/// Callers guarantee each significand's lowest bit is zero, so the sticky
/// bit makes the result the exact sum rounded to odd. Returns the sum in
/// the same form.
fn align_and_add<T>(a: (bool, i32, T), b: (bool, i32, T), jam: fn(T, u32) -> T) -> (bool, i32, T)
where
    T: Copy + Ord + core::ops::Add<Output = T> + core::ops::Sub<Output = T>,
{
    let ((sa, ea, xa), (sb, eb, xb)) = if a.1 >= b.1 { (a, b) } else { (b, a) };
    let xb = jam(xb, (ea - eb).unsigned_abs());
    if sa == sb {
        (sa, ea, xa + xb)
    } else if xa >= xb {
        (sa, ea, xa - xb)
    } else {
        (sb, ea, xb - xa)
    }
}

/// Sum of two nonzero finite values with 64-bit significands (see
/// [`align_and_add`]); used by add and subtract.
fn add_finite64<F: Format>(a: (bool, i32, u64), b: (bool, i32, u64), rm: Rm) -> (u64, Flags) {
    let (sign, exp, mag) = align_and_add(a, b, shift_right_jam64);
    if mag == 0 {
        return (sign_bit::<F>(zero_sum_sign(rm)), 0);
    }
    round_pack::<F>(sign, exp, mag, rm)
}

/// Sum of two nonzero finite values with 128-bit significands (see
/// [`align_and_add`]); used by fma.
fn add_finite128<F: Format>(a: (bool, i32, u128), b: (bool, i32, u128), rm: Rm) -> (u64, Flags) {
    let (sign, exp, mag) = align_and_add(a, b, shift_right_jam);
    if mag == 0 {
        return (sign_bit::<F>(zero_sum_sign(rm)), 0);
    }
    round_pack_wide::<F>(sign, exp, mag, rm)
}

fn add<F: Format>(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    let (ua, ub) = (unpack::<F>(a), unpack::<F>(b));
    match (ua.kind, ub.kind) {
        (x, y) if x.is_nan() || y.is_nan() => nan_result::<F>(&[a, b]),
        (Kind::Inf, Kind::Inf) if ua.sign != ub.sign => (F::NAN, NV),
        (Kind::Inf, _) => (a, 0),
        (_, Kind::Inf) => (b, 0),
        (Kind::Zero, Kind::Zero) => {
            let sign = if ua.sign == ub.sign {
                ua.sign
            } else {
                zero_sum_sign(rm)
            };
            (sign_bit::<F>(sign), 0)
        }
        (Kind::Zero, _) => (b, 0),
        (_, Kind::Zero) => (a, 0),
        (Kind::Finite { sig: xa, exp: ea }, Kind::Finite { sig: xb, exp: eb }) => {
            // Hidden bit moved to bit 61: two bits of headroom for a carry
            // and at least 9 zero bits below the significand, so aligning
            // by one place is exact and any larger shift leaves at most one
            // bit of cancellation above the sticky bit.
            let k = 61 - F::FRAC_BITS;
            let k_exp = k as i32;
            add_finite64::<F>(
                (ua.sign, ea - k_exp, xa << k),
                (ub.sign, eb - k_exp, xb << k),
                rm,
            )
        }
        // Only NaN operands remain, handled by the first arm.
        _ => nan_result::<F>(&[a, b]),
    }
}

fn sub<F: Format>(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    add::<F>(a, b ^ F::SIGN, rm)
}

fn mul<F: Format>(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    let (ua, ub) = (unpack::<F>(a), unpack::<F>(b));
    let sign = ua.sign != ub.sign;
    match (ua.kind, ub.kind) {
        (x, y) if x.is_nan() || y.is_nan() => nan_result::<F>(&[a, b]),
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf) => (F::NAN, NV),
        (Kind::Inf, _) | (_, Kind::Inf) => (sign_bit::<F>(sign) | F::INF, 0),
        (Kind::Zero, _) | (_, Kind::Zero) => (sign_bit::<F>(sign), 0),
        (Kind::Finite { sig: xa, exp: ea }, Kind::Finite { sig: xb, exp: eb }) => {
            let product = u128::from(xa) * u128::from(xb);
            round_pack_wide::<F>(sign, ea + eb, product, rm)
        }
        // Only NaN operands remain, handled by the first arm.
        _ => nan_result::<F>(&[a, b]),
    }
}

fn div<F: Format>(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    let (ua, ub) = (unpack::<F>(a), unpack::<F>(b));
    let sign = ua.sign != ub.sign;
    match (ua.kind, ub.kind) {
        (x, y) if x.is_nan() || y.is_nan() => nan_result::<F>(&[a, b]),
        (Kind::Inf, Kind::Inf) | (Kind::Zero, Kind::Zero) => (F::NAN, NV),
        (Kind::Inf, _) => (sign_bit::<F>(sign) | F::INF, 0),
        (_, Kind::Zero) => (sign_bit::<F>(sign) | F::INF, DZ),
        (Kind::Zero, _) | (_, Kind::Inf) => (sign_bit::<F>(sign), 0),
        (Kind::Finite { sig: xa, exp: ea }, Kind::Finite { sig: xb, exp: eb }) => {
            // Both significands normalised to bit 63: the quotient of
            // xa * 2^64 / xb lies in (2^63, 2^65), 64+ significant bits.
            let (la, lb) = (xa.leading_zeros(), xb.leading_zeros());
            let (na, nb) = (xa << la, u128::from(xb << lb));
            let num = u128::from(na) << 64;
            let (q, r) = (num / nb, num % nb);
            let exp = ea - la as i32 - (eb - lb as i32) - 64;
            round_pack_wide::<F>(sign, exp, q | u128::from(r != 0), rm)
        }
        // Only NaN operands remain, handled by the first arm.
        _ => nan_result::<F>(&[a, b]),
    }
}

fn sqrt<F: Format>(a: u64, rm: Rm) -> (u64, Flags) {
    let ua = unpack::<F>(a);
    match ua.kind {
        k if k.is_nan() => nan_result::<F>(&[a]),
        Kind::Zero => (a, 0),
        _ if ua.sign => (F::NAN, NV),
        Kind::Inf => (a, 0),
        Kind::Finite { sig, exp } => {
            let (root, exp) = if F::PREC <= 30 {
                sqrt_sig64(sig, exp)
            } else {
                sqrt_sig128(sig, exp)
            };
            round_pack::<F>(false, exp, root, rm)
        }
        // Only NaN operands remain, handled by the first arm.
        _ => nan_result::<F>(&[a]),
    }
}

/// Square root of `sig * 2^exp` as `root * 2^exp'` with a sticky bit; the
/// significand is shifted to bit 63 or 62 so the exponent left is even, and
/// the integer root then has 32 bits, enough for precisions up to 30.
fn sqrt_sig64(sig: u64, exp: i32) -> (u64, i32) {
    let mut shift = sig.leading_zeros();
    if (exp - shift as i32) % 2 != 0 {
        shift -= 1;
    }
    let n = sig << shift;
    let root = n.isqrt();
    let sticky = root * root != n;
    (root | u64::from(sticky), (exp - shift as i32) / 2)
}

/// [`sqrt_sig64`] in 128 bits: the root has 64 bits.
fn sqrt_sig128(sig: u64, exp: i32) -> (u64, i32) {
    let x = u128::from(sig);
    let mut shift = x.leading_zeros();
    if (exp - shift as i32) % 2 != 0 {
        shift -= 1;
    }
    let n = x << shift;
    let root = n.isqrt();
    let sticky = root * root != n;
    // root < 2^64 because n < 2^128.
    (root as u64 | u64::from(sticky), (exp - shift as i32) / 2)
}

/// `a * b + c` with a single rounding.
fn fma<F: Format>(a: u64, b: u64, c: u64, rm: Rm) -> (u64, Flags) {
    let (ua, ub, uc) = (unpack::<F>(a), unpack::<F>(b), unpack::<F>(c));
    let sp = ua.sign != ub.sign;
    let inf_times_zero = matches!(
        (ua.kind, ub.kind),
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf)
    );
    // RISC-V: inf * 0 is invalid even when the addend is a quiet NaN.
    if inf_times_zero {
        return (F::NAN, NV);
    }
    if ua.kind.is_nan() || ub.kind.is_nan() || uc.kind.is_nan() {
        return nan_result::<F>(&[a, b, c]);
    }
    match (ua.kind, ub.kind, uc.kind) {
        (Kind::Inf, _, _) | (_, Kind::Inf, _) => {
            if uc.kind == Kind::Inf && uc.sign != sp {
                (F::NAN, NV)
            } else {
                (sign_bit::<F>(sp) | F::INF, 0)
            }
        }
        (_, _, Kind::Inf) => (c, 0),
        (Kind::Zero, _, Kind::Zero) | (_, Kind::Zero, Kind::Zero) => {
            let sign = if sp == uc.sign { sp } else { zero_sum_sign(rm) };
            (sign_bit::<F>(sign), 0)
        }
        (Kind::Zero, _, _) | (_, Kind::Zero, _) => (c, 0),
        (Kind::Finite { sig: xa, exp: ea }, Kind::Finite { sig: xb, exp: eb }, kc) => {
            let product = u128::from(xa) * u128::from(xb);
            let Kind::Finite { sig: xc, exp: ec } = kc else {
                return round_pack_wide::<F>(sp, ea + eb, product, rm);
            };
            // Product (< 2^106) and addend both placed with their leading bit
            // at bit 125: lossless, low bits zero, and the sum cannot carry
            // out of 128 bits.
            let (wp, ep) = to_bit_125(product, ea + eb);
            let (wc, ec) = to_bit_125(u128::from(xc), ec);
            add_finite128::<F>((sp, ep, wp), (uc.sign, ec, wc), rm)
        }
        // Only NaN operands remain, returned above.
        _ => nan_result::<F>(&[a, b, c]),
    }
}

/// Shifts a nonzero value of at most 106 bits left so its leading bit is at
/// bit 125, adjusting the exponent to keep `x * 2^exp`.
fn to_bit_125(x: u128, exp: i32) -> (u128, i32) {
    let shift = x.leading_zeros() - 2;
    (x << shift, exp - shift as i32)
}

/// Total order on non-NaN values with -0 below +0.
fn order_key<F: Format>(a: u64) -> i64 {
    let mag = (a & !F::SIGN) as i64;
    if a & F::SIGN != 0 {
        -mag - 1
    } else {
        mag
    }
}

/// IEEE comparison order: like [`order_key`] but with -0 equal to +0.
fn compare_key<F: Format>(a: u64) -> i64 {
    if a & !F::SIGN == 0 {
        0
    } else {
        order_key::<F>(a)
    }
}

fn min_max<F: Format>(a: u64, b: u64, want_max: bool) -> (u64, Flags) {
    let flags = if is_snan::<F>(a) || is_snan::<F>(b) {
        NV
    } else {
        0
    };
    let result = match (is_nan::<F>(a), is_nan::<F>(b)) {
        (true, true) => F::NAN,
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            let a_first = order_key::<F>(a) <= order_key::<F>(b);
            if a_first != want_max {
                a
            } else {
                b
            }
        }
    };
    (result, flags)
}

fn eq<F: Format>(a: u64, b: u64) -> (bool, Flags) {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        let flags = if is_snan::<F>(a) || is_snan::<F>(b) {
            NV
        } else {
            0
        };
        return (false, flags);
    }
    (compare_key::<F>(a) == compare_key::<F>(b), 0)
}

fn lt<F: Format>(a: u64, b: u64) -> (bool, Flags) {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        return (false, NV);
    }
    (compare_key::<F>(a) < compare_key::<F>(b), 0)
}

fn le<F: Format>(a: u64, b: u64) -> (bool, Flags) {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        return (false, NV);
    }
    (compare_key::<F>(a) <= compare_key::<F>(b), 0)
}

fn class<F: Format>(a: u64) -> u64 {
    let u = unpack::<F>(a);
    let bit = match (u.kind, u.sign) {
        (Kind::Inf, true) => 0,
        (Kind::Finite { .. }, true) if a & F::INF != 0 => 1,
        (Kind::Finite { .. }, true) => 2,
        (Kind::Zero, true) => 3,
        (Kind::Zero, false) => 4,
        (Kind::Finite { .. }, false) if a & F::INF == 0 => 5,
        (Kind::Finite { .. }, false) => 6,
        (Kind::Inf, false) => 7,
        (Kind::SNan, _) => 8,
        (Kind::QNan, _) => 9,
    };
    1 << bit
}

/// Converts to an integer in `[min, max]`, saturating with NV (NaN gives
/// `max`); NX only for in-range inexact results.
fn to_int<F: Format>(a: u64, rm: Rm, min: i128, max: i128) -> (i128, Flags) {
    let u = unpack::<F>(a);
    let (sig, exp) = match u.kind {
        Kind::QNan | Kind::SNan => return (max, NV),
        Kind::Inf => return (if u.sign { min } else { max }, NV),
        Kind::Zero => return (0, 0),
        Kind::Finite { sig, exp } => (sig, exp),
    };
    let saturated = (if u.sign { min } else { max }, NV);
    let (mag, inexact) = if exp >= 0 {
        // sig < 2^53: beyond a shift of 64 the value exceeds every bound.
        if exp > 64 {
            return saturated;
        }
        (u128::from(sig) << exp, false)
    } else {
        let (m, inexact) = round_shift(sig, exp.unsigned_abs().min(65), u.sign, rm);
        (u128::from(m), inexact)
    };
    let value = if u.sign { -(mag as i128) } else { mag as i128 };
    if value < min || value > max {
        return saturated;
    }
    (value, if inexact { NX } else { 0 })
}

fn from_int<F: Format>(v: i128, rm: Rm) -> (u64, Flags) {
    if v == 0 {
        return (0, 0);
    }
    // Callers pass values of at most 64 bits of magnitude.
    let mag = v.unsigned_abs() as u64;
    round_pack::<F>(v < 0, 0, mag, rm)
}

/// Converts between formats: exact when widening, rounded when narrowing.
fn convert<S: Format, D: Format>(a: u64, rm: Rm) -> (u64, Flags) {
    let u = unpack::<S>(a);
    match u.kind {
        Kind::QNan | Kind::SNan => (D::NAN, nan_result::<S>(&[a]).1),
        Kind::Inf => (sign_bit::<D>(u.sign) | D::INF, 0),
        Kind::Zero => (sign_bit::<D>(u.sign), 0),
        Kind::Finite { sig, exp } => round_pack::<D>(u.sign, exp, sig, rm),
    }
}

macro_rules! narrow {
    ($r:expr) => {{
        let (bits, flags) = $r;
        (bits as u32, flags)
    }};
}

/// binary32 `a + b`.
pub fn add32(a: u32, b: u32, rm: Rm) -> (u32, Flags) {
    narrow!(add::<F32>(a.into(), b.into(), rm))
}
/// binary32 `a - b`.
pub fn sub32(a: u32, b: u32, rm: Rm) -> (u32, Flags) {
    narrow!(sub::<F32>(a.into(), b.into(), rm))
}
/// binary32 `a * b`.
pub fn mul32(a: u32, b: u32, rm: Rm) -> (u32, Flags) {
    narrow!(mul::<F32>(a.into(), b.into(), rm))
}
/// binary32 `a / b`.
pub fn div32(a: u32, b: u32, rm: Rm) -> (u32, Flags) {
    narrow!(div::<F32>(a.into(), b.into(), rm))
}
/// binary32 square root.
pub fn sqrt32(a: u32, rm: Rm) -> (u32, Flags) {
    narrow!(sqrt::<F32>(a.into(), rm))
}
/// binary32 `a * b + c` with one rounding.
pub fn fma32(a: u32, b: u32, c: u32, rm: Rm) -> (u32, Flags) {
    narrow!(fma::<F32>(a.into(), b.into(), c.into(), rm))
}
/// binary32 `fmin.s` (minimumNumber, -0 < +0).
pub fn min32(a: u32, b: u32) -> (u32, Flags) {
    narrow!(min_max::<F32>(a.into(), b.into(), false))
}
/// binary32 `fmax.s` (maximumNumber, -0 < +0).
pub fn max32(a: u32, b: u32) -> (u32, Flags) {
    narrow!(min_max::<F32>(a.into(), b.into(), true))
}
/// binary32 `feq.s` (quiet).
pub fn eq32(a: u32, b: u32) -> (bool, Flags) {
    eq::<F32>(a.into(), b.into())
}
/// binary32 `flt.s` (signaling).
pub fn lt32(a: u32, b: u32) -> (bool, Flags) {
    lt::<F32>(a.into(), b.into())
}
/// binary32 `fle.s` (signaling).
pub fn le32(a: u32, b: u32) -> (bool, Flags) {
    le::<F32>(a.into(), b.into())
}
/// binary32 `fclass.s` mask.
pub fn class32(a: u32) -> u64 {
    class::<F32>(a.into())
}
/// `fcvt.w.s`.
pub fn to_i32_from32(a: u32, rm: Rm) -> (i32, Flags) {
    let (v, f) = to_int::<F32>(a.into(), rm, i32::MIN.into(), i32::MAX.into());
    (v as i32, f)
}
/// `fcvt.wu.s`.
pub fn to_u32_from32(a: u32, rm: Rm) -> (u32, Flags) {
    let (v, f) = to_int::<F32>(a.into(), rm, 0, u32::MAX.into());
    (v as u32, f)
}
/// `fcvt.l.s`.
pub fn to_i64_from32(a: u32, rm: Rm) -> (i64, Flags) {
    let (v, f) = to_int::<F32>(a.into(), rm, i64::MIN.into(), i64::MAX.into());
    (v as i64, f)
}
/// `fcvt.lu.s`.
pub fn to_u64_from32(a: u32, rm: Rm) -> (u64, Flags) {
    let (v, f) = to_int::<F32>(a.into(), rm, 0, u64::MAX.into());
    (v as u64, f)
}
/// `fcvt.s.w`.
pub fn from_i32_to32(v: i32, rm: Rm) -> (u32, Flags) {
    narrow!(from_int::<F32>(v.into(), rm))
}
/// `fcvt.s.wu`.
pub fn from_u32_to32(v: u32, rm: Rm) -> (u32, Flags) {
    narrow!(from_int::<F32>(v.into(), rm))
}
/// `fcvt.s.l`.
pub fn from_i64_to32(v: i64, rm: Rm) -> (u32, Flags) {
    narrow!(from_int::<F32>(v.into(), rm))
}
/// `fcvt.s.lu`.
pub fn from_u64_to32(v: u64, rm: Rm) -> (u32, Flags) {
    narrow!(from_int::<F32>(v.into(), rm))
}

/// binary64 `a + b`.
pub fn add64(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    add::<F64>(a, b, rm)
}
/// binary64 `a - b`.
pub fn sub64(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    sub::<F64>(a, b, rm)
}
/// binary64 `a * b`.
pub fn mul64(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    mul::<F64>(a, b, rm)
}
/// binary64 `a / b`.
pub fn div64(a: u64, b: u64, rm: Rm) -> (u64, Flags) {
    div::<F64>(a, b, rm)
}
/// binary64 square root.
pub fn sqrt64(a: u64, rm: Rm) -> (u64, Flags) {
    sqrt::<F64>(a, rm)
}
/// binary64 `a * b + c` with one rounding.
pub fn fma64(a: u64, b: u64, c: u64, rm: Rm) -> (u64, Flags) {
    fma::<F64>(a, b, c, rm)
}
/// binary64 `fmin.d` (minimumNumber, -0 < +0).
pub fn min64(a: u64, b: u64) -> (u64, Flags) {
    min_max::<F64>(a, b, false)
}
/// binary64 `fmax.d` (maximumNumber, -0 < +0).
pub fn max64(a: u64, b: u64) -> (u64, Flags) {
    min_max::<F64>(a, b, true)
}
/// binary64 `feq.d` (quiet).
pub fn eq64(a: u64, b: u64) -> (bool, Flags) {
    eq::<F64>(a, b)
}
/// binary64 `flt.d` (signaling).
pub fn lt64(a: u64, b: u64) -> (bool, Flags) {
    lt::<F64>(a, b)
}
/// binary64 `fle.d` (signaling).
pub fn le64(a: u64, b: u64) -> (bool, Flags) {
    le::<F64>(a, b)
}
/// binary64 `fclass.d` mask.
pub fn class64(a: u64) -> u64 {
    class::<F64>(a)
}
/// `fcvt.w.d`.
pub fn to_i32_from64(a: u64, rm: Rm) -> (i32, Flags) {
    let (v, f) = to_int::<F64>(a, rm, i32::MIN.into(), i32::MAX.into());
    (v as i32, f)
}
/// `fcvt.wu.d`.
pub fn to_u32_from64(a: u64, rm: Rm) -> (u32, Flags) {
    let (v, f) = to_int::<F64>(a, rm, 0, u32::MAX.into());
    (v as u32, f)
}
/// `fcvt.l.d`.
pub fn to_i64_from64(a: u64, rm: Rm) -> (i64, Flags) {
    let (v, f) = to_int::<F64>(a, rm, i64::MIN.into(), i64::MAX.into());
    (v as i64, f)
}
/// `fcvt.lu.d`.
pub fn to_u64_from64(a: u64, rm: Rm) -> (u64, Flags) {
    let (v, f) = to_int::<F64>(a, rm, 0, u64::MAX.into());
    (v as u64, f)
}
/// `fcvt.d.w` (always exact).
pub fn from_i32_to64(v: i32, rm: Rm) -> (u64, Flags) {
    from_int::<F64>(v.into(), rm)
}
/// `fcvt.d.wu` (always exact).
pub fn from_u32_to64(v: u32, rm: Rm) -> (u64, Flags) {
    from_int::<F64>(v.into(), rm)
}
/// `fcvt.d.l`.
pub fn from_i64_to64(v: i64, rm: Rm) -> (u64, Flags) {
    from_int::<F64>(v.into(), rm)
}
/// `fcvt.d.lu`.
pub fn from_u64_to64(v: u64, rm: Rm) -> (u64, Flags) {
    from_int::<F64>(v.into(), rm)
}

/// `fcvt.d.s`: exact; NaN gives the canonical NaN (NV if signaling).
pub fn f32_to_f64(a: u32) -> (u64, Flags) {
    convert::<F32, F64>(a.into(), Rm::Rne)
}
/// `fcvt.s.d`: rounded per `rm`.
pub fn f64_to_f32(a: u64, rm: Rm) -> (u32, Flags) {
    narrow!(convert::<F64, F32>(a, rm))
}
