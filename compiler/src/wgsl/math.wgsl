// ---- lossc's f32 math library --------------------------------------------------------------
// WGSL's own exp and log are only loosely specified (exp: 3 + 2|x| ULP; log: 3 ULP, or 2^-21
// absolute near 1), it has no log1p or expm1, and it leaves log, sqrt and pow of negative
// numbers, and every NaN and infinity, to the implementation. These functions pin all of
// that down: range reduction plus short polynomials, IEEE special values by explicit test, so
// a loss computes the same on every adapter. Measured errors: compiler/src/wgsl/math.rs.

fn lossc_is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn lossc_is_inf(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// NaN and +inf, built at run time (WGSL has no literals for them).
fn lossc_nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

fn lossc_inf() -> f32 {
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

// max and min that propagate NaN (like torch.maximum); clamp built from them.
fn lossc_max(a: f32, b: f32) -> f32 {
    if (lossc_is_nan(a) || lossc_is_nan(b)) { return lossc_nan(); }
    return max(a, b);
}

fn lossc_min(a: f32, b: f32) -> f32 {
    if (lossc_is_nan(a) || lossc_is_nan(b)) { return lossc_nan(); }
    return min(a, b);
}

fn lossc_clamp(x: f32, lo: f32, hi: f32) -> f32 {
    return lossc_min(lossc_max(x, lo), hi);
}

// relu keeps NaN.
fn lossc_relu(x: f32) -> f32 {
    if (x > 0.0 || lossc_is_nan(x)) { return x; }
    return 0.0;
}

fn lossc_sqrt(x: f32) -> f32 {
    if (x < 0.0) { return lossc_nan(); }
    return sqrt(x);
}

// A float as an int index: truncated, saturated, NaN as 0 (as the CPU backend converts).
fn lossc_to_int(x: f32) -> i32 {
    if (lossc_is_nan(x)) { return 0; }
    if (x >= 2147483520.0) { return 2147483647; }
    if (x <= -2147483648.0) { return -2147483647 - 1; }
    return i32(x);
}

// x * 2^k for k in [-300, 300], in two steps so that neither factor overflows.
fn lossc_scale(x: f32, k: i32) -> f32 {
    let h = k / 2;
    return ldexp(ldexp(x, h), k - h);
}

// exp: x = k ln2 + r with |r| <= ln2/2 (ln 2 split in two so k ln2_hi is exact), exp(r) by its
// degree-7 Taylor polynomial (truncation error < 2e-9 relative), then scaled by 2^k.
fn lossc_exp(x: f32) -> f32 {
    if (lossc_is_nan(x)) { return x; }
    if (x > 88.72284) { return lossc_inf(); }
    if (x < -103.972084) { return 0.0; }
    let k = round(x * 1.442695);
    let r = (x - k * 0.693145751953125) - k * 1.4286068e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668
        + r * (0.008333334 + r * (0.0013888889 + r * 0.0001984127))))));
    return lossc_scale(p, i32(k));
}

// log(1 + f) for |f| <= 0.42 by the series 2 atanh(s) = 2(s + s^3/3 + s^5/5 + ...),
// s = f / (2 + f), |s| <= 0.21: no cancellation, no dependence on exp or log.
fn lossc_log1p_series(f: f32) -> f32 {
    let s = f / (2.0 + f);
    let z = s * s;
    let tail = z * (0.33333334 + z * (0.2 + z * (0.14285715 + z * (0.11111111
        + z * (0.09090909 + z * (0.07692308 + z * 0.06666667))))));
    return 2.0 * s + 2.0 * s * tail;
}

// log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log x = e ln2 + log(1 + (m - 1)).
fn lossc_log(x: f32) -> f32 {
    if (lossc_is_nan(x) || x < 0.0) { return lossc_nan(); }
    if (x == 0.0) { return -lossc_inf(); }
    if (lossc_is_inf(x)) { return x; }
    var y = x;
    var e = 0;
    if (y < 1.1754944e-38) {
        // subnormal: scale into the normal range first
        y = y * 16777216.0;
        e = -24;
    }
    let bits = bitcast<u32>(y);
    e = e + i32(bits >> 23u) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        e = e + 1;
    }
    let k = f32(e);
    return k * 0.693145751953125 + (lossc_log1p_series(m - 1.0) + k * 1.4286068e-6);
}

// log1p: the series near 0, where 1 + x would lose the low bits of x; log(1 + x) elsewhere.
fn lossc_log1p(x: f32) -> f32 {
    if (abs(x) <= 0.42) { return lossc_log1p_series(x); }
    return lossc_log(1.0 + x);
}

// expm1: its Taylor polynomial for |x| < 0.5 (degree 9, error < 3e-9 relative), where
// exp(x) - 1 would cancel; exp(x) - 1 elsewhere (at most 2.5 times exp's relative error).
fn lossc_expm1(x: f32) -> f32 {
    if (abs(x) < 0.5) {
        return x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.008333334
            + x * (0.0013888889 + x * (0.0001984127 + x * (0.0000248016 + x * 0.0000027557))))))));
    }
    return lossc_exp(x) - 1.0;
}

// sigmoid: e = exp(-|x|) never overflows; 1 / (1 + e) for x >= 0, e / (1 + e) below.
fn lossc_sigmoid(x: f32) -> f32 {
    let e = lossc_exp(-abs(x));
    let r = 1.0 / (1.0 + e);
    if (x >= 0.0) { return r; }
    return e * r;
}

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)).
fn lossc_softplus(x: f32) -> f32 {
    return max(x, 0.0) + lossc_log1p(lossc_exp(-abs(x)));
}

// log_sigmoid(x) = -softplus(-x) = min(x, 0) - log1p(exp(-|x|)).
fn lossc_log_sigmoid(x: f32) -> f32 {
    return min(x, 0.0) - lossc_log1p(lossc_exp(-abs(x)));
}

// log1mexp(x) = log(1 - exp(x)) for x <= 0 (Maechler): log(-expm1(x)) above -ln 2,
// log1p(-exp(x)) below.
fn lossc_log1mexp(x: f32) -> f32 {
    if (x > -0.6931472) { return lossc_log(-lossc_expm1(x)); }
    return lossc_log1p(-lossc_exp(x));
}

// tanh = t / (t + 2) with t = expm1(2|x|): accurate near 0, exactly +-1 beyond |x| = 9.
fn lossc_tanh(x: f32) -> f32 {
    let a = abs(x);
    if (lossc_is_nan(x)) { return x; }
    if (a > 9.0) { return sign(x); }
    let t = lossc_expm1(2.0 * a);
    let r = t / (t + 2.0);
    if (x < 0.0) { return -r; }
    return r;
}

// |x|^n for a whole n >= 0 by repeated squaring.
fn lossc_powi(x: f32, n: u32) -> f32 {
    var base = x;
    var k = n;
    var r = 1.0;
    loop {
        if (k == 0u) { break; }
        if ((k & 1u) == 1u) { r = r * base; }
        base = base * base;
        k = k >> 1u;
    }
    return r;
}

// pow with C's powf special cases: x^0 = 1 and 1^y = 1 (even for NaN), whole exponents up to
// 64 by repeated squaring (exact signs for negative x), exp(y log |x|) otherwise, NaN for a
// negative base and a fractional exponent.
fn lossc_pow(x: f32, y: f32) -> f32 {
    if (y == 0.0 || x == 1.0) { return 1.0; }
    if (lossc_is_nan(x) || lossc_is_nan(y)) { return lossc_nan(); }
    let ax = abs(x);
    if (ax == 1.0 && lossc_is_inf(y)) { return 1.0; }
    let whole = floor(y) == y;
    var odd = false;
    if (whole && abs(y) < 16777216.0) {
        odd = (i32(abs(y)) & 1) == 1;
    }
    var r: f32;
    if (whole && abs(y) <= 64.0) {
        r = lossc_powi(ax, u32(abs(y)));
        if (y < 0.0) { r = 1.0 / r; }
    } else {
        r = lossc_exp(y * lossc_log(ax));
    }
    if (x < 0.0) {
        if (!whole) { return lossc_nan(); }
        if (odd) { return -r; }
    }
    return r;
}

// sin and cos: WGSL's, which on Mesa's lavapipe agree with f64 to about 1e-7 absolute on
// moderate arguments (see compiler/src/wgsl/math.rs); not used by any stdlib loss.
fn lossc_sin(x: f32) -> f32 {
    return sin(x);
}

fn lossc_cos(x: f32) -> f32 {
    return cos(x);
}
