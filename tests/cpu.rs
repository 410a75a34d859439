//! The CPU backend (Cranelift JIT, f32) against the reference: every stdlib fixture (loss,
//! metrics, gradients) and every pass-corpus program against the f64 interpreter.

use compiler::ir::Loss;
use runtime::data::{self, Format};
use std::path::Path;

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "support/tolerance.rs"]
mod tolerance;
use tolerance::{BEYOND_F32, close, fixture_mismatches, interpreter_mismatches, sizes};

#[test]
fn cpu_matches_every_stdlib_fixture() {
    let cases = fixtures::cases();
    let mut failures = vec![];
    for case in cases
        .iter()
        .filter(|c| !BEYOND_F32.iter().any(|(label, _)| *label == c.label))
    {
        let label = &case.label;
        let wrt = compiler::grad::resolve_wrt(&case.loss, &[]).unwrap();
        let (out, grads) = match runtime::cpu::eval_with_grad(&case.loss, &case.bound, &wrt) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        failures.extend(fixture_mismatches(case, &out, &grads));
    }
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// CPU and interpreter agree on `loss` at seeded random inputs (loss, metrics, gradients).
fn agree(loss: &Loss, spec: &str, seed: u64) -> Vec<String> {
    let inputs = runtime::random::random_inputs(loss, &sizes(spec), seed).unwrap();
    let bound = runtime::bind(loss, &inputs, &[]).unwrap();
    let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
    let compiled = runtime::cpu::eval_with_grad(loss, &bound, &wrt);
    interpreter_mismatches(loss, &bound, &wrt, "CPU", compiled).unwrap_or_default()
}

#[test]
fn cpu_matches_the_interpreter_on_pass_programs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    let mut failures = vec![];
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let source = std::fs::read_to_string(entry.path()).unwrap();
        let Some(spec) = source.lines().find_map(|l| l.split("--random ").nth(1)) else {
            continue;
        };
        let spec = spec.split_whitespace().next().unwrap().to_string();
        for loss in compiler::check_source(&source).unwrap().losses {
            failures.extend(
                agree(&loss, &spec, 11)
                    .into_iter()
                    .map(|f| format!("{}: {f}", entry.path().display())),
            );
            n += 1;
        }
    }
    assert!(n >= 25);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cpu_reports_out_of_range_gathers_instead_of_reading_them() {
    let e = lossc::stdlib::get("cross_entropy").unwrap();
    let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"logits": [[1.0, 2.0], [3.0, 4.0]], "target": [1, 7]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let err = runtime::cpu::eval_with_grad(&loss, &bound, &[0]).unwrap_err();
    assert!(
        err.message.contains("index out of range") && err.message.contains("got 7"),
        "{err}"
    );
    // An ignored row's target is never read.
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"logits": [[1.0, 2.0], [3.0, 4.0]], "target": [1, -100]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (out, _) = runtime::cpu::eval_with_grad(&loss, &bound, &[0]).unwrap();
    assert!(
        (out.loss - (1.0 + (-1f64).exp()).ln()).abs() < 1e-6,
        "{}",
        out.loss
    );
}

#[path = "../compiler/tests/support/generate.rs"]
mod generate;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// On random well-typed programs the compiled code computes what the interpreter does.
    #[test]
    fn cpu_matches_the_interpreter_on_generated_programs(seed in proptest::prelude::any::<u64>()) {
        let loss = generate::generate(seed);
        let failures = agree(&loss, "B=3,D=2", seed % 5);
        proptest::prop_assert!(failures.is_empty(), "{}\n{}", compiler::print::loss(&loss), failures.join("\n"));
    }
}

#[test]
fn argmax_and_argmin_take_the_first_extreme_index_on_every_backend() {
    let source = "loss l(q: [B, K]) {
        let hi[b] = argmax[k](q[b, k])
        let lo[b] = argmin[k](q[b, k])
        let none[b] = argmax[k | q[b, k] > 100](q[b, k])
        metric first_max = hi[0]
        metric second_max = hi[1]
        metric first_min = lo[0]
        metric second_min = lo[1]
        metric empty = none[0]
        sum[b](q[b, hi[b]] - q[b, lo[b]])
    }";
    let loss = compiler::check_source(source).unwrap().losses.remove(0);
    // Row 0: ties at the maximum (1, 3) and the minimum (0, 2); row 1: a NaN wins both.
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"q": [[0.0, 5.0, 0.0, 5.0], [1.0, "NaN", 7.0, -7.0]]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let want = [
        ("first_max", 1.0),
        ("second_max", 1.0),
        ("first_min", 0.0),
        ("second_min", 1.0),
        ("empty", -1.0),
    ];
    let interp = runtime::eval(&loss, &bound).unwrap();
    let (cpu, _) = runtime::cpu::eval_with_grad(&loss, &bound, &[]).unwrap();
    for out in [interp.metrics, cpu.metrics] {
        let got: Vec<(&str, f64)> = out.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn cpu_results_are_bit_identical_for_any_thread_count() {
    // Large enough for the executor to split definitions (and matrix products: the Gram
    // matrix of multi_similarity and its gradient) over threads.
    let cases = [
        (
            "cross_entropy",
            "B=96,C=512",
            vec![("label_smoothing".to_string(), 0.1)],
        ),
        ("multi_similarity", "B=160,D=48", vec![]),
    ];
    for (name, size, set) in cases {
        let e = lossc::stdlib::get(name).unwrap();
        let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
        let inputs = runtime::random::random_inputs(&loss, &sizes(size), 4).unwrap();
        let bound = runtime::bind(&loss, &inputs, &set).unwrap();
        let run = |threads| on_threads(threads, &loss, &bound);
        let (one, g1) = run(1);
        for threads in [2, 3, 4] {
            let (many, g) = run(threads);
            assert_eq!(
                one.loss.to_bits(),
                many.loss.to_bits(),
                "{name}: {threads} threads"
            );
            let same = g1[0]
                .1
                .iter()
                .zip(&g[0].1)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name}: gradients differ with {threads} threads");
        }
        // And run after run.
        assert_eq!(run(2).0.loss.to_bits(), run(2).0.loss.to_bits());
        // And the interpreter's values.
        let (want, wg) = runtime::eval_with_grad(&loss, &bound, &[0]).unwrap();
        assert!(
            close(one.loss, want.loss, 0.0),
            "{name}: {} vs {}",
            one.loss,
            want.loss
        );
        let scale = wg[0].1.iter().fold(0f64, |m, x| m.max(x.abs()));
        for (a, b) in g1[0].1.iter().zip(&wg[0].1) {
            assert!(close(*a, *b, scale), "{name}: gradient {a} vs {b}");
        }
    }
}

#[test]
fn reductions_split_in_blocks_combine_like_one_pass() {
    // B = 9000 splits each top-level reduction into 4 blocks (runtime::cpu); the filters leave
    // whole blocks empty, the ties and NaN sit in different blocks.
    let src = r#"
loss blocks(x: [B], m: bool[B]) {
    metric first_max = argmax[b](x[b])
    metric first_min = argmin[b | m[b]](x[b])
    metric none = argmax[b | x[b] > 1000](x[b])
    metric top = max[b | m[b]](x[b])
    metric low = min[b](x[b])
    metric kept = count[b | m[b]]()
    metric empty_mean = mean[b | x[b] > 1000](x[b])
    metric tail_lse = logsumexp[b | !m[b]](x[b])
    metric nothing_lse = logsumexp[b | x[b] > 1000](x[b])
    metric all_lse = logsumexp[b](x[b])
    sum[b](x[b] * x[b]) / 2 + mean[b | m[b]](x[b])
}
"#;
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let n = 9000;
    let mut x: Vec<f64> = (0..n)
        .map(|i| ((i * 37 % 101) as f64) / 10.0 - 5.0)
        .collect();
    x[100] = 50.0; // the maximum, tied in the next block
    x[2900] = 50.0;
    x[1500] = -90.0; // the minimum overall, outside m
    x[5000] = -80.0; // the minimum inside m, tied in the next block
    x[8999] = -80.0;
    let m: Vec<bool> = (0..n).map(|i| i >= 4500).collect(); // the first two blocks masked out
    let json = format!(r#"{{"x": {:?}, "m": {:?}}}"#, x, m);
    let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let interp = runtime::eval(&loss, &bound).unwrap();
    let run = |threads| on_threads(threads, &loss, &bound);
    let (cpu, grads) = run(2);
    assert!((cpu.loss - interp.loss).abs() <= 1e-4 * interp.loss.abs());
    assert_eq!(cpu.metrics.len(), interp.metrics.len());
    for ((name, got), (_, want)) in cpu.metrics.iter().zip(&interp.metrics) {
        let close = got == want || (got - want).abs() <= 1e-5 * want.abs().max(1.0);
        assert!(close, "{name}: cpu {got}, interpreter {want}");
    }
    let want = [("first_max", 100.0), ("first_min", 5000.0), ("none", -1.0)];
    for (name, v) in want {
        assert_eq!(
            cpu.metrics.iter().find(|m| m.0 == name).unwrap().1,
            v,
            "{name}"
        );
    }
    // A NaN anywhere wins argmax and max, whichever block holds it.
    let mut with_nan = x.clone();
    with_nan[6000] = f64::NAN;
    let json = format!(r#"{{"x": {:?}, "m": {:?}}}"#, with_nan, m).replace("NaN", "\"NaN\"");
    let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
    let nan_bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (nan_out, _) = runtime::cpu::eval_with_grad(&loss, &nan_bound, &[]).unwrap();
    let metric = |name: &str| nan_out.metrics.iter().find(|m| m.0 == name).unwrap().1;
    assert_eq!(metric("first_max"), 6000.0);
    assert!(metric("top").is_nan() && metric("low").is_nan());
    assert!(metric("all_lse").is_nan(), "{}", metric("all_lse"));
    // The same bits for every thread count.
    for threads in [1, 3, 4] {
        let (other, g) = run(threads);
        assert_eq!(
            cpu.loss.to_bits(),
            other.loss.to_bits(),
            "{threads} threads"
        );
        for ((_, a), (_, b)) in cpu.metrics.iter().zip(&other.metrics) {
            assert_eq!(a.to_bits(), b.to_bits(), "{threads} threads");
        }
        assert!(
            grads[0]
                .1
                .iter()
                .zip(&g[0].1)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

#[test]
fn long_reductions_keep_f32_accuracy() {
    // Issue 4's bound for reductions over more than 1e5 terms: 2e-4 relative. One running f32
    // sum over this many DPO terms drifts past it; blocked sums do not.
    let e = lossc::stdlib::get("dpo").unwrap();
    let loss = compiler::check_source(e.source).unwrap().losses.remove(0);
    let inputs = runtime::random::random_inputs(&loss, &sizes("B=400000"), 9).unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let want = runtime::eval(&loss, &bound).unwrap();
    let (got, _) = runtime::cpu::eval_with_grad(&loss, &bound, &[]).unwrap();
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    assert!(
        rel(got.loss, want.loss) < 2e-4,
        "{} vs {}",
        got.loss,
        want.loss
    );
    for ((name, a), (_, b)) in got.metrics.iter().zip(&want.metrics) {
        assert!(
            rel(*a, *b) < 2e-4 || (a - b).abs() < 1e-6,
            "{name}: {a} vs {b}"
        );
    }
}

#[test]
fn logsumexp_keeps_the_special_values_in_vector_lanes_and_tails() {
    // Patterns: all -inf, -inf before finite terms, +inf twice, a NaN, huge equal terms, and a
    // filter that keeps nothing - each placed in rows of 11 at offsets 0, 3 and 8 (the other
    // terms -inf), so it lands in the four-lane part, across lanes, and in the scalar tail of
    // both the one-pass and the two-pass logsumexp - against the interpreter's definition.
    let src = "loss l(x: [B, C]) {
        let r[b] = logsumexp[c](x[b, c])
        let scaled[b] = logsumexp[c](2 * x[b, c] - 1)
        let none[b] = logsumexp[c | x[b, c] > 1e30](x[b, c])
        let costly[b] = logsumexp[c](exp(x[b, c] / 1000))
        sum[b](r[b]) + sum[b](scaled[b]) + sum[b](none[b]) + sum[b](costly[b])
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let rows = special_value_rows();
    let rows = format!(r#"{{"x": [{}]}}"#, rows.join(", "));
    let inputs = data::parse_tensors(Format::Json, rows.as_bytes(), "t").unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (_, want) = runtime::eval_all(&loss, &bound).unwrap();
    let compiled = runtime::cpu::CpuLoss::compile(&loss).unwrap();
    let (_, got) = compiled.run(&bound).unwrap();
    for name in ["r", "scaled", "none", "costly"] {
        let d = loss.defs.iter().position(|d| d.name == name).unwrap();
        for (a, b) in compiled_values(&compiled, &got, name).iter().zip(&want[d]) {
            assert!(
                (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 * b.abs(),
                "{name}: cpu {a}, interpreter {b}"
            );
        }
    }
}

#[test]
fn sparse_filters_pass_over_dropped_groups_and_keep_every_term() {
    // Each row keeps the terms whose label is the row's: one at each position of a row of 27
    // (the first group of four, the middle, the last whole group, the scalar tail), two far
    // apart, or none, so the loops that pass over groups of four the filter drops stop at
    // every kind of group and run off the end.
    let src = "loss l(x: [B, C], labels: int[C], row: int[B]) {
        let total[b] = sum[c | labels[c] == row[b]](x[b, c])
        let average[b] = mean[c | labels[c] == row[b]](x[b, c])
        let kept[b] = count[c | labels[c] == row[b]]()
        let top[b] = max[c | labels[c] == row[b]](x[b, c])
        let cheap[b] = logsumexp[c | labels[c] == row[b]](x[b, c])
        let costly[b] = logsumexp[c | labels[c] == row[b]](exp(x[b, c] / 10))
        sum[b](total[b] + average[b])
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let c = 27;
    let mut labels: Vec<i64> = (0..c as i64).collect();
    // Row 0 keeps terms 0 and 26; row 5 terms 5 and 13; row 13 none.
    labels[26] = 0;
    labels[13] = 5;
    let rows: Vec<i64> = (0..c as i64).chain([-1]).collect();
    let x: Vec<String> = (0..rows.len())
        .map(|b| {
            let row: Vec<String> = (0..c)
                .map(|k| format!("{}", ((b * 31 + k * 17) % 23) as f64 - 11.0))
                .collect();
            format!("[{}]", row.join(", "))
        })
        .collect();
    let json = format!(
        r#"{{"x": [{}], "labels": {labels:?}, "row": {rows:?}}}"#,
        x.join(", ")
    );
    let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (_, want) = runtime::eval_all(&loss, &bound).unwrap();
    let compiled = runtime::cpu::CpuLoss::compile(&loss).unwrap();
    let (_, got) = compiled.run(&bound).unwrap();
    for name in ["total", "average", "kept", "top", "cheap", "costly"] {
        let d = loss.defs.iter().position(|d| d.name == name).unwrap();
        let got = compiled_values(&compiled, &got, name);
        assert_eq!(got.len(), rows.len(), "{name}");
        for (b, (a, w)) in got.iter().zip(&want[d]).enumerate() {
            assert!(
                a == w || (a - w).abs() <= 1e-5 * w.abs(),
                "{name}[{b}]: cpu {a}, interpreter {w}"
            );
        }
    }
}

#[test]
fn a_softmax_filled_in_its_logsumexps_pass_keeps_the_special_values() {
    // The gradient of a logsumexp is its softmax. Compiled for outputs, the softmax is filled
    // from the logsumexp's second pass (`clif::softmax`); compiled keeping every definition,
    // it is computed from its own body. Rows of 11 hold the special patterns of the
    // logsumexp test at offsets 0, 3 and 8 (the rest -inf), and a finite row whose filter
    // drops whole groups of four. Both compilations must give NaN at the same elements, and
    // elsewhere the f64 interpreter's gradient: for [1000, 1000, 999], exp(x - lse) loses
    // digits to the rounding of lse (3e-5 here), exp(x - max) / sum does not.
    let src = "loss l(x: [B, C]) {
        mean[b](logsumexp[c](x[b, c])) + mean[b](logsumexp[c | x[b, c] > -5](2 * x[b, c]))
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let mut rows = special_value_rows();
    rows.push("[-9, 3, -9, -9, -9, -9, -9, -9, 2, -9, 1]".to_string());
    let json = format!(r#"{{"x": [{}]}}"#, rows.join(", "));
    check_shared_softmax(&loss, &json, 11);
    // Long rows run one per block, each in the same scratch: the second row's dropped groups
    // keep the first row's values there, which its filter must leave unread.
    let long = |first: &str| {
        let mut row = vec!["1.5"; 4096];
        row[..8].fill(first);
        format!("[{}]", row.join(", "))
    };
    let json = format!(r#"{{"x": [{}, {}]}}"#, long("0.5"), long("-9"));
    check_shared_softmax(&loss, &json, 4096);
}

/// The values of definition `name` among `values`, the definitions of `compiled`'s program
/// (which has more than the loss: split parts, hoisted reductions).
fn compiled_values<'a>(
    compiled: &runtime::cpu::CpuLoss,
    values: &'a [Vec<f64>],
    name: &str,
) -> &'a [f64] {
    let defs = &compiled.program().defs;
    let d = defs.iter().position(|d| d.name == name).unwrap();
    &values[d]
}

/// Rows of 11 terms (JSON arrays) holding special patterns — all -inf, -inf before finite
/// terms, +inf twice, a NaN, huge equal terms — each at offsets 0, 3 and 8 with -inf around
/// it, so that it lands in the four-lane part of a loop, across lanes, and in its scalar tail.
fn special_value_rows() -> Vec<String> {
    let patterns = [
        ["-Infinity", "-Infinity", "-Infinity"],
        ["-Infinity", "1.0", "2.0"],
        ["1.0", "Infinity", "Infinity"],
        ["1.0", "NaN", "2.0"],
        ["NaN", "1.0", "2.0"],
        ["Infinity", "NaN", "1.0"],
        ["-Infinity", "NaN", "-Infinity"],
        ["1000.0", "1000.0", "999.0"],
        ["-3.0", "5.0", "4.0"],
    ];
    let quote = |v: &str| {
        if v.parse::<f64>().is_ok_and(f64::is_finite) {
            v.to_string()
        } else {
            format!("\"{v}\"")
        }
    };
    let mut rows = vec![];
    for p in patterns {
        for at in [0, 3, 8] {
            let mut row = vec![quote("-Infinity"); 11];
            for (k, v) in p.iter().enumerate() {
                row[at + k] = quote(v);
            }
            rows.push(format!("[{}]", row.join(", ")));
        }
    }
    rows
}

/// Checks [`a_softmax_filled_in_its_logsumexps_pass_keeps_the_special_values`] on the rows
/// (of `width` terms) of the JSON input `json`.
fn check_shared_softmax(loss: &Loss, json: &str, width: usize) {
    let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
    let bound = runtime::bind(loss, &inputs, &[]).unwrap();
    let program = runtime::cpu::gradient_program(loss, &[0]);
    // One thread: every block of rows reuses the same scratch. Returns the gradient and the
    // number of softmax definitions.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let gradient = |shared: bool| -> (Vec<f64>, usize) {
        pool.install(|| {
            let compiled = if shared {
                runtime::cpu::CpuLoss::compile_for_outputs(&program)
            } else {
                runtime::cpu::CpuLoss::compile(&program)
            }
            .unwrap();
            let (_, values) = compiled.run(&bound).unwrap();
            let softmaxes = compiled
                .program()
                .defs
                .iter()
                .filter(|d| d.name.starts_with("softmax_") && !d.name.starts_with("softmax_scale_"))
                .count();
            (
                compiled_values(&compiled, &values, "grad_x").to_vec(),
                softmaxes,
            )
        })
    };
    let (direct, _) = gradient(false);
    let (got, softmaxes) = gradient(true);
    assert_eq!(softmaxes, 2, "both logsumexps share their softmax");
    // The interpreter's gradient recomputes the logsumexp for each term: only for short rows
    // (long rows hold plain numbers, where the direct form is accurate).
    let exact = if width <= 64 {
        let (_, exact) = runtime::eval_with_grad(loss, &bound, &[0]).unwrap();
        exact[0].1.clone()
    } else {
        direct.clone()
    };
    assert_eq!(direct.len(), got.len());
    for (k, ((a, b), e)) in got.iter().zip(&direct).zip(&exact).enumerate() {
        let row = k / width;
        assert_eq!(
            a.is_nan(),
            b.is_nan(),
            "element {k} (row {row}): shared {a}, direct {b}"
        );
        if !a.is_nan() && e.is_finite() {
            assert!(
                (a - e).abs() <= 1e-6 * e.abs().max(1e-3),
                "element {k} (row {row}): shared {a}, reference {e}"
            );
        }
        // A term exp(-inf) is 0, not the smallest normal of a flushed exp.
        if *e == 0.0 {
            assert_eq!(*a, 0.0, "element {k} (row {row}): shared {a}, reference 0");
        }
    }
}

#[test]
fn softplus_family_keeps_f32_accuracy_over_the_whole_range() {
    // softplus and log_sigmoid share log1p(exp(-|x|)), computed from logf with Goldberg's
    // correction: a few ulp everywhere, including where exp(-|x|) is tiny or subnormal.
    let src = "loss l(x: [N]) {
        let sp[i] = softplus(x[i])
        let ls[i] = log_sigmoid(x[i])
        sum[i](sp[i] + ls[i])
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let xs: Vec<f64> = (-4000..=4000)
        .map(|k| f64::from((k as f32) * 0.025))
        .chain([-103.0, -88.5, -87.0, 1e-7, -1e-7, 0.0, 30.0, -30.0])
        .collect();
    let json = format!(r#"{{"x": {xs:?}}}"#);
    let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let compiled = runtime::cpu::CpuLoss::compile(&loss).unwrap();
    let (_, got) = compiled.run(&bound).unwrap();
    for (name, f) in [
        (
            "sp",
            (|x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p()) as fn(f64) -> f64,
        ),
        ("ls", |x: f64| x.min(0.0) - (-x.abs()).exp().ln_1p()),
    ] {
        let d = compiled
            .program()
            .defs
            .iter()
            .position(|d| d.name == name)
            .unwrap();
        for (x, g) in xs.iter().zip(&got[d]) {
            let want = f(*x);
            let err = (g - want).abs() / want.abs().max(f64::from(f32::MIN_POSITIVE));
            assert!(
                err <= 4.0 * f64::from(f32::EPSILON),
                "{name}({x}): {g} vs {want}"
            );
        }
    }
}

#[test]
fn sums_of_softplus_tails_kept_as_log_products_match_the_interpreter() {
    // `compiler::log_product`: these sums keep Π(1 + exp(-|x|)) - 1 per lane and fold its
    // log1p in when it passes 2^64 (every 64 terms or so where x is near 0) and at the end.
    // Terms near 0, far out (exp(-|x|) tiny or subnormal), under a filter, in rows of a
    // nested reduction, and the special values: against the f64 interpreter.
    let src = "loss l(x: [N], z: [J, K]; w = 2) {
        let a = sum[i](softplus(x[i]))
        let m = mean[i]((w - 1) * log_sigmoid(w * x[i]) - w * log_sigmoid(x[i] * -w))
        let f = sum[i | x[i] > 0.5](softplus(-x[i]) + x[i])
        let r[j] = sum[k](log_sigmoid(z[j, k]))
        a + m + f + sum[j](r[j])
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let near: Vec<f64> = (0..40_003)
        .map(|k| f64::from(((k % 601) as f32 - 300.0) / 100.0))
        .collect();
    let far: Vec<f64> = (0..4_001)
        .map(|k| f64::from((if k % 2 == 0 { 1.0 } else { -1.0 }) * (20.0 + (k % 97) as f32)))
        .collect();
    let rows = special_value_rows();
    let special: Vec<String> = rows
        .iter()
        .map(|r| r.trim_matches(['[', ']']).to_string())
        .collect();
    let cases = [
        (
            format!("{near:?}"),
            format!("[{}, {:?}]", rows[7], &near[..11]),
        ),
        (
            format!("{far:?}"),
            format!("[{:?}, {:?}]", &far[..11], &far[11..22]),
        ),
        (
            format!("[{}]", special.join(", ")),
            rows.join(", ").replace("][", "], ["),
        ),
    ];
    for (x, z) in cases {
        let z = if z.starts_with("[[") {
            z
        } else {
            format!("[{z}]")
        };
        let json = format!(r#"{{"x": {x}, "z": {z}}}"#);
        let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
        let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
        let (_, want) = runtime::eval_all(&loss, &bound).unwrap();
        let compiled = runtime::cpu::CpuLoss::compile(&loss).unwrap();
        let (_, got) = compiled.run(&bound).unwrap();
        for name in ["a", "m", "f", "r"] {
            let d = loss.defs.iter().position(|d| d.name == name).unwrap();
            for (a, b) in compiled_values(&compiled, &got, name).iter().zip(&want[d]) {
                assert!(
                    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 2e-5 * b.abs(),
                    "{name}: cpu {a}, interpreter {b}"
                );
            }
        }
    }
}

#[test]
fn row_reductions_in_a_logsumexps_first_pass_match_the_interpreter() {
    // `compiler::rows` makes the row reductions of these metrics and of the loss row
    // definitions, and the CPU backend accumulates them in the first pass of the row
    // logsumexp (`clif::softmax`): a filtered count reading an earlier row value, a filtered
    // max, a mean and a filtered sum. Rows of 11 terms (vector lanes and scalar tails) holding
    // each special pattern alone, plain rows with ties, and long rows: loss, metrics and
    // gradient against the f64 interpreter.
    let src = "loss l(x: [B, C]) {
        let lse[b] = logsumexp[c](x[b, c])
        let first[b] = x[b, 0]
        metric above = mean[b](count[c | x[b, c] > first[b]]())
        metric top = sum[b](max[c | x[b, c] < 1e30](x[b, c]))
        mean[b](lse[b] - mean[c](x[b, c]) + 0.5 * sum[c | x[b, c] > 0.0](x[b, c]))
    }";
    let loss = compiler::check_source(src).unwrap().losses.remove(0);
    let program = runtime::cpu::gradient_program(&loss, &[0]);
    let compiled = runtime::cpu::CpuLoss::compile_for_outputs(&program).unwrap();
    let rows = compiled
        .program()
        .defs
        .iter()
        .filter(|d| d.name.ends_with("_row"))
        .count();
    assert_eq!(
        rows, 3,
        "the metrics' and the loss's row reductions are definitions"
    );
    let close = |a: f64, b: f64| {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 2e-5 * b.abs().max(1e-3)
    };
    let long = |scale: f64| -> String {
        let row: Vec<f64> = (0..4099)
            .map(|k| ((k * 37 % 101) as f64 - 50.0) * scale)
            .collect();
        format!("{row:?}")
    };
    let mut cases: Vec<String> = special_value_rows()
        .into_iter()
        .map(|r| format!("[{r}]"))
        .collect();
    cases.push("[[1.0, 2.0, 2.0, -1.0, 0.0, 3.0, 3.0, 0.5, -2.0, 1.0, 0.25]]".into());
    cases.push(format!("[{}, {}]", long(0.1), long(-0.37)));
    for x in cases {
        let json = format!(r#"{{"x": {x}}}"#);
        let inputs = data::parse_tensors(Format::Json, json.as_bytes(), "t").unwrap();
        let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
        let (got, got_grad) = runtime::cpu::eval_with_grad(&loss, &bound, &[0]).unwrap();
        let (want, want_grad) = runtime::eval_with_grad(&loss, &bound, &[0]).unwrap();
        assert!(
            close(got.loss, want.loss),
            "{x}: loss {} vs {}",
            got.loss,
            want.loss
        );
        for ((name, a), (_, b)) in got.metrics.iter().zip(&want.metrics) {
            assert!(close(*a, *b), "{x}: {name} {a} vs {b}");
        }
        for (k, (a, b)) in got_grad[0].1.iter().zip(&want_grad[0].1).enumerate() {
            assert!(close(*a, *b), "{x}: gradient {k}: {a} vs {b}");
        }
    }
}

/// The CPU backend's outputs and gradient of input 0 on a pool of `threads` threads.
fn on_threads(
    threads: usize,
    loss: &compiler::ir::Loss,
    bound: &runtime::Bound,
) -> (runtime::Outputs, runtime::interp::Gradients) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| runtime::cpu::eval_with_grad(loss, bound, &[0]).unwrap())
}
