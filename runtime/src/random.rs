//! Seeded random inputs for `--random B=8,C=10 --seed N`: floats from a standard normal
//! (inputs named like log-probabilities, `*_logps`, from `-0.05 - |N(0, 1)|`),
//! int tensors that index a dimension drawn in range, other int tensors (labels) drawn from a
//! few classes with every class appearing at least twice when the size allows, so that both
//! positive and negative pairs occur; booleans fair coin flips.

use crate::{Data, RunError, Tensor};
use compiler::ir::{DType, Expr, Loss, Tensor as TensorRef};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;

/// The most elements `--random` draws for one input held in f64 (as a data file read in f64 may
/// hold).
pub const MAX_RANDOM_ELEMENTS: usize = 1 << 26;

/// The most elements [`random_inputs_f32`] draws for one input (as a data file read for a
/// compiled backend may hold: [`crate::data::MAX_F32_ELEMENTS`]).
pub const MAX_RANDOM_F32_ELEMENTS: usize = 1 << 31;

/// Makes inputs for `loss` with the given dimension sizes.
pub fn random_inputs(
    loss: &Loss,
    sizes: &[(String, usize)],
    seed: u64,
) -> Result<BTreeMap<String, Tensor>, RunError> {
    draw(loss, sizes, seed, false)
}

/// [`random_inputs`] with float inputs kept in f32 ([`Data::F32`]: the same draws, rounded),
/// for a compiled backend, which then needs no copy of them (`lossc bench`).
pub fn random_inputs_f32(
    loss: &Loss,
    sizes: &[(String, usize)],
    seed: u64,
) -> Result<BTreeMap<String, Tensor>, RunError> {
    draw(loss, sizes, seed, true)
}

/// Draws the inputs, floats in f32 when `f32` holds.
fn draw(
    loss: &Loss,
    sizes: &[(String, usize)],
    seed: u64,
    f32: bool,
) -> Result<BTreeMap<String, Tensor>, RunError> {
    let cap = if f32 {
        MAX_RANDOM_F32_ELEMENTS
    } else {
        MAX_RANDOM_ELEMENTS
    };
    for (name, _) in sizes {
        if !loss.dims.contains(name) {
            return Err(RunError::new(format!(
                "loss `{}` has no dimension `{name}` (its dimensions: {})",
                loss.name,
                dims_list(loss)
            )));
        }
    }
    let mut dims = vec![];
    for d in &loss.dims {
        match sizes.iter().find(|(n, _)| n == d) {
            Some((_, s)) => dims.push(*s),
            None => {
                return Err(RunError::new(format!(
                    "--random needs a size for dimension `{d}` (dimensions: {}; e.g. --random {})",
                    dims_list(loss),
                    loss.dims
                        .iter()
                        .map(|d| format!("{d}=4"))
                        .collect::<Vec<_>>()
                        .join(",")
                )));
            }
        }
    }
    let ranges = index_ranges(loss);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for (id, input) in loss.inputs.iter().enumerate() {
        let shape: Vec<usize> = input.shape.iter().map(|&d| dims[d]).collect();
        let n = shape
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .filter(|&n| n <= cap);
        let Some(n) = n else {
            return Err(RunError::new(format!(
                "input `{}` would be too large: shape {shape:?}",
                input.name
            )));
        };
        let data = match input.dtype {
            DType::Float => {
                let log_probability = is_log_probability(&input.name);
                let mut value = || -> f64 {
                    let x: f64 = StandardNormal.sample(&mut rng);
                    if log_probability { -0.05 - x.abs() } else { x }
                };
                if f32 {
                    let mut v = crate::pages::with_capacity(n);
                    v.extend((0..n).map(|_| value() as f32));
                    Data::F32(v)
                } else {
                    Data::F64((0..n).map(|_| value()).collect())
                }
            }
            DType::Bool => Data::Bool((0..n).map(|_| rng.random_bool(0.5)).collect()),
            DType::Int => match ranges[id].iter().map(|&d| dims[d]).min() {
                Some(range) => Data::I64(
                    (0..n)
                        .map(|_| rng.random_range(0..range.max(1)) as i64)
                        .collect(),
                ),
                None => Data::I64(labels(n, &mut rng)),
            },
        };
        out.insert(input.name.clone(), Tensor { shape, data });
    }
    Ok(out)
}

/// Inputs named like log-probabilities (`*logps`, `*logp`, `*logprob*`) are drawn below 0, as
/// log-probabilities are, so losses such as ORPO's `log1mexp(logp)` are defined on them.
fn is_log_probability(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with("logps") || n.ends_with("logp") || n.contains("logprob")
}

fn dims_list(loss: &Loss) -> String {
    if loss.dims.is_empty() {
        "none".into()
    } else {
        loss.dims.join(", ")
    }
}

/// Labels from `k = clamp(n / 2, 2, 4)` classes: each class `n / k` times or more, shuffled.
fn labels(n: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
    let k = (n / 2).clamp(2, 4);
    let mut v: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

/// For each input, the dimensions its values index when it is used as a gather.
fn index_ranges(loss: &Loss) -> Vec<Vec<usize>> {
    let mut ranges = vec![vec![]; loss.inputs.len()];
    let mut visit = |e: &Expr| {
        if let Expr::Read { tensor, indices } = e {
            let shape = loss.shape_of(*tensor);
            for (ix, &dim) in indices.iter().zip(&shape) {
                if let Some(i) = gathered_input(loss, ix, 0) {
                    ranges[i].push(dim);
                }
            }
        }
    };
    for d in &loss.defs {
        d.body.visit(&mut visit);
    }
    loss.result.visit(&mut visit);
    ranges
}

/// The int input whose values an index expression passes on: a read of the input itself, or
/// of a `let` whose body is such a read (`let t[b] = y[b]` then `x[b, t[b]]`).
fn gathered_input(loss: &Loss, ix: &Expr, depth: usize) -> Option<usize> {
    match ix {
        Expr::Read {
            tensor: TensorRef::Input(i),
            ..
        } => Some(*i),
        Expr::Read {
            tensor: TensorRef::Def(d),
            ..
        } if depth < 16 => gathered_input(loss, &loss.defs[*d].body, depth + 1),
        _ => None,
    }
}
