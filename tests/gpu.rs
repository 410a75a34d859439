//! The GPU backend (WGSL through wgpu, f32): every emitted module validated by naga with no
//! device at all; then, on whatever adapter exists (a real GPU, or Mesa's software Vulkan
//! driver lavapipe), every stdlib fixture and every pass-corpus program against the f64
//! interpreter. Without an adapter the device tests skip with a message, unless
//! `LOSSC_REQUIRE_GPU=1` (CI) makes them fail.

use compiler::ir::Loss;
use std::path::Path;

/// Every program lossc compiles in the tests: each stdlib loss and each pass-corpus loss, with
/// the `--random` sizes the corpus file names (None for the stdlib).
fn programs() -> Vec<(String, Loss, Option<String>)> {
    let mut out = vec![];
    for e in lossc::stdlib::ENTRIES {
        for loss in compiler::check_source(e.source).unwrap().losses {
            out.push((format!("stdlib {}", e.name), loss, None));
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let spec = source
            .lines()
            .find_map(|l| l.split("--random ").nth(1))
            .map(|s| s.split_whitespace().next().unwrap().to_string());
        for loss in compiler::check_source(&source).unwrap().losses {
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                loss,
                spec.clone(),
            ));
        }
    }
    out
}

#[test]
fn every_emitted_module_is_valid_wgsl() {
    let mut n = 0;
    let mut failures = vec![];
    for (label, loss, _) in programs() {
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        for w in [vec![], wrt] {
            let program = runtime::cpu::gradient_program(&loss, &w);
            let shader = compiler::wgsl::emit(&program);
            if let Err(e) = runtime::gpu::validate(&shader.source) {
                failures.push(format!("{label} ({}): {e}", loss.name));
            }
            n += 1;
        }
    }
    assert!(n >= 2 * 60, "only {n} modules");
    assert!(
        failures.is_empty(),
        "{} invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// True when the device tests can run; otherwise prints why they skip, or panics when
/// `LOSSC_REQUIRE_GPU` is set.
fn gpu_or_skip(test: &str) -> bool {
    if runtime::gpu::available() {
        return true;
    }
    let why = runtime::gpu::adapter_description().unwrap_err();
    let required =
        std::env::var(runtime::gpu::REQUIRE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{} is set but {why}", runtime::gpu::REQUIRE_ENV);
    eprintln!("skipping {test}: {why}");
    false
}

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "support/tolerance.rs"]
mod tolerance;
use tolerance::{BEYOND_F32, close, fixture_mismatches, interpreter_mismatches, sizes};

#[test]
fn gpu_matches_every_stdlib_fixture() {
    if !gpu_or_skip("gpu_matches_every_stdlib_fixture") {
        return;
    }
    // Both shapes of the kernels of definitions that need reductions.
    for rows in [runtime::gpu::Rows::Never, runtime::gpu::Rows::Always] {
        fixtures_agree(rows);
    }
}

/// Every stdlib fixture (loss, metrics, gradients) on the GPU with this row policy.
fn fixtures_agree(rows: runtime::gpu::Rows) {
    let cases = fixtures::cases();
    let mut failures = vec![];
    let mut compared = 0;
    // One compiled program per stdlib loss, reused for all its fixtures.
    let mut compiled: std::collections::HashMap<String, runtime::gpu::GpuLoss> = Default::default();
    for case in cases
        .iter()
        .filter(|c| !BEYOND_F32.iter().any(|(label, _)| *label == c.label))
    {
        let label = &case.label;
        let wrt = compiler::grad::resolve_wrt(&case.loss, &[]).unwrap();
        let gpu = match compiled.entry(case.loss.name.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let program = runtime::cpu::gradient_program(&case.loss, &wrt);
                let mut gpu = runtime::gpu::GpuLoss::compile(&program).unwrap();
                gpu.set_rows(rows);
                v.insert(gpu)
            }
        };
        let outputs = compiler::grad::gradient_outputs(gpu.program());
        let read: Vec<usize> = outputs.iter().map(|&(_, d)| d).collect();
        let (out, grads) = match gpu.run(&case.bound, &read) {
            Ok((out, values)) => (
                out,
                outputs
                    .iter()
                    .map(|&(i, _)| i)
                    .zip(values)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                failures.push(format!("{label} ({rows:?}): {e}"));
                continue;
            }
        };
        compared += 1;
        failures.extend(fixture_mismatches(case, &out, &grads));
    }
    eprintln!("{compared} stdlib fixtures compared on the GPU ({rows:?})");
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    assert_eq!(
        compared + BEYOND_F32.len(),
        cases.len(),
        "every fixture ran"
    );
    assert!(
        failures.is_empty(),
        "{rows:?}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// GPU and interpreter agree on `loss` at seeded random inputs (values and gradients).
fn agree(loss: &Loss, spec: &str, seed: u64, refused: &mut usize) -> Vec<String> {
    let mut failures = agree_with(loss, spec, seed, refused, runtime::gpu::Rows::Never);
    failures.extend(agree_with(
        loss,
        spec,
        seed,
        &mut 0,
        runtime::gpu::Rows::Always,
    ));
    failures
}

/// [`agree`] with this row policy.
fn agree_with(
    loss: &Loss,
    spec: &str,
    seed: u64,
    refused: &mut usize,
    rows: runtime::gpu::Rows,
) -> Vec<String> {
    let inputs = runtime::random::random_inputs(loss, &sizes(spec), seed).unwrap();
    let bound = runtime::bind(loss, &inputs, &[]).unwrap();
    let wrt = compiler::grad::resolve_wrt(loss, &[]).unwrap();
    let compiled = runtime::gpu::GpuLoss::compile(&runtime::cpu::gradient_program(loss, &wrt))
        .and_then(|mut gpu| {
            gpu.set_rows(rows);
            let outputs = compiler::grad::gradient_outputs(gpu.program());
            let read: Vec<usize> = outputs.iter().map(|&(_, d)| d).collect();
            let (out, values) = gpu.run(&bound, &read)?;
            Ok((
                out,
                outputs
                    .iter()
                    .map(|&(i, _)| i)
                    .zip(values)
                    .collect::<Vec<_>>(),
            ))
        });
    let backend = format!("GPU ({rows:?})");
    interpreter_mismatches(loss, &bound, &wrt, &backend, compiled).unwrap_or_else(|()| {
        *refused += 1;
        vec![]
    })
}

#[test]
fn gpu_matches_the_interpreter_on_pass_programs() {
    if !gpu_or_skip("gpu_matches_the_interpreter_on_pass_programs") {
        return;
    }
    let mut failures = vec![];
    let mut n = 0;
    let mut refused = 0;
    for (label, loss, spec) in programs() {
        let Some(spec) = spec else { continue };
        failures.extend(
            agree(&loss, &spec, 11, &mut refused)
                .into_iter()
                .map(|f| format!("{label}: {f}")),
        );
        n += 1;
    }
    eprintln!("{n} pass-corpus losses run on the GPU, {refused} refused by both backends");
    assert!(n >= 25);
    assert!(
        refused * 4 < n,
        "{refused} of {n} refused: the comparison is mostly vacuous"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sample points: `n` evenly spaced over each linear range, and `n` log-spaced magnitudes of
/// each sign over 1e-12..1 (where cancellation bites), rounded to f32.
fn samples(ranges: &[(f64, f64)], tiny: bool, n: usize) -> Vec<f32> {
    let mut xs = vec![];
    for &(lo, hi) in ranges {
        for k in 0..=n {
            xs.push((lo + (hi - lo) * k as f64 / n as f64) as f32);
        }
    }
    if tiny {
        for k in 0..=n {
            let m = 10f64.powf(-12.0 + 12.0 * k as f64 / n as f64) as f32;
            xs.push(m);
            xs.push(-m);
        }
    }
    xs
}

/// The largest relative error of `f` on the device against `reference` in f64 over `xs`
/// (where the reference is a finite f32), and the point where it occurs; and whether every
/// non-finite reference (±inf, NaN) came out the same.
fn accuracy(expr: &str, xs: &[f32], y: f32, reference: impl Fn(f64) -> f64) -> (f64, f32, bool) {
    let ys = vec![y; xs.len()];
    let got = runtime::gpu::eval_math(expr, xs, &ys).unwrap();
    let mut worst = (0.0, 0.0f32);
    let mut specials = true;
    for (&x, &g) in xs.iter().zip(&got) {
        let want = reference(f64::from(x));
        let g = f64::from(g);
        if !want.is_finite() || want.abs() > f64::from(f32::MAX) {
            let want32 = want as f32;
            specials &= (want32.is_nan() && g.is_nan()) || f64::from(want32) == g;
            continue;
        }
        // Relative error, counting results below f32's normal range as absolute.
        let err = (g - want).abs() / want.abs().max(f64::from(f32::MIN_POSITIVE));
        if err > worst.0 {
            worst = (err, x);
        }
    }
    (worst.0, worst.1, specials)
}

/// The measured accuracy of lossc's WGSL math library on this adapter, against f64, with the
/// bounds documented in `compiler/src/wgsl/math.rs` and the README.
#[test]
fn wgsl_math_library_accuracy_against_f64() {
    if !gpu_or_skip("wgsl_math_library_accuracy_against_f64") {
        return;
    }
    use compiler::ir::Builtin;
    let builtin = |f: Builtin, x: f64| runtime::interp::builtin(f, [x, 0.0, 0.0]);
    let softplus = move |x: f64| builtin(Builtin::Softplus, x);
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<f32>,
        f32,
        Box<dyn Fn(f64) -> f64>,
        f64,
    );
    let n = 4000;
    let cases: Vec<Case> = vec![
        (
            "exp",
            "lossc_exp(x)",
            samples(&[(-103.0, 88.7), (-1.0, 1.0)], true, n),
            0.0,
            Box::new(f64::exp),
            4e-7,
        ),
        (
            "log",
            "lossc_log(x)",
            [
                samples(&[(1e-6, 4.0), (4.0, 1e6)], false, n),
                (0..=n)
                    .map(|k| 10f32.powf(-37.0 + 75.0 * k as f32 / n as f32))
                    .collect(),
            ]
            .concat(),
            0.0,
            Box::new(f64::ln),
            4e-7,
        ),
        (
            "log1p",
            "lossc_log1p(x)",
            samples(&[(-0.9999, 1.0), (1.0, 1e6)], true, n),
            0.0,
            Box::new(f64::ln_1p),
            4e-7,
        ),
        (
            "expm1",
            "lossc_expm1(x)",
            samples(&[(-30.0, 30.0), (-1.0, 1.0)], true, n),
            0.0,
            Box::new(f64::exp_m1),
            4e-7,
        ),
        (
            "sigmoid",
            "lossc_sigmoid(x)",
            samples(&[(-80.0, 80.0), (-2.0, 2.0)], true, n),
            0.0,
            Box::new(move |x: f64| builtin(Builtin::Sigmoid, x)),
            4e-7,
        ),
        (
            "softplus",
            "lossc_softplus(x)",
            samples(&[(-80.0, 80.0), (-2.0, 2.0)], true, n),
            0.0,
            Box::new(softplus),
            4e-7,
        ),
        (
            "log_sigmoid",
            "lossc_log_sigmoid(x)",
            samples(&[(-80.0, 80.0), (-2.0, 2.0)], true, n),
            0.0,
            Box::new(move |x: f64| builtin(Builtin::LogSigmoid, x)),
            4e-7,
        ),
        (
            "log1mexp",
            "lossc_log1mexp(x)",
            samples(&[(-80.0, -1e-7), (-2.0, -1e-3)], false, n)
                .into_iter()
                .chain((0..=n).map(|k| -(10f32.powf(-12.0 + 11.0 * k as f32 / n as f32))))
                .collect(),
            0.0,
            Box::new(move |x: f64| builtin(Builtin::Log1mexp, x)),
            4e-7,
        ),
        (
            "tanh",
            "lossc_tanh(x)",
            samples(&[(-20.0, 20.0), (-1.0, 1.0)], true, n),
            0.0,
            Box::new(f64::tanh),
            4e-7,
        ),
        (
            "pow(x, 2.5)",
            "lossc_pow(x, y)",
            samples(&[(0.0, 30.0), (30.0, 1e7)], false, n),
            2.5,
            Box::new(|x: f64| x.powf(2.5)),
            5e-6,
        ),
        (
            "pow(x, -3)",
            "lossc_pow(x, y)",
            samples(&[(-30.0, 30.0)], true, n),
            -3.0,
            Box::new(|x: f64| x.powf(-3.0)),
            4e-7,
        ),
        (
            "sin",
            "lossc_sin(x)",
            samples(&[(-10.0, 10.0)], false, n),
            0.0,
            Box::new(f64::sin),
            4e-7,
        ),
        (
            "cos",
            "lossc_cos(x)",
            samples(&[(-10.0, 10.0)], false, n),
            0.0,
            Box::new(f64::cos),
            4e-7,
        ),
    ];
    let mut failures = vec![];
    eprintln!("| function | max relative error | at x |");
    for (name, expr, xs, y, reference, bound) in cases {
        let (err, at, specials) = accuracy(expr, &xs, y, reference);
        eprintln!("| {name} | {err:.2e} | {at:e} |");
        if err > bound || !specials {
            failures.push(format!(
                "{name}: {err:.2e} at {at:e} (bound {bound:.0e}); special values right: {specials}"
            ));
        }
    }
    // For comparison, the adapter's own WGSL built-ins (reported, not asserted: WGSL allows
    // exp 3 + 2|x| ULP and leaves tanh's large arguments to the driver).
    for (name, expr, xs, reference) in [
        (
            "WGSL exp",
            "exp(x)",
            samples(&[(-87.0, 88.0)], false, n),
            f64::exp as fn(f64) -> f64,
        ),
        (
            "WGSL log",
            "log(x)",
            samples(&[(1e-6, 4.0), (4.0, 1e6)], false, n),
            f64::ln,
        ),
        (
            "WGSL log(1 + x)",
            "log(1.0 + x)",
            samples(&[(-0.5, 0.5)], true, n),
            f64::ln_1p,
        ),
        (
            "WGSL tanh",
            "tanh(x)",
            samples(&[(-20.0, 20.0)], true, n),
            f64::tanh,
        ),
    ] {
        let (err, at, specials) = accuracy(expr, &xs, 0.0, reference);
        eprintln!("| {name} | {err:.2e} | {at:e} | special values right: {specials}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn stdlib_loss(name: &str) -> Loss {
    let e = lossc::stdlib::get(name).unwrap();
    compiler::check_source(e.source).unwrap().losses.remove(0)
}

#[test]
fn gpu_reports_out_of_range_gathers_instead_of_reading_them() {
    if !gpu_or_skip("gpu_reports_out_of_range_gathers_instead_of_reading_them") {
        return;
    }
    use runtime::data::{self, Format};
    let loss = stdlib_loss("cross_entropy");
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"logits": [[1.0, 2.0], [3.0, 4.0]], "target": [1, 7]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let gpu = runtime::gpu::eval_with_grad(&loss, &bound, &[0]).unwrap_err();
    let cpu = runtime::cpu::eval_with_grad(&loss, &bound, &[0]).unwrap_err();
    assert!(
        gpu.message.contains("index out of range") && gpu.message.contains("got 7"),
        "{gpu}"
    );
    assert_eq!(gpu.message, cpu.message);
    // An ignored row's target is never read.
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"logits": [[1.0, 2.0], [3.0, 4.0]], "target": [1, -100]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let (out, _) = runtime::gpu::eval_with_grad(&loss, &bound, &[0]).unwrap();
    assert!(
        (out.loss - (1.0 + (-1f64).exp()).ln()).abs() < 1e-6,
        "{}",
        out.loss
    );
    // Ints beyond 32 bits are refused before anything runs.
    let inputs = data::parse_tensors(
        Format::Json,
        br#"{"logits": [[1.0, 2.0]], "target": [4294967296]}"#,
        "t",
    )
    .unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    let e = runtime::gpu::eval_with_grad(&loss, &bound, &[0]).unwrap_err();
    assert!(e.message.contains("32-bit"), "{e}");
}

#[test]
fn argmax_argmin_ties_nan_and_empty_reductions_as_in_the_interpreter() {
    if !gpu_or_skip("argmax_argmin_ties_nan_and_empty_reductions_as_in_the_interpreter") {
        return;
    }
    use runtime::data::{self, Format};
    let source = "loss l(q: [B, K]) {
        let hi[b] = argmax[k](q[b, k])
        let lo[b] = argmin[k](q[b, k])
        let none[b] = argmax[k | q[b, k] > 100](q[b, k])
        metric first_max = hi[0]
        metric second_max = hi[1]
        metric first_min = lo[0]
        metric second_min = lo[1]
        metric empty = none[0]
        metric empty_mean = mean[b, k | q[b, k] > 100](q[b, k])
        metric empty_max = max[b, k | q[b, k] > 100](q[b, k])
        metric empty_lse = logsumexp[k | q[0, k] > 100](q[0, k])
        metric nan_max = max[b, k](q[b, k])
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
    let interp = runtime::eval(&loss, &bound).unwrap();
    let (gpu, _) = runtime::gpu::eval_with_grad(&loss, &bound, &[]).unwrap();
    let show = |o: &runtime::Outputs| format!("{:?} {:?}", o.loss, o.metrics);
    assert_eq!(show(&gpu), show(&interp));
    assert_eq!(gpu.metrics[0], ("first_max".to_string(), 1.0));
    assert!(gpu.metrics[8].1.is_nan(), "{:?}", gpu.metrics);
}

#[test]
fn two_level_reductions_are_deterministic_and_match_the_interpreter() {
    if !gpu_or_skip("two_level_reductions_are_deterministic_and_match_the_interpreter") {
        return;
    }
    // Enough rows for many workgroups in the first level.
    let loss = stdlib_loss("cross_entropy");
    let inputs = runtime::random::random_inputs(&loss, &sizes("B=20000,C=3"), 5).unwrap();
    let bound = runtime::bind(&loss, &inputs, &[("label_smoothing".into(), 0.1)]).unwrap();
    let program = runtime::cpu::gradient_program(&loss, &[0]);
    let gpu = runtime::gpu::GpuLoss::compile(&program).unwrap();
    let (a, _) = gpu.run(&bound, &[]).unwrap();
    let (b, _) = gpu.run(&bound, &[]).unwrap();
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.metrics, b.metrics);
    let want = runtime::eval(&loss, &bound).unwrap();
    assert!(close(a.loss, want.loss, 0.0), "{} vs {}", a.loss, want.loss);
    // The same compiled loss at other hyperparameters (its buffers reused) and other sizes.
    for (spec, smoothing) in [("B=20000,C=3", 0.0), ("B=7,C=5", 0.2), ("B=20000,C=3", 0.3)] {
        let inputs = runtime::random::random_inputs(&loss, &sizes(spec), 6).unwrap();
        let bound =
            runtime::bind(&loss, &inputs, &[("label_smoothing".into(), smoothing)]).unwrap();
        let (got, _) = gpu.run(&bound, &[]).unwrap();
        let want = runtime::eval(&loss, &bound).unwrap();
        assert!(
            close(got.loss, want.loss, 0.0),
            "{spec}: {} vs {}",
            got.loss,
            want.loss
        );
    }
    assert!(
        close(a.metrics[0].1, want.metrics[0].1, 0.0),
        "{:?} vs {:?}",
        a.metrics,
        want.metrics
    );
}

fn lossc(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lossc")
}

#[test]
fn compile_emit_wgsl_writes_a_valid_module() {
    let dir = std::env::temp_dir().join(format!("lossc-wgsl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("dpo.wgsl");
    let o = lossc(
        &[
            "compile",
            "dpo",
            "--emit",
            "wgsl",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    runtime::gpu::validate(&text).unwrap();
    assert!(text.contains("fn compute_loss()"), "{text}");
    assert!(text.contains("var<storage, read_write> def_grad_policy_chosen_logps"));
    // --wrt narrows the gradient program to one input.
    let o = lossc(
        &[
            "compile",
            "dpo",
            "--emit",
            "wgsl",
            "--wrt",
            "policy_chosen_logps",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0));
    let narrow = std::fs::read_to_string(&out).unwrap();
    assert!(narrow.contains("def_grad_policy_chosen_logps"));
    assert!(!narrow.contains("def_grad_policy_rejected_logps"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The numbers of a `--json` object.
fn numbers(json: &[u8]) -> Vec<(String, Vec<f64>)> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let flat = |x: &serde_json::Value| fixtures::flatten(x);
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (k.clone(), flat(x)))
        .collect()
}

#[test]
fn eval_backend_gpu_agrees_with_the_interpreter() {
    if !gpu_or_skip("eval_backend_gpu_agrees_with_the_interpreter") {
        return;
    }
    for (name, sizes) in [("dpo", "B=16"), ("cross_entropy", "B=16,C=7")] {
        let run = |backend: &str| {
            let o = lossc(
                &[
                    "eval",
                    name,
                    "--random",
                    sizes,
                    "--backend",
                    backend,
                    "--json",
                ],
                &[],
            );
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            numbers(&o.stdout)
        };
        let (gpu, interp) = (run("gpu"), run("interp"));
        assert_eq!(gpu.len(), interp.len());
        assert!(gpu.iter().any(|(k, _)| k.starts_with("grad_")), "{gpu:?}");
        for ((k, a), (k2, b)) in gpu.iter().zip(&interp) {
            assert_eq!(k, k2);
            let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (x, y) in a.iter().zip(b) {
                assert!(close(*x, *y, scale), "{name} {k}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn bench_backend_gpu_times_forward_and_backward() {
    if !gpu_or_skip("bench_backend_gpu_times_forward_and_backward") {
        return;
    }
    let o = lossc(
        &[
            "bench",
            "cross_entropy",
            "--size",
            "B=64,C=10",
            "--backend",
            "gpu",
            "--reps",
            "2",
            "--json",
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["backend"], "gpu");
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    let value = v["value"].as_f64().unwrap();
    assert!(value.is_finite() && value > 0.0, "{v}");
    let o = lossc(
        &[
            "bench",
            "cross_entropy",
            "--size",
            "B=64,C=10",
            "--backend",
            "gpu",
            "--reps",
            "1",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("adapter"), "{text}");
}

/// With no adapter to be had (here: only a backend this build lacks), the GPU backend is a
/// clear error naming what to install.
#[cfg(target_os = "linux")]
#[test]
fn no_adapter_is_an_error_naming_what_to_install() {
    let env = [("WGPU_BACKEND", "dx12")];
    for args in [
        &["eval", "dpo", "--random", "B=4", "--backend", "gpu"][..],
        &["bench", "dpo", "--size", "B=4", "--backend", "gpu"][..],
    ] {
        let o = lossc(args, &env);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains("no GPU adapter")
                && err.contains("apt-get install mesa-vulkan-drivers libvulkan1"),
            "{err}"
        );
    }
}

/// The WGSL of a stdlib loss and its gradient, with the library every module shares replaced
/// by one line (it has its own accuracy test).
fn wgsl_without_library(name: &str) -> String {
    let loss = stdlib_loss(name);
    let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
    let shader = compiler::wgsl::emit(&runtime::cpu::gradient_program(&loss, &wrt));
    let library = compiler::wgsl::library();
    assert_eq!(shader.source.matches(library.as_str()).count(), 1);
    shader.source.replace(
        &library,
        "// (lossc's math library and helpers, compiler::wgsl::library())\n\n",
    )
}

#[test]
fn dpo_wgsl_snapshot() {
    insta::assert_snapshot!("dpo_wgsl", wgsl_without_library("dpo"));
}

#[test]
fn cross_entropy_wgsl_snapshot() {
    insta::assert_snapshot!("cross_entropy_wgsl", wgsl_without_library("cross_entropy"));
}

#[test]
fn a_definition_beyond_the_binding_limit_is_a_clear_error() {
    if !gpu_or_skip("a_definition_beyond_the_binding_limit_is_a_clear_error") {
        return;
    }
    // Small inputs, a 6000 × 6000 definition: 144 MB of f32, beyond lavapipe's 128 MiB (and
    // WebGPU's default) for one storage binding.
    let source = "loss outer(x: [N], y: [M]) {
        let p[i, j] = x[i] * y[j]
        sum[i, j](p[i, j])
    }";
    let loss = compiler::check_source(source).unwrap().losses.remove(0);
    let inputs = runtime::random::random_inputs(&loss, &sizes("N=6000,M=6000"), 1).unwrap();
    let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
    match runtime::gpu::eval_with_grad(&loss, &bound, &[]) {
        // An adapter that binds this much may run it.
        Ok((out, _)) => assert!(out.loss.is_finite()),
        Err(e) => assert!(
            e.message
                .contains("`p` would take 138 MiB on the GPU, more than the"),
            "{e}"
        ),
    }
}

#[test]
fn names_that_are_wgsl_keywords_or_generated_names_still_make_valid_modules() {
    // Inputs, dimensions, hyperparameters and indices named like WGSL keywords, built-ins,
    // buffers and temporaries the emitter itself uses.
    let source = "loss clash(select: [array, ptr], in_select: int[array]; loop = 2, t1 = 0.5) {
        let var[target] = sum[t2](select[target, t2] * loop)
        let result[params] = logsumexp[flat](select[params, flat]) + t1
        metric errors = count[var2 | in_select[var2] > 0]()
        mean[target](var[target] + result[target]) + sum[target, t1x | t1x == 0](select[target, t1x])
    }";
    let loss = compiler::check_source(source).unwrap().losses.remove(0);
    let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
    let shader = compiler::wgsl::emit(&runtime::cpu::gradient_program(&loss, &wrt));
    runtime::gpu::validate(&shader.source).unwrap();
    if !gpu_or_skip("names_that_are_wgsl_keywords_or_generated_names_still_make_valid_modules") {
        return;
    }
    let mut refused = 0;
    let failures = agree(&loss, "array=5,ptr=4", 3, &mut refused);
    assert!(failures.is_empty() && refused == 0, "{failures:?}");
}

#[path = "../compiler/tests/support/generate.rs"]
mod generate;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// On random well-typed programs the shaders compute what the interpreter does.
    #[test]
    fn gpu_matches_the_interpreter_on_generated_programs(seed in proptest::prelude::any::<u64>()) {
        let loss = generate::generate(seed);
        let shader = compiler::wgsl::emit(&runtime::cpu::gradient_program(&loss, &[0]));
        let valid = runtime::gpu::validate(&shader.source);
        proptest::prop_assert!(valid.is_ok(), "{}\n{:?}", compiler::print::loss(&loss), valid);
        if gpu_or_skip("gpu_matches_the_interpreter_on_generated_programs") {
            let mut refused = 0;
            let failures = agree(&loss, "B=3,D=2", seed % 5, &mut refused);
            proptest::prop_assert!(failures.is_empty(), "{}\n{}", compiler::print::loss(&loss), failures.join("\n"));
        }
    }
}

/// The CI contract: on a machine with no adapter (here: only a backend this build lacks), a
/// device test skips with a message saying so, and fails when `LOSSC_REQUIRE_GPU=1`.
#[cfg(target_os = "linux")]
#[test]
fn without_an_adapter_device_tests_skip_unless_required() {
    let run = |require: bool| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "two_level_reductions_are_deterministic_and_match_the_interpreter",
            "--nocapture",
        ])
        .env("WGPU_BACKEND", "dx12")
        .env_remove(runtime::gpu::REQUIRE_ENV);
        if require {
            c.env(runtime::gpu::REQUIRE_ENV, "1");
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let (ok, text) = run(false);
    assert!(ok, "{text}");
    assert!(
        text.contains("skipping two_level_reductions_are_deterministic_and_match_the_interpreter")
            && text.contains("apt-get install mesa-vulkan-drivers libvulkan1"),
        "{text}"
    );
    let (ok, text) = run(true);
    assert!(!ok, "{text}");
    assert!(text.contains("LOSSC_REQUIRE_GPU is set but"), "{text}");
}
