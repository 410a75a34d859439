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
    /// Dimension sizes, e.g. `B=4096,C=1000`.
    #[arg(long, value_name = "DIM=SIZE,..")]
    size: String,
    /// Where to run: native code (Cranelift JIT), WGSL compute shaders on any wgpu adapter
    /// (times include uploading the inputs and reading back the loss and gradients), or the
    /// f64 interpreter.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "interp", "gpu"])]
    backend: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 9)]
    reps: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> Result<String, UserError> {
    let err = |e: &dyn std::fmt::Display| UserError(format!("error: {e}"));
    let sizes = super::eval::parse_sizes(&args.size)
        .map_err(|e| UserError(format!("error: --size: {e}")))?;
    let src = source::load(&args.file)?;
    let program = source::check(&src)?;
    let loss = source::select(&program, &src, args.loss.as_deref())?;
    let inputs = runtime::random::random_inputs(loss, &sizes.0, 0).map_err(|e| err(&e))?;
    let bound = runtime::bind(loss, &inputs, &[]).map_err(|e| err(&e))?;
    let wrt = compiler::grad::resolve_wrt(loss, &[]).map_err(|e| err(&e))?;
    let start = Instant::now();
    let compiled = if args.backend == "cpu" {
        let program = runtime::cpu::gradient_program(loss, &wrt);
        Some(runtime::cpu::CpuLoss::compile(&program).map_err(|e| err(&e))?)
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
    let interp_program = compiler::grad::gradient(loss, &wrt);
    let mut times = vec![];
    let mut value = 0.0;
    for _ in 0..args.reps.max(1) + 1 {
        let t = Instant::now();
        value = match (&compiled, &gpu) {
            (Some(c), _) => c.run(&bound).map_err(|e| err(&e))?.0.loss,
            // Upload, every kernel, and reading back the loss, metrics and gradients.
            (_, Some((g, grads))) => g.run(&bound, grads).map_err(|e| err(&e))?.0.loss,
            _ => {
                runtime::eval_all(&interp_program, &bound)
                    .map_err(|e| err(&e))?
                    .0
                    .loss
            }
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0); // the first call warms caches and pages
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    if args.json {
        return Ok(format!(
            "{{\"loss\": {:?}, \"backend\": {:?}, \"size\": {:?}, \"compile_ms\": {compile_ms:.3}, \"median_ms\": {median:.3}, \"min_ms\": {:.3}, \"reps\": {}, \"value\": {value}}}\n",
            loss.name,
            args.backend,
            args.size,
            times[0],
            times.len()
        ));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} --size {} on {} (forward + gradient of every float input)",
        loss.name, args.size, args.backend
    );
    if gpu.is_some() {
        let adapter = runtime::gpu::adapter_description().map_err(|e| err(&e))?;
        let _ = writeln!(s, "  adapter      {adapter}");
    }
    let _ = writeln!(s, "  compile      {compile_ms:.3} ms");
    let _ = writeln!(
        s,
        "  median       {median:.3} ms over {} runs (min {:.3} ms)",
        times.len(),
        times[0]
    );
    let _ = writeln!(s, "  loss         {value}");
    Ok(s)
}
