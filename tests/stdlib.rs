//! The standard library: every file checks, its printed IR is snapshot-tested, and the
//! interpreter matches the reference implementations' float64 values in `stdlib/fixtures/`
//! (made by `stdlib/fixtures/make_fixtures.py`; the tests read only the JSON it wrote).

use lossc::stdlib;

fn checked(name: &str) -> compiler::ir::Loss {
    let e = stdlib::get(name).unwrap_or_else(|| panic!("no stdlib loss `{name}`"));
    let program = compiler::check_source(e.source)
        .unwrap_or_else(|d| panic!("{name}:\n{}", grammar::render(name, e.source, &d)));
    assert_eq!(program.losses.len(), 1, "{name} holds one loss");
    assert_eq!(
        program.losses[0].name, name,
        "file stem and loss name agree"
    );
    program.losses.into_iter().next().unwrap()
}

#[test]
fn every_stdlib_loss_checks_and_prints() {
    for e in stdlib::ENTRIES {
        let loss = checked(e.name);
        assert!(!loss.doc.is_empty(), "{} has a doc comment", e.name);
        insta::assert_snapshot!(format!("ir_{}", e.name), compiler::print::loss(&loss));
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        let grad = compiler::print::loss(&compiler::grad::gradient(&loss, &wrt));
        compiler::check_source(&grad).unwrap_or_else(|d| {
            panic!(
                "gradient of {} does not check:\n{}",
                e.name,
                grammar::render("grad", &grad, &d)
            )
        });
        insta::assert_snapshot!(format!("grad_{}", e.name), grad);
    }
}

#[test]
fn stdlib_names_match_the_contract() {
    // Names, input order and hyperparameters from shared/design/stdlib.md.
    let sig = |name: &str| {
        let l = checked(name);
        let inputs: Vec<String> = l
            .inputs
            .iter()
            .map(|i| runtime::bind::signature(&l, i))
            .collect();
        let hypers: Vec<String> = l
            .hypers
            .iter()
            .map(|h| format!("{}={}", h.name, h.default))
            .collect();
        (inputs.join(", "), hypers.join(", "))
    };
    assert_eq!(
        sig("dpo"),
        (
            "policy_chosen_logps: [B], policy_rejected_logps: [B], reference_chosen_logps: [B], reference_rejected_logps: [B]".into(),
            "beta=0.1, label_smoothing=0".into()
        )
    );
    assert_eq!(
        sig("cross_entropy"),
        (
            "logits: [B, C], target: int[B]".into(),
            "label_smoothing=0, ignore_index=-100".into()
        )
    );
    assert_eq!(
        sig("multi_similarity"),
        (
            "embeddings: [B, D], labels: int[B]".into(),
            "alpha=2, beta=50, base=0.5".into()
        )
    );
    assert_eq!(
        sig("multi_similarity_mined"),
        (
            "embeddings: [B, D], labels: int[B]".into(),
            "alpha=2, beta=50, base=0.5, margin=0.1".into()
        )
    );
}

#[path = "support/fixtures.rs"]
mod fixtures;

/// Relative difference with an absolute floor, so exact zeros compare sensibly.
fn close(got: f64, want: f64, rel: f64) -> bool {
    got == want || (got - want).abs() <= rel * want.abs().max(1e-12)
}

#[test]
fn interpreter_matches_reference_fixtures() {
    let cases = fixtures::cases();
    let mut failures = vec![];
    for case in &cases {
        let out = runtime::eval(&case.loss, &case.bound).unwrap();
        let want = case.expected["loss"].as_f64().unwrap();
        if !close(out.loss, want, 1e-9) {
            failures.push(format!(
                "{}: loss {} != reference {want}",
                case.label, out.loss
            ));
        }
        let metrics = case.expected["metrics"].as_object().unwrap();
        assert_eq!(
            metrics.len(),
            out.metrics.len(),
            "{}: metric count",
            case.label
        );
        for (m, v) in &out.metrics {
            let want = metrics[m].as_f64().unwrap();
            if !close(*v, want, 1e-9) {
                failures.push(format!(
                    "{}: metric {m} {v} != reference {want}",
                    case.label
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        cases.len() >= 25,
        "only {} fixture cases found",
        cases.len()
    );
}

#[test]
fn interpreter_gradients_match_reference_fixtures() {
    let cases = fixtures::cases();
    let mut failures = vec![];
    for case in &cases {
        let wrt = compiler::grad::resolve_wrt(&case.loss, &[]).unwrap();
        let (out, grads) = runtime::eval_with_grad(&case.loss, &case.bound, &wrt).unwrap();
        let want = case.expected["loss"].as_f64().unwrap();
        assert!(
            close(out.loss, want, 1e-9),
            "{}: gradient program changed the loss",
            case.label
        );
        let expected = case.expected["grad"].as_object().unwrap();
        assert_eq!(
            expected.len(),
            grads.len(),
            "{}: one gradient per float input",
            case.label
        );
        for (i, g) in grads {
            let input = &case.loss.inputs[i].name;
            let want = fixtures::flatten(&expected[input]);
            assert_eq!(want.len(), g.len(), "{}: grad_{input} size", case.label);
            // Gradients are compared relative to the largest entry: entries that cancel to
            // ~1e-17 carry no relative precision in either implementation.
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
            for (k, (a, w)) in g.iter().zip(&want).enumerate() {
                // (written so that a NaN where the reference is finite fails)
                let same = if w.is_nan() {
                    a.is_nan()
                } else {
                    (a - w).abs() <= 1e-9 * scale
                };
                if !same {
                    failures.push(format!(
                        "{}: grad_{input}[{k}] = {a}, reference {w}",
                        case.label
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 25);
}

#[test]
fn stdlib_signatures_and_listing_are_snapshot_tested() {
    // The public contract of stdlib.md: every name, input (in order) and hyperparameter.
    let mut sigs = String::new();
    for e in stdlib::ENTRIES {
        let l = checked(e.name);
        let inputs: Vec<String> = l
            .inputs
            .iter()
            .map(|i| runtime::bind::signature(&l, i))
            .collect();
        let hypers: Vec<String> = l
            .hypers
            .iter()
            .map(|h| format!("{} = {}", h.name, compiler::print::hyper_value(h.default)))
            .collect();
        let metrics: Vec<&str> = l.metrics().map(|m| m.name.as_str()).collect();
        let hypers = if hypers.is_empty() {
            String::new()
        } else {
            format!("; {}", hypers.join(", "))
        };
        sigs.push_str(&format!(
            "{}/{}({}{hypers}) metrics [{}]\n",
            e.family,
            e.name,
            inputs.join(", "),
            metrics.join(", ")
        ));
    }
    insta::assert_snapshot!("signatures", sigs);
    let listing = std::process::Command::new(env!("CARGO_BIN_EXE_lossc"))
        .arg("doc")
        .output()
        .unwrap();
    insta::assert_snapshot!("doc_listing", String::from_utf8_lossy(&listing.stdout));
}
