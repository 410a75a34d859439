//! Lowering the IR to Cranelift: one function per loss that evaluates every definition in
//! order (each a loop nest over its indices, reductions as inner loops accumulating in
//! registers), then the loss. Generic over [`cranelift_module::Module`], so the JIT
//! (`runtime::cpu`) and object files share one code path. `expr` lowers scalar code,
//! `vector` runs innermost loops on `f32x4` where exact, `vmath` is their inline math,
//! `group` lowers the fused passes of `crate::fuse` that the JIT runs in parallel blocks
//! ([`Part`]).
//!
//! The entry point has the C ABI
//! `int64_t loss(const void *const *inputs, const int64_t *dims, const float *hypers,
//!               float *work, float *result, int64_t *error)`:
//! `inputs[i]` points to input `i` (f32 for float inputs, i32 for int inputs, u8 for bool
//! inputs), `dims[d]` is the size of dimension `d`, `work` holds every definition one after the
//! other (row-major f32, [`Layout`]), the loss goes to `*result`. It returns 0, or 1 after
//! writing `error[0..4] = {tensor, position, value, is_def}` when an index (a gather or a
//! literal) is out of range: compiled code never reads outside its buffers.

mod column;
mod expr;
mod group;
mod invariant;
mod loops;
mod lse;
mod math;
mod reduce;
mod softmax;
mod vector;
mod vmath;

pub use math::LIBM;

use crate::ir::{DType, Loss};
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName, Value, types,
};
use cranelift_codegen::settings::Configurable;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module, ModuleError};

/// A lowering failure (a Cranelift error; the IR itself is always lowerable).
#[derive(Debug, Clone, PartialEq)]
pub struct ClifError {
    /// What failed.
    pub message: String,
}

impl std::fmt::Display for ClifError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClifError {}

impl From<ModuleError> for ClifError {
    fn from(e: ModuleError) -> ClifError {
        ClifError {
            message: format!("cranelift: {e:?}"),
        }
    }
}

/// Where each definition lives in the `work` buffer, for given dimension sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Offset (in f32 elements) of each definition.
    pub offsets: Vec<usize>,
    /// Number of elements of each definition.
    pub sizes: Vec<usize>,
    /// Total elements.
    pub total: usize,
}

impl Layout {
    /// The layout of `loss`'s definitions when its dimensions have sizes `dims`.
    pub fn new(loss: &Loss, dims: &[usize]) -> Layout {
        let mut offsets = vec![];
        let mut sizes = vec![];
        let mut total = 0;
        for d in &loss.defs {
            let n: usize = d.indices.iter().map(|&v| dims[loss.vars[v].dim]).product();
            offsets.push(total);
            sizes.push(n);
            total += n;
        }
        Layout {
            offsets,
            sizes,
            total,
        }
    }
}

/// The element type an input is passed in.
pub fn input_type(dtype: DType) -> cranelift_codegen::ir::Type {
    match dtype {
        DType::Float => types::F32,
        DType::Int => types::I32,
        DType::Bool => types::I8,
    }
}

/// Flags for the host ISA: optimised code; `pic` for object files.
pub fn flags(pic: bool) -> cranelift_codegen::settings::Flags {
    let mut b = cranelift_codegen::settings::builder();
    b.set("opt_level", "speed").expect("known setting");
    b.set("is_pic", if pic { "true" } else { "false" })
        .expect("known setting");
    b.set("use_colocated_libcalls", "false")
        .expect("known setting");
    cranelift_codegen::settings::Flags::new(b)
}

/// Which part of a program a lowered function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every definition, then the loss: the AOT entry point.
    All,
    /// Definition `d` only, for the rows `start..end` of its outermost index (all of a scalar
    /// definition): the unit the CPU executor spreads over threads. Two more parameters,
    /// `int64_t start, int64_t end`, follow the six of the entry point.
    Def(usize),
    /// One block of scalar definition `d`, whose body is a reduction (see
    /// [`partial_reducer`]): the reduction's accumulators over the rows `start..end` of its
    /// first variable, stored at `result` as `{float f; float g; int64_t n}` (the running value,
    /// logsumexp's sum of `exp(x - max)`, the count or position). Parameters as for `Def`.
    Partial(usize),
    /// The loss only, from already computed definitions.
    Result,
    /// The members of a fused group (`crate::fuse::Step::Group`, given to [`lower_group`]), in
    /// order, for the rows `start..end` of their shared outermost dimension: row definitions
    /// fill those rows, scalar reductions leave their block's accumulators at `result`, one
    /// `{float f; float g; int64_t n}` per reduction in member order. Parameters as for `Def`,
    /// then `float *scratch`: the block's rows of the group's local definitions
    /// (`crate::fuse::locals`) without a host (`crate::fuse::hosts`), one after the other,
    /// live there instead of in `work`.
    Group,
}

/// The reducer of definition `d` when it can be computed in blocks ([`Part::Partial`]): a
/// scalar definition whose body is a reduction.
pub fn partial_reducer(loss: &Loss, d: usize) -> Option<crate::ir::Reducer> {
    let def = &loss.defs[d];
    match &def.body {
        crate::ir::Expr::Reduce { op, vars, .. } if def.indices.is_empty() && !vars.is_empty() => {
            Some(*op)
        }
        _ => None,
    }
}

/// The entry point's signature.
pub fn signature<M: Module>(module: &M) -> Signature {
    part_signature(module, Part::All)
}

/// The signature of the function computing `part`.
pub fn part_signature<M: Module>(module: &M, part: Part) -> Signature {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..6 {
        sig.params.push(AbiParam::new(ptr));
    }
    if let Part::Def(_) | Part::Partial(_) | Part::Group = part {
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
    }
    if let Part::Group = part {
        sig.params.push(AbiParam::new(ptr));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// Lowers `loss` into `module` as the exported function `name`.
pub fn lower<M: Module>(loss: &Loss, module: &mut M, name: &str) -> Result<FuncId, ClifError> {
    lower_part(loss, module, name, Part::All)
}

/// Lowers `part` of `loss` into `module` as the exported function `name`.
pub fn lower_part<M: Module>(
    loss: &Loss,
    module: &mut M,
    name: &str,
    part: Part,
) -> Result<FuncId, ClifError> {
    let sig = part_signature(module, part);
    let id = module.declare_function(name, Linkage::Export, &sig)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let builder = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        expr::Lowering::new(loss, module, builder).function(part)?;
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| ClifError {
            message: format!("cranelift: {e:?}"),
        })?;
    Ok(id)
}

/// Lowers the fused group `members` of `loss` into `module` as the exported function `name`
/// (see [`Part::Group`]); the members in `locals` live in the scratch buffer, or where their
/// host in `hosts` (`crate::fuse::hosts`, per definition) will be written; `scales` are the
/// softmax scale definitions of `compiler::softmax::share`. Returns the function and the compilation
/// context, whose function is then the one Cranelift optimised (what `loops::tests`
/// inspects).
pub fn lower_group<M: Module>(
    loss: &Loss,
    module: &mut M,
    name: &str,
    members: &[usize],
    locals: &[usize],
    hosts: &[Option<usize>],
    scales: &[usize],
) -> Result<(FuncId, cranelift_codegen::Context), ClifError> {
    let sig = part_signature(module, Part::Group);
    let id = module.declare_function(name, Linkage::Export, &sig)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let builder = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let mut lowering = expr::Lowering::new(loss, module, builder);
        lowering.members = members.to_vec();
        lowering.locals = locals.to_vec();
        lowering.hosts = hosts.to_vec();
        lowering.scales = scales.to_vec();
        lowering.function(Part::Group)?;
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| ClifError {
            message: format!("cranelift: {e:?}"),
        })?;
    Ok((id, ctx))
}

/// The Cranelift IR text of `loss`'s function (for `lossc compile --emit clif`).
pub fn clif_text<M: Module>(loss: &Loss, module: &mut M) -> Result<String, ClifError> {
    let sig = signature(module);
    let id = module.declare_function("loss", Linkage::Export, &sig)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let builder = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        expr::Lowering::new(loss, module, builder).function(Part::All)?;
    }
    Ok(ctx.func.display().to_string())
}

/// A lane-wise f32 function that [`emit_vector_math`] emits inline on `f32x4` (accuracy and
/// special cases: the table in `compiler/src/clif/vmath.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorFn {
    /// `e^x`.
    Exp,
    /// The natural logarithm.
    Log,
    /// `log(1 + x)`.
    Log1p,
    /// `e^x - 1`.
    Expm1,
    /// The hyperbolic tangent.
    Tanh,
    /// `e^x` for `x <= 0` only (the second pass of a logsumexp): the same bits as `Exp` down
    /// to -87.33, about 1.2e-38 below.
    ExpNonPositive,
    /// `e^x` for `x <= 0` only (the sigmoid family's `e^-|y|`): the same bits as `Exp`.
    ExpNonPositiveExact,
}

impl VectorFn {
    /// Every function defined on all of f32, in declaration order (not the `ExpNonPositive`
    /// forms).
    pub const ALL: [VectorFn; 5] = [
        VectorFn::Exp,
        VectorFn::Log,
        VectorFn::Log1p,
        VectorFn::Expm1,
        VectorFn::Tanh,
    ];
}

/// Emits `f` applied to each lane of `x` (an `f32x4`) at the builder's position, as inline
/// instructions, with fused multiply-adds when `fma` (the target has them, see
/// `TargetIsa::has_native_fma`); returns the `f32x4` result.
pub fn emit_vector_math(b: &mut FunctionBuilder, f: VectorFn, fma: bool, x: Value) -> Value {
    match f {
        VectorFn::Exp => vmath::exp(b, fma, x),
        VectorFn::Log => vmath::log(b, fma, x),
        VectorFn::Log1p => vmath::log1p(b, fma, x),
        VectorFn::Expm1 => vmath::expm1(b, fma, x),
        VectorFn::Tanh => vmath::tanh(b, fma, x),
        VectorFn::ExpNonPositive => vmath::exp_nonpositive(b, fma, x),
        VectorFn::ExpNonPositiveExact => vmath::exp_nonpositive_exact(b, fma, x),
    }
}

/// Defines `name` in `module` as `void name(const float *src, float *dst, int64_t n)`, which
/// writes `f(src[i])` to `dst[i]` for `i < n - n % 4`, four lanes at a time (for tests and
/// benchmarks of [`emit_vector_math`]).
pub fn define_vector_map<M: Module>(
    module: &mut M,
    name: &str,
    f: VectorFn,
) -> Result<FuncId, ClifError> {
    let ptr = module.target_config().pointer_type();
    let fma = module.isa().has_native_fma();
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(ptr));
    sig.params.push(AbiParam::new(ptr));
    sig.params.push(AbiParam::new(types::I64));
    let id = module.declare_function(name, Linkage::Export, &sig)?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let [src, dst, n] = b.block_params(entry) else {
            unreachable!("three parameters")
        };
        let (src, dst, n) = (*src, *dst, *n);
        let i = b.declare_var(types::I64);
        let zero = b.ins().iconst(types::I64, 0);
        b.def_var(i, zero);
        let end = b.ins().band_imm_s(n, -4);
        b.ins().jump(header, &[]);
        b.switch_to_block(header);
        let iv = b.use_var(i);
        let more = b.ins().icmp(
            cranelift_codegen::ir::condcodes::IntCC::SignedLessThan,
            iv,
            end,
        );
        b.ins().brif(more, body, &[], exit, &[]);
        b.switch_to_block(body);
        let off = b.ins().ishl_imm_u(iv, 2);
        let off = if ptr == types::I64 {
            off
        } else {
            b.ins().ireduce(ptr, off)
        };
        let flags = MemFlagsData::new().with_notrap();
        let s = b.ins().iadd(src, off);
        let x = b.ins().load(types::F32X4, flags, s, 0);
        let y = emit_vector_math(&mut b, f, fma, x);
        let d = b.ins().iadd(dst, off);
        b.ins().store(flags, y, d, 0);
        let next = b.ins().iadd_imm_s(iv, 4);
        b.def_var(i, next);
        b.ins().jump(header, &[]);
        b.switch_to_block(exit);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module.define_function(id, &mut ctx)?;
    Ok(id)
}
