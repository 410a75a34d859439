//! Binding a loss to actual data: every input present with the declared type and rank, every
//! dimension one size everywhere, hyperparameters set from their defaults and overrides.

use crate::{Data, RunError, Tensor};
use compiler::ir::{DType, Loss};
use std::collections::BTreeMap;

/// A loss's inputs checked against its signature: sizes of the dimensions, tensors in
/// declaration order (converted to the declared element type) and hyperparameter values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Size of each dimension, indexed by `DimId`.
    pub dims: Vec<usize>,
    /// The inputs, indexed by `InputId`.
    pub inputs: Vec<Tensor>,
    /// Hyperparameter values, indexed by `HyperId`.
    pub hypers: Vec<f64>,
    /// The most bytes a run may allocate for its inputs and definitions
    /// ([`crate::limits::DEFAULT_MAX_MEMORY`] unless the caller sets it: `--max-memory`).
    pub max_memory: u64,
}

/// Checks `tensors` against the loss's inputs and applies hyperparameter overrides (the
/// tensors are copied; [`bind_owned`] moves them instead).
pub fn bind(
    loss: &Loss,
    tensors: &BTreeMap<String, Tensor>,
    set: &[(String, f64)],
) -> Result<Bound, RunError> {
    bind_owned(loss, tensors.clone(), set)
}

/// [`bind`], taking the tensors: an input already of its declared element type is moved into
/// the [`Bound`], not copied (so a 1 GiB input takes 1 GiB, not 2).
pub fn bind_owned(
    loss: &Loss,
    mut tensors: BTreeMap<String, Tensor>,
    set: &[(String, f64)],
) -> Result<Bound, RunError> {
    let expected: Vec<String> = loss.inputs.iter().map(|i| signature(loss, i)).collect();
    for name in tensors.keys() {
        if loss.input(name).is_none() {
            return Err(RunError::new(format!(
                "unexpected input `{name}`: loss `{}` takes {}",
                loss.name,
                expected.join(", ")
            )));
        }
    }
    let mut dims: Vec<Option<(usize, String)>> = vec![None; loss.dims.len()];
    let mut inputs = vec![];
    for (input, sig) in loss.inputs.iter().zip(&expected) {
        let Some(t) = tensors.remove(&input.name) else {
            return Err(RunError::new(format!(
                "missing input `{}` ({sig})",
                input.name
            )));
        };
        if t.shape.len() != input.shape.len() {
            return Err(RunError::new(format!(
                "input `{}` has {} dimension{} (shape {:?}) but the loss declares {sig}",
                input.name,
                t.shape.len(),
                if t.shape.len() == 1 { "" } else { "s" },
                t.shape
            )));
        }
        for (&d, &size) in input.shape.iter().zip(&t.shape) {
            match &dims[d] {
                None => dims[d] = Some((size, input.name.clone())),
                Some((s, first)) if *s != size => {
                    return Err(RunError::new(format!(
                        "dimension `{}` is {s} in input `{first}` but {size} in input `{}`",
                        loss.dims[d], input.name
                    )));
                }
                Some(_) => {}
            }
        }
        inputs.push(convert(&input.name, input.dtype, t)?);
    }
    let mut hypers: Vec<f64> = loss.hypers.iter().map(|h| h.default).collect();
    for (name, value) in set {
        match loss.hypers.iter().position(|h| &h.name == name) {
            Some(i) => hypers[i] = *value,
            None => {
                let names: Vec<&str> = loss.hypers.iter().map(|h| h.name.as_str()).collect();
                let known = if names.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("its hyperparameters are {}", names.join(", "))
                };
                return Err(RunError::new(format!(
                    "loss `{}` has no hyperparameter `{name}`: {known}",
                    loss.name
                )));
            }
        }
    }
    Ok(Bound {
        dims: dims.into_iter().map(|d| d.map_or(0, |(s, _)| s)).collect(),
        inputs,
        hypers,
        max_memory: crate::limits::DEFAULT_MAX_MEMORY,
    })
}

/// `name: int[B, C]`, for messages.
pub fn signature(loss: &Loss, input: &compiler::ir::Input) -> String {
    let dims: Vec<&str> = input.shape.iter().map(|&d| loss.dims[d].as_str()).collect();
    let ty = match input.dtype {
        DType::Float => "",
        DType::Int => "int",
        DType::Bool => "bool",
    };
    format!("{}: {ty}[{}]", input.name, dims.join(", "))
}

/// Row-major position of flat index `flat` in `shape`, for messages.
pub fn position(shape: &[usize], mut flat: usize) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for (p, &s) in pos.iter_mut().zip(shape).rev() {
        if s > 0 {
            *p = flat % s;
            flat /= s;
        }
    }
    pos
}

/// The largest integer magnitude an f64 holds exactly (2^53).
const EXACT_INTS: u64 = 1 << 53;

/// Converts a tensor to the declared element type, or explains why it cannot be. Floats stay
/// in the precision they have (f64, or f32 kept for a compiled backend).
fn convert(name: &str, dtype: DType, t: Tensor) -> Result<Tensor, RunError> {
    if let Data::I64(v) = &t.data
        && let Some(k) = v.iter().position(|x| x.unsigned_abs() > EXACT_INTS)
    {
        return Err(RunError::new(format!(
            "input `{name}` holds {} at {:?}: lossc represents integers exactly only up to 2^53",
            v[k],
            position(&t.shape, k)
        )));
    }
    let Tensor { shape, data } = t;
    let data = match (dtype, data) {
        (DType::Float, data @ (Data::F64(_) | Data::F32(_)))
        | (DType::Int, data @ Data::I64(_))
        | (DType::Bool, data @ Data::Bool(_)) => data,
        (DType::Float, Data::I64(v)) => Data::F64(v.iter().map(|&x| x as f64).collect()),
        (DType::Int, Data::F64(v)) => Data::I64(float_ints(name, &shape, v.into_iter())?),
        (DType::Int, Data::F32(v)) => {
            Data::I64(float_ints(name, &shape, v.into_iter().map(f64::from))?)
        }
        (DType::Bool, Data::I64(v)) if v.iter().all(|&x| x == 0 || x == 1) => {
            Data::Bool(v.iter().map(|&x| x == 1).collect())
        }
        (want, got) => {
            return Err(RunError::new(format!(
                "input `{name}` must be a {} tensor, but the data holds {} values",
                want.name(),
                got.type_name()
            )));
        }
    };
    Ok(Tensor { shape, data })
}

/// Float values that must be integers (an int input given as floats), or the error naming the
/// first that is not.
fn float_ints(
    name: &str,
    shape: &[usize],
    values: impl ExactSizeIterator<Item = f64>,
) -> Result<Vec<i64>, RunError> {
    let mut out = Vec::with_capacity(values.len());
    for (k, x) in values.enumerate() {
        if x.fract() != 0.0 || !x.is_finite() || x.abs() > 9.007_199_254_740_992e15 {
            return Err(RunError::new(format!(
                "input `{name}` is an int tensor but holds {x} at {:?}",
                position(shape, k)
            )));
        }
        out.push(x as i64);
    }
    Ok(out)
}
