//! The standard library: every file checks, its printed IR is snapshot-tested, and the
//! interpreter matches the reference implementations' float64 values in `stdlib/fixtures/`
//! (made by `stdlib/fixtures/make_fixtures.py`; the tests read only the JSON it wrote).

use lossc::stdlib;
use runtime::data::{self, Format};
use serde_json::Value;
use std::path::Path;

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

/// Relative difference with an absolute floor, so exact zeros compare sensibly.
fn close(got: f64, want: f64, rel: f64) -> bool {
    got == want || (got - want).abs() <= rel * want.abs().max(1e-12)
}

#[test]
fn interpreter_matches_reference_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/fixtures");
    let mut checked_cases = 0;
    let mut failures = vec![];
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let text = std::fs::read_to_string(f.path()).unwrap();
            let case: Value = serde_json::from_str(&text).unwrap();
            let name = case["loss"].as_str().unwrap();
            let loss = checked(name);
            let inputs = data::parse_tensors(
                Format::Json,
                case["inputs"].to_string().as_bytes(),
                "fixture",
            )
            .unwrap();
            let set: Vec<(String, f64)> = case["hyperparameters"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            let bound = runtime::bind(&loss, &inputs, &set).unwrap();
            let out = runtime::eval(&loss, &bound).unwrap();
            let label = format!("{name}/{}", f.file_name().to_string_lossy());
            let want = case["expected"]["loss"].as_f64().unwrap();
            if !close(out.loss, want, 1e-9) {
                failures.push(format!("{label}: loss {} != reference {want}", out.loss));
            }
            let metrics = case["expected"]["metrics"].as_object().unwrap();
            assert_eq!(metrics.len(), out.metrics.len(), "{label}: metric count");
            for (m, v) in &out.metrics {
                let want = metrics[m].as_f64().unwrap();
                if !close(*v, want, 1e-9) {
                    failures.push(format!("{label}: metric {m} {v} != reference {want}"));
                }
            }
            checked_cases += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked_cases >= 25,
        "only {checked_cases} fixture cases found"
    );
}

#[test]
fn interpreter_gradients_match_reference_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/fixtures");
    let mut cases = 0;
    let mut failures = vec![];
    for dir in std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(f.path()).unwrap()).unwrap();
            let name = case["loss"].as_str().unwrap();
            let label = format!("{name}/{}", f.file_name().to_string_lossy());
            let loss = checked(name);
            let inputs = data::parse_tensors(
                Format::Json,
                case["inputs"].to_string().as_bytes(),
                "fixture",
            )
            .unwrap();
            let set: Vec<(String, f64)> = case["hyperparameters"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            let bound = runtime::bind(&loss, &inputs, &set).unwrap();
            let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
            let (out, grads) = runtime::eval_with_grad(&loss, &bound, &wrt).unwrap();
            let want = case["expected"]["loss"].as_f64().unwrap();
            assert!(
                close(out.loss, want, 1e-9),
                "{label}: gradient program changed the loss"
            );
            let expected = case["expected"]["grad"].as_object().unwrap();
            assert_eq!(
                expected.len(),
                grads.len(),
                "{label}: one gradient per float input"
            );
            for (i, g) in grads {
                let input = &loss.inputs[i].name;
                let want: Vec<f64> = flatten(&expected[input]);
                assert_eq!(want.len(), g.len(), "{label}: grad_{input} size");
                for (k, (a, w)) in g.iter().zip(&want).enumerate() {
                    // Gradients are compared relative to the largest entry: entries that cancel to
                    // ~1e-17 carry no relative precision in either implementation.
                    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
                    // (written so that a NaN where the reference is finite fails)
                    let same = if w.is_nan() {
                        a.is_nan()
                    } else {
                        (a - w).abs() <= 1e-9 * scale
                    };
                    if !same {
                        failures.push(format!("{label}: grad_{input}[{k}] = {a}, reference {w}"));
                    }
                }
            }
            cases += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases >= 25);
}

fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(xs) => xs.iter().flat_map(flatten).collect(),
        x => vec![x.as_f64().unwrap()],
    }
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
