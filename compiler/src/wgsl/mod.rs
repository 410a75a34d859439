//! Emitting WGSL compute shaders: one module per program (a loss, or a gradient program from
//! `compiler::grad`), text only; `runtime::gpu` compiles and dispatches it through wgpu.
//!
//! The program is the one the CPU backend compiles (stabilised, differentiated, simplified,
//! loop-invariant reductions hoisted into definitions), and it is split the same way: one
//! kernel per definition. A definition with indices runs one invocation per element, its
//! inner reductions as loops in the invocation, accumulating in registers; when its elements
//! need reductions it also gets a row kernel ([`Work::Rows`]): one workgroup per element,
//! which shares each top-level reduction across the workgroup (strided terms, then a tree),
//! and the host runs whichever suits the sizes ([`prefer_rows`]). A scalar definition
//! (a metric, a hoisted total) and the loss run in one invocation, except that each reduction
//! at their top level (`sum`, `mean`, `count`, `max`, `min`, outside any lazily evaluated
//! branch) runs first as a deterministic two-level reduction: [`REDUCE_GROUP`] invocations
//! per workgroup accumulate strided terms and combine them in a workgroup tree, then one
//! workgroup folds the per-workgroup partials in order. The same sizes always give the same
//! bits.
//!
//! Bindings (group 0, see [`Binding`]): `params` (a uniform with every dimension size and
//! hyperparameter, so one module serves every size), `errors` (the first out-of-range index:
//! flag, tensor, position, value, is-definition), `result` (the loss), `reduced` and the
//! partial buffers of the two-level reductions, then one storage buffer per input (`in_<name>`:
//! f32, i32, or u32 for booleans) and per definition (`def_<name>`, f32 like the CPU
//! backend's work buffer). Every gather and literal index is checked in the shader; an index
//! out of range is recorded in `errors` and replaced by 0, so nothing is read outside a buffer.
//! The math helpers are [`math::SOURCE`].

mod expr;
mod kernels;
pub mod math;
mod names;

use crate::ir::{DType, DefId, DimId, InputId, Loss};

/// Invocations per workgroup of an elementwise (one invocation per element) kernel.
pub const ELEMENT_GROUP: u32 = 64;
/// Invocations per workgroup of a reduction kernel (a power of two).
pub const REDUCE_GROUP: u32 = 256;
/// The most workgroups the first level of a two-level reduction uses.
pub const MAX_PARTIALS: u32 = 256;

/// A compiled program: its WGSL text, and what the host needs to bind and dispatch it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shader {
    /// The WGSL module.
    pub source: String,
    /// The bindings of group 0, in binding order.
    pub bindings: Vec<Binding>,
    /// The kernels, in the order they must run.
    pub kernels: Vec<Kernel>,
    /// How many two-level reductions there are (slots of `reduced`).
    pub reductions: usize,
}

/// A buffer bound at `@group(0) @binding(index)`, `index` being its position in
/// [`Shader::bindings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Binding {
    /// The uniform of dimension sizes and hyperparameters ([`params_bytes`]).
    Params,
    /// `array<atomic<u32>, 5>`: flag, tensor, position, value (as i32 bits), is-definition.
    Errors,
    /// `array<f32>`, one element: the loss.
    Result,
    /// `array<f32>`, one element per two-level reduction (a `count` as i32 bits).
    Reduced,
    /// `array<f32>`, [`MAX_PARTIALS`] per reduction: first-level results.
    Partials,
    /// `array<u32>`, [`MAX_PARTIALS`] per reduction: first-level term counts (for `mean`).
    PartialCounts,
    /// An input, read-only: f32 for floats, i32 for ints, u32 (0 or 1) for booleans.
    Input(InputId),
    /// A definition, f32 per element, row-major.
    Def(DefId),
}

/// One entry point and how many invocations it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// The entry point's name.
    pub entry: String,
    /// What it computes, which sets the dispatch size.
    pub work: Work,
    /// The bindings it may touch (indices into [`Shader::bindings`], ascending): the six
    /// fixed ones and the inputs and definitions it reads or writes. A pipeline binds only
    /// these, so a program may have more definitions than an adapter allows storage buffers
    /// per shader.
    pub bindings: Vec<u32>,
}

/// The dispatch shape of a kernel.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// One invocation per element of a definition with these dimensions, in workgroups of
    /// [`ELEMENT_GROUP`] spread over x and y (x at most [`MAX_GROUPS_X`]).
    Elements(Vec<DimId>),
    /// One workgroup of [`REDUCE_GROUP`] per element of a definition with these dimensions
    /// (spread over x and y like [`Work::Elements`]), the alternative to the `Elements` kernel
    /// just before it: the host runs exactly one of the two, this one where
    /// [`prefer_rows`] says so.
    Rows {
        /// The definition's dimensions.
        dims: Vec<DimId>,
        /// The dimensions each of its shared reductions runs over.
        terms: Vec<Vec<DimId>>,
    },
    /// First level of reduction `slot` over these dimensions: [`reduction_groups`] workgroups.
    Partial {
        /// The reduction's slot in `reduced`.
        slot: usize,
        /// The dimensions of its bound variables.
        dims: Vec<DimId>,
    },
    /// Second level of a reduction: one workgroup.
    Fold,
    /// One invocation (a scalar definition, or the loss).
    Single,
}

/// The most workgroups an elementwise dispatch puts along x (WebGPU guarantees 65535).
pub const MAX_GROUPS_X: u32 = 32768;

/// The workgroups of the first level of a reduction over `terms` terms: one per
/// [`REDUCE_GROUP`] terms, at least 1, at most [`MAX_PARTIALS`]. The shader computes the same.
pub fn reduction_groups(terms: u64) -> u32 {
    terms
        .div_ceil(u64::from(REDUCE_GROUP))
        .clamp(1, u64::from(MAX_PARTIALS)) as u32
}

/// The workgroup counts (x, y) of an elementwise kernel over `elements` invocations.
pub fn element_groups(elements: u64) -> (u32, u32) {
    let groups = elements.div_ceil(u64::from(ELEMENT_GROUP));
    let x = groups.min(u64::from(MAX_GROUPS_X)).max(1);
    (x as u32, groups.div_ceil(x) as u32)
}

/// Whether a definition of `elements` elements whose longest shared reduction has `terms`
/// terms runs one workgroup per element ([`Work::Rows`]) rather than one invocation per
/// element: when each element's reduction is long enough to share and there are few enough
/// elements that one invocation each would leave a GPU idle.
pub fn prefer_rows(elements: u64, terms: u64) -> bool {
    terms >= u64::from(REDUCE_GROUP) && elements <= 1 << 16
}

/// The workgroup counts (x, y) of a row kernel over `elements` elements.
pub fn row_groups(elements: u64) -> (u32, u32) {
    let x = elements.min(u64::from(MAX_GROUPS_X)).max(1);
    (x as u32, elements.div_ceil(x) as u32)
}

/// The bytes of the `params` uniform: each dimension's size as i32, then each
/// hyperparameter as f32, in declaration order, padded to 16 bytes.
pub fn params_bytes(dims: &[usize], hypers: &[f64]) -> Vec<u8> {
    let mut out = vec![];
    for &d in dims {
        out.extend((d.min(i32::MAX as usize) as i32).to_le_bytes());
    }
    for &h in hypers {
        out.extend((h as f32).to_le_bytes());
    }
    if out.is_empty() {
        out.extend(0u32.to_le_bytes());
    }
    out.resize(out.len().div_ceil(16) * 16, 0);
    out
}

/// The WGSL element type a tensor is stored in.
pub fn storage_type(dtype: DType, is_input: bool) -> &'static str {
    match (dtype, is_input) {
        (DType::Int, true) => "i32",
        (DType::Bool, true) => "u32",
        _ => "f32",
    }
}

/// The functions every emitted module contains verbatim (the math library, index checks,
/// workgroup reductions), between its bindings and its kernels.
pub fn library() -> String {
    kernels::library()
}

/// Emits the WGSL module of `program`.
pub fn emit(program: &Loss) -> Shader {
    kernels::Module::new(program).emit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_loss as program;

    #[test]
    fn params_hold_dimensions_then_hyperparameters_padded_to_16_bytes() {
        let bytes = params_bytes(&[3, 7], &[0.5]);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[0..4], &3i32.to_le_bytes());
        assert_eq!(&bytes[4..8], &7i32.to_le_bytes());
        assert_eq!(&bytes[8..12], &0.5f32.to_le_bytes());
        assert_eq!(params_bytes(&[], &[]).len(), 16);
        assert_eq!(params_bytes(&[1; 5], &[]).len(), 32);
    }

    #[test]
    fn dispatch_sizes_cover_every_element_and_respect_the_limits() {
        assert_eq!(reduction_groups(0), 1);
        assert_eq!(reduction_groups(256), 1);
        assert_eq!(reduction_groups(257), 2);
        assert_eq!(reduction_groups(1 << 30), MAX_PARTIALS);
        for n in [1u64, 64, 65, 1 << 21, (1 << 21) + 1, 3_000_000_000] {
            let (x, y) = element_groups(n);
            assert!(x <= MAX_GROUPS_X && y <= 65535, "{n}: {x} × {y}");
            assert!(
                u64::from(x) * u64::from(y) * u64::from(ELEMENT_GROUP) >= n,
                "{n}"
            );
        }
    }

    #[test]
    fn one_kernel_per_definition_a_row_kernel_where_it_reduces_and_two_per_scalar_reduction() {
        let loss = program(
            "loss l(x: [B, C]) {
                let m[b] = max[c](x[b, c])
                metric total = sum[b](m[b])
                mean[b](m[b]) + 1
            }",
        );
        let shader = emit(&loss);
        let entries: Vec<&str> = shader.kernels.iter().map(|k| k.entry.as_str()).collect();
        assert_eq!(
            entries,
            [
                "compute_m",
                "compute_m_rows",
                "reduce0_partial",
                "reduce0_fold",
                "compute_total",
                "reduce1_partial",
                "reduce1_fold",
                "compute_loss"
            ]
        );
        assert_eq!(shader.reductions, 2);
        assert!(matches!(&shader.kernels[1].work, Work::Rows { terms, .. } if terms == &[vec![1]]));
        assert!(prefer_rows(512, 32000) && !prefer_rows(1 << 20, 32000) && !prefer_rows(512, 8));
        // The inner max is a loop in the invocation, not a two-level reduction.
        assert!(
            shader
                .source
                .contains("for (var c = 0; c < params.dim_C; c = c + 1)")
        );
        assert!(shader.source.contains("//   let m[b] = max[c](x[b, c])"));
        // Each kernel binds the fixed buffers and only what it touches.
        let m = &shader.kernels[0];
        let names: Vec<Binding> = m
            .bindings
            .iter()
            .map(|&b| shader.bindings[b as usize])
            .collect();
        assert!(names.contains(&Binding::Input(0)) && names.contains(&Binding::Def(0)));
        assert!(!names.contains(&Binding::Def(1)));
    }

    #[test]
    fn gathers_are_checked_and_lazy_branches_stay_lazy() {
        let loss = program(
            "loss l(x: [B, C], y: int[B]) {
                mean[b](if y[b] < 0 then 0 else x[b, y[b]] + sum[c](x[b, c]))
            }",
        );
        let src = emit(&loss).source;
        assert!(
            src.contains("lossc_check(in_y[u32(b)], params.dim_C, 0u /* x */, 1u, false)"),
            "{src}"
        );
        // The else branch (a gather and a loop) runs only when taken.
        assert!(src.contains("if (in_y[u32(b)] < 0) {"), "{src}");
    }

    #[test]
    fn literals_are_valid_wgsl() {
        use expr::float_literal;
        assert_eq!(float_literal(1.0), "1.0");
        assert_eq!(float_literal(-0.5), "(-0.5)");
        assert_eq!(float_literal(1e-8), "1e-8");
        assert_eq!(float_literal(1e300), "lossc_inf()");
        assert_eq!(float_literal(f64::NEG_INFINITY), "(-lossc_inf())");
        assert_eq!(float_literal(f64::NAN), "lossc_nan()");
    }
}
