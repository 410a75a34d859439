//! Simplification and stabilisation: every rule holds numerically, simplified programs agree
//! with the originals in the f64 interpreter, stable forms stay finite in f32 where the naive
//! forms do not, and every stdlib loss's simplified form and gradient are snapshot-tested.

use compiler::ir::{Expr, Loss};
use compiler::simplify::{self, Limits, Stop, convert, lang::Math, rules};
use egg::{ENodeOrVar, Id, Language, RecExpr};
use runtime::{Precision, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// A loss over scalar inputs `a`, `b`, `c`, `g` with `body` as its result.
fn scalar_loss(body: Expr) -> Loss {
    let mut loss = compiler::check_source("loss l(a: [], b: [], c: [], g: []) { a }")
        .unwrap()
        .losses
        .remove(0);
    loss.result = body;
    loss
}

fn eval_scalar(loss: &Loss, values: [f64; 4], precision: Precision) -> f64 {
    let inputs: BTreeMap<String, Tensor> = ["a", "b", "c", "g"]
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), Tensor::scalar(v)))
        .collect();
    let bound = runtime::bind(loss, &inputs, &[]).unwrap();
    runtime::eval_all_in(loss, &bound, precision)
        .unwrap()
        .0
        .loss
}

/// A rule side as an IR expression over the scalar inputs (`?x` → the k-th scalar input).
fn side(pattern: &egg::PatternAst<Math>, names: &mut Vec<String>) -> Option<Expr> {
    let mut term = RecExpr::<Math>::default();
    let mut ids: Vec<Id> = vec![];
    for node in pattern.as_ref() {
        let id = match node {
            ENodeOrVar::Var(v) => {
                let name = v.to_string();
                if !names.contains(&name) {
                    names.push(name.clone());
                }
                let k = names.iter().position(|n| *n == name).unwrap();
                if k >= 4 {
                    return None;
                }
                let t = term.add(Math::Leaf(simplify::lang::Leaf::Input(k as u32)));
                term.add(Math::Read(vec![t].into_boxed_slice()))
            }
            ENodeOrVar::ENode(n) => {
                if matches!(
                    n,
                    Math::Sum(_)
                        | Math::Mean(_)
                        | Math::LogSumExp(_)
                        | Math::RMax(_)
                        | Math::RMin(_)
                        | Math::Count(_)
                        | Math::Vars(_)
                ) {
                    return None; // reductions are checked by the program-level tests
                }
                if matches!(n, Math::And(_) | Math::Or(_) | Math::Not(_) | Math::If(_)) {
                    return None; // boolean rules need boolean operands: checked by the program-level tests
                }
                term.add(n.clone().map_children(|c| ids[usize::from(c)]))
            }
        };
        ids.push(id);
    }
    let root = *ids.last()?;
    Some(convert::from_term(&term, root))
}

#[test]
fn every_scalar_rule_holds_at_sampled_points() {
    let mut checked = 0;
    let points: Vec<[f64; 4]> = (0..40)
        .map(|k| {
            let f = |s: u64| ((k * 7919 + s * 104_729) % 2000) as f64 / 250.0 - 4.0;
            [f(1), f(2), f(3), f(4).abs() + 0.1]
        })
        .collect();
    for rule in rules::all() {
        let Some(l) = rules::lhs(&rule) else { continue };
        let Some(r) = rule.rewrite.applier.get_pattern_ast() else {
            continue;
        };
        // Both sides name their variables in the left side's order.
        let mut names = vec![];
        let (Some(lhs), Some(rhs)) = (side(&l.ast, &mut names), side(r, &mut names)) else {
            continue;
        };
        let (lhs, rhs) = (scalar_loss(lhs), scalar_loss(rhs));
        for p in &points {
            let (x, y) = (
                eval_scalar(&lhs, *p, Precision::F64),
                eval_scalar(&rhs, *p, Precision::F64),
            );
            if x.is_finite() && y.is_finite() {
                assert!(
                    (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    "rule {} at {p:?}: {x} vs {y}",
                    rule.rewrite.name
                );
            } else {
                // Where the naive side is not finite the stable side may be; never the reverse.
                assert!(
                    !y.is_nan() || x.is_nan(),
                    "rule {} at {p:?}: {x} became {y}",
                    rule.rewrite.name
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} rules checked");
}

fn random_inputs(loss: &Loss, spec: &str, seed: u64) -> BTreeMap<String, Tensor> {
    let sizes: Vec<(String, usize)> = spec
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    runtime::random::random_inputs(loss, &sizes, seed).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12) || (a.is_nan() && b.is_nan())
}

/// Simplified and original programs agree, and so do their gradients.
fn assert_simplify_preserves(loss: &Loss, spec: &str, label: &str) {
    let simple = simplify::simplify(loss);
    let printed = compiler::print::loss(&simple);
    compiler::check_source(&printed).unwrap_or_else(|d| {
        panic!(
            "{label}: simplified form does not check:\n{}",
            grammar::render(label, &printed, &d)
        )
    });
    for seed in 0..3 {
        let inputs = random_inputs(loss, spec, seed);
        let bound = runtime::bind(loss, &inputs, &[]).unwrap();
        let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
        let Ok((a, ga)) = runtime::eval_with_grad(loss, &bound, &wrt) else {
            continue;
        };
        let (b, _) = runtime::eval_with_grad(&simple, &bound, &wrt).unwrap();
        assert!(
            close(a.loss, b.loss),
            "{label}: loss {} became {}",
            a.loss,
            b.loss
        );
        for ((_, x), (_, y)) in a.metrics.iter().zip(&b.metrics) {
            assert!(close(*x, *y), "{label}: metric {x} became {y}");
        }
        // The printed gradient program: gradient of the simplified loss, simplified again.
        let grad = simplify::simplify(&compiler::grad::gradient(&simple, &wrt));
        let (_, defs) = runtime::eval_all(&grad, &bound).unwrap();
        for ((_, g), (_, d)) in ga.iter().zip(compiler::grad::gradient_outputs(&grad)) {
            let scale = g.iter().fold(1e-300f64, |m, x| m.max(x.abs()));
            for (x, y) in g.iter().zip(&defs[d]) {
                let same = (x - y).abs() <= 1e-9 * scale || (x.is_nan() && y.is_nan()) || x == y;
                assert!(same, "{label}: gradient {x} became {y}");
            }
        }
    }
}

#[test]
fn simplification_preserves_stdlib_losses_and_gradients() {
    for e in lossc::stdlib::ENTRIES {
        let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
        let spec: Vec<String> = loss.dims.iter().map(|d| format!("{d}=5")).collect();
        assert_simplify_preserves(&loss, &spec.join(","), e.name);
    }
}

#[test]
fn simplification_preserves_pass_programs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let source = std::fs::read_to_string(entry.path()).unwrap();
        let Some(spec) = source.lines().find_map(|l| l.split("--random ").nth(1)) else {
            continue;
        };
        let spec = spec.split_whitespace().next().unwrap().to_string();
        for loss in compiler::check_source(&source).unwrap().losses {
            assert_simplify_preserves(&loss, &spec, &entry.path().display().to_string());
            n += 1;
        }
    }
    assert!(n >= 25);
}

#[test]
fn every_stdlib_loss_saturates_or_stops_within_limits() {
    for e in lossc::stdlib::ENTRIES {
        let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
        let start = std::time::Instant::now();
        let (_, stops) = simplify::simplify_with(&loss, Limits::default());
        // Each expression ends by saturating or at a limit, never by blowing up.
        assert!(
            stops
                .iter()
                .all(|s| matches!(s, Stop::Saturated | Stop::Limit(_)))
        );
        assert!(
            start.elapsed().as_secs() < 5,
            "{} took {:?}",
            e.name,
            start.elapsed()
        );
    }
}

/// Value and gradient of a source loss in f32 on one input vector `x`.
fn f32_value_and_grad(source: &str, x: &[f64], simplified: bool) -> (f64, Vec<f64>) {
    let mut loss = compiler::check_source(source).unwrap().losses.remove(0);
    if simplified {
        loss = simplify::simplify(&loss);
    }
    let inputs = BTreeMap::from([(
        "x".to_string(),
        Tensor {
            shape: vec![x.len()],
            data: runtime::Data::F64(x.to_vec()),
        },
    )]);
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
    let (out, grads) = runtime::eval_with_grad_in(&loss, &bound, &wrt, Precision::F32).unwrap();
    (out.loss, grads[0].1.clone())
}

#[test]
fn stable_forms_are_finite_in_f32() {
    // -log(sigmoid(x)) at x = -200 is 200 with gradient -1/B.
    let src = "loss l(x: [B]) { mean[b](-log(sigmoid(x[b]))) }";
    let (naive, _) = f32_value_and_grad(src, &[-200.0], false);
    assert!(
        !naive.is_finite(),
        "the naive form overflows in f32 ({naive})"
    );
    let (v, g) = f32_value_and_grad(src, &[-200.0, -200.0], true);
    assert_eq!(v, 200.0);
    assert_eq!(g, vec![-0.5, -0.5]);

    // log(sum exp) at [1000, 1000] is 1000 + ln 2.
    let src = "loss l(x: [B]) { log(sum[j](exp(x[j]))) }";
    assert!(
        !f32_value_and_grad(src, &[1000.0, 1000.0], false)
            .0
            .is_finite()
    );
    let (v, g) = f32_value_and_grad(src, &[1000.0, 1000.0], true);
    assert!((v - (1000.0 + std::f64::consts::LN_2)).abs() < 1e-3, "{v}");
    // (1000 + ln 2 has about 4 correct decimals in f32)
    assert!(g.iter().all(|x| (x - 0.5).abs() < 1e-4), "{g:?}");

    // log(1 + sum exp) (Multi-Similarity's form) at large similarities.
    let src = "loss l(x: [B]) { log(1 + sum[j](exp(50 * x[j]))) }";
    assert!(!f32_value_and_grad(src, &[3.0, 2.0], false).0.is_finite());
    let (v, g) = f32_value_and_grad(src, &[3.0, 2.0], true);
    assert!(
        (v - 150.0).abs() < 1e-3 && g.iter().all(|x| x.is_finite()),
        "{v} {g:?}"
    );
}

#[test]
fn cross_entropy_is_finite_at_huge_logits_in_f32() {
    let e = lossc::stdlib::get("cross_entropy").unwrap();
    let loss = simplify::simplify(&compiler::check_source(e.source).unwrap().losses.remove(0));
    let logits: Vec<f64> = vec![1e4, -1e4, 5e3, 2e4, -3e3, 0.0];
    let inputs = BTreeMap::from([
        (
            "logits".to_string(),
            Tensor {
                shape: vec![2, 3],
                data: runtime::Data::F64(logits),
            },
        ),
        (
            "target".to_string(),
            Tensor {
                shape: vec![2],
                data: runtime::Data::I64(vec![1, 0]),
            },
        ),
    ]);
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (out, grads) = runtime::eval_with_grad_in(&loss, &bound, &[0], Precision::F32).unwrap();
    // Row 0: lse = 1e4, target logit -1e4 → 2e4. Row 1: target is the maximum → 0.
    assert_eq!(out.loss, 1e4);
    assert!(grads[0].1.iter().all(|g| g.is_finite()), "{:?}", grads[0].1);
}

#[test]
fn stdlib_simplified_forms_and_gradients_are_snapshot_tested() {
    for e in lossc::stdlib::ENTRIES {
        let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
        let simple = simplify::simplify(&loss);
        insta::assert_snapshot!(
            format!("simplify_{}", e.name),
            compiler::print::loss(&simple)
        );
        let wrt = compiler::grad::resolve_wrt(&simple, &[]).unwrap();
        let grad = simplify::simplify(&compiler::grad::gradient(&simple, &wrt));
        insta::assert_snapshot!(
            format!("grad_simplified_{}", e.name),
            compiler::print::loss(&grad)
        );
    }
}

#[test]
fn every_scalar_stability_rule_fixes_f32_somewhere() {
    // For each stability rule, a point where the left side is wrong in f32 (not finite, or off
    // by more than 1e-3 relative) while the right side is right (within 1e-5 relative).
    let values = [
        -1e4, -1000.0, -100.0, -90.0, -20.0, -0.5, -1e-4, -1e-8, 1e-8, 1e-4, 0.5, 20.0, 90.0,
        100.0, 1000.0, 1e4,
    ];
    let mut checked = 0;
    for rule in rules::stability() {
        let Some(l) = rules::lhs(&rule) else { continue };
        let Some(r) = rule.rewrite.applier.get_pattern_ast() else {
            continue;
        };
        let mut names = vec![];
        let (Some(lhs), Some(rhs)) = (side(&l.ast, &mut names), side(r, &mut names)) else {
            continue;
        };
        let (lhs, rhs) = (scalar_loss(lhs), scalar_loss(rhs));
        let rel = |got: f64, want: f64| (got - want).abs() / want.abs().max(1e-300);
        let witness = values
            .iter()
            .flat_map(|&a| values.iter().map(move |&b| [a, b, 0.5, 2.0]))
            .find(|p| {
                let truth = eval_scalar(&lhs, *p, Precision::F64);
                let (naive, stable) = (
                    eval_scalar(&lhs, *p, Precision::F32),
                    eval_scalar(&rhs, *p, Precision::F32),
                );
                truth.is_finite()
                    && truth != 0.0
                    && (!naive.is_finite() || rel(naive, truth) > 1e-3)
                    && rel(stable, truth) < 1e-5
            });
        assert!(
            witness.is_some(),
            "stability rule {} fixes nothing in f32 at the sampled points",
            rule.rewrite.name
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} stability rules checked");
}

/// The simplified form of a one-loss program over `x: [B]`, `a: []`, `m: bool[B]`, printed.
fn simplified(body: &str) -> String {
    let source = format!("loss l(x: [B], y: [B], m: bool[B]; alpha = 2) {{ {body} }}");
    let loss = compiler::check_source(&source).unwrap().losses.remove(0);
    let simple = simplify::simplify(&loss);
    assert_simplify_preserves(&loss, "B=5", body);
    let printed = compiler::print::loss(&simple);
    printed.lines().nth(1).unwrap().trim().to_string()
}

#[test]
fn reduction_and_boolean_rules_fire_where_they_may() {
    // Factors move out of reductions only when they do not mention the reduced index
    // (products may come out in either order).
    let either = |body: &str, forms: &[&str]| {
        let got = simplified(body);
        assert!(forms.contains(&got.as_str()), "{body} simplified to {got}");
    };
    either(
        "sum[j](alpha * x[j])",
        &["alpha * sum[j](x[j])", "sum[j](x[j]) * alpha"],
    );
    either(
        "sum[j](x[j] * alpha)",
        &["alpha * sum[j](x[j])", "sum[j](x[j]) * alpha"],
    );
    either("sum[j](x[j] / alpha)", &["sum[j](x[j]) / alpha"]);
    either("sum[j](-x[j])", &["-sum[j](x[j])"]);
    either(
        "mean[j](alpha * x[j])",
        &["alpha * mean[j](x[j])", "mean[j](x[j]) * alpha"],
    );
    either(
        "mean[j](x[j] * alpha)",
        &["alpha * mean[j](x[j])", "mean[j](x[j]) * alpha"],
    );
    either("mean[j](-x[j])", &["-mean[j](x[j])"]);
    either("sum[j](x[j] * x[j])", &["sum[j](x[j] * x[j])"]);
    // Not out of a filtered reduction: it may be empty, and the factor infinite.
    either(
        "sum[j | m[j]](alpha * x[j])",
        &["sum[j | m[j]](alpha * x[j])", "sum[j | m[j]](x[j] * alpha)"],
    );
    either(
        "sum[i](sum[j](x[i] * y[j]))",
        &[
            "sum[i](x[i] * sum[j](y[j]))",
            "sum[i](sum[j](y[j]) * x[i])",
            "sum[i](x[i]) * sum[j](y[j])",
            "sum[j](y[j]) * sum[i](x[i])",
        ],
    );
    // Stability rules over reductions.
    assert_eq!(
        simplified("log(sum[j | m[j]](exp(x[j])))"),
        "logsumexp[j | m[j]](x[j])"
    );
    assert_eq!(
        simplified("log(1 + sum[j](exp(alpha * x[j])))"),
        "softplus(logsumexp[j](alpha * x[j]))"
    );
    // Boolean identities.
    assert_eq!(
        simplified("sum[j | true && m[j]](x[j])"),
        "sum[j | m[j]](x[j])"
    );
    assert_eq!(
        simplified("sum[j | m[j] && true](x[j])"),
        "sum[j | m[j]](x[j])"
    );
    assert_eq!(simplified("sum[j | !(!m[j])](x[j])"), "sum[j | m[j]](x[j])");
    assert_eq!(
        simplified("sum[j](if m[j] then x[j] else x[j])"),
        "sum[j](x[j])"
    );
    assert_eq!(
        simplified("sum[j](if true then x[j] else y[j])"),
        "sum[j](x[j])"
    );
    assert_eq!(
        simplified("sum[j](if false then x[j] else y[j])"),
        "sum[j](y[j])"
    );
}

#[path = "../compiler/tests/support/generate.rs"]
mod generate;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
    /// On random well-typed programs, the simplified program computes what the original does
    /// (up to rounding; where the original overflows the stable form may be finite).
    #[test]
    fn generated_programs_keep_their_value(seed in proptest::prelude::any::<u64>()) {
        let loss = generate::generate(seed);
        let simple = simplify::simplify(&loss);
        let inputs = random_inputs(&loss, "B=3,D=2", seed % 5);
        let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
        let ((a, _), (b, _)) = match (runtime::eval_all(&loss, &bound), runtime::eval_all(&simple, &bound)) {
            (Ok(x), Ok(y)) => (x, y),
            // Both may refuse the same input (e.g. a random gather out of range).
            (Err(_), Err(_)) => return Ok(()),
            (x, y) => {
                return Err(proptest::test_runner::TestCaseError::fail(format!(
                    "{}\noriginal {:?}, simplified {:?}",
                    compiler::print::loss(&loss),
                    x.err(),
                    y.err()
                )));
            }
        };
        let same = |x: f64, y: f64| {
            !x.is_finite() || x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        };
        proptest::prop_assert!(same(a.loss, b.loss), "{}\nsimplified:\n{}\n{} vs {}", compiler::print::loss(&loss), compiler::print::loss(&simple), a.loss, b.loss);
    }
}
