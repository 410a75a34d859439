//! End-to-end tests of the `lossc` binary as a user runs it: outputs, exit codes, and the
//! adversarial corpus under `tests/corpus/` (no input may make lossc panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lossc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lossc")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Asserts a clean user error: exit 1, a message starting with `error`, no panic.
fn assert_user_error(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: panicked:\n{err}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{what}: exit code; stderr:\n{err}"
    );
    assert!(err.contains("error"), "{what}: no error message:\n{err}");
}

const DPO_GRADS: [&str; 4] = [
    "grad_policy_chosen_logps",
    "grad_policy_rejected_logps",
    "grad_reference_chosen_logps",
    "grad_reference_rejected_logps",
];

#[test]
fn eval_dpo_random_prints_loss_metrics_and_gradients() {
    let o = lossc(&["eval", "dpo", "--random", "B=8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut want = vec![
        "loss",
        "chosen_reward",
        "rejected_reward",
        "reward_accuracy",
        "reward_margin",
    ];
    want.extend(DPO_GRADS);
    assert_eq!(names, want);
    for line in out.lines().take(5) {
        let v: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(v.is_finite(), "{line}");
    }
    assert!(out.lines().nth(5).unwrap().contains("[8] ["), "{out}");
    // The same seed gives the same numbers; another seed does not.
    assert_eq!(stdout(&lossc(&["eval", "dpo", "--random", "B=8"])), out);
    assert_ne!(
        stdout(&lossc(&["eval", "dpo", "--random", "B=8", "--seed", "1"])),
        out
    );
    // --no-grad and --wrt choose the gradients.
    let o = stdout(&lossc(&["eval", "dpo", "--random", "B=8", "--no-grad"]));
    assert!(!o.contains("grad_"), "{o}");
    let o = stdout(&lossc(&[
        "eval",
        "dpo",
        "--random",
        "B=8",
        "--wrt",
        "policy_chosen_logps",
    ]));
    assert_eq!(
        o.lines().filter(|l| l.starts_with("grad_")).count(),
        1,
        "{o}"
    );
}

#[test]
fn eval_json_is_one_flat_object() {
    let o = lossc(&[
        "eval", "dpo", "--random", "B=8", "--json", "--set", "beta=0.2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    let mut want = vec![
        "chosen_reward",
        "loss",
        "rejected_reward",
        "reward_accuracy",
        "reward_margin",
    ];
    want.extend(DPO_GRADS);
    want.sort();
    assert_eq!(keys, want);
    for (k, x) in obj {
        if k.starts_with("grad_") {
            assert_eq!(x.as_array().map(Vec::len), Some(8), "{k}");
        } else {
            assert!(x.is_f64(), "{k}");
        }
    }
    // --set changes the value.
    let base: serde_json::Value = serde_json::from_str(&stdout(&lossc(&[
        "eval", "dpo", "--random", "B=8", "--json",
    ])))
    .unwrap();
    assert_ne!(base["loss"], v["loss"]);
}

#[test]
fn eval_reads_and_writes_every_format() {
    let dir = std::env::temp_dir().join(format!("lossc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = "stdlib/fixtures/cross_entropy/ignore_b10_ls.json";
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let inputs = dir.join("inputs.json");
    std::fs::write(&inputs, case["inputs"].to_string()).unwrap();
    let mut losses = vec![];
    for ext in ["json", "npz", "safetensors"] {
        let out = dir.join(format!("out.{ext}"));
        let o = lossc(&[
            "eval",
            "cross_entropy",
            "--inputs",
            inputs.to_str().unwrap(),
            "--set",
            "label_smoothing=0.1",
            "--out",
            out.to_str().unwrap(),
            // The fixture is the f64 reference's value, to 1e-9.
            "--backend",
            "interp",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let t = runtime::data::read_tensors(&out).unwrap();
        match &t["loss"].data {
            runtime::Data::F64(v) => losses.push(v[0]),
            other => panic!("loss is {other:?}"),
        }
        assert!(t.contains_key("accuracy"));
        assert_eq!(
            t["grad_logits"].shape,
            vec![10, 6],
            "grad_<input> has the input's shape"
        );
    }
    // (the fixture's gradient itself is compared in tests/stdlib.rs)
    let want = case["expected"]["loss"].as_f64().unwrap();
    for l in losses {
        assert!((l - want).abs() <= 1e-9 * want.abs(), "{l} vs {want}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_reports_errors_with_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("lossc-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.loss");
    std::fs::write(&file, "loss l(x: [B]) {\n    mean[b](sigmod(x[b]))\n}\n").unwrap();
    let o = lossc(&["check", file.to_str().unwrap()]);
    assert_user_error(&o, "typo");
    let err = stderr(&o);
    assert!(err.contains("unknown function `sigmod`"), "{err}");
    assert!(err.contains("typo.loss:2:13"), "{err}");
    assert!(err.contains("did you mean `sigmoid`?"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn doc_lists_and_shows_the_stdlib() {
    let o = lossc(&["doc"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for name in [
        "dpo",
        "cross_entropy",
        "multi_similarity",
        "multi_similarity_mined",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(name)),
            "{name} missing:\n{out}"
        );
    }
    let o = lossc(&["doc", "dpo"]);
    assert!(
        stdout(&o).contains("loss dpo(policy_chosen_logps: [B]"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("TRL"));
    assert_user_error(&lossc(&["doc", "dpp"]), "doc of a typo");
}

#[test]
fn bad_command_lines_exit_with_their_documented_codes() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bad_args.txt"),
    )
    .unwrap();
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (args, code) = line
            .rsplit_once('\t')
            .unwrap_or_else(|| panic!("no tab in `{line}`"));
        let code: i32 = code.trim().parse().unwrap();
        let args: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
        let o = lossc(&args);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "`{line}` panicked:\n{err}");
        assert_eq!(
            o.status.code(),
            Some(code),
            "`lossc {}`:\n{err}",
            args.join(" ")
        );
        assert!(!err.trim().is_empty(), "`{line}` printed no message");
        n += 1;
    }
    assert!(n >= 20, "only {n} command lines");
}

#[test]
fn broken_sources_are_user_errors() {
    let files = corpus("bad_sources");
    assert!(files.len() >= 40, "only {} broken sources", files.len());
    for f in files {
        assert_user_error(
            &lossc(&["check", f.to_str().unwrap()]),
            &f.display().to_string(),
        );
    }
}

#[test]
fn broken_data_files_are_user_errors() {
    let files = corpus("bad_data");
    assert!(files.len() >= 30, "only {} broken data files", files.len());
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let loss = name.split("__").next().unwrap();
        assert_user_error(
            &lossc(&["eval", loss, "--inputs", f.to_str().unwrap()]),
            &name,
        );
    }
}

#[test]
fn edge_case_sources_check_simplify_and_differentiate() {
    for f in corpus("ok_sources") {
        let path = f.to_str().unwrap();
        let o = lossc(&["check", path]);
        assert_eq!(o.status.code(), Some(0), "check {path}:\n{}", stderr(&o));
        if stdout(&o).contains("no losses") {
            continue;
        }
        for cmd in [
            &["simplify", path][..],
            &["grad", path],
            &["grad", "--pairs", path],
        ] {
            let o = lossc(cmd);
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{cmd:?} panicked:\n{err}");
            // --pairs may rightly find no pair matrix; everything else must succeed.
            let ok = o.status.code() == Some(0)
                || (cmd[1] == "--pairs" && err.contains("no pair matrix"));
            assert!(ok, "{cmd:?}: exit {:?}\n{err}", o.status.code());
        }
    }
}

#[test]
fn edge_case_data_files_evaluate() {
    for f in corpus("ok_data") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let loss = name.split("__").next().unwrap();
        let o = lossc(&["eval", loss, "--inputs", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}:\n{}", stderr(&o));
    }
}

#[test]
fn compiled_object_files_link_into_a_c_program() {
    // lossc compile --emit obj/header, a C driver, the system C compiler; the result must
    // equal the interpreter's (f32 tolerance).
    let dir = std::env::temp_dir().join(format!("lossc-aot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (obj, header) = (dir.join("dpo.o"), dir.join("dpo.h"));
    for (emit, path) in [("obj", &obj), ("header", &header)] {
        let o = lossc(&[
            "compile",
            "dpo",
            "--emit",
            emit,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert!(
        std::fs::read_to_string(&header)
            .unwrap()
            .contains("int64_t lossc_dpo(")
    );
    let driver = dir.join("main.c");
    std::fs::write(
        &driver,
        r#"#include <stdio.h>
#include "dpo.h"
int main(void) {
    float pc[3] = {-1.0f, -2.0f, -3.5f}, pr[3] = {-1.5f, -1.0f, -4.0f};
    float rc[3] = {-1.2f, -2.1f, -3.0f}, rr[3] = {-1.4f, -1.1f, -3.9f};
    const void *inputs[4] = {pc, pr, rc, rr};
    int64_t dims[1] = {3};
    float hypers[2] = {0.1f, 0.0f};
    float work[64] = {0}, loss = 0;
    int64_t error[4] = {0};
    int64_t status = lossc_dpo(inputs, dims, hypers, work, &loss, error);
    printf("%lld %.9g\n", (long long)status, loss);
    return (int)status;
}
"#,
    )
    .unwrap();
    let exe = dir.join("main");
    let cc = Command::new("cc")
        .args([
            driver.to_str().unwrap(),
            obj.to_str().unwrap(),
            "-lm",
            "-o",
            exe.to_str().unwrap(),
        ])
        .output()
        .expect("a C compiler (cc) is needed for the object-file test");
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let got: f64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = dir.join("in.json");
    std::fs::write(
        &json,
        r#"{"policy_chosen_logps": [-1.0, -2.0, -3.5], "policy_rejected_logps": [-1.5, -1.0, -4.0],
            "reference_chosen_logps": [-1.2, -2.1, -3.0], "reference_rejected_logps": [-1.4, -1.1, -3.9]}"#,
    )
    .unwrap();
    let o = lossc(&[
        "eval",
        "dpo",
        "--inputs",
        json.to_str().unwrap(),
        "--json",
        "--no-grad",
        "--backend",
        "interp",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let want = v["loss"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-6 * want.abs(),
        "C program {got}, interpreter {want}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compile_emits_the_program_the_backends_run() {
    // multi_similarity: the Gram matrix becomes a matrix product of its own, shared by the
    // forward pass and the gradient; the loss's mean is split out for blocked reduction.
    let o = lossc(&["compile", "multi_similarity", "--emit", "loss", "-o", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("let hoisted1[i_h0, j_h0] = sum[d](unit[i_h0, d] * unit[j_h0, d])"),
        "{text}"
    );
    assert!(text.contains("let grad_embeddings[b, "), "{text}");
    assert!(text.contains("loss_part"), "{text}");
    // Binary output needs a file.
    let o = lossc(&["compile", "dpo", "--emit", "obj", "-o", "-"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("give a path with -o"), "{}", stderr(&o));
}

#[test]
fn bench_times_given_inputs_and_reports_json() {
    let o = lossc(&[
        "bench",
        "dpo",
        "--inputs",
        "tests/corpus/ok_data/dpo__float32.safetensors",
        "--set",
        "beta=0.2",
        "--reps",
        "2",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for key in ["compile_ms", "median_ms", "min_ms", "max_ms", "gb_per_s"] {
        assert!(v[key].as_f64().is_some_and(|x| x >= 0.0), "{key} in {v}");
    }
    assert_eq!(v["threads"], 1);
    // The same value lossc eval gives on those inputs with that beta.
    let e = lossc(&[
        "eval",
        "dpo",
        "--inputs",
        "tests/corpus/ok_data/dpo__float32.safetensors",
        "--set",
        "beta=0.2",
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    let ev: serde_json::Value = serde_json::from_str(&stdout(&e)).unwrap();
    let (a, b) = (v["value"].as_f64().unwrap(), ev["loss"].as_f64().unwrap());
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "bench {a} vs eval {b}"
    );
}
