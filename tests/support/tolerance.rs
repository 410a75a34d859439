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
