//! lossc's WGSL math library ([`SOURCE`], `math.wgsl`): `exp`, `log`, `log1p`, `expm1`,
//! `softplus`, `log_sigmoid`, `log1mexp`, `sigmoid`, `tanh`, `pow`, NaN-propagating `max` /
//! `min` / `clamp`, and the IEEE special values, written out so that a loss computes the same on
//! every adapter instead of inheriting WGSL's loose accuracy bounds (`exp` 3 + 2|x| ULP, `log`
//! 3 ULP) and its implementation-defined NaN, infinity and negative-argument behaviour.
//!
//! Measured accuracy: TABLE
pub const SOURCE: &str = include_str!("math.wgsl");
