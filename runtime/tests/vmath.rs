//! The inline f32x4 math of `compiler::clif::emit_vector_math`, JIT-compiled for this machine
//! and compared with the f64 functions of the standard library: the maximum error in ulp of
//! the correctly rounded result over a strided sweep of every f32 bit pattern (the bounds of
//! the table in `compiler/src/clif/vmath.rs`), and the IEEE special cases exactly. The
//! `#[ignore]`d test sweeps every bit pattern and prints the table.

use compiler::clif::{self, VectorFn};
use cranelift_jit::{JITBuilder, JITModule};

/// `dst[i] = f(src[i])` for `i < n - n % 4`.
type Map = unsafe extern "C" fn(*const f32, *mut f32, i64);

/// The compiled map of `f` (its module is leaked: tests compile five small functions).
fn compile(f: VectorFn) -> Map {
    let isa = cranelift_native::builder()
        .expect("host ISA")
        .finish(clif::flags(false))
        .expect("host flags");
    let builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let module = Box::leak(Box::new(JITModule::new(builder)));
    let id = clif::define_vector_map(module, "map", f).expect("lowering");
    module.finalize_definitions().expect("finalizing");
    let code = module.get_finalized_function(id);
    // SAFETY: `define_vector_map` defines exactly this signature, and the module is leaked.
    unsafe { std::mem::transmute::<*const u8, Map>(code) }
}

/// Applies the compiled `map` to `xs` (any length).
fn apply(map: Map, xs: &[f32]) -> Vec<f32> {
    let mut src = xs.to_vec();
    src.resize(xs.len().div_ceil(4) * 4, 0.0);
    let mut dst = vec![0.0f32; src.len()];
    // SAFETY: both buffers hold `src.len()` floats, a multiple of 4.
    unsafe { map(src.as_ptr(), dst.as_mut_ptr(), src.len() as i64) };
    dst.truncate(xs.len());
    dst
}

/// The f64 reference of `f`.
fn reference(f: VectorFn, x: f64) -> f64 {
    match f {
        VectorFn::Exp | VectorFn::ExpNonPositive | VectorFn::ExpNonPositiveExact => x.exp(),
        VectorFn::Log => x.ln(),
        VectorFn::Log1p => x.ln_1p(),
        VectorFn::Expm1 => x.exp_m1(),
        VectorFn::Tanh => x.tanh(),
    }
}

/// The documented bound (ulp) of each function, as measured over every f32.
fn bound(f: VectorFn) -> f64 {
    match f {
        VectorFn::Exp | VectorFn::ExpNonPositive | VectorFn::ExpNonPositiveExact => 1.049,
        VectorFn::Log => 0.843,
        VectorFn::Log1p => 0.871,
        VectorFn::Expm1 => 1.234,
        VectorFn::Tanh => 1.333,
    }
}

/// The unit in the last place of the f32 `r` (of `f32::MAX` for infinities).
fn ulp(r: f32) -> f64 {
    let a = r.abs();
    if a.is_infinite() {
        2f64.powi(104)
    } else if a < f32::MIN_POSITIVE {
        2f64.powi(-149)
    } else {
        2f64.powi((a.to_bits() >> 23) as i32 - 127 - 23)
    }
}

/// The error of `y` in ulp of the correctly rounded `exact`: 0 when both are the same
/// infinity or both NaN, infinite when only one is NaN; an infinite `y` counts as ±2¹²⁸.
fn ulp_error(y: f32, exact: f64) -> f64 {
    if exact.is_nan() || y.is_nan() {
        return if exact.is_nan() && y.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let r = exact as f32;
    if y == r {
        return 0.0;
    }
    let finite = |v: f64| {
        if v.is_infinite() {
            v.signum() * 2f64.powi(128)
        } else {
            v
        }
    };
    (finite(y as f64) - finite(exact)).abs() / ulp(r)
}

/// The largest error of `f` over the bit patterns `start, start + step, ...` below 2³², with
/// its argument.
fn sweep(f: VectorFn, start: u64, step: u64) -> (f64, f32) {
    let map = compile(f);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let count = ((1u64 << 32) - start).div_ceil(step);
    let per = count.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut worst = (0.0f64, 0.0f32);
                    let (lo, hi) = (t * per, ((t + 1) * per).min(count));
                    let chunk = 1 << 20;
                    let mut i = lo;
                    while i < hi {
                        let end = (i + chunk).min(hi);
                        let xs: Vec<f32> = (i..end)
                            .map(|j| f32::from_bits((start + j * step) as u32))
                            .collect();
                        for (&x, &y) in xs.iter().zip(&apply(map, &xs)) {
                            let e = ulp_error(y, reference(f, x as f64));
                            if e > worst.0 {
                                worst = (e, x);
                            }
                        }
                        i = end;
                    }
                    worst
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sweep thread"))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    })
}

#[test]
fn vector_math_within_its_bounds_on_a_strided_sweep() {
    // An odd stride reaches every binade and both signs: ~44M arguments per function, a few
    // seconds in debug.
    let mut failures = vec![];
    for f in VectorFn::ALL {
        let (e, x) = sweep(f, 12345, 97);
        eprintln!("{f:?}: max {e:.3} ulp at {x:e}");
        if e > bound(f) {
            failures.push(format!("{f:?}: {e} ulp at {x:e} ({:#x})", x.to_bits()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[ignore = "every f32: about a minute per function in release, far more in debug"]
fn vector_math_within_its_bounds_on_every_f32() {
    let mut failures = vec![];
    for f in VectorFn::ALL {
        let (e, x) = sweep(f, 0, 1);
        println!("| `{f:?}` | {e:.3} | at {x:e} |");
        if e > bound(f) {
            failures.push(format!("{f:?}: {e} ulp at {x:e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Asserts `f(x)` is `want`: bit for bit (any NaN for NaN) where `want` is NaN, infinite,
/// ±0, ±1 or `x` itself, within `f`'s bound elsewhere.
fn check(f: VectorFn, cases: &[(f32, f32)]) {
    let map = compile(f);
    let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    for (&(x, want), got) in cases.iter().zip(apply(map, &xs)) {
        let same = if want.is_nan() {
            got.is_nan()
        } else if !want.is_finite() || want == 0.0 || want.abs() == 1.0 || want == x {
            got.to_bits() == want.to_bits()
        } else {
            ulp_error(got, want as f64) <= bound(f)
        };
        assert!(same, "{f:?}({x:e}) = {got:e}, want {want:e}");
    }
}

#[test]
fn vector_math_special_cases_match_libm() {
    let (inf, nan, tiny) = (f32::INFINITY, f32::NAN, f32::from_bits(1));
    let neg_nan = -f32::NAN;
    check(
        VectorFn::Exp,
        &[
            (nan, nan),
            (neg_nan, nan),
            (inf, inf),
            (-inf, 0.0),
            (0.0, 1.0),
            (-0.0, 1.0),
            (88.72283, 3.402_798_5e38),
            (88.722_84, inf),
            (1e30, inf),
            (-103.98, 0.0),
            (-1e30, 0.0),
            (-87.0, 1.6458115e-38),
        ],
    );
    check(
        VectorFn::Log,
        &[
            (nan, nan),
            (neg_nan, nan),
            (-1.0, nan),
            (-tiny, nan),
            (-inf, nan),
            (0.0, -inf),
            (-0.0, -inf),
            (inf, inf),
            (1.0, 0.0),
            (f32::MAX, 88.72284),
            (tiny, -103.27893),
        ],
    );
    check(
        VectorFn::Log1p,
        &[
            (nan, nan),
            (neg_nan, nan),
            (-1.0, -inf),
            (-1.5, nan),
            (-inf, nan),
            (inf, inf),
            (0.0, 0.0),
            (-0.0, -0.0),
            (tiny, tiny),
            (-tiny, -tiny),
            (1e-30, 1e-30),
            (f32::MAX, 88.72284),
        ],
    );
    check(
        VectorFn::Expm1,
        &[
            (nan, nan),
            (neg_nan, nan),
            (inf, inf),
            (-inf, -1.0),
            (0.0, 0.0),
            (-0.0, -0.0),
            (tiny, tiny),
            (-tiny, -tiny),
            (1e-30, 1e-30),
            (-20.0, -1.0),
            (-1e30, -1.0),
            (88.722_84, inf),
            (1e30, inf),
        ],
    );
    check(
        VectorFn::Tanh,
        &[
            (nan, nan),
            (neg_nan, nan),
            (inf, 1.0),
            (-inf, -1.0),
            (0.0, 0.0),
            (-0.0, -0.0),
            (tiny, tiny),
            (-tiny, -tiny),
            (1e-30, 1e-30),
            (10.0, 1.0),
            (-10.0, -1.0),
            (1e30, 1.0),
        ],
    );
}

#[test]
fn exact_exp_for_non_positive_arguments_is_exp_everywhere_there() {
    // Every f32 in [-inf, 0] with an odd stride over the bit patterns (subnormal results and
    // the flush to 0 below -103.97 included), both zeros, the cut points, -inf and NaN.
    let (full, exact) = (
        compile(VectorFn::Exp),
        compile(VectorFn::ExpNonPositiveExact),
    );
    let mut xs: Vec<f32> = (0x8000_0000u32..=0xff80_0000)
        .step_by(37)
        .map(f32::from_bits)
        .collect();
    xs.extend([
        0.0,
        -0.0,
        -87.33,
        -103.97,
        -103.98,
        -104.0,
        -150.0,
        f32::NEG_INFINITY,
    ]);
    xs.extend([f32::NAN, -f32::NAN]);
    for (x, (a, b)) in xs
        .iter()
        .zip(apply(full, &xs).iter().zip(&apply(exact, &xs)))
    {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "at {x:e}: exp {a:e}, exact {b:e}"
        );
    }
}

#[test]
fn exp_for_non_positive_arguments_is_exp_down_to_the_normal_range() {
    // Every f32 in [-87.33, 0] with an odd stride over the bit patterns, both ±0, -inf and NaN.
    let (full, cheap) = (compile(VectorFn::Exp), compile(VectorFn::ExpNonPositive));
    let top = (-87.33f32).to_bits();
    let mut xs: Vec<f32> = (0x8000_0000u32..=top)
        .step_by(61)
        .map(f32::from_bits)
        .collect();
    xs.extend([0.0, -0.0, -87.33, -87.32]);
    for (x, (a, b)) in xs
        .iter()
        .zip(apply(full, &xs).iter().zip(&apply(cheap, &xs)))
    {
        assert_eq!(a.to_bits(), b.to_bits(), "at {x:e}: exp {a:e}, cheap {b:e}");
    }
    let below = [-87.34f32, -100.0, -1e30, f32::NEG_INFINITY];
    for (x, y) in below.iter().zip(apply(cheap, &below)) {
        assert!((0.0..=1.2e-38).contains(&y), "at {x:e}: {y:e}");
    }
    assert!(apply(cheap, &[f32::NAN])[0].is_nan());
}
