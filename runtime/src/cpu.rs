//! The CPU backend: a loss compiled once by Cranelift's JIT (`compiler::clif`), run many times.
//!
//! Inputs are checked against the loss's signature by [`crate::bind`] before compiled code
//! runs; every gather and literal index is checked by the compiled code itself, which stops
//! with an error naming the tensor, the position and the value instead of reading outside a
//! buffer. Values are f32; results come back as f64 for comparison with the interpreter.

use crate::bind::Bound;
use crate::{Data, Outputs, RunError};
use compiler::clif::{self, Layout};
use compiler::ir::{DType, DefKind, InputId, Loss};
use cranelift_jit::{JITBuilder, JITModule};

/// A loss compiled to native code: one function per definition (over a range of its outermost
/// index, so rows can be spread over threads) and one for the loss.
pub struct CpuLoss {
    /// The program compiled (for a gradient program: with its `grad_<input>` definitions).
    program: Loss,
    /// Keeps the code alive.
    _module: JITModule,
    defs: Vec<DefFn>,
    result: ResultFn,
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

/// Definitions with at least this many elements are split over threads.
const PARALLEL_ELEMENTS: usize = 1 << 14;

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

extern "C" fn lossc_expf(x: f32) -> f32 {
    x.exp()
}
extern "C" fn lossc_logf(x: f32) -> f32 {
    x.ln()
}
extern "C" fn lossc_log1pf(x: f32) -> f32 {
    x.ln_1p()
}
extern "C" fn lossc_expm1f(x: f32) -> f32 {
    x.exp_m1()
}
extern "C" fn lossc_tanhf(x: f32) -> f32 {
    x.tanh()
}
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
    /// Compiles `program` (a loss, or a gradient program from `compiler::grad`).
    pub fn compile(program: &Loss) -> Result<CpuLoss, RunError> {
        crate::limits::check_code_size(program)?;
        let isa = cranelift_native::builder()
            .map_err(|e| {
                RunError::new(format!(
                    "the CPU backend does not support this machine: {e}"
                ))
            })?
            .finish(clif::flags(false))
            .map_err(|e| RunError::new(format!("cranelift: {e}")))?;
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let symbols: [(&str, *const u8); 8] = [
            ("expf", lossc_expf as *const u8),
            ("logf", lossc_logf as *const u8),
            ("log1pf", lossc_log1pf as *const u8),
            ("expm1f", lossc_expm1f as *const u8),
            ("tanhf", lossc_tanhf as *const u8),
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
        let mut def_ids = vec![];
        for d in 0..program.defs.len() {
            let id = clif::lower_part(program, &mut module, &format!("def{d}"), clif::Part::Def(d))
                .map_err(cranelift)?;
            def_ids.push(id);
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
            .map(|id| unsafe {
                std::mem::transmute::<*const u8, DefFn>(module.get_finalized_function(id))
            })
            .collect();
        // SAFETY: as above.
        let result = unsafe {
            std::mem::transmute::<*const u8, ResultFn>(module.get_finalized_function(result_id))
        };
        Ok(CpuLoss {
            program: program.clone(),
            _module: module,
            defs,
            result,
        })
    }

    /// The compiled program.
    pub fn program(&self) -> &Loss {
        &self.program
    }

    /// Runs on bound inputs: the outputs and every definition's values (as f64).
    pub fn run(&self, bound: &Bound) -> Result<(Outputs, Vec<Vec<f64>>), RunError> {
        let loss = &self.program;
        crate::limits::check_memory_for(loss, bound, 4, 12)?;
        // Inputs in the element types the code reads: f32, i32, u8.
        let mut buffers: Vec<Vec<u8>> = vec![];
        for (input, t) in loss.inputs.iter().zip(&bound.inputs) {
            let bytes: Vec<u8> = match (&t.data, input.dtype) {
                (Data::F64(v), DType::Float) => {
                    v.iter().flat_map(|&x| (x as f32).to_ne_bytes()).collect()
                }
                (Data::I64(v), DType::Int) => {
                    let mut out = Vec::with_capacity(v.len() * 4);
                    for (k, &x) in v.iter().enumerate() {
                        let x = i32::try_from(x).map_err(|_| {
                            RunError::new(format!(
                                "input `{}` holds {x} at {:?}, beyond the 32-bit integers the CPU backend takes",
                                input.name,
                                crate::bind::position(&t.shape, k)
                            ))
                        })?;
                        out.extend(x.to_ne_bytes());
                    }
                    out
                }
                (Data::Bool(v), DType::Bool) => v.iter().map(|&b| u8::from(b)).collect(),
                (data, _) => unreachable!(
                    "bind converts every input to its type, not {}",
                    data.type_name()
                ),
            };
            // Keep at least one element so every pointer is valid.
            buffers.push(if bytes.is_empty() { vec![0; 8] } else { bytes });
        }
        let pointers: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
        let dims: Vec<i64> = bound.dims.iter().map(|&d| d as i64).collect();
        let hypers: Vec<f32> = bound.hypers.iter().map(|&h| h as f32).collect();
        let layout = Layout::new(loss, &bound.dims);
        let mut work = vec![0f32; layout.total.max(1)];
        let mut result = 0f32;
        let buffers = Buffers {
            inputs: pointers.as_ptr(),
            dims: dims.as_ptr(),
            hypers: hypers.as_ptr(),
            work: work.as_mut_ptr(),
        };
        for (d, def) in loss.defs.iter().enumerate() {
            let rows = def
                .indices
                .first()
                .map_or(1, |&v| bound.dims[loss.vars[v].dim]);
            let chunks = if layout.sizes[d] >= PARALLEL_ELEMENTS {
                rayon::current_num_threads().min(rows).max(1)
            } else {
                1
            };
            let f = self.defs[d];
            // Rows split into equal chunks in order; each element is computed by one thread
            // exactly as it would be alone, so results do not depend on the thread count.
            let run_chunk = |k: usize| -> [i64; 5] {
                let (start, end) = (rows * k / chunks, rows * (k + 1) / chunks);
                let mut error = [0i64; 4];
                let mut unused = 0f32;
                let b = buffers;
                // SAFETY: the buffers match the signature the code was compiled for (one
                // pointer per input in its declared element type, one size per dimension, one
                // value per hyperparameter, `layout.total` floats of work); every index the
                // code computes is a loop variable below its dimension or checked against it;
                // this call writes only rows start..end of definition d.
                let status = unsafe {
                    f(
                        b.inputs,
                        b.dims,
                        b.hypers,
                        b.work,
                        &mut unused,
                        error.as_mut_ptr(),
                        start as i64,
                        end as i64,
                    )
                };
                [status, error[0], error[1], error[2], error[3]]
            };
            let outcomes: Vec<[i64; 5]> = if chunks == 1 {
                vec![run_chunk(0)]
            } else {
                use rayon::prelude::*;
                (0..chunks).into_par_iter().map(run_chunk).collect()
            };
            if let Some(o) = outcomes.iter().find(|o| o[0] != 0) {
                return Err(self.out_of_range([o[1], o[2], o[3], o[4]], bound));
            }
        }
        let mut error = [0i64; 4];
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
            return Err(self.out_of_range(error, bound));
        }
        let defs: Vec<Vec<f64>> = layout
            .offsets
            .iter()
            .zip(&layout.sizes)
            .map(|(&o, &n)| work[o..o + n].iter().map(|&x| f64::from(x)).collect())
            .collect();
        let metrics = loss
            .defs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == DefKind::Metric)
            .map(|(k, d)| (d.name.clone(), defs[k][0]))
            .collect();
        Ok((
            Outputs {
                loss: f64::from(result),
                metrics,
            },
            defs,
        ))
    }

    fn out_of_range(&self, error: [i64; 4], bound: &Bound) -> RunError {
        let loss = &self.program;
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
            bound.dims[dim],
            error[2]
        ))
    }
}

/// Compiles `loss`'s stabilised gradient program and runs it: the CPU counterpart of
/// [`crate::eval_with_grad`].
pub fn eval_with_grad(
    loss: &Loss,
    bound: &Bound,
    wrt: &[InputId],
) -> Result<(Outputs, crate::interp::Gradients), RunError> {
    let compiled = CpuLoss::compile(&gradient_program(loss, wrt))?;
    let (out, defs) = compiled.run(bound)?;
    let grads = compiler::grad::gradient_outputs(compiled.program())
        .into_iter()
        .filter(|(i, _)| wrt.contains(i))
        .map(|(i, d)| (i, defs[d].clone()))
        .collect();
    Ok((out, grads))
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
