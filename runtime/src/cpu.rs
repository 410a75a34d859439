//! The CPU backend: a loss compiled once by Cranelift's JIT (`compiler::clif`), run many times.
//!
//! Inputs are checked against the loss's signature by [`crate::bind`] before compiled code
//! runs; every gather and literal index is checked by the compiled code itself, which stops
//! with an error naming the tensor, the position and the value instead of reading outside a
//! buffer. Values are f32; results come back as f64 for comparison with the interpreter.

use crate::bind::Bound;
use crate::gemm::{self, Matrix};
use crate::{Data, Outputs, RunError};
use compiler::clif::{self, Layout};
use compiler::contraction::Contraction;
use compiler::fuse::Step;
use compiler::ir::{DType, DefKind, InputId, Loss, Reducer};
use cranelift_jit::{JITBuilder, JITModule};

/// A loss compiled to native code: one function per definition (over a range of its outermost
/// index, so rows can be spread over threads) and one for the loss.
pub struct CpuLoss {
    /// The program compiled (for a gradient program: with its `grad_<input>` definitions).
    program: Loss,
    /// Keeps the code alive.
    _module: JITModule,
    /// The function of each definition that runs alone (not fused, not a matrix product, not
    /// a reduction in blocks).
    defs: Vec<Option<DefFn>>,
    /// For each definition computed in blocks: its reducer and its block function.
    partials: Vec<Option<(Reducer, DefFn)>>,
    /// For each definition that is a matrix product: how to call GEMM for it.
    products: Vec<Option<Contraction>>,
    /// The fused schedule (`compiler::fuse`), compiled.
    steps: Vec<Compiled>,
    result: ResultFn,
}

/// A step of the fused schedule, compiled.
enum Compiled {
    /// A definition alone: a matrix product, a reduction in blocks, or rows.
    One(usize),
    /// A fused group: its block function, the reductions among its members (definition and
    /// reducer, in member order) and the members that live in scratch (`compiler::fuse`'s
    /// locals without a host).
    Group {
        members: Vec<usize>,
        f: GroupFn,
        reducers: Vec<(usize, Reducer)>,
        locals: Vec<usize>,
    },
}

/// The loss function's C signature (see `compiler::clif`).
type ResultFn = unsafe extern "C" fn(
    *const *const u8,
    *const i64,
    *const f32,
    *mut f32,
    *mut f32,
    *mut i64,
) -> i64;
/// A definition's C signature: the loss function's, then the row range.
type DefFn = unsafe extern "C" fn(
    *const *const u8,
    *const i64,
    *const f32,
    *mut f32,
    *mut f32,
    *mut i64,
    i64,
    i64,
) -> i64;

/// A fused group's C signature: a definition's, then the scratch buffer.
type GroupFn = unsafe extern "C" fn(
    *const *const u8,
    *const i64,
    *const f32,
    *mut f32,
    *mut f32,
    *mut i64,
    i64,
    i64,
    *mut f32,
) -> i64;

/// Definitions whose elements cost at least this many operations in all
/// (`compiler::fuse::row_work`) are split over threads; matrix products with at least this
/// many elements.
const PARALLEL_WORK: usize = 1 << 14;

/// A scalar reduction is computed in blocks of at most this many values of its first variable
/// (fewer when each costs much, see [`BLOCK_WORK`]), spread over threads: the block count
/// depends on the sizes only (never on the thread count), so the combined value is the same
/// for every thread count, and no f32 accumulator sums more than a block's terms (over 4M terms, one running f32 sum of
/// DPO's loss was 1% off; blocks combined in f64 are within 1e-6).
const BLOCK_TERMS: usize = 2048;

thread_local! {
    /// Each thread's scratch buffer for the local definitions of fused groups, kept between
    /// blocks and runs.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fused groups and reductions run in blocks of rows costing about this many operations in
/// all (`compiler::fuse::row_work`; at most [`BLOCK_TERMS`] rows, at least one): enough rows
/// to spread over threads even when each row is a reduction over a vocabulary, few enough
/// that a block's rows of every member stay in cache from one member to the next. Like
/// reduction blocks, the block size depends on the sizes only.
const BLOCK_WORK: usize = 1 << 18;

/// The accumulators one block of a scalar reduction leaves (`clif::Part::Partial`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PartialState {
    f: f32,
    g: f32,
    n: i64,
}

/// The raw buffers one call reads and writes, shareable across the threads of one definition:
/// each thread writes only its own rows of that definition and reads inputs and earlier
/// definitions, which no thread writes.
#[derive(Clone, Copy)]
struct Buffers {
    inputs: *const *const u8,
    dims: *const i64,
    hypers: *const f32,
    work: *mut f32,
}

// SAFETY: see the type's documentation: concurrent calls touch disjoint rows of `work`.
unsafe impl Send for Buffers {}
unsafe impl Sync for Buffers {}

extern "C" fn lossc_sinf(x: f32) -> f32 {
    x.sin()
}
extern "C" fn lossc_cosf(x: f32) -> f32 {
    x.cos()
}
extern "C" fn lossc_powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}

impl CpuLoss {
    /// Compiles `program` (a loss, or a gradient program from `compiler::grad`) keeping the
    /// values of every definition for [`CpuLoss::run`] and [`Prepared::definition`].
    /// Reductions at the top of scalar expressions become definitions of their own
    /// (`compiler::split`), computed in parallel blocks, as do the row reductions inside them
    /// (`compiler::rows`); sums of softplus tails keep a product (`compiler::log_product`);
    /// products multiply their invariant factors first (`compiler::factors`); definitions
    /// sharing their outermost dimension run in fused passes (`compiler::fuse`).
    pub fn compile(program: &Loss) -> Result<CpuLoss, RunError> {
        CpuLoss::compile_with(program, true)
    }

    /// Compiles `program` for its loss, metrics and gradients only: a definition that only
    /// its fused pass reads lives in a small per-thread scratch buffer, never written to
    /// memory in full, and its values are not kept (they read as zeros).
    pub fn compile_for_outputs(program: &Loss) -> Result<CpuLoss, RunError> {
        CpuLoss::compile_with(program, false)
    }

    fn compile_with(program: &Loss, keep_every_definition: bool) -> Result<CpuLoss, RunError> {
        crate::limits::check_code_size(program)?;
        let regrouped = compiler::factors::regroup(program);
        let split = compiler::split::split(&compiler::log_product::expand(&regrouped));
        let split = compiler::rows::extract(&split);
        let (program, scales) = if keep_every_definition {
            (split, vec![])
        } else {
            share_softmax(split)
        };
        let program = &program;
        let isa = cranelift_native::builder()
            .map_err(|e| {
                RunError::new(format!(
                    "the CPU backend does not support this machine: {e}"
                ))
            })?
            .finish(clif::flags(false))
            .map_err(|e| RunError::new(format!("cranelift: {e}")))?;
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let symbols: [(&str, *const u8); 3] = [
            ("sinf", lossc_sinf as *const u8),
            ("cosf", lossc_cosf as *const u8),
            ("powf", lossc_powf as *const u8),
        ];
        debug_assert_eq!(symbols.len(), clif::LIBM.len());
        for (name, f) in symbols {
            builder.symbol(name, f);
        }
        let mut module = JITModule::new(builder);
        let cranelift = |e: clif::ClifError| RunError::new(e.message);
        let products: Vec<Option<Contraction>> = (0..program.defs.len())
            .map(|d| compiler::contraction::contraction(program, d))
            .collect();
        let schedule = compiler::fuse::schedule(program, &|d| runs_alone(program, d));
        // Functions only for what runs alone and not on GEMM (fused members run in their
        // group's function).
        let mut alone = vec![false; program.defs.len()];
        for step in &schedule {
            if let Step::One(d) = step {
                alone[*d] = products[*d].is_none();
            }
        }
        let mut def_ids = vec![];
        let mut partial_ids = vec![];
        for (d, &alone) in alone.iter().enumerate() {
            let reducer = clif::partial_reducer(program, d);
            def_ids.push(match (alone, reducer) {
                (true, None) => Some(
                    clif::lower_part(program, &mut module, &format!("def{d}"), clif::Part::Def(d))
                        .map_err(cranelift)?,
                ),
                _ => None,
            });
            partial_ids.push(match (alone, reducer) {
                (true, Some(op)) => Some((
                    op,
                    clif::lower_part(
                        program,
                        &mut module,
                        &format!("partial{d}"),
                        clif::Part::Partial(d),
                    )
                    .map_err(cranelift)?,
                )),
                _ => None,
            });
        }
        // Gradients and metrics are read after the run: never local.
        let outputs: Vec<usize> = compiler::grad::gradient_outputs(program)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let locals = compiler::fuse::locals(program, &schedule, &|d| {
            keep_every_definition || outputs.contains(&d) || program.defs[d].kind == DefKind::Metric
        });
        let mut step_ids = vec![];
        for (k, step) in schedule.iter().enumerate() {
            step_ids.push(match step {
                Step::Group(members) => {
                    let local: Vec<usize> =
                        members.iter().copied().filter(|&d| locals[d]).collect();
                    let hosts = compiler::fuse::hosts(program, members, &locals);
                    let id = clif::lower_group(
                        program,
                        &mut module,
                        &format!("group{k}"),
                        members,
                        &local,
                        &hosts,
                        &scales,
                    )
                    .map_err(cranelift)?
                    .0;
                    // The locals that take scratch: not those written where their host goes.
                    let scratch = local.into_iter().filter(|&d| hosts[d].is_none()).collect();
                    Some((id, scratch))
                }
                Step::One(_) => None,
            });
        }
        let result_id = clif::lower_part(program, &mut module, "result", clif::Part::Result)
            .map_err(cranelift)?;
        module
            .finalize_definitions()
            .map_err(|e| RunError::new(format!("cranelift: {e:?}")))?;
        // SAFETY: each pointer is a function `clif::lower_part` built with exactly the signature
        // it is cast to (`clif::part_signature`).
        let defs = def_ids
            .into_iter()
            .map(|id| {
                id.map(|id| unsafe {
                    std::mem::transmute::<*const u8, DefFn>(module.get_finalized_function(id))
                })
            })
            .collect();
        // SAFETY: as above.
        let partials = partial_ids
            .into_iter()
            .map(|p| {
                p.map(|(op, id)| {
                    (op, unsafe {
                        std::mem::transmute::<*const u8, DefFn>(module.get_finalized_function(id))
                    })
                })
            })
            .collect();
        // SAFETY: as above.
        let result = unsafe {
            std::mem::transmute::<*const u8, ResultFn>(module.get_finalized_function(result_id))
        };
        let steps = schedule
            .into_iter()
            .zip(step_ids)
            .map(|(step, compiled)| match (step, compiled) {
                (Step::Group(members), Some((id, locals))) => Compiled::Group {
                    // SAFETY: as above (`clif::lower_group`, `Part::Group`'s signature).
                    f: unsafe {
                        std::mem::transmute::<*const u8, GroupFn>(module.get_finalized_function(id))
                    },
                    reducers: members
                        .iter()
                        .filter_map(|&d| Some((d, clif::partial_reducer(program, d)?)))
                        .collect(),
                    members,
                    locals,
                },
                (step, _) => match step {
                    Step::One(d) => Compiled::One(d),
                    Step::Group(_) => unreachable!("every group was lowered"),
                },
            })
            .collect();
        Ok(CpuLoss {
            program: program.clone(),
            _module: module,
            defs,
            partials,
            products,
            steps,
            result,
        })
    }

    /// The compiled program.
    pub fn program(&self) -> &Loss {
        &self.program
    }

    /// Runs on bound inputs: the outputs and every definition's values (as f64, counted in the
    /// memory budget beside the workspace; zeros for the scratch definitions of
    /// [`CpuLoss::compile_for_outputs`]).
    pub fn run(&self, bound: &Bound) -> Result<(Outputs, Vec<Vec<f64>>), RunError> {
        self.check_memory(&bound.dims, bound.max_memory, |_| 8)?;
        let mut prepared = self.prepare(bound)?;
        prepared.execute()?;
        let defs = (0..self.program.defs.len())
            .map(|d| {
                prepared
                    .definition(d)
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect()
            })
            .collect();
        Ok((prepared.outputs(), defs))
    }

    /// The memory a run at dimension sizes `dims` takes, checked against `budget` before
    /// anything is allocated (see [`crate::limits::check_memory`]): the inputs in the element
    /// types compiled code reads (f32, i32, u8), 4 bytes for each element of the f32
    /// workspace, which holds every definition (a gradient's is where [`Prepared::definition`]
    /// reads it, never copied), and `extra(d)` more bytes per element of definition `d` for a
    /// caller that copies it out. Returns the total in bytes.
    pub fn check_memory(
        &self,
        dims: &[usize],
        budget: u64,
        extra: impl Fn(usize) -> u64,
    ) -> Result<f64, RunError> {
        let loss = &self.program;
        crate::limits::check_memory(
            loss,
            dims,
            budget,
            |i| match loss.inputs[i].dtype {
                DType::Bool => 1,
                DType::Float | DType::Int => 4,
            },
            |d| 4 + extra(d),
        )
    }

    /// Converts bound inputs into the buffers compiled code reads (f32, i32, u8) and allocates
    /// its workspace: everything [`Prepared::execute`] needs, so that repeated runs (as in
    /// `lossc bench`, like a framework's tensors already in memory) do no conversion. Inputs
    /// are copied; [`CpuLoss::prepare_owned`] takes them instead.
    pub fn prepare(&self, bound: &Bound) -> Result<Prepared<'_>, RunError> {
        self.check_memory(&bound.dims, bound.max_memory, |_| 0)?;
        let inputs = self
            .program
            .inputs
            .iter()
            .zip(&bound.inputs)
            .map(|(input, t)| buffer(input, std::borrow::Cow::Borrowed(t)))
            .collect::<Result<_, _>>()?;
        Ok(self.prepared(inputs, &bound.dims, &bound.hypers))
    }

    /// [`CpuLoss::prepare`], taking the bound inputs: an f32 input ([`Data::F32`]) becomes the
    /// buffer compiled code reads without a copy, and any other is freed once converted, so
    /// the run holds its inputs once.
    pub fn prepare_owned(&self, bound: Bound) -> Result<Prepared<'_>, RunError> {
        self.check_memory(&bound.dims, bound.max_memory, |_| 0)?;
        let Bound {
            dims,
            inputs: tensors,
            hypers,
            ..
        } = bound;
        let inputs = self
            .program
            .inputs
            .iter()
            .zip(tensors)
            .map(|(input, t)| buffer(input, std::borrow::Cow::Owned(t)))
            .collect::<Result<_, _>>()?;
        Ok(self.prepared(inputs, &dims, &hypers))
    }

    /// The workspace and sizes around converted inputs.
    fn prepared(&self, inputs: Vec<Buffer>, dims: &[usize], hypers: &[f64]) -> Prepared<'_> {
        let layout = Layout::new(&self.program, dims);
        Prepared {
            program: &self.program,
            defs: &self.defs,
            partials: &self.partials,
            products: &self.products,
            steps: &self.steps,
            result: self.result,
            inputs,
            dims: dims.iter().map(|&d| d as i64).collect(),
            sizes: dims.to_vec(),
            hypers: hypers.iter().map(|&h| h as f32).collect(),
            work: crate::pages::zeros(layout.total.max(1)),
            layout,
            loss: f32::NAN,
        }
    }
}

/// One bound input as the buffer compiled code reads: f32 data owned is moved, anything else
/// converted (floats to f32, ints to i32, which they must fit, booleans to bytes).
fn buffer(
    input: &compiler::ir::Input,
    t: std::borrow::Cow<'_, crate::Tensor>,
) -> Result<Buffer, RunError> {
    let t = match t {
        std::borrow::Cow::Owned(crate::Tensor {
            data: Data::F32(v), ..
        }) if input.dtype == DType::Float => return Ok(Buffer::F32(v)),
        t => t,
    };
    Ok(match (&t.data, input.dtype) {
        (Data::F64(v), DType::Float) => Buffer::F32(v.iter().map(|&x| x as f32).collect()),
        (Data::F32(v), DType::Float) => Buffer::F32(v.clone()),
        (Data::I64(v), DType::Int) => {
            let mut out = Vec::with_capacity(v.len());
            for (k, &x) in v.iter().enumerate() {
                out.push(i32::try_from(x).map_err(|_| {
                    RunError::new(format!(
                        "input `{}` holds {x} at {:?}, beyond the 32-bit integers the CPU backend takes",
                        input.name,
                        crate::bind::position(&t.shape, k)
                    ))
                })?);
            }
            Buffer::I32(out)
        }
        (Data::Bool(v), DType::Bool) => Buffer::U8(v.iter().map(|&b| u8::from(b)).collect()),
        (data, _) => unreachable!(
            "bind converts every input to its type, not {}",
            data.type_name()
        ),
    })
}

/// Calls a definition's (or a block's) compiled function on rows `start..end`: `Err` holds
/// the error record `{tensor, position, value, is_def}` when it stopped at an out-of-range index.
///
/// # Safety
/// `buffers` match the signature the code was compiled for (one pointer per input in its
/// declared element type, one size per dimension, one value per hyperparameter, the layout's
/// floats of work), `result` points to what the function writes there, and no other thread
/// writes what this call reads or writes. Every index the code computes is then a loop
/// variable below its dimension or checked against it.
unsafe fn call_rows(
    f: DefFn,
    b: Buffers,
    result: *mut f32,
    start: usize,
    end: usize,
) -> Result<(), [i64; 4]> {
    let mut error = [0i64; 4];
    // SAFETY: the caller's contract.
    let status = unsafe {
        f(
            b.inputs,
            b.dims,
            b.hypers,
            b.work,
            result,
            error.as_mut_ptr(),
            start as i64,
            end as i64,
        )
    };
    if status == 0 { Ok(()) } else { Err(error) }
}

/// The error for an out-of-range index compiled code reported as `error`.
fn out_of_range(loss: &Loss, error: [i64; 4], sizes: &[usize]) -> RunError {
    let t = if error[3] == 1 {
        compiler::ir::Tensor::Def(error[0] as usize)
    } else {
        compiler::ir::Tensor::Input(error[0] as usize)
    };
    let pos = error[1] as usize;
    let dim = loss.shape_of(t)[pos];
    RunError::new(format!(
        "index out of range: position {pos} of `{}` (dimension `{}`, size {}) got {}",
        loss.tensor_name(t),
        loss.dims[dim],
        sizes[dim],
        error[2]
    ))
}

/// The value of a reduction from its blocks' accumulators, in block order (so the same for
/// every thread count). Sums are combined in f64; NaN propagates through max and min as in
/// the compiled code; argmax/argmin keep the first extreme position (NaN first of all).
fn combine(op: Reducer, parts: &[PartialState]) -> f32 {
    let nan_max = |a: f32, b: f32, max: bool| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if max {
            a.max(b)
        } else {
            a.min(b)
        }
    };
    match op {
        Reducer::Count => parts.iter().map(|p| p.n).sum::<i64>() as f32,
        Reducer::Sum => parts.iter().map(|p| f64::from(p.f)).sum::<f64>() as f32,
        Reducer::Mean => {
            let total: f64 = parts.iter().map(|p| f64::from(p.f)).sum();
            let n: i64 = parts.iter().map(|p| p.n).sum();
            (total / n.max(1) as f64) as f32
        }
        Reducer::Max => parts
            .iter()
            .fold(f32::NEG_INFINITY, |a, p| nan_max(a, p.f, true)),
        Reducer::Min => parts
            .iter()
            .fold(f32::INFINITY, |a, p| nan_max(a, p.f, false)),
        Reducer::LogSumExp => {
            // A block's sum is NaN exactly when it met a NaN term.
            if parts.iter().any(|p| p.g.is_nan()) {
                return f32::NAN;
            }
            let m = parts
                .iter()
                .fold(f32::NEG_INFINITY, |a, p| nan_max(a, p.f, true));
            if !m.is_finite() {
                return m;
            }
            let total: f64 = parts
                .iter()
                .filter(|p| p.f != f32::NEG_INFINITY)
                .map(|p| f64::from(p.g) * (f64::from(p.f) - f64::from(m)).exp())
                .sum();
            (f64::from(m) + total.ln()) as f32
        }
        Reducer::ArgMax | Reducer::ArgMin => {
            let (mut best, mut at) = (0f32, -1i64);
            for p in parts.iter().filter(|p| p.n >= 0) {
                let better = if op == Reducer::ArgMax {
                    p.f > best
                } else {
                    p.f < best
                };
                if at < 0 || better || (p.f.is_nan() && !best.is_nan()) {
                    (best, at) = (p.f, p.n);
                }
            }
            at as f32
        }
    }
}

/// One input in the element type compiled code reads.
enum Buffer {
    F32(Vec<f32>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl Buffer {
    /// The start of the data (a valid, never dereferenced pointer when empty: compiled code
    /// reads only elements below the bound sizes).
    fn pointer(&self) -> *const u8 {
        match self {
            Buffer::F32(v) => v.as_ptr().cast(),
            Buffer::I32(v) => v.as_ptr().cast(),
            Buffer::U8(v) => v.as_ptr(),
        }
    }
}

/// A compiled loss with its inputs converted and its workspace allocated: run it with
/// [`Prepared::execute`] as often as wanted, then read the loss, metrics and definitions.
pub struct Prepared<'a> {
    program: &'a Loss,
    defs: &'a [Option<DefFn>],
    partials: &'a [Option<(Reducer, DefFn)>],
    products: &'a [Option<Contraction>],
    steps: &'a [Compiled],
    result: ResultFn,
    inputs: Vec<Buffer>,
    dims: Vec<i64>,
    sizes: Vec<usize>,
    hypers: Vec<f32>,
    layout: Layout,
    work: Vec<f32>,
    loss: f32,
}

impl Prepared<'_> {
    /// Runs the compiled code: every definition in order (rows of large ones spread over
    /// rayon's threads), then the loss. Returns the loss.
    pub fn execute(&mut self) -> Result<f32, RunError> {
        let loss = self.program;
        let pointers: Vec<*const u8> = self.inputs.iter().map(Buffer::pointer).collect();
        let buffers = Buffers {
            inputs: pointers.as_ptr(),
            dims: self.dims.as_ptr(),
            hypers: self.hypers.as_ptr(),
            work: self.work.as_mut_ptr(),
        };
        for step in self.steps {
            match step {
                Compiled::One(d) => self.run_def(*d, &pointers, buffers)?,
                Compiled::Group { .. } => self.run_group(step, buffers)?,
            }
        }
        let mut error = [0i64; 4];
        let mut result = 0f32;
        // SAFETY: as above; the loss function only reads.
        let status = unsafe {
            (self.result)(
                buffers.inputs,
                buffers.dims,
                buffers.hypers,
                buffers.work,
                &mut result,
                error.as_mut_ptr(),
            )
        };
        if status != 0 {
            return Err(out_of_range(loss, error, &self.sizes));
        }
        self.loss = result;
        Ok(result)
    }

    /// Computes definition `d` alone: a matrix product, a reduction in blocks, or rows spread
    /// over threads.
    fn run_def(&self, d: usize, pointers: &[*const u8], buffers: Buffers) -> Result<(), RunError> {
        let loss = self.program;
        let def = &loss.defs[d];
        if let Some(c) = self.products[d] {
            self.multiply(d, c, pointers, buffers);
            return Ok(());
        }
        if let Some((op, f)) = self.partials[d] {
            let value = self.reduce_in_blocks(d, op, f, buffers)?;
            // SAFETY: the offset of a definition lies inside `work` (`Layout`); no block
            // function runs now.
            unsafe { *buffers.work.add(self.layout.offsets[d]) = value };
            return Ok(());
        }
        let rows = def
            .indices
            .first()
            .map_or(1, |&v| self.sizes[loss.vars[v].dim]);
        let work = rows.saturating_mul(compiler::fuse::row_work(loss, d, &self.sizes));
        let chunks = if work >= PARALLEL_WORK {
            rayon::current_num_threads().min(rows).max(1)
        } else {
            1
        };
        let f = self.defs[d].expect("a definition that runs alone has its function");
        // Rows split into equal chunks in order; each element is computed by one thread
        // exactly as it would be alone, so results do not depend on the thread count.
        let run_chunk = |k: usize| -> Result<(), [i64; 4]> {
            let mut unused = 0f32;
            // SAFETY: this call writes only rows of chunk k of definition d (see
            // `call_rows` for the rest).
            unsafe {
                call_rows(
                    f,
                    buffers,
                    &mut unused,
                    rows * k / chunks,
                    rows * (k + 1) / chunks,
                )
            }
        };
        let outcomes: Vec<Result<(), [i64; 4]>> = if chunks == 1 {
            vec![run_chunk(0)]
        } else {
            use rayon::prelude::*;
            (0..chunks).into_par_iter().map(run_chunk).collect()
        };
        if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
            return Err(out_of_range(loss, e, &self.sizes));
        }
        Ok(())
    }

    /// Computes the fused group `members` with its block function `f`: blocks of rows (see
    /// [`BLOCK_WORK`]) in parallel, then each reduction member from its blocks'
    /// accumulators, combined in block order.
    fn run_group(&self, group: &Compiled, buffers: Buffers) -> Result<(), RunError> {
        let Compiled::Group {
            members,
            f,
            reducers,
            locals,
        } = group
        else {
            unreachable!("a group")
        };
        let loss = self.program;
        let row_dim = |d: usize| -> (usize, usize) {
            // (rows, elements per row)
            let def = &loss.defs[d];
            let vars: &[compiler::ir::VarId] = match &def.body {
                compiler::ir::Expr::Reduce { vars, .. } if def.indices.is_empty() => vars,
                _ => &def.indices,
            };
            let sizes: Vec<usize> = vars.iter().map(|&v| self.sizes[loss.vars[v].dim]).collect();
            (sizes[0], sizes[1..].iter().product())
        };
        let rows = row_dim(members[0]).0;
        let work: usize = members
            .iter()
            .map(|&d| compiler::fuse::row_work(loss, d, &self.sizes))
            .fold(0, usize::saturating_add);
        let per_block = (BLOCK_WORK / work.max(1)).clamp(1, BLOCK_TERMS);
        let blocks = rows.div_ceil(per_block).max(1);
        // The scratch a block's rows of the local members take.
        let scratch: usize = locals.iter().map(|&d| per_block * row_dim(d).1).sum();
        let run_block = |k: usize| -> Result<Vec<PartialState>, [i64; 4]> {
            let mut states = vec![PartialState::default(); reducers.len().max(1)];
            let (start, end) = (k * per_block, ((k + 1) * per_block).min(rows));
            let b = buffers;
            let mut error = [0i64; 4];
            let status = SCRATCH.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                if buffer.len() < scratch.max(1) {
                    buffer.resize(scratch.max(1), 0.0);
                }
                // SAFETY: a group's block function writes only rows start..end of its row
                // members, one `PartialState` per reduction member at `result`, and at most
                // `scratch` floats of this thread's scratch buffer (see `call_rows` for the
                // rest); blocks are disjoint row ranges.
                unsafe {
                    f(
                        b.inputs,
                        b.dims,
                        b.hypers,
                        b.work,
                        states.as_mut_ptr().cast(),
                        error.as_mut_ptr(),
                        start as i64,
                        end as i64,
                        buffer.as_mut_ptr(),
                    )
                }
            });
            if status == 0 { Ok(states) } else { Err(error) }
        };
        let outcomes: Vec<Result<Vec<PartialState>, [i64; 4]>> = if blocks == 1 {
            vec![run_block(0)]
        } else {
            use rayon::prelude::*;
            (0..blocks).into_par_iter().map(run_block).collect()
        };
        let parts: Vec<Vec<PartialState>> = outcomes
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| out_of_range(loss, e, &self.sizes))?;
        for (k, &(d, op)) in reducers.iter().enumerate() {
            let column: Vec<PartialState> = parts.iter().map(|p| p[k]).collect();
            let value = combine(op, &column);
            // SAFETY: the offset of a definition lies inside `work`; no block runs now.
            unsafe { *buffers.work.add(self.layout.offsets[d]) = value };
        }
        Ok(())
    }

    /// Computes definition `d`, the matrix product `c`, with `matrixmultiply`'s SGEMM: rows of
    /// the result spread over threads (each element's sum runs in the same order whatever the
    /// split, so results do not depend on the thread count).
    fn multiply(&self, d: usize, c: Contraction, pointers: &[*const u8], buffers: Buffers) {
        let [m, k, n] = c.dims.map(|dim| self.sizes[dim]);
        // SAFETY (for the pointers below): inputs are f32 buffers of their bound sizes and
        // definitions lie inside `work` (`Layout`); `contraction` accepts float matrices only.
        let base = |t: compiler::ir::Tensor| -> *const f32 {
            match t {
                compiler::ir::Tensor::Input(i) => pointers[i].cast(),
                compiler::ir::Tensor::Def(e) => unsafe {
                    buffers.work.add(self.layout.offsets[e]).cast_const()
                },
            }
        };
        // A is indexed (row, kk): stored [m, k], or [k, m] (k first).
        let a = Matrix {
            ptr: base(c.a.tensor),
            rows: if c.a.k_first { 1 } else { k as isize },
            cols: if c.a.k_first { m as isize } else { 1 },
        };
        // B is indexed (kk, col): stored [k, n] (k first) or [n, k].
        let b = Matrix {
            ptr: base(c.b.tensor),
            rows: if c.b.k_first { n as isize } else { 1 },
            cols: if c.b.k_first { 1 } else { k as isize },
        };
        let out = unsafe { buffers.work.add(self.layout.offsets[d]) };
        let threads = if m * n >= PARALLEL_WORK {
            rayon::current_num_threads()
        } else {
            1
        };
        let symmetric = compiler::column::symmetric(self.program, d);
        // SAFETY: A is m×k, B k×n and the product m×n with the strides above, all inside
        // their buffers; the product's definition is written by nothing else now.
        unsafe { gemm::product(a, b, out, [m, k, n], symmetric, threads) }
    }

    /// Computes scalar definition `d` (a reduction `op`) in blocks of its first variable with
    /// the block function `f`, in parallel, and combines the blocks in order.
    fn reduce_in_blocks(
        &self,
        d: usize,
        op: Reducer,
        f: DefFn,
        buffers: Buffers,
    ) -> Result<f32, RunError> {
        let loss = self.program;
        let compiler::ir::Expr::Reduce { vars, .. } = &loss.defs[d].body else {
            unreachable!("partial_reducer accepts reductions only")
        };
        let n = self.sizes[loss.vars[vars[0]].dim];
        let work = compiler::fuse::row_work(loss, d, &self.sizes);
        let per_block = (BLOCK_WORK / work.max(1)).clamp(1, BLOCK_TERMS);
        let blocks = (n / per_block).max(1);
        let run_block = |k: usize| -> Result<PartialState, [i64; 4]> {
            let mut state = PartialState::default();
            let (start, end) = (n * k / blocks, n * (k + 1) / blocks);
            // SAFETY: a block function writes only the `PartialState` its `result` parameter
            // points to (see `call_rows` for the rest).
            unsafe {
                call_rows(
                    f,
                    buffers,
                    (&mut state as *mut PartialState).cast(),
                    start,
                    end,
                )
            }?;
            Ok(state)
        };
        let outcomes: Vec<Result<PartialState, [i64; 4]>> = if blocks == 1 {
            vec![run_block(0)]
        } else {
            use rayon::prelude::*;
            (0..blocks).into_par_iter().map(run_block).collect()
        };
        let parts: Vec<PartialState> = outcomes
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| out_of_range(loss, e, &self.sizes))?;
        Ok(combine(op, &parts))
    }

    /// The values of definition `d` from the last run (row-major f32). A definition that
    /// lived only in a fused group's scratch buffer (never a gradient, a metric or anything
    /// read after its pass) is not kept: its values here are zeros.
    pub fn definition(&self, d: usize) -> &[f32] {
        let (o, n) = (self.layout.offsets[d], self.layout.sizes[d]);
        &self.work[o..o + n]
    }

    /// The loss and metrics of the last run.
    pub fn outputs(&self) -> Outputs {
        let metrics = self
            .program
            .defs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == DefKind::Metric)
            .map(|(k, d)| (d.name.clone(), f64::from(self.definition(k)[0])))
            .collect();
        Outputs {
            loss: f64::from(self.loss),
            metrics,
        }
    }
}

/// Compiles `loss`'s stabilised gradient program and runs it: the CPU counterpart of
/// [`crate::eval_with_grad`].
pub fn eval_with_grad(
    loss: &Loss,
    bound: &Bound,
    wrt: &[InputId],
) -> Result<(Outputs, crate::interp::Gradients), RunError> {
    let compiled = CpuLoss::compile_for_outputs(&gradient_program(loss, wrt))?;
    let outputs: Vec<(InputId, usize)> = compiler::grad::gradient_outputs(compiled.program())
        .into_iter()
        .filter(|(i, _)| wrt.contains(i))
        .collect();
    // The gradients are returned as f64: 8 more bytes per element of those definitions.
    compiled.check_memory(&bound.dims, bound.max_memory, |d| {
        if outputs.iter().any(|&(_, g)| g == d) {
            8
        } else {
            0
        }
    })?;
    let mut prepared = compiled.prepare(bound)?;
    prepared.execute()?;
    let grads = outputs
        .into_iter()
        .map(|(i, d)| {
            let values = prepared
                .definition(d)
                .iter()
                .map(|&x| f64::from(x))
                .collect();
            (i, values)
        })
        .collect();
    Ok((prepared.outputs(), grads))
}

/// True when definition `d` must be a step of its own: matrix products run on GEMM, column
/// sums and transposed definitions with their own loop orders.
fn runs_alone(program: &Loss, d: usize) -> bool {
    compiler::contraction::contraction(program, d).is_some()
        || compiler::column::column_sum(program, d).is_some()
        || compiler::column::transposed(program, d).is_some()
}

/// `program` with its softmaxes shared (`compiler::softmax`), when each lands in the fused
/// pass of its logsumexp and its readers and so lives in scratch (`clif::softmax` fills it
/// and its row scale in the logsumexp's passes); otherwise it would be a tensor of its own in
/// memory. Also the ids of the softmaxes' scale definitions.
fn share_softmax(program: Loss) -> (Loss, Vec<usize>) {
    let (shared, added) = compiler::softmax::share(&program);
    if added.is_empty() {
        return (program, vec![]);
    }
    let schedule = compiler::fuse::schedule(&shared, &|d| runs_alone(&shared, d));
    let locals = compiler::fuse::locals(&shared, &schedule, &|_| false);
    if added.iter().all(|&(p, s)| locals[p] && locals[s]) {
        let scales = added.iter().map(|&(_, s)| s).collect();
        (shared, scales)
    } else {
        (program, vec![])
    }
}

/// The program compiled backends run: the loss made stable, differentiated, simplified, with
/// loop-invariant reductions hoisted.
pub fn gradient_program(loss: &Loss, wrt: &[InputId]) -> Loss {
    let stable = compiler::simplify::simplify(loss);
    let program = if wrt.is_empty() {
        stable
    } else {
        compiler::simplify::simplify(&compiler::grad::gradient(&stable, wrt))
    };
    compiler::hoist::hoist(&program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tensor, limits::DEFAULT_MAX_MEMORY};

    /// A loss of the standard library or the benches, checked.
    fn loss(source: &str) -> Loss {
        compiler::check_source(source).unwrap().losses.remove(0)
    }

    /// The compiled gradient program of `loss` with respect to every float input.
    fn compiled(loss: &Loss) -> CpuLoss {
        let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
        CpuLoss::compile(&gradient_program(loss, &wrt)).unwrap()
    }

    /// Sizes of `program`'s dimensions `B` and `C` (and 1 for any other).
    fn dims(program: &Loss, b: usize, c: usize) -> Vec<usize> {
        program
            .dims
            .iter()
            .map(|d| match d.as_str() {
                "B" => b,
                "C" => c,
                _ => 1,
            })
            .collect()
    }

    #[test]
    fn cross_entropy_is_counted_as_its_logits_and_their_gradient_plus_o_of_b_and_c() {
        // Issue 4: the memory of `lossc bench cross_entropy --size B=8192,C=32000` is the
        // inputs, the gradient and O(B + C): no second [B, C] buffer, nothing counted twice.
        let (b, c) = (8192usize, 32000usize);
        let matrix = (b * c * 4) as f64; // one f32 [B, C] buffer: 1000 MiB
        for source in [
            include_str!("../../stdlib/classification/cross_entropy.loss"),
            include_str!("../../benches/ce_z.loss"),
        ] {
            let compiled = compiled(&loss(source));
            let program = compiled.program();
            let dims = dims(program, b, c);
            let total = compiled.check_memory(&dims, u64::MAX, |_| 0).unwrap();
            let rest = total - 2.0 * matrix;
            assert!(
                (0.0..=64.0 * (b + c) as f64).contains(&rest),
                "{}: {total} bytes counted, {rest} beyond the logits and their gradient",
                program.name
            );
            // The default budget lets it run; eval's f64 copy of the gradient is one more.
            assert!(
                compiled
                    .check_memory(&dims, DEFAULT_MAX_MEMORY, |_| 0)
                    .is_ok()
            );
            let grad = compiler::grad::gradient_outputs(program)[0].1;
            let with_copy = compiled
                .check_memory(&dims, u64::MAX, |d| if d == grad { 8 } else { 0 })
                .unwrap();
            assert_eq!(with_copy - total, 2.0 * matrix, "{}", program.name);
        }
    }

    #[test]
    fn f32_inputs_taken_by_prepare_owned_are_not_copied() {
        let loss = loss(include_str!(
            "../../stdlib/classification/cross_entropy.loss"
        ));
        let compiled = compiled(&loss);
        let (b, c) = (3usize, 5usize);
        let logits: Vec<f32> = (0..b * c).map(|k| (k as f32 * 0.37).sin()).collect();
        let address = logits.as_ptr();
        let bound = crate::Bound {
            dims: dims(compiled.program(), b, c),
            inputs: vec![
                Tensor {
                    shape: vec![b, c],
                    data: Data::F32(logits),
                },
                Tensor {
                    shape: vec![b],
                    data: Data::I64(vec![0, 4, 2]),
                },
            ],
            hypers: loss.hypers.iter().map(|h| h.default).collect(),
            max_memory: DEFAULT_MAX_MEMORY,
        };
        let mut copied = compiled.prepare(&bound).unwrap();
        let want = copied.execute().unwrap();
        let mut owned = compiled.prepare_owned(bound).unwrap();
        assert_eq!(owned.inputs[0].pointer(), address.cast::<u8>());
        assert_eq!(owned.execute().unwrap().to_bits(), want.to_bits());
    }
}
