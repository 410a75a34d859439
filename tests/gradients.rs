//! Gradients against central finite differences of the interpreter (f64), on the stdlib and
//! on every `tests/loss/pass` program, at seeded random inputs.

use compiler::ir::Loss;
use runtime::{Data, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Checks every float input's gradient against central differences; returns the mismatches.
fn check_gradient(loss: &Loss, sizes: &[(String, usize)], seed: u64) -> Vec<String> {
    let inputs = runtime::random::random_inputs(loss, sizes, seed).unwrap();
    let bound = runtime::bind(loss, &inputs, &[]).unwrap();
    let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
    let Ok((out, grads)) = runtime::eval_with_grad(loss, &bound, &wrt) else {
        return vec![]; // e.g. a random gather out of range: nothing to differentiate
    };
    let f = |inputs: &BTreeMap<String, Tensor>| {
        let b = runtime::bind(loss, inputs, &[]).unwrap();
        runtime::eval(loss, &b).map(|o| o.loss).unwrap_or(f64::NAN)
    };
    let mut failures = vec![];
    for (i, g) in grads {
        let name = &loss.inputs[i].name;
        let scale = g
            .iter()
            .fold(out.loss.abs().max(1e-3) * 1e-6, |m, x| m.max(x.abs()));
        for k in 0..g.len() {
            let diff = |h: f64| {
                let mut plus = inputs.clone();
                let mut minus = inputs.clone();
                if let (Data::F64(p), Data::F64(m)) = (
                    &mut plus.get_mut(name).unwrap().data,
                    &mut minus.get_mut(name).unwrap().data,
                ) {
                    let x = p[k];
                    let step = h * x.abs().max(1.0);
                    p[k] = x + step;
                    m[k] = x - step;
                    (f(&plus) - f(&minus)) / (2.0 * step)
                } else {
                    unreachable!("float input")
                }
            };
            let (d1, d2) = (diff(1e-6), diff(5e-7));
            // Near a kink (relu, max, a comparison) the two steps disagree: skip that element.
            if !d1.is_finite() || (d1 - d2).abs() > 1e-6 * scale.max(d1.abs()) {
                continue;
            }
            if (g[k] - d1).abs() > 1e-5 * scale.max(d1.abs()) {
                failures.push(format!(
                    "{}: grad_{name}[{k}] = {}, finite difference {d1}",
                    loss.name, g[k]
                ));
            }
        }
    }
    failures
}

fn sizes(spec: &str) -> Vec<(String, usize)> {
    spec.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

#[test]
fn stdlib_gradients_match_finite_differences() {
    let mut failures = vec![];
    for (name, spec) in [
        ("dpo", "B=5"),
        ("cross_entropy", "B=5,C=4"),
        ("multi_similarity", "B=6,D=3"),
        ("multi_similarity_mined", "B=6,D=3"),
    ] {
        let e = lossc::stdlib::get(name).unwrap();
        let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
        for seed in 0..3 {
            failures.extend(check_gradient(&loss, &sizes(spec), seed));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pass_program_gradients_match_finite_differences() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut failures = vec![];
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        // First line: `// eval: --random B=4,C=3`-style sizes, as the corpus records them.
        let Some(spec) = source.lines().find_map(|l| l.split("--random ").nth(1)) else {
            continue;
        };
        let spec = spec.split_whitespace().next().unwrap();
        let program = compiler::check_source(&source).unwrap();
        for loss in &program.losses {
            // Finite differences see through `detach`; those programs are checked elsewhere.
            let detaches = |e: &compiler::ir::Expr| {
                e.any(&mut |x| {
                    matches!(
                        x,
                        compiler::ir::Expr::Call(compiler::ir::Builtin::Detach, _)
                    )
                })
            };
            if loss.defs.iter().any(|d| detaches(&d.body)) || detaches(&loss.result) {
                continue;
            }
            failures.extend(
                check_gradient(loss, &sizes(spec), 7)
                    .into_iter()
                    .map(|f| format!("{}: {f}", path.display())),
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} programs checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detach_stops_the_gradient() {
    let source = "loss l(x: [B], y: [B]) { mean[b](x[b] * detach(y[b]) + detach(x[b]) ^ 2) }";
    let loss = compiler::check_source(source).unwrap().losses.remove(0);
    let inputs = runtime::random::random_inputs(&loss, &sizes("B=4"), 1).unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (_, grads) = runtime::eval_with_grad(&loss, &bound, &[0, 1]).unwrap();
    let Data::F64(y) = &inputs["y"].data else {
        unreachable!()
    };
    // d/dx = y / B (the detached square contributes nothing); d/dy = 0.
    for (k, g) in grads[0].1.iter().enumerate() {
        assert!((g - y[k] / 4.0).abs() < 1e-15, "{g} vs {}", y[k] / 4.0);
    }
    assert!(grads[1].1.iter().all(|g| *g == 0.0));
}

#[test]
fn multi_similarity_pair_weights_match_the_gradient_of_the_similarity_matrix() {
    let e = lossc::stdlib::get("multi_similarity").unwrap();
    let loss =
        compiler::simplify::simplify(&compiler::check_source(e.source).unwrap().losses.remove(0));
    let s = compiler::grad::pair_matrices(&loss)[0];
    assert_eq!(loss.defs[s].name, "s");
    let weights = compiler::simplify::simplify(&compiler::grad::pair_weights(&loss, s).unwrap());
    insta::assert_snapshot!("pairs_multi_similarity", compiler::print::loss(&weights));
    let w = weights
        .defs
        .iter()
        .position(|d| d.name == "pair_weight")
        .unwrap();

    // The same loss taking the similarity matrix as an input: its gradient is the pair weights.
    let on_s = compiler::check_source(
        "loss ms_on_s(s: [B, B], labels: int[B]; alpha = 2, beta = 50, base = 0.5) {
            mean[i](1 / alpha * log(1 + sum[j | labels[j] == labels[i] && j != i](exp(-alpha * (s[i, j] - base))))
                  + 1 / beta * log(1 + sum[j | labels[j] != labels[i]](exp(beta * (s[i, j] - base)))))
        }",
    )
    .unwrap()
    .losses
    .remove(0);
    for seed in 0..3 {
        let inputs = runtime::random::random_inputs(&loss, &sizes("B=7,D=3"), seed).unwrap();
        let bound = runtime::bind(&weights, &inputs, &[]).unwrap();
        let (_, defs) = runtime::eval_all(&weights, &bound).unwrap();
        let s_values = Tensor {
            shape: vec![7, 7],
            data: Data::F64(defs[s].clone()),
        };
        let mut on_s_inputs = BTreeMap::from([("s".to_string(), s_values)]);
        on_s_inputs.insert("labels".to_string(), inputs["labels"].clone());
        let b = runtime::bind(&on_s, &on_s_inputs, &[]).unwrap();
        let (_, grads) = runtime::eval_with_grad(&on_s, &b, &[0]).unwrap();
        for (k, (a, g)) in defs[w].iter().zip(&grads[0].1).enumerate() {
            assert!(
                (a - g).abs() <= 1e-12 * g.abs().max(1e-3),
                "pair {k}: {a} vs {g}"
            );
        }
    }
}

#[path = "../compiler/tests/support/generate.rs"]
mod generate;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
    /// On random well-typed programs, the gradient agrees with central finite differences.
    #[test]
    fn generated_program_gradients_match_finite_differences(seed in proptest::prelude::any::<u64>()) {
        let loss = generate::generate(seed);
        // Finite differences see through `detach`: such programs are not comparable.
        let detaches = |e: &compiler::ir::Expr| e.any(&mut |x| matches!(x, compiler::ir::Expr::Call(compiler::ir::Builtin::Detach, _)));
        proptest::prop_assume!(!loss.defs.iter().any(|d| detaches(&d.body)) && !detaches(&loss.result));
        let failures = check_gradient(&loss, &sizes("B=3,D=2"), seed % 7);
        proptest::prop_assert!(failures.is_empty(), "{}\n{}", compiler::print::loss(&loss), failures.join("\n"));
    }
}

#[test]
fn every_derivative_rule_matches_finite_differences() {
    // One program per operation, on inputs where every function is defined and smooth.
    let ops = [
        "exp(x[b])",
        "log(y[b])",
        "log1p(y[b])",
        "expm1(x[b])",
        "log1mexp(-y[b])",
        "sqrt(y[b])",
        "abs(x[b])",
        "sigmoid(x[b])",
        "log_sigmoid(x[b])",
        "softplus(x[b])",
        "tanh(x[b])",
        "relu(x[b])",
        "cos(x[b])",
        "sin(x[b])",
        "min(x[b], z[b])",
        "max(x[b], z[b])",
        "clamp(x[b], z[b] - 1, z[b] + 1)",
        "pow(y[b], z[b])",
        "y[b] ^ z[b]",
        "x[b] * z[b]",
        "x[b] / y[b]",
        "x[b] + z[b]",
        "x[b] - z[b]",
        "-x[b]",
        "x[b] ^ 3",
        "detach(x[b]) * z[b]",
    ];
    let mut failures = vec![];
    for op in ops {
        let source = format!("loss l(x: [B], y: [B], z: [B]) {{ sum[b]({op}) }}");
        let loss = compiler::check_source(&source).unwrap().losses.remove(0);
        // y must be positive (log, sqrt, pow): square the draws and keep them away from 0.
        let mut inputs = runtime::random::random_inputs(&loss, &sizes("B=6"), 3).unwrap();
        if let Data::F64(v) = &mut inputs.get_mut("y").unwrap().data {
            v.iter_mut().for_each(|x| *x = 0.5 + *x * *x);
        }
        let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        let (_, grads) = runtime::eval_with_grad(&loss, &bound, &wrt).unwrap();
        for (i, g) in grads {
            let name = &loss.inputs[i].name;
            let Data::F64(base) = &inputs[name].data else {
                unreachable!()
            };
            for k in 0..g.len() {
                let at = |h: f64| {
                    let mut moved = inputs.clone();
                    if let Data::F64(v) = &mut moved.get_mut(name).unwrap().data {
                        v[k] = base[k] + h;
                    }
                    runtime::eval(&loss, &runtime::bind(&loss, &moved, &[]).unwrap())
                        .unwrap()
                        .loss
                };
                let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
                let detached = op.starts_with("detach") && name == "x";
                let want = if detached { 0.0 } else { fd };
                if (g[k] - want).abs() > 1e-5 * want.abs().max(1.0) {
                    failures.push(format!(
                        "{op}: d/d{name}[{k}] = {}, finite difference {want}",
                        g[k]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
