//! `lossc bench FILE --size B=..`: times forward + backward on seeded random inputs.

use crate::source::{self, UserError};
use clap::Args;
use std::fmt::Write;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A `.loss` file, or the name of a stdlib loss.
    file: String,
    /// The loss to time, when the file defines several.
    #[arg(long)]
    loss: Option<String>,
    /// Dimension sizes of seeded random inputs, e.g. `B=4096,C=1000`.
    #[arg(long, value_name = "DIM=SIZE,..", required_unless_present = "inputs")]
    size: Option<String>,
    /// Time on these inputs instead (`.json`, `.npz` or `.safetensors`, as for `lossc eval`).
    #[arg(long, value_name = "PATH", conflicts_with = "size")]
    inputs: Option<std::path::PathBuf>,
    /// Hyperparameter values, e.g. `temperature=0.1`.
    #[arg(long, value_name = "NAME=VALUE,..")]
    set: Option<String>,
    /// Where to run: native code (Cranelift JIT), WGSL compute shaders on any wgpu adapter
    /// (times include uploading the inputs and reading back the loss and gradients), or the
    /// f64 interpreter.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "interp", "gpu"])]
    backend: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 9)]
    reps: usize,
    /// Untimed calls before the timed ones, as many as `benches/peers.py` gives each framework
    /// (its first call and two warm-ups): the first faults pages in and fills caches, and the
    /// next few still ran up to 10% slower on the 2-vCPU benchmark machine.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads for the CPU backend (default: rayon's, one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The most memory the run may take for its inputs and definitions: bytes, or with a
    /// suffix K, M, G, T (powers of 1024), e.g. `8G` [default: 4G].
    #[arg(long, value_name = "BYTES", value_parser = runtime::limits::parse_bytes)]
    max_memory: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<String, UserError> {
    let err = |e: &dyn std::fmt::Display| UserError(format!("error: {e}"));
    let src = source::load(&args.file)?;
    let program = source::check(&src)?;
    let loss = source::select(&program, &src, args.loss.as_deref())?;
    let budget = args
        .max_memory
        .unwrap_or(runtime::limits::DEFAULT_MAX_MEMORY);
    // The compiled backends compute in f32: their float inputs are read or drawn in f32 and
    // handed over without an f64 copy.
    let f32_inputs = args.backend != "interp";
    let inputs = match (&args.inputs, &args.size) {
        (Some(path), _) => {
            let floats = if f32_inputs {
                runtime::data::Floats::F32
            } else {
                runtime::data::Floats::F64
            };
            runtime::data::read_tensors_as(path, floats)
                .map_err(|e| UserError(format!("error: {e}")))?
        }
        (None, Some(size)) => {
            let sizes = super::eval::parse_sizes(size)
                .map_err(|e| UserError(format!("error: --size: {e}")))?;
            let bytes = if f32_inputs { 4 } else { 8 };
            runtime::limits::check_random_inputs_as(loss, &sizes.0, budget, bytes)
                .map_err(|e| err(&e))?;
            if f32_inputs {
                runtime::random::random_inputs_f32(loss, &sizes.0, 0)
            } else {
                runtime::random::random_inputs(loss, &sizes.0, 0)
            }
            .map_err(|e| err(&e))?
        }
        (None, None) => unreachable!("clap requires --size or --inputs"),
    };
    let set = match &args.set {
        Some(s) => crate::assign::values(s).map_err(|e| UserError(format!("error: --set: {e}")))?,
        None => vec![],
    };
    // Moved, not copied: the run holds its inputs once.
    let mut bound = runtime::bind_owned(loss, inputs, &set).map_err(|e| err(&e))?;
    bound.max_memory = budget;
    let size = loss
        .dims
        .iter()
        .zip(&bound.dims)
        .map(|(d, n)| format!("{d}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    let wrt = compiler::grad::resolve_wrt(loss, &[]).map_err(|e| err(&e))?;
    // The traffic no implementation can avoid: every input read once, every gradient written once.
    let elements = |shape: &[usize]| shape.iter().product::<usize>();
    let input_bytes: usize = loss
        .inputs
        .iter()
        .zip(&bound.inputs)
        .map(|(i, t)| {
            elements(&t.shape)
                * if i.dtype == compiler::ir::DType::Bool {
                    1
                } else {
                    4
                }
        })
        .sum();
    let grad_bytes: usize = wrt
        .iter()
        .map(|&i| elements(&bound.inputs[i].shape) * 4)
        .sum();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .map_err(|e| err(&e))?;
    let threads = pool.current_num_threads();
    let start = Instant::now();
    let compiled = if args.backend == "cpu" {
        let program = runtime::cpu::gradient_program(loss, &wrt);
        Some(runtime::cpu::CpuLoss::compile_for_outputs(&program).map_err(|e| err(&e))?)
    } else {
        None
    };
    let gpu = if args.backend == "gpu" {
        let program = runtime::cpu::gradient_program(loss, &wrt);
        let g = runtime::gpu::GpuLoss::compile(&program).map_err(|e| err(&e))?;
        let grads = compiler::grad::gradient_outputs(g.program())
            .into_iter()
            .map(|(_, d)| d)
            .collect::<Vec<_>>();
        Some((g, grads))
    } else {
        None
    };
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    // Only the interpreter runs the plain gradient program.
    let interp_program =
        (compiled.is_none() && gpu.is_none()).then(|| compiler::grad::gradient(loss, &wrt));
    // The compiled code takes the bound inputs (f32 ones without a copy) and computes the
    // gradients in its workspace, so the process holds what a framework would: the inputs,
    // the gradients, the program's other (here O(B + C)) definitions.
    let (mut prepared, bound) = match &compiled {
        Some(c) => (Some(c.prepare_owned(bound).map_err(|e| err(&e))?), None),
        None => (None, Some(bound)),
    };
    let mut times = vec![];
    let mut value = 0.0;
    for _ in 0..args.reps.max(1) + args.warmup {
        let t = Instant::now();
        value = match (&mut prepared, &gpu) {
            (Some(p), _) => f64::from(pool.install(|| p.execute()).map_err(|e| err(&e))?),
            // Upload, every kernel, and reading back the loss, metrics and gradients.
            (_, Some((g, grads))) => {
                g.run(bound.as_ref().expect("kept for the GPU"), grads)
                    .map_err(|e| err(&e))?
                    .0
                    .loss
            }
            _ => {
                runtime::eval_all(
                    interp_program.as_ref().expect("built for the interpreter"),
                    bound.as_ref().expect("kept for the interpreter"),
                )
                .map_err(|e| err(&e))?
                .0
                .loss
            }
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.drain(..args.warmup); // untimed: see `BenchArgs::warmup`
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    let gb_per_s = (input_bytes + grad_bytes) as f64 / (median * 1e-3) / 1e9;
    if args.json {
        return Ok(format!(
            "{{\"loss\": {:?}, \"backend\": {:?}, \"size\": {:?}, \"threads\": {threads}, \"compile_ms\": {compile_ms:.3}, \"median_ms\": {median:.3}, \"min_ms\": {min:.3}, \"max_ms\": {max:.3}, \"gb_per_s\": {gb_per_s:.3}, \"reps\": {}, \"value\": {value}}}\n",
            loss.name,
            args.backend,
            size,
            times.len()
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} --size {} on {} with {threads} threads (forward + gradient of every float input)",
        loss.name, size, args.backend
    );
    if gpu.is_some() {
        let adapter = runtime::gpu::adapter_description().map_err(|e| err(&e))?;
        let _ = writeln!(s, "  adapter      {adapter}");
    }
    let _ = writeln!(s, "  compile      {compile_ms:.3} ms");
    let _ = writeln!(
        s,
        "  median       {median:.3} ms over {} runs (min {min:.3} ms, max {max:.3} ms)",
        times.len(),
    );
    let _ = writeln!(
        s,
        "  throughput   {gb_per_s:.2} GB/s (inputs read once + gradients written once)"
    );
    let _ = writeln!(s, "  loss         {value}");
    Ok(s)
}
