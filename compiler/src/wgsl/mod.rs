//! Emitting WGSL compute shaders: one module per program (a loss, or a gradient program from
//! `compiler::grad`), text only; `runtime::gpu` compiles and dispatches it through wgpu.
//!
//! The program is the one the CPU backend compiles (stabilised, differentiated, simplified,
//! loop-invariant reductions hoisted into definitions), and it is split the same way: one
//! kernel per definition. A definition with indices runs one invocation per element, its
//! inner reductions as loops in the invocation, accumulating in registers. A scalar definition
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
