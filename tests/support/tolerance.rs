//! What the f32 backends (CPU, GPU) are held to against the f64 interpreter, shared by their
//! test files.

/// f32 agreement: relative 1e-4 of the value, or of the largest entry for tensors.
pub fn close(got: f64, want: f64, scale: f64) -> bool {
    (got.is_nan() && want.is_nan())
        || got == want
        || (got - want).abs() <= 1e-4 * scale.max(want.abs()).max(1e-6)
}

/// Fixtures whose inputs lie beyond what f32 can represent or condition: (case, why).
pub const BEYOND_F32: &[(&str, &str)] = &[
    (
        "dco/extreme_b8.json",
        "exp(logp) at logp = -705 underflows f32 (the f64 reference needs e^-705)",
    ),
    (
        "binary_kl_norm/extreme_b5_c4.json",
        "the reference's clamp bound 1 - 1e-8 rounds to 1 in f32, so log(1 - d) = log 0",
    ),
    (
        "z_loss_spherical/shifted_b5_c3.json",
        "logits shifted by 1e4: f32 keeps about 3 decimals of their differences",
    ),
];

/// Fixtures that are ill-conditioned in f32 (large inputs whose differences matter): compared
/// at 1e-3.
pub const ILL_CONDITIONED: &[&str] = &[
    "normalized_softmax/large_mixed_scale.json",
    "exo_pair/random_b8.json",
];

/// How a backend's loss, metrics and gradients for one stdlib fixture case differ from the
/// reference's (empty when they agree): 1e-4 relative, 1e-3 for [`ILL_CONDITIONED`] cases.
pub fn fixture_mismatches(
    case: &super::fixtures::Case,
    out: &runtime::Outputs,
    grads: &[(compiler::ir::InputId, Vec<f64>)],
) -> Vec<String> {
    let label = &case.label;
    let ill = ILL_CONDITIONED.contains(&label.as_str());
    let close = |got: f64, want: f64, scale: f64| {
        close(got, want, scale) || (ill && (got - want).abs() <= 1e-3 * scale.max(want.abs()))
    };
    let mut failures = vec![];
    let want = case.expected["loss"].as_f64().unwrap();
    if !close(out.loss, want, 0.0) {
        failures.push(format!("{label}: loss {} vs {want}", out.loss));
    }
    for (m, v) in &out.metrics {
        let w = case.expected["metrics"][m].as_f64().unwrap();
        if !close(*v, w, 0.0) {
            failures.push(format!("{label}: metric {m} {v} vs {w}"));
        }
    }
    for (i, g) in grads {
        let input = &case.loss.inputs[*i].name;
        let want = super::fixtures::flatten(&case.expected["grad"][input]);
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if let Some((k, (a, w))) = g
            .iter()
            .zip(&want)
            .enumerate()
            .find(|(_, (a, w))| !close(**a, **w, scale))
        {
            failures.push(format!(
                "{label}: grad_{input}[{k}] {a} vs {w} (largest {scale})"
            ));
        }
    }
    failures
}

/// Dimension sizes from `B=3,D=2`.
pub fn sizes(spec: &str) -> Vec<(String, usize)> {
    spec.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

/// Within four times the error the interpreter itself makes when every value is rounded to
/// f32 (`narrow`): for results that cancel to about 0, where 1e-4 of the result is below what
/// f32 inputs can give.
fn within_f32_rounding(got: f64, want: f64, narrow: Option<f64>) -> bool {
    narrow.is_some_and(|n| (got - want).abs() <= 4.0 * (n - want).abs())
}

/// How an f32 backend's loss, metrics and gradients (`compiled`) differ from the interpreter's
/// on bound inputs, compared where f32 can hold the values (the reference fits in f32 and the
/// program evaluated with every value rounded to f32 stays finite). `Err(())` when both
/// refuse the inputs (e.g. a random gather out of range): nothing was compared.
pub fn interpreter_mismatches(
    loss: &compiler::ir::Loss,
    bound: &runtime::Bound,
    wrt: &[compiler::ir::InputId],
    backend: &str,
    compiled: Result<(runtime::Outputs, runtime::interp::Gradients), runtime::RunError>,
) -> Result<Vec<String>, ()> {
    let reference = runtime::eval_with_grad(loss, bound, wrt);
    let ((a, ga), (b, gb)) = match (reference, compiled) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(_), Err(_)) => return Err(()),
        (r, c) => {
            return Ok(vec![format!(
                "{}: interpreter {:?} but {backend} {:?}",
                loss.name,
                r.err(),
                c.err()
            )]);
        }
    };
    let narrow = runtime::eval_with_grad_in(loss, bound, wrt, runtime::Precision::F32).ok();
    let fits = |reference: f64, narrow: Option<f64>| {
        reference.is_finite()
            && reference.abs() <= f64::from(f32::MAX)
            && narrow.is_some_and(f64::is_finite)
    };
    let differ = |got: f64, want: f64, scale: f64, narrow: Option<f64>| {
        fits(want, narrow) && !close(got, want, scale) && !within_f32_rounding(got, want, narrow)
    };
    let mut failures = vec![];
    if differ(b.loss, a.loss, 0.0, narrow.as_ref().map(|(o, _)| o.loss)) {
        failures.push(format!("{}: loss {} vs {}", loss.name, b.loss, a.loss));
    }
    for (k, ((name, x), (_, y))) in a.metrics.iter().zip(&b.metrics).enumerate() {
        if differ(*y, *x, 0.0, narrow.as_ref().map(|(o, _)| o.metrics[k].1)) {
            failures.push(format!("{}: metric {name} {y} vs {x}", loss.name));
        }
    }
    for (n, ((_, x), (_, y))) in ga.iter().zip(&gb).enumerate() {
        let narrow_grad = |k: usize| narrow.as_ref().map(|(_, g)| g[n].1[k]);
        let scale = x
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        if let Some((k, (p, q))) = x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(k, (p, q))| differ(**q, **p, scale, narrow_grad(*k)))
        {
            failures.push(format!("{}: gradient [{k}] {q} vs {p}", loss.name));
        }
    }
    Ok(failures)
}
