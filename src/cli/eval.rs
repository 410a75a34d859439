//! `lossc eval`: bind data (a file, or seeded random inputs) to a loss and run it.

use crate::show::{number, summary};
use crate::source::{self, UserError};
use clap::Args;
use runtime::data::{self, TensorMap};
use runtime::{Tensor, interp};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("data").required(true).args(["inputs", "random"])))]
pub struct EvalArgs {
    /// A `.loss` file, or the name of a stdlib loss.
    file: String,
    /// The loss to run, when the file defines several.
    #[arg(long)]
    loss: Option<String>,
    /// Input data: a .json, .npz or .safetensors file.
    #[arg(long, value_name = "DATA")]
    inputs: Option<PathBuf>,
    /// Seeded random inputs with these dimension sizes, e.g. `B=8,C=10`.
    #[arg(long, value_name = "DIM=SIZE,..", value_parser = parse_sizes)]
    random: Option<Sizes>,
    /// Seed for --random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Override hyperparameters: `--set beta=0.2 --set gamma=1` or `--set beta=0.2,gamma=1`.
    #[arg(long = "set", value_name = "NAME=VALUE,..", value_parser = parse_sets)]
    set: Vec<Sets>,
    /// Where to compute: native f32 code (Cranelift JIT), the f64 reference interpreter, or
    /// f32 WGSL compute shaders on any wgpu adapter.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "interp", "gpu"])]
    backend: String,
    /// Write the loss and metrics to a .json, .npz or .safetensors file.
    #[arg(long, value_name = "OUT")]
    out: Option<PathBuf>,
    /// Print one flat JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// The float inputs to differentiate with respect to (default: all of them).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "INPUT,..",
        conflicts_with = "no_grad"
    )]
    wrt: Vec<String>,
    /// Compute only the loss and metrics.
    #[arg(long)]
    no_grad: bool,
    /// The most memory the run may take for its inputs and definitions: bytes, or with a
    /// suffix K, M, G, T (powers of 1024), e.g. `512M` [default: 4G].
    #[arg(long, value_name = "BYTES", value_parser = runtime::limits::parse_bytes)]
    max_memory: Option<u64>,
}

/// Dimension sizes for `--random`.
#[derive(Debug, Clone)]
pub(super) struct Sizes(pub(super) Vec<(String, usize)>);

/// Hyperparameter values from one `--set`.
#[derive(Debug, Clone)]
struct Sets(Vec<(String, f64)>);

/// Parses `B=8,C=10`.
pub(super) fn parse_sizes(s: &str) -> Result<Sizes, String> {
    crate::assign::sizes(s).map(Sizes)
}

/// Parses `beta=0.2,gamma=1`.
fn parse_sets(s: &str) -> Result<Sets, String> {
    crate::assign::values(s).map(Sets)
}

pub fn run(args: EvalArgs) -> Result<String, UserError> {
    let src = source::load(&args.file)?;
    let program = source::check(&src)?;
    let loss = source::select(&program, &src, args.loss.as_deref())?;
    let tensors = match (&args.inputs, &args.random) {
        (Some(path), _) => {
            data::read_tensors(path).map_err(|e| UserError(format!("error: {e}")))?
        }
        (None, Some(sizes)) => {
            let budget = args
                .max_memory
                .unwrap_or(runtime::limits::DEFAULT_MAX_MEMORY);
            runtime::limits::check_random_inputs(loss, &sizes.0, budget)
                .map_err(|e| UserError(format!("error: {e}")))?;
            runtime::random::random_inputs(loss, &sizes.0, args.seed)
                .map_err(|e| UserError(format!("error: {e}")))?
        }
        (None, None) => unreachable!("clap requires --inputs or --random"),
    };
    let set: Vec<(String, f64)> = args.set.into_iter().flat_map(|s| s.0).collect();
    let mut bound =
        runtime::bind(loss, &tensors, &set).map_err(|e| UserError(format!("error: {e}")))?;
    if let Some(bytes) = args.max_memory {
        bound.max_memory = bytes;
    }
    let wrt = if args.no_grad {
        vec![]
    } else {
        compiler::grad::resolve_wrt(loss, &args.wrt)
            .map_err(|e| UserError(format!("error: {e}")))?
    };
    let run = match args.backend.as_str() {
        "cpu" => runtime::cpu::eval_with_grad,
        "gpu" => runtime::gpu::eval_with_grad,
        _ => interp::eval_with_grad,
    };
    let (outputs, grads) = run(loss, &bound, &wrt).map_err(|e| UserError(format!("error: {e}")))?;

    let mut results = TensorMap::new();
    results.insert("loss".to_string(), Tensor::scalar(outputs.loss));
    for (name, v) in &outputs.metrics {
        results.insert(name.clone(), Tensor::scalar(*v));
    }
    let mut grad_rows = vec![];
    for (i, g) in grads {
        let name = format!("grad_{}", loss.inputs[i].name);
        let shape = bound.inputs[i].shape.clone();
        grad_rows.push((name.clone(), shape.clone(), summary(&g)));
        results.insert(
            name,
            Tensor {
                shape,
                data: runtime::Data::F64(g),
            },
        );
    }
    if let Some(out) = &args.out {
        data::write_tensors(out, &results).map_err(|e| UserError(format!("error: {e}")))?;
    }
    if args.json {
        return Ok(format!("{}\n", data::to_json_string(&results)));
    }
    let mut ordered = vec![("loss".to_string(), outputs.loss)];
    ordered.extend(outputs.metrics);
    let width = ordered
        .iter()
        .map(|(n, _)| n.len())
        .chain(grad_rows.iter().map(|(n, _, _)| n.len()))
        .max()
        .unwrap_or(4);
    let mut s = String::new();
    for (name, v) in ordered {
        let _ = writeln!(s, "{name:width$}  {}", number(v));
    }
    for (name, shape, values) in grad_rows {
        let _ = writeln!(s, "{name:width$}  {shape:?} {values}");
    }
    Ok(s)
}
