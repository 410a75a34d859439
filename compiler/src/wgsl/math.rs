//! lossc's WGSL math library ([`SOURCE`], `math.wgsl`): `exp`, `log`, `log1p`, `expm1`,
//! `softplus`, `log_sigmoid`, `log1mexp`, `sigmoid`, `tanh`, `pow`, NaN-propagating `max` /
//! `min` / `clamp`, and the IEEE special values, written out so that a loss computes the same
//! on every adapter instead of inheriting WGSL's loose accuracy bounds (`exp` 3 + 2|x| ULP,
//! `log` 3 ULP or 2^-21 absolute near 1), its missing `log1p` / `expm1`, and its
//! implementation-defined NaN, infinity and negative-argument behaviour.
//!
//! `exp` reduces `x = k ln2 + r` (ln 2 in two parts) and evaluates a degree-7 polynomial;
//! `log` splits off the binary exponent and evaluates `2 atanh(s)` as a series; `log1p` and
//! `expm1` use their series near 0, where `1 + x` or `exp(x) - 1` would cancel; the rest are
//! the stable compositions the CPU backend uses (`compiler::clif`).
//!
//! Measured on Mesa's lavapipe (llvmpipe, LLVM 15) against the f64 interpreter's definitions
//! (`runtime::interp::builtin`), over about 8000–12000 f32 points per function including
//! log-spaced magnitudes down to 1e-12, by the test `wgsl_math_library_accuracy_against_f64`
//! in `tests/gpu.rs` (which asserts these bounds and that ±inf and NaN come out as in f64):
//!
//! | function | domain sampled | max relative error |
//! |---|---|---|
//! | `exp` | [-103, 88.7] | 8.7e-8 |
//! | `log` | [1e-37, 1e38] | 1.5e-7 |
//! | `log1p` | (-1, 1e6], ±[1e-12, 1] | 1.7e-7 |
//! | `expm1` | [-30, 30], ±[1e-12, 1] | 1.2e-7 |
//! | `sigmoid` | [-80, 80], ±[1e-12, 1] | 1.7e-7 |
//! | `softplus` | [-80, 80], ±[1e-12, 1] | 2.2e-7 |
//! | `log_sigmoid` | [-80, 80], ±[1e-12, 1] | 2.2e-7 |
//! | `log1mexp` | [-80, -1e-12] | 1.7e-7 |
//! | `tanh` | [-20, 20], ±[1e-12, 1] | 1.9e-7 |
//! | `pow(x, -3)` (whole exponents up to 64: repeated squaring) | [-30, 30] | 1.3e-7 |
//! | `pow(x, 2.5)` (other exponents: `exp(y log x)`) | [0, 1e7] | 4.3e-6, about \|y ln x\| · 1.2e-7 |
//! | `sin`, `cos` (the driver's own) | [-10, 10] | 1.0e-7 |
//!
//! For comparison, the driver's own WGSL built-ins on the same adapter: `exp` 3.9e-6, `log`
//! 4.2e-5 (near 1), `log(1 + x)` and `tanh` wrong by more than 100% near 0.
//! None of this forces a tolerance looser than 1e-4 relative on any stdlib or corpus loss.

/// The library's WGSL text, included in every module lossc emits.
pub const SOURCE: &str = include_str!("math.wgsl");
