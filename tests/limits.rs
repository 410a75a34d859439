//! Resource limits: an e-graph that would explode, a comprehension over the memory budget
//! (`--max-memory`), deep nesting, a 10 MB source file. Each ends within seconds, with a clear
//! error (exit 1) where the input is refused, and never with a panic.

use std::io::Write;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long a refused or bounded input may take, in a debug build on a loaded machine.
const SECONDS: Duration = Duration::from_secs(20);

/// Runs lossc, asserting it ends within [`SECONDS`].
fn lossc(args: &[&str]) -> Output {
    let start = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lossc");
    let took = start.elapsed();
    eprintln!("lossc {args:?}: {took:?}");
    assert!(
        took < SECONDS,
        "lossc {args:?} took {took:?}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Asserts exit code 1, no panic, and each fragment in stderr.
fn refused(o: &Output, fragments: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    assert_eq!(o.status.code(), Some(1), "stderr:\n{err}");
    for f in fragments {
        assert!(err.contains(f), "stderr lacks {f:?}:\n{err}");
    }
}

/// A temporary source file holding `text`.
fn source_file(name: &str, text: &str) -> tempfile_path::Path {
    tempfile_path::Path::new(name, text.as_bytes())
}

mod tempfile_path {
    /// A file under the target directory's tmp folder, removed on drop.
    pub struct Path(pub std::path::PathBuf);

    impl Path {
        pub fn new(name: &str, bytes: &[u8]) -> Path {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("limits");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, bytes).unwrap();
            Path(path)
        }

        pub fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

const SIMILARITY: &str = "loss pairs(x: [B, D]) {
    let s[i, j] = sum[k](x[i, k] * x[j, k])
    mean[i](logsumexp[j](s[i, j]))
}
";

#[test]
fn a_comprehension_over_the_memory_budget_is_refused_naming_it() {
    let file = source_file("pairs.loss", SIMILARITY);
    for backend in ["interp", "cpu"] {
        // s alone would hold 4096² values: 128 MiB in f64, 64 MiB in the CPU backend's f32
        // workspace (and 64 MiB more in f64 were it a gradient eval returns).
        let o = lossc(&[
            "eval",
            file.arg(),
            "--random",
            "B=4096,D=2",
            "--max-memory",
            "64M",
            "--backend",
            backend,
        ]);
        // The interpreter names `s`; compiled backends name the definition of the program they
        // run, which may be one the compiler introduced (`hoisted1`, the Gram matrix).
        let name = if backend == "interp" { "`s`" } else { "`" };
        refused(
            &o,
            &[
                &format!("definition {name}"),
                "over [B=4096, B=4096] holds 16777216 values",
                "more than the memory budget of 64 MiB",
                "--max-memory",
            ],
        );
        // Within the budget it runs.
        let o = lossc(&[
            "eval",
            file.arg(),
            "--random",
            "B=64,D=2",
            "--max-memory",
            "64M",
            "--backend",
            backend,
            "--no-grad",
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The default budget (4 GiB) refuses s at 10^10 values before allocating anything.
    let o = lossc(&[
        "eval",
        file.arg(),
        "--random",
        "B=100000,D=2",
        "--backend",
        "interp",
    ]);
    refused(
        &o,
        &["definition `s`", "more than the memory budget of 4 GiB"],
    );
    // Random inputs over the budget are refused before they are drawn.
    let o = lossc(&[
        "eval",
        file.arg(),
        "--random",
        "B=4096,D=4096",
        "--max-memory",
        "1M",
    ]);
    refused(&o, &["random inputs of `pairs`", "memory budget of 1 MiB"]);
}

#[test]
fn bench_counts_f32_inputs_at_four_bytes_against_its_budget() {
    // Cross-entropy's [8192, 32000] logits drawn in f32 for the CPU backend take 1000 MiB
    // (not 2000 MiB as f64): refused under 512M before anything is drawn, with the size.
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "cross_entropy",
            "--size",
            "B=8192,C=32000",
            "--max-memory",
            "512M",
        ];
        args.extend(extra);
        lossc(&args)
    };
    refused(
        &bench(&[]),
        &[
            "random inputs of `cross_entropy`",
            "1000.0 MiB",
            "memory budget of 512 MiB",
            "--max-memory",
        ],
    );
    // The interpreter holds them in f64.
    refused(
        &bench(&["--backend", "interp"]),
        &["random inputs of `cross_entropy`", "2.0 GiB"],
    );
}

#[test]
fn max_memory_takes_sizes_with_suffixes_and_refuses_others() {
    let file = source_file("pairs_sizes.loss", SIMILARITY);
    for ok in ["1048576", "512K", "1M", "2G", "1T"] {
        let o = lossc(&[
            "eval",
            file.arg(),
            "--random",
            "B=4,D=2",
            "--max-memory",
            ok,
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{ok}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for bad in ["lots", "1.5G", "0", "12Q"] {
        let o = lossc(&[
            "eval",
            file.arg(),
            "--random",
            "B=4,D=2",
            "--max-memory",
            bad,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--max-memory"), "{bad}: {err}");
    }
}

#[test]
fn an_exploding_e_graph_ends_within_seconds() {
    // Products of sums: distributivity, commutativity and associativity would grow the
    // e-graph without end; the node, iteration and time limits stop it, and the best form
    // found so far is used. Many such definitions: the whole loss stays within seconds too.
    let mut text = String::from("loss blowup(x: [B], y: [B]) {\n");
    let factor = |k: usize| format!("(x[b] + {k} * y[b] + exp(x[b] - {k}))");
    for d in 0..60 {
        let product: Vec<String> = (0..12).map(|k| factor(k + d)).collect();
        text.push_str(&format!("    let t{d}[b] = {}\n", product.join(" * ")));
    }
    let sum: Vec<String> = (0..60).map(|d| format!("t{d}[b]")).collect();
    text.push_str(&format!("    mean[b]({})\n}}\n", sum.join(" + ")));
    let file = source_file("blowup.loss", &text);
    for command in ["simplify", "grad"] {
        let o = lossc(&[command, file.arg()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{command}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Forward only, it compiles and runs; its gradient program has expressions too large to
    // compile to native code within seconds, which the CPU backend refuses up front.
    let run = |extra: &[&str]| {
        let mut args = vec!["eval", file.arg(), "--random", "B=3", "--backend", "cpu"];
        args.extend(extra);
        lossc(&args)
    };
    let o = run(&["--no-grad"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    refused(
        &run(&[]),
        &[
            "of the program compiled for `blowup` has",
            "--backend interp",
        ],
    );
}

#[test]
fn deep_nesting_is_refused_within_seconds() {
    for (name, text) in [
        (
            "parens.loss",
            format!(
                "loss l(x: [B]) {{ mean[b]({}x[b]{}) }}\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        (
            "negations.loss",
            format!(
                "loss l(x: [B]) {{ mean[b]({}x[b]) }}\n",
                "-".repeat(100_000)
            ),
        ),
        (
            "calls.loss",
            format!(
                "loss l(x: [B]) {{ mean[b]({}x[b]{}) }}\n",
                "exp(".repeat(50_000),
                ")".repeat(50_000)
            ),
        ),
        (
            "chain.loss",
            format!(
                "loss l(x: [B]) {{ mean[b](x[b]{}) }}\n",
                " + x[b]".repeat(20_000)
            ),
        ),
        (
            "reductions.loss",
            format!(
                "loss l(x: [B]) {{ {}x[b]{} }}\n",
                "sum[b](".repeat(20_000),
                ")".repeat(20_000)
            ),
        ),
    ] {
        let file = source_file(name, &text);
        let o = lossc(&["check", file.arg()]);
        refused(&o, &[name, "error"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("too deeply") || err.contains("nests too deeply"),
            "{name}: {err}"
        );
    }
}

#[test]
fn doubling_fn_chains_stop_at_the_inlining_limit_within_seconds() {
    // Found by the `parse` fuzz target: 2^30 inlined calls, with and without parameters.
    let o = lossc(&[
        "check",
        "tests/corpus/bad_sources/fn_doubling_chain_30.loss",
    ]);
    refused(&o, &["inlining `fn` calls makes this loss too large"]);
}

#[test]
fn a_ten_megabyte_source_is_refused_within_seconds() {
    let text = "// padding\n".repeat(1_000_000);
    let file = source_file("ten_mb.loss", &text);
    let o = lossc(&["check", file.arg()]);
    refused(
        &o,
        &["bytes; lossc reads source files of at most 4194304 bytes"],
    );
    // Just under the limit: ten thousand items and 3.6 MB of comments check within seconds.
    let item = "loss l(x: [B]) { mean[b](x[b] * 2) }\n";
    let mut text = item.repeat(10_000);
    text.push_str(&"// padding\n".repeat(((4 << 20) - text.len()) / 11 - 1));
    assert!(text.len() <= 4 << 20);
    let file = source_file("four_mb.loss", &text);
    let o = lossc(&["check", file.arg()]);
    refused(&o, &["`l` is defined twice", "... and 9949 more errors"]);
}
