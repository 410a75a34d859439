//! Vectorised f32 math: `exp`, `log`, `log1p`, `expm1` and `tanh` on `f32x4`, emitted as
//! inline Cranelift IR (no calls), for loops that would otherwise call the C library once per
//! element; and cheaper forms for arguments known to be in range: `exp_nonpositive` (a
//! logsumexp's `exp(x - max)`), `exp_nonpositive_exact` (the softplus family's `e^-|y|`) and
//! `log1p_unit` (its `log1p(e^-|y|)`). Only instructions every backend lowers without
//! extensions: lane-wise float arithmetic and division, comparisons and `bitselect` for
//! blends, integer adds and shifts on the bits, `fcvt_from_sint`; no `nearest`/`floor`,
//! `fmin`/`fmax` or integer multiply. The
//! polynomials' Horner steps are fused multiply-adds where the target has them
//! (`TargetIsa::has_native_fma`: x86-64 with AVX and FMA, AArch64), separate multiplies and
//! adds elsewhere. Rounding to an integer adds and subtracts 1.5·2²³, whose bits then hold the
//! integer.
//!
//! Each function reduces its argument (`x = k ln 2 + r`, or `x = 2^k (1 + f)`), evaluates a
//! short polynomial (coefficients fitted by Chebyshev approximation to the reduced function
//! and rounded to f32) and scales back, written so that the rounding errors of the small
//! terms stay small: `exp(r) = 1 + (r + r² P(r))`; `log(1 + f) = f - (f²/2 - s (f²/2 + R))`
//! with `s = f / (2 + f)` (fdlibm's split); `log1p` adds the rounding error of `1 + x`,
//! `(x - (u - 1)) / u`; `expm1` keeps `r` as `rh - rl` and adds `2^k - 1` before the small
//! terms; `tanh` is `x + x³ Q(x²)` below 0.625 and `1 - 2 / (exp(2|x|) + 1)` above. NaN gives
//! NaN, and infinities, zeros (with their sign) and out-of-range arguments give what the C
//! library gives (`log` of a negative is NaN, `log(±0) = -inf`, `log1p(-1) = -inf`,
//! `expm1(-inf) = -1`, `tanh(±inf) = ±1`); subnormal arguments and results are computed,
//! not flushed to zero.
//!
//! Maximum error in units in the last place of the correctly rounded f32 result, measured
//! against the f64 functions of Rust's standard library over all 2³² f32 arguments (subnormal
//! arguments and results included), and the size of the code: CLIF instructions without
//! constants (`vconst`, shift amounts) and free `bitcast`s, and the x86-64 instructions
//! Cranelift emits for one `f32x4` (AVX host) without the constant loads (one per constant,
//! in the loop unless Cranelift hoists it out: `loops::hoist_out_of` says which loops).
//! `runtime/tests/vmath.rs` asserts these bounds on a strided sweep (its ignored test sweeps
//! every f32):
//!
//! | function | max error (ulp) | CLIF instructions | x86-64 instructions |
//! |---|---|---|---|
//! | `exp` | 1.049 | 32 | 30 |
//! | `log` | 0.843 | 36 | 38 |
//! | `log1p` | 0.871 | 38 | 44 |
//! | `expm1` | 1.234 | 35 | 36 |
//! | `tanh` | 1.333 | 45 | 47 |
//!
//! The bounds were measured both without FMA and with it (on an AVX-512 EPYC, 2026-11-28:
//! 1.049, 0.843, 0.870, 1.233 and 1.332 ulp; again with FMA on a Xeon, 2026-12-07, after
//! `exp`'s reduction became two fused multiply-adds: the same); the instruction counts are
//! without. With FMA, `exp`, `tanh` and the non-positive forms take two instructions fewer
//! (`reduce_exp`). A target with FMA and one without can differ in the last bit of a result;
//! each target computes the same results every run.

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::FunctionBuilder;

/// ln 2 in two parts: `HI` has 15 significant bits, so `k · HI` is exact for `|k| < 2⁹`.
const LN2_HI: f32 = 0.693_145_75;
/// `ln 2 - LN2_HI`.
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2²³: adding it rounds any `|v| < 2²²` to an integer, held in the low bits.
const ROUND: f32 = 12_582_912.0;
/// The bits of `ROUND`.
const ROUND_BITS: i32 = 0x4b40_0000;

/// `P(r) = (e^r - 1 - r) / r²` on `|r| <= ln 2 / 2`, highest degree first: relative error of
/// `1 + r + r² P(r)` below 1.1e-8.
const EXP_P: [f32; 5] = [
    1.392_618_4e-3,
    8.363_179e-3,
    4.166_655_6e-2,
    0.166_665_76,
    0.5,
];

/// `P` for `expm1`, one degree more: relative error of `r + r² P(r)` below 1.7e-9.
const EXPM1_P: [f32; 6] = [
    1.989_099_1e-4,
    1.393_365e-3,
    8.333_310_5e-3,
    4.166_646_7e-2,
    0.166_666_67,
    0.5,
];

/// `R(z) / z` with `R(z) = (2 atanh(s) - 2s) / s`, `z = s²`, `|s| <= 3 - 2√2`: relative error
/// of `log(1 + f)` below 3e-9.
const LOG_R: [f32; 3] = [0.295_801_58, 0.399_887_77, 0.666_666_87];

/// `Q(z) = (tanh(x) - x) / x³`, `z = x²`, `|x| <= TANH_SMALL`: relative error of `tanh`
/// below 1.7e-8.
const TANH_Q: [f32; 5] = [
    -6.096_714e-3,
    2.099_718e-2,
    -5.385_090_8e-2,
    0.133_327_7,
    -0.333_333_28,
];

/// Below this `|x|`, `tanh` uses its polynomial.
const TANH_SMALL: f32 = 0.625;

/// A vector with every lane `v`.
fn splat(b: &mut FunctionBuilder, v: f32) -> Value {
    vconst(b, types::F32X4, v.to_bits())
}

/// An integer vector with every lane `v`.
fn isplat(b: &mut FunctionBuilder, v: i32) -> Value {
    vconst(b, types::I32X4, v as u32)
}

fn vconst(b: &mut FunctionBuilder, ty: types::Type, bits: u32) -> Value {
    let bytes: Vec<u8> = std::iter::repeat_n(bits.to_le_bytes(), 4)
        .flatten()
        .collect();
    let c = b.func.dfg.constants.insert(ConstantData::from(bytes));
    b.ins().vconst(ty, c)
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// The bits of `x` (f32x4) as i32x4.
fn bits(b: &mut FunctionBuilder, x: Value) -> Value {
    b.ins().bitcast(types::I32X4, little(), x)
}

/// i32x4 bits as f32x4.
fn float(b: &mut FunctionBuilder, x: Value) -> Value {
    b.ins().bitcast(types::F32X4, little(), x)
}

/// Lane-wise `x < y ? then : other` and the like: the lanes of `then` where `cc` holds.
fn blend(
    b: &mut FunctionBuilder,
    cc: FloatCC,
    x: Value,
    y: Value,
    then: Value,
    other: Value,
) -> Value {
    let mask = b.ins().fcmp(cc, x, y);
    let mask = float(b, mask);
    b.ins().bitselect(mask, then, other)
}

/// `min(x, limit)` lane-wise, NaN lanes kept (`limit < x ? limit : x`, one `minps` on x64).
fn at_most(b: &mut FunctionBuilder, x: Value, limit: f32) -> Value {
    let l = splat(b, limit);
    blend(b, FloatCC::LessThan, l, x, l, x)
}

/// `max(x, limit)` lane-wise, NaN lanes kept (`x < limit ? limit : x`, one `maxps` on x64).
fn at_least(b: &mut FunctionBuilder, x: Value, limit: f32) -> Value {
    let l = splat(b, limit);
    blend(b, FloatCC::LessThan, x, l, l, x)
}

/// `a · x + c`: one fused multiply-add when `fma` (the target has it), else rounded twice.
fn mul_add(b: &mut FunctionBuilder, fma: bool, a: Value, x: Value, c: Value) -> Value {
    if fma {
        b.ins().fma(a, x, c)
    } else {
        let m = b.ins().fmul(a, x);
        b.ins().fadd(m, c)
    }
}

/// Horner's rule: `c[0] x^n + ... + c[n]`.
fn poly(b: &mut FunctionBuilder, fma: bool, x: Value, c: &[f32]) -> Value {
    let mut acc = splat(b, c[0]);
    for &ci in &c[1..] {
        let k = splat(b, ci);
        acc = mul_add(b, fma, acc, x, k);
    }
    acc
}

/// `k = round(x / ln 2)`: `(k as f32, k + bias as i32 bits)`. Needs `|x| < 2²¹`.
fn round_k(b: &mut FunctionBuilder, x: Value, bias: i32) -> (Value, Value) {
    let log2e = splat(b, std::f32::consts::LOG2_E);
    let round = splat(b, ROUND);
    let t = b.ins().fmul(x, log2e);
    let t = b.ins().fadd(t, round);
    let kf = b.ins().fsub(t, round);
    let tb = bits(b, t);
    let off = isplat(b, ROUND_BITS - bias);
    (kf, b.ins().isub(tb, off))
}

/// `x = k ln 2 + r`: `(k as f32, k + bias as i32 bits, r_hi, k · LN2_LO)` with `r_hi = x - k
/// LN2_HI` exact and `r = r_hi - k LN2_LO`. Needs `|x| < 2²¹`.
fn reduce_ln2(b: &mut FunctionBuilder, x: Value, bias: i32) -> (Value, Value, Value, Value) {
    let (kf, kb) = round_k(b, x, bias);
    let hi = splat(b, LN2_HI);
    let lo = splat(b, LN2_LO);
    let khi = b.ins().fmul(kf, hi);
    let rh = b.ins().fsub(x, khi);
    let rl = b.ins().fmul(kf, lo);
    (kf, kb, rh, rl)
}

/// `x = k ln 2 + r` for `exp`: `(k + bias as i32 bits, r)`. With FMA, `r = (x - k LN2_HI) - k
/// LN2_LO` is two fused multiply-adds, the first exact as [`reduce_ln2`]'s `r_hi` and the
/// second rounding once where `r_hi - round(k LN2_LO)` rounds twice; without, that.
fn reduce_exp(b: &mut FunctionBuilder, fma: bool, x: Value, bias: i32) -> (Value, Value) {
    if !fma {
        let (_, kb, rh, rl) = reduce_ln2(b, x, bias);
        return (kb, b.ins().fsub(rh, rl));
    }
    let (kf, kb) = round_k(b, x, bias);
    let hi = splat(b, -LN2_HI);
    let lo = splat(b, -LN2_LO);
    let rh = b.ins().fma(kf, hi, x);
    (kb, b.ins().fma(kf, lo, rh))
}

/// `2^(e - 127)` from biased exponents `e` in `1..=254` (i32x4).
fn pow2(b: &mut FunctionBuilder, e: Value) -> Value {
    let s = b.ins().ishl_imm_u(e, 23);
    float(b, s)
}

/// `e^r` for `|r| <= ln 2 / 2`: `1 + (r + r² P(r))`.
fn exp_reduced(b: &mut FunctionBuilder, fma: bool, r: Value) -> Value {
    let z = b.ins().fmul(r, r);
    let p = poly(b, fma, r, &EXP_P);
    // Rounded twice even with FMA: fusing this step raises the error bound to 1.095 ulp.
    let zp = b.ins().fmul(z, p);
    let q = b.ins().fadd(zp, r);
    let one = splat(b, 1.0);
    b.ins().fadd(q, one)
}

/// `e^x` lane-wise, within 1.049 ulp. Arguments are clamped to `[-104, 89]` (beyond which the
/// result is 0 or +inf anyway), and `2^k` is applied in two halves so that results near the
/// overflow threshold and subnormal results are rounded once, correctly.
pub(super) fn exp(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let x = at_most(b, x, 89.0);
    let x = at_least(b, x, -104.0);
    let (kb, r) = reduce_exp(b, fma, x, 127);
    let p = exp_reduced(b, fma, r);
    // k + 127 = e1 + e2 - 127 with e1 = (k + 127) >> 1 + 64 and e2 = k + 127 - e1 + 127, both in
    // 52..=191 for k in -150..=128.
    let half = b.ins().sshr_imm_u(kb, 1);
    let c64 = isplat(b, 64);
    let e1 = b.ins().iadd(half, c64);
    let rest = b.ins().isub(kb, half);
    let c63 = isplat(b, 63);
    let e2 = b.ins().iadd(rest, c63);
    let s1 = pow2(b, e1);
    let s2 = pow2(b, e2);
    let y = b.ins().fmul(p, s1);
    b.ins().fmul(y, s2)
}

/// `e^x` lane-wise for `x <= 0` (or NaN): [`exp`] without its upper clamp and with `2^k`
/// applied at once, the same bits as [`exp`] for `x >= -87.33` (normal results). Below, the
/// result is `e^-87.33` (about 1.2e-38) instead of a smaller subnormal or 0: for the sums of
/// a logsumexp, which always hold a term 1 (the max's), the same sum.
pub(super) fn exp_nonpositive(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let x = at_least(b, x, -87.33);
    let (kb, r) = reduce_exp(b, fma, x, 127);
    let p = exp_reduced(b, fma, r);
    let s = pow2(b, kb);
    b.ins().fmul(p, s)
}

/// `-|x|` lane-wise (f32x4): the sign bit set, one `orps` where `fabs` then `fneg` take two
/// masks and two operations on x64.
pub(super) fn neg_abs(b: &mut FunctionBuilder, x: Value) -> Value {
    let sign = splat(b, -0.0);
    b.ins().bor(x, sign)
}

/// `e^x` lane-wise for `x <= 0` (or NaN), with the same bits as [`exp`] everywhere there,
/// subnormal results included: without the upper clamp, and scaling by `2^(k + 64)` (normal
/// for every `k >= -150`) then by the constant `2^-64`, which rounds once as [`exp`]'s second
/// factor does. For `exp(-|y|)`, the sigmoid family's.
pub(super) fn exp_nonpositive_exact(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let x = at_least(b, x, -104.0);
    let (kb, r) = reduce_exp(b, fma, x, 127 + 64);
    let p = exp_reduced(b, fma, r);
    let s = pow2(b, kb);
    let y = b.ins().fmul(p, s);
    let down = splat(b, 2f32.powi(-64));
    b.ins().fmul(y, down)
}

/// `2^k` as f32 and `f` with `x = 2^k (1 + f)`, `1 + f` in `[√½, √2)`, for positive normal
/// `x`; `k_adjust` (i32x4) is added to `k`.
fn split_log(b: &mut FunctionBuilder, x: Value, k_adjust: Option<Value>) -> (Value, Value) {
    // Moving the cut from 1 to √½: add 1 - √½'s bits so that the exponent field counts from
    // there, then put the mantissa back on √½'s exponent.
    let ix = bits(b, x);
    let shift = isplat(b, 0x3f80_0000 - 0x3f35_04f3);
    let ix = b.ins().iadd(ix, shift);
    let e = b.ins().sshr_imm_u(ix, 23);
    let bias = isplat(b, -127);
    let mut k = b.ins().iadd(e, bias);
    if let Some(a) = k_adjust {
        k = b.ins().iadd(k, a);
    }
    let mask = isplat(b, 0x007f_ffff);
    let m = b.ins().band(ix, mask);
    let base = isplat(b, 0x3f35_04f3);
    let m = b.ins().iadd(m, base);
    let m = float(b, m);
    let one = splat(b, 1.0);
    let f = b.ins().fsub(m, one);
    let kf = b.ins().fcvt_from_sint(types::F32X4, k);
    (kf, f)
}

/// `k ln 2 + log(1 + f) + c` for `1 + f` in `[√½, √2)` (fdlibm's evaluation).
fn log_reduced(b: &mut FunctionBuilder, fma: bool, kf: Value, f: Value, c: Option<Value>) -> Value {
    let two = splat(b, 2.0);
    let d = b.ins().fadd(two, f);
    let s = b.ins().fdiv(f, d);
    let z = b.ins().fmul(s, s);
    let rz = poly(b, fma, z, &LOG_R);
    let r = b.ins().fmul(z, rz);
    let half = splat(b, 0.5);
    let hf = b.ins().fmul(half, f);
    let hfsq = b.ins().fmul(hf, f);
    let t = b.ins().fadd(hfsq, r);
    let st = b.ins().fmul(s, t);
    let lo = splat(b, LN2_LO);
    let klo = b.ins().fmul(kf, lo);
    let klo = match c {
        Some(c) => b.ins().fadd(klo, c),
        None => klo,
    };
    let small = b.ins().fadd(st, klo);
    let a = b.ins().fsub(hfsq, small);
    let a = b.ins().fsub(a, f);
    let hi = splat(b, LN2_HI);
    let khi = b.ins().fmul(kf, hi);
    b.ins().fsub(khi, a)
}

/// The IEEE cases of `log(u)`: NaN for NaN and negative `u`, -inf for ±0, +inf for +inf;
/// `y` elsewhere.
fn log_special(b: &mut FunctionBuilder, u: Value, y: Value) -> Value {
    let inf = splat(b, f32::INFINITY);
    let y = blend(b, FloatCC::Equal, u, inf, inf, y);
    let zero = splat(b, 0.0);
    let nan = splat(b, f32::NAN);
    let y = blend(b, FloatCC::GreaterThanOrEqual, u, zero, y, nan);
    let ninf = splat(b, f32::NEG_INFINITY);
    blend(b, FloatCC::Equal, u, zero, ninf, y)
}

/// `log(x)` lane-wise, within 0.843 ulp. Subnormal arguments are scaled by 2²³ first.
pub(super) fn log(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let min = splat(b, f32::MIN_POSITIVE);
    let sub = b.ins().fcmp(FloatCC::LessThan, x, min);
    let scale = splat(b, 8_388_608.0);
    let scaled = b.ins().fmul(x, scale);
    let subf = float(b, sub);
    let xs = b.ins().bitselect(subf, scaled, x);
    let m23 = isplat(b, -23);
    let adjust = b.ins().band(sub, m23);
    let (kf, f) = split_log(b, xs, Some(adjust));
    let y = log_reduced(b, fma, kf, f, None);
    log_special(b, x, y)
}

/// `log(1 + x)` lane-wise, within 0.871 ulp: `log(u)` for `u = 1 + x` plus `(x - (u - 1)) / u`, the
/// rounding error of `u` to first order (exact for tiny `x`, where `u = 1`).
pub(super) fn log1p(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let one = splat(b, 1.0);
    let u = b.ins().fadd(one, x);
    let um1 = b.ins().fsub(u, one);
    let d = b.ins().fsub(x, um1);
    let c = b.ins().fdiv(d, u);
    // u >= 2^-24 when positive: never subnormal.
    let (kf, f) = split_log(b, u, None);
    let y = log_reduced(b, fma, kf, f, Some(c));
    let y = log_special(b, u, y);
    let zero = splat(b, 0.0);
    blend(b, FloatCC::Equal, x, zero, x, y)
}

/// `log(1 + x)` lane-wise for `x` in `[0, 1]` (or NaN), given `u = 1 + x` and `r = 1 / u`:
/// [`log1p`] without its special cases, which this range never meets (NaN still gives NaN,
/// through the correction term), and with the correction `(x - (u - 1)) / u` computed as a
/// product with `r`, the reciprocal `sigmoid` takes of the same `u = 1 + e^-|y|` (so both
/// divide once). For the softplus family's `log1p(exp(-|y|))`.
pub(super) fn log1p_unit(
    b: &mut FunctionBuilder,
    fma: bool,
    x: Value,
    u: Value,
    r: Value,
) -> Value {
    let one = splat(b, 1.0);
    let um1 = b.ins().fsub(u, one);
    let d = b.ins().fsub(x, um1);
    let c = b.ins().fmul(d, r);
    let (kf, f) = split_log(b, u, None);
    log_reduced(b, fma, kf, f, Some(c))
}

/// `e^x - 1` lane-wise, within 1.234 ulp: `2 ((2^(k-1) - ½ + 2^(k-1) rh) + 2^(k-1) (r² P(r) - rl))`
/// with `x = k ln 2 + r`, `r = rh - rl`, so that the cancellation happens before the small terms
/// are added; `x` itself for `|x| < 2⁻²⁵`. Arguments are clamped to `[-25, 89]` (the result rounds
/// to -1 below -17.4 and overflows above 88.73).
pub(super) fn expm1(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let xc = at_most(b, x, 89.0);
    let xc = at_least(b, xc, -25.0);
    let (_, kb, rh, rl) = reduce_ln2(b, xc, 126);
    let r = b.ins().fsub(rh, rl);
    let z = b.ins().fmul(r, r);
    let p = poly(b, fma, r, &EXPM1_P);
    let zp = b.ins().fmul(z, p);
    let tail = b.ins().fsub(zp, rl);
    let s = pow2(b, kb);
    let half = splat(b, 0.5);
    let a = b.ins().fsub(s, half);
    let srh = b.ins().fmul(s, rh);
    let a = b.ins().fadd(a, srh);
    let st = b.ins().fmul(s, tail);
    let a = b.ins().fadd(a, st);
    let y = b.ins().fadd(a, a);
    let ax = b.ins().fabs(x);
    let tiny = splat(b, 2.0f32.powi(-25));
    blend(b, FloatCC::LessThan, ax, tiny, x, y)
}

/// `tanh(x)` lane-wise, within 1.333 ulp: `|x| + |x|³ Q(x²)` for `|x| < 0.625`, `1 - 2 / (e^(2|x|)
/// + 1)` above, with the sign of `x`.
pub(super) fn tanh(b: &mut FunctionBuilder, fma: bool, x: Value) -> Value {
    let a = b.ins().fabs(x);
    // Near 0.
    let z = b.ins().fmul(a, a);
    let q = poly(b, fma, z, &TANH_Q);
    let az = b.ins().fmul(a, z);
    let t = b.ins().fmul(az, q);
    let near = b.ins().fadd(a, t);
    // Elsewhere: e^(2|x|) for 2|x| <= 20 (tanh rounds to 1 from 9.01 on), which needs neither
    // the two-step scaling nor the lower clamp of `exp`.
    let a2 = b.ins().fadd(a, a);
    let a2 = at_most(b, a2, 20.0);
    let (kb, r) = reduce_exp(b, fma, a2, 127);
    let p = exp_reduced(b, fma, r);
    let s = pow2(b, kb);
    let e = b.ins().fmul(p, s);
    let one = splat(b, 1.0);
    let d = b.ins().fadd(e, one);
    let two = splat(b, 2.0);
    let q = b.ins().fdiv(two, d);
    let far = b.ins().fsub(one, q);
    let cut = splat(b, TANH_SMALL);
    let y = blend(b, FloatCC::LessThan, a, cut, near, far);
    // The sign of x (y is positive or NaN).
    let ib = bits(b, x);
    let sign = isplat(b, i32::MIN);
    let sign = b.ins().band(ib, sign);
    let yb = bits(b, y);
    let yb = b.ins().bor(yb, sign);
    float(b, yb)
}
