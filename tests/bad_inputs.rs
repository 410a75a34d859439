//! The bad-input matrix: every stdlib loss, on every backend, fed labels out of range,
//! negative labels (and the `ignore_index` value where a loss has one), labels beyond 32 bits,
//! NaN and infinite floats, an empty batch, and inputs of the wrong sizes, rank, type or
//! missing. Each case asserts its outcome: a clear error (checked by fragments of its text) or
//! the documented value, the same on every backend. Never a crash, never silent garbage.
//!
//! The documented values (the loss on an empty batch, what NaN and infinities give) are in
//! the snapshot `snapshots/bad_inputs__documented_values.snap`.

use compiler::ir::{DType, Expr, InputId, Loss, Tensor as Tref};
use runtime::interp::Gradients;
use runtime::{Bound, Data, Outputs, RunError, Tensor};
use std::collections::BTreeMap;

/// A backend: the loss, its bound inputs and the inputs to differentiate, to outputs and
/// gradients (the signature of `runtime::eval_with_grad`).
type Backend = fn(&Loss, &Bound, &[InputId]) -> Result<(Outputs, Gradients), RunError>;

/// Every backend. A new backend is one line here; [`present`] says whether it can run.
const BACKENDS: &[(&str, Backend)] = &[
    ("interp", runtime::eval_with_grad),
    ("cpu", runtime::cpu::eval_with_grad),
    ("gpu", runtime::gpu::eval_with_grad),
];

/// The backends that can run here: the GPU needs an adapter (without one its cases are
/// skipped with a message, unless `LOSSC_REQUIRE_GPU` is set, as in `tests/gpu.rs`).
fn present() -> Vec<(&'static str, Backend)> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    BACKENDS
        .iter()
        .copied()
        .filter(|(name, _)| {
            if *name != "gpu" || runtime::gpu::available() {
                return true;
            }
            let why = runtime::gpu::adapter_description().unwrap_err();
            let required =
                std::env::var(runtime::gpu::REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(!required, "{} is set but {why}", runtime::gpu::REQUIRE_ENV);
            ONCE.call_once(|| eprintln!("bad-input matrix without the gpu backend: {why}"));
            false
        })
        .collect()
}

/// The size of every dimension in the matrix (the batch dimension is set to 0 in one case).
const SIZE: usize = 4;

type Inputs = BTreeMap<String, Tensor>;
type Run = Result<(Outputs, Gradients), String>;

/// What a case must give on every backend.
enum Expect {
    /// An error whose text contains each fragment (a binding error, before any backend runs,
    /// or each backend's own).
    Error(Vec<String>),
    /// A value, the same (to f32 precision, NaN for NaN) on every backend.
    Value,
    /// A value, or an error containing each fragment (a backend's documented limit, e.g. the
    /// CPU backend's 32-bit integers); the backends that give a value agree.
    ValueOrError(Vec<String>),
}

/// One loss's cases: (case name, inputs, expectation).
fn cases(loss: &Loss, base: &Inputs, batch: Option<usize>) -> Vec<(String, Inputs, Expect)> {
    let mut out = vec![];
    let gathers = gather_inputs(loss);
    for (i, input) in loss.inputs.iter().enumerate() {
        if input.dtype != DType::Int || base[&input.name].data.is_empty() {
            continue;
        }
        let with = |value: i64| {
            let mut inputs = base.clone();
            if let Data::I64(v) = &mut inputs.get_mut(&input.name).unwrap().data {
                v[0] = value;
            }
            inputs
        };
        let name = &input.name;
        match gathers.get(&i) {
            // A class index: out of range above and below is an error naming the dimension and
            // the value.
            Some(dim) => {
                let dim = &loss.dims[*dim];
                for (case, value) in [("label_too_large", SIZE as i64), ("label_negative", -1)] {
                    out.push((
                        format!("{case}({name})"),
                        with(value),
                        Expect::Error(vec![
                            "index out of range".into(),
                            format!("dimension `{dim}`, size {SIZE}) got {value}"),
                        ]),
                    ));
                }
            }
            // A label compared with other labels: any value is a value.
            None => {
                out.push((
                    format!("label_large({name})"),
                    with(1_000_000),
                    Expect::Value,
                ));
                out.push((format!("label_negative({name})"), with(-7), Expect::Value));
            }
        }
        // Beyond 32 bits: the CPU backend refuses (its code reads i32); others may run.
        let huge = 1i64 << 40;
        out.push((
            format!("label_beyond_32_bits({name})"),
            with(huge),
            if gathers.contains_key(&i) {
                Expect::Error(vec![huge.to_string()])
            } else {
                Expect::ValueOrError(vec![format!("`{name}`"), huge.to_string()])
            },
        ));
    }
    // The ignore_index value is ignored: checked separately (`ignored_rows_are_ignored`).
    for (case, x) in [
        ("nan", f64::NAN),
        ("inf", f64::INFINITY),
        ("neg_inf", f64::NEG_INFINITY),
    ] {
        let mut inputs = base.clone();
        let mut any = false;
        for t in inputs.values_mut() {
            if let Data::F64(v) = &mut t.data
                && !v.is_empty()
            {
                v[0] = x;
                any = true;
            }
        }
        if any {
            out.push((format!("{case}_floats"), inputs, Expect::Value));
        }
    }
    if let Some(b) = batch {
        let mut sizes = sizes(loss);
        sizes[b].1 = 0;
        let inputs = runtime::random::random_inputs(loss, &sizes, 1).unwrap();
        out.push(("empty_batch".into(), inputs, Expect::Value));
    }
    // Mismatched sizes: one input one longer along a dimension another input (or another axis)
    // also has.
    let mut uses: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, input) in loss.inputs.iter().enumerate() {
        for (axis, &d) in input.shape.iter().enumerate() {
            uses.entry(d).or_default().push((i, axis));
        }
    }
    if let Some((&d, places)) = uses.iter().find(|(_, places)| places.len() > 1) {
        let (i, axis) = places[places.len() - 1];
        let name = &loss.inputs[i].name;
        let mut inputs = base.clone();
        let t = inputs.get_mut(name).unwrap();
        t.shape[axis] += 1;
        *t = filled(&t.shape, &t.data);
        let first = &loss.inputs[places[0].0].name;
        out.push((
            format!("size_mismatch({name})"),
            inputs,
            Expect::Error(vec![
                format!("dimension `{}` is {SIZE} in input `{first}`", loss.dims[d]),
                format!("{} in input `{name}`", SIZE + 1),
            ]),
        ));
    }
    if let Some(input) = loss.inputs.first() {
        let name = &input.name;
        let mut inputs = base.clone();
        let t = inputs.get_mut(name).unwrap();
        t.shape.insert(0, 1);
        out.push((
            format!("wrong_rank({name})"),
            inputs,
            Expect::Error(vec![
                format!("input `{name}` has {} dimension", input.shape.len() + 1),
                "but the loss declares".into(),
            ]),
        ));
        let mut inputs = base.clone();
        inputs.remove(name);
        out.push((
            format!("missing({name})"),
            inputs,
            Expect::Error(vec![format!("missing input `{name}`")]),
        ));
    }
    if let Some(input) = loss.inputs.iter().find(|i| i.dtype == DType::Int) {
        let name = &input.name;
        let mut inputs = base.clone();
        let t = inputs.get_mut(name).unwrap();
        let n = t.data.len();
        t.data = Data::F64(vec![0.5; n]);
        if n > 0 {
            out.push((
                format!("fraction_for_int({name})"),
                inputs,
                Expect::Error(vec![format!(
                    "input `{name}` is an int tensor but holds 0.5"
                )]),
            ));
        }
    }
    if let Some(input) = loss.inputs.iter().find(|i| i.dtype == DType::Float) {
        let name = &input.name;
        let mut inputs = base.clone();
        let t = inputs.get_mut(name).unwrap();
        t.data = Data::Bool(vec![true; t.data.len()]);
        out.push((
            format!("bool_for_float({name})"),
            inputs,
            Expect::Error(vec![format!(
                "input `{name}` must be a float tensor, but the data holds bool values"
            )]),
        ));
    }
    out
}

/// A tensor of `shape` with the element type of `like`, all zeros.
fn filled(shape: &[usize], like: &Data) -> Tensor {
    let n = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: match like {
            Data::F64(_) => Data::F64(vec![0.0; n]),
            Data::F32(_) => Data::F32(vec![0.0; n]),
            Data::I64(_) => Data::I64(vec![0; n]),
            Data::Bool(_) => Data::Bool(vec![false; n]),
        },
    }
}

/// The int inputs read as an index into another tensor (directly, or through an int `let`
/// that reads them), each with the dimension it indexes.
fn gather_inputs(loss: &Loss) -> BTreeMap<InputId, usize> {
    // Int definitions that copy an input: which input each reads.
    let reads_input = |e: &Expr| -> Option<InputId> {
        let mut found = None;
        e.any(&mut |x| {
            if let Expr::Read {
                tensor: Tref::Input(i),
                ..
            } = x
                && loss.inputs[*i].dtype == DType::Int
            {
                found = Some(*i);
                return true;
            }
            false
        });
        found
    };
    let def_input: Vec<Option<InputId>> = loss
        .defs
        .iter()
        .map(|d| {
            if d.dtype == DType::Int {
                reads_input(&d.body)
            } else {
                None
            }
        })
        .collect();
    let mut out = BTreeMap::new();
    let mut visit = |e: &Expr| {
        e.any(&mut |x| {
            if let Expr::Read { tensor, indices } = x {
                let dims = loss.shape_of(*tensor);
                for (ix, &dim) in indices.iter().zip(&dims) {
                    ix.any(&mut |y| {
                        match y {
                            Expr::Read {
                                tensor: Tref::Input(i),
                                ..
                            } if loss.inputs[*i].dtype == DType::Int => {
                                out.entry(*i).or_insert(dim);
                            }
                            Expr::Read {
                                tensor: Tref::Def(d),
                                ..
                            } => {
                                if let Some(i) = def_input[*d] {
                                    out.entry(i).or_insert(dim);
                                }
                            }
                            _ => {}
                        }
                        false
                    });
                }
            }
            false
        });
    };
    for d in &loss.defs {
        visit(&d.body);
    }
    visit(&loss.result);
    out
}

/// Every dimension at [`SIZE`].
fn sizes(loss: &Loss) -> Vec<(String, usize)> {
    loss.dims.iter().map(|d| (d.clone(), SIZE)).collect()
}

/// The batch dimension: `B`, else `N`, else the first dimension of the first input.
fn batch_dim(loss: &Loss) -> Option<usize> {
    ["B", "N"]
        .iter()
        .find_map(|n| loss.dims.iter().position(|d| d == n))
        .or_else(|| loss.inputs.iter().find_map(|i| i.shape.first().copied()))
}

/// Runs every backend on `inputs` (binding once; a binding error is every backend's).
fn run_all(loss: &Loss, inputs: &Inputs) -> Vec<(&'static str, Run)> {
    let backends = present();
    let bound = match runtime::bind(loss, inputs, &[]) {
        Ok(b) => b,
        Err(e) => {
            return backends
                .iter()
                .map(|(name, _)| (*name, Err(e.to_string())))
                .collect();
        }
    };
    let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
    backends
        .iter()
        .map(|(name, backend)| {
            (
                *name,
                backend(loss, &bound, &wrt).map_err(|e| e.to_string()),
            )
        })
        .collect()
}

/// The class of a value: NaN, an infinity, or finite.
fn class(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x == f64::INFINITY {
        "inf"
    } else if x == f64::NEG_INFINITY {
        "-inf"
    } else {
        "finite"
    }
}

/// Two backends' values agree: the same class, and finite values within f32 precision of
/// `scale` (the largest finite magnitude among the values they belong with).
fn agree(a: f64, b: f64, scale: f64) -> bool {
    class(a) == class(b) && (!a.is_finite() || (a - b).abs() <= 1e-3 * scale.max(a.abs()).max(1e-3))
}

/// Why two runs' values disagree, if they do.
fn disagreement(a: &(Outputs, Gradients), b: &(Outputs, Gradients)) -> Option<String> {
    if !agree(a.0.loss, b.0.loss, 0.0) {
        return Some(format!("loss {} vs {}", a.0.loss, b.0.loss));
    }
    for ((n, x), (_, y)) in a.0.metrics.iter().zip(&b.0.metrics) {
        if !agree(*x, *y, 0.0) {
            return Some(format!("metric {n}: {x} vs {y}"));
        }
    }
    for ((i, x), (_, y)) in a.1.iter().zip(&b.1) {
        let scale = x
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        if let Some(k) = (0..x.len()).find(|&k| !agree(x[k], y[k], scale)) {
            return Some(format!("gradient {i}[{k}]: {} vs {}", x[k], y[k]));
        }
    }
    None
}

/// Checks one case's runs against its expectation; returns the failures.
fn judge(loss: &str, case: &str, runs: &[(&str, Run)], expect: &Expect) -> Vec<String> {
    let mut failures = vec![];
    let mut fail = |msg: String| failures.push(format!("{loss} / {case}: {msg}"));
    let missing = |e: &str, fragments: &[String]| -> Option<String> {
        fragments
            .iter()
            .find(|f| !e.contains(f.as_str()))
            .map(|f| format!("error {e:?} lacks {f:?}"))
    };
    match expect {
        Expect::Error(fragments) => {
            for (backend, run) in runs {
                match run {
                    Ok((o, _)) => {
                        fail(format!("{backend}: expected an error, got loss {}", o.loss))
                    }
                    Err(e) => {
                        if let Some(m) = missing(e, fragments) {
                            fail(format!("{backend}: {m}"));
                        }
                    }
                }
            }
        }
        Expect::Value | Expect::ValueOrError(_) => {
            let mut values = vec![];
            for (backend, run) in runs {
                match (run, expect) {
                    (Ok(v), _) => values.push((backend, v)),
                    (Err(e), Expect::ValueOrError(fragments)) => {
                        if let Some(m) = missing(e, fragments) {
                            fail(format!("{backend}: {m}"));
                        }
                    }
                    (Err(e), _) => fail(format!("{backend}: expected a value, got error {e}")),
                }
            }
            if let Some((first, a)) = values.first() {
                for (backend, b) in &values[1..] {
                    if let Some(d) = disagreement(a, b) {
                        fail(format!("{first} and {backend} disagree: {d}"));
                    }
                }
            }
        }
    }
    failures
}

/// Every stdlib loss with its base inputs.
fn stdlib() -> Vec<(Loss, Inputs)> {
    lossc::stdlib::ENTRIES
        .iter()
        .map(|e| {
            let loss = e.loss();
            let inputs = runtime::random::random_inputs(&loss, &sizes(&loss), 1).unwrap();
            (loss, inputs)
        })
        .collect()
}

#[test]
fn every_stdlib_loss_on_every_backend_handles_bad_inputs() {
    use rayon::prelude::*;
    let losses = stdlib();
    let results: Vec<(Vec<String>, String, usize)> = losses
        .par_iter()
        .map(|(loss, base)| {
            let mut failures = vec![];
            // The base inputs run everywhere (else the cases below prove nothing).
            let runs = run_all(loss, base);
            failures.extend(judge(&loss.name, "base", &runs, &Expect::Value));
            let mut documented = format!("{}:", loss.name);
            let mut n = 0;
            for (case, inputs, expect) in cases(loss, base, batch_dim(loss)) {
                let runs = run_all(loss, &inputs);
                failures.extend(judge(&loss.name, &case, &runs, &expect));
                n += 1;
                if matches!(expect, Expect::Value)
                    && !case.starts_with("label")
                    && let Ok((o, _)) = &runs[0].1
                {
                    let shown = if o.loss.is_finite() {
                        format!("{:.6}", o.loss)
                    } else {
                        class(o.loss).to_string()
                    };
                    documented.push_str(&format!(" {case}={shown}"));
                }
            }
            (failures, documented, n)
        })
        .collect();
    let failures: Vec<&String> = results.iter().flat_map(|(f, _, _)| f).collect();
    let cases: usize = results.iter().map(|(_, _, n)| n).sum();
    assert!(cases > 500, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let table: Vec<&str> = results.iter().map(|(_, d, _)| d.as_str()).collect();
    insta::assert_snapshot!("documented_values", table.join("\n"));
}

/// Rows whose label is the `ignore_index` value are left out: the loss equals the loss of the
/// other rows alone, and the ignored rows get zero gradient, on every backend.
#[test]
fn ignored_rows_are_ignored() {
    let mut checked = 0;
    for (loss, base) in stdlib() {
        let Some(h) = loss.hypers.iter().position(|h| h.name == "ignore_index") else {
            continue;
        };
        let ignore = loss.hypers[h].default as i64;
        let (label, input) = loss
            .inputs
            .iter()
            .enumerate()
            .find(|(_, i)| i.dtype == DType::Int)
            .unwrap();
        let batch = input.shape[0];
        let mut ignored = base.clone();
        if let Data::I64(v) = &mut ignored.get_mut(&input.name).unwrap().data {
            v[0] = ignore;
        }
        // The same inputs without row 0 (every input's first axis is the batch).
        let mut rest = base.clone();
        for (name, t) in rest.iter_mut() {
            let i = loss.input(name).unwrap().1;
            assert_eq!(i.shape.first(), Some(&batch), "{}: {name}", loss.name);
            let row = t.numel() / t.shape[0];
            t.shape[0] -= 1;
            t.data = match &t.data {
                Data::F64(v) => Data::F64(v[row..].to_vec()),
                Data::F32(v) => Data::F32(v[row..].to_vec()),
                Data::I64(v) => Data::I64(v[row..].to_vec()),
                Data::Bool(v) => Data::Bool(v[row..].to_vec()),
            };
        }
        let with = run_all(&loss, &ignored);
        let without = run_all(&loss, &rest);
        for ((backend, a), (_, b)) in with.iter().zip(&without) {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert!(
                (a.0.loss - b.0.loss).abs() <= 1e-6 * b.0.loss.abs().max(1.0),
                "{} on {backend}: ignoring row 0 gives {}, leaving it out {}",
                loss.name,
                a.0.loss,
                b.0.loss
            );
            for (i, g) in &a.1 {
                let row = base[&loss.inputs[*i].name].numel() / SIZE;
                assert!(
                    g[..row].iter().all(|&x| x == 0.0),
                    "{} on {backend}: the ignored row's gradient is {:?}",
                    loss.name,
                    &g[..row]
                );
            }
        }
        let _ = label;
        checked += 1;
    }
    assert!(checked >= 1);
}
