//! End-to-end tests of `lossc repl`: scripts piped through stdin (snapshot-tested), garbage
//! that must never crash it, and a session under a real terminal (a pty) for multi-line
//! input, history and completion.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `lossc repl` in `dir` on `script`; returns stdout and stderr interleaved as a user
/// sees them, and the exit code.
fn repl_in(dir: &Path, script: &str) -> (String, Option<i32>) {
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .arg("repl")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().expect("clone the pipe"))
        .stderr(writer)
        .spawn()
        .expect("run lossc repl");
    let mut stdin = child.stdin.take().expect("stdin");
    let script = script.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read the output");
    let status = child.wait().expect("wait for lossc");
    feeder.join().expect("feed stdin");
    (out, status.code())
}

fn repl(script: &str) -> (String, Option<i32>) {
    repl_in(Path::new(env!("CARGO_MANIFEST_DIR")), script)
}

/// The script and what the REPL printed, for a snapshot.
fn transcript(script: &str, out: &str, code: Option<i32>) -> String {
    format!("--- script ---\n{script}--- output (exit {code:?}) ---\n{out}")
}

#[test]
fn define_fix_simplify_differentiate_evaluate() {
    let script = "\
// A typo first: the error points into what was typed.
loss sq_sigmoid(x: [B]; scale = 1) {
    mean[b](scale * sigmoi(x[b]))
}
/// The mean squared sigmoid.
loss sq_sigmoid(x: [B]; scale = 1) {
    mean[b](scale * sigmoid(x[b]) ^ 2)
}
:simplify sq_sigmoid
:grad sq_sigmoid
:eval sq_sigmoid --random B=4
sigmoid(x[b])
let m = mean[b](x[b])
x[b] - m
x[i] * x[j] > 0
x
mean[b](x[b]) +
  1
:set scale=2
scale * m
:eval sq_sigmoid --no-grad
:backend cpu
:eval sq_sigmoid --no-grad
:doc sq_sigmoid
:list
";
    let (out, code) = repl(script);
    assert!(!out.contains("panicked"), "{out}");
    assert_eq!(code, Some(1), "one entry (the typo) fails:\n{out}");
    insta::assert_snapshot!(transcript(script, &out, code));
}

#[test]
fn compare_numerically_and_logically() {
    let script = "\
loss dpo_hinge(
    policy_chosen_logps: [B],
    policy_rejected_logps: [B],
    reference_chosen_logps: [B],
    reference_rejected_logps: [B];
    beta = 0.1,
) {
    let margin[b] = (policy_chosen_logps[b] - reference_chosen_logps[b])
                  - (policy_rejected_logps[b] - reference_rejected_logps[b])
    mean[b](relu(1 - beta * margin[b]))
}
:compare dpo dpo_hinge --random B=3
:compare dpo dpo
:logic dpo_hinge
:compare dpo cpo
:compare mse dpo
";
    let (out, code) = repl(script);
    assert!(!out.contains("panicked"), "{out}");
    insta::assert_snapshot!(transcript(script, &out, code));
}

#[test]
fn fns_lets_scope_and_errors() {
    let script = "\
1 + 2
x[b]
:inputs
fn sq(a) = a * a
:inputs multi_similarity --random B=4,D=3
labels
let s[i, j] = sum[d](embeddings[i, d] * embeddings[j, d])
sq(s[0, 1])
count[i, j | labels[i] == labels[j] && i != j]()
let bad = undefined_thing + 1
let c = 2 *

metric m = 1
1 } loss sneaky(x: [B]) { 2
:pairs multi_similarity
:grad dpo policy_chosen_logps
:grad dpo nonsense
:eval dpo
:eval dpo --random B=2 --set beta=0.5 --wrt policy_chosen_logps
:eval dpo --random B=2 --set nope=1
:backend tpu
:backend
:set
:unset beta
:frobnicate
:simplfy dpo
:eval --bogus
:help grad
";
    let (out, code) = repl(script);
    assert!(!out.contains("panicked"), "{out}");
    assert_eq!(code, Some(1));
    insta::assert_snapshot!(transcript(script, &out, code));
}

#[test]
fn load_and_save_round_trip() {
    let dir = std::env::temp_dir().join(format!("lossc-repl-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("two.loss"),
        "/// Doubles.\nfn twice(a) = 2 * a\n\n/// Mean of twice x.\nloss m2(x: [N]) {\n    mean[n](twice(x[n]))\n}\n\nloss s2(x: [N]) { sum[n](twice(x[n])) }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.loss"),
        "loss b(x: [N]) {\n  mean[n](y[n])\n}\n",
    )
    .unwrap();
    let script = "\
:load broken.loss
:load two.loss
:eval m2 --random N=3 --no-grad
:eval two.loss --random N=3
let t = sum[n](x[n])
:save session.loss
:load dpo
:doc dpo
";
    let (out, code) = repl_in(&dir, script);
    assert!(!out.contains("panicked"), "{out}");
    let saved = std::fs::read_to_string(dir.join("session.loss")).expect("saved");
    let _ = std::fs::remove_dir_all(&dir);
    insta::assert_snapshot!(format!(
        "{}\n--- session.loss ---\n{saved}",
        transcript(script, &out, code)
    ));
    // What was saved checks as a file.
    compiler::check_source(&saved).expect("the saved session checks");
}

#[test]
fn bench_reports_timings() {
    let (out, code) = repl(
        ":bench dpo --size B=64 --reps 2\n:bench dpo --size B=64 --backend interp --reps 1\n:bench dpo --size Q=1\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("dpo --size B=64 on interp"), "{out}");
    assert!(out.contains("median"), "{out}");
    assert!(out.contains("no dimension `Q`"), "{out}");
}

#[test]
fn quit_stops_reading() {
    let (out, code) = repl("1 + 1\n:quit\nthis is never read (\n");
    assert_eq!((out.as_str(), code), ("2\n", Some(0)));
}

/// Lines of garbage, half-commands and broken sources: the REPL answers each with output
/// or an error, and never panics.
#[test]
fn garbage_never_crashes() {
    let fragments = [
        ":eval",
        ":eval dpo --random",
        ":eval dpo --random B=-1",
        ":eval dpo --random B=99999999999",
        ":eval dpo --random B=100000,C=2",
        ":compare",
        ":compare dpo",
        ":compare a b c",
        ":grad",
        ":pairs dpo",
        ":pairs dpo s",
        ":logic mse",
        ":logic",
        ":doc nothing_here",
        ":load /",
        ":load /dev/null",
        ":save /nonexistent/dir/x.loss",
        ":set =",
        ":set a=b",
        ":set 1x=2",
        ":set inf=1",
        ":unset",
        ":inputs dpo",
        ":inputs --random B=2",
        ":bench dpo --size",
        ":bench dpo --size B=2 --reps 0",
        ":backend quantum",
        ":help nothing",
        "\"",
        ":load \"unclosed",
        "loss",
        "loss (",
        "loss x(",
        "fn",
        "fn f(",
        "let",
        "let [",
        "let x[i] =",
        "let x[i] = i",
        "(((",
        ")))",
        "]]]",
        "}",
        "{",
        "[",
        "sum[",
        "x[",
        "1e999999",
        "-",
        "!",
        "if",
        "if 1 then",
        "--",
        "::",
        ":",
        "\u{202e}abc",
        "\u{0}\u{1}\u{7f}",
        "é",
        "let é = 1",
        "loss é(x: [B]) { x[0] }",
        "mean[b](x[b])",
        "argmax[i](1)",
        "1/0",
        "log(-1)",
        "0^0",
        "sum[k: K](1)",
        "count[]()",
        "let y[i: B] = i",
        ":inputs dpo --random B=0",
        "mean[b](policy_chosen_logps[b])",
        "policy_chosen_logps[7]",
        "policy_chosen_logps[b, b]",
        ":eval dpo --inputs /dev/null",
        ":eval dpo --inputs nothing.json",
        "let policy_chosen_logps = 1",
        ":set beta=inf",
        "beta * 2",
        "loss dpo(x: [B]) { x[0] }",
        ":eval dpo",
        ":compare dpo dpo",
    ];
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut script = String::from(":inputs dpo --random B=3\n");
    for _ in 0..400 {
        let a = fragments[(next() % fragments.len() as u64) as usize];
        match next() % 4 {
            0 => {
                // Two fragments glued together.
                let b = fragments[(next() % fragments.len() as u64) as usize];
                script.push_str(&format!("{a} {b}\n"));
            }
            1 => {
                // A fragment with a few bytes flipped to printable noise.
                let mut bytes: Vec<char> = a.chars().collect();
                for _ in 0..2 {
                    if !bytes.is_empty() {
                        let i = (next() % bytes.len() as u64) as usize;
                        bytes[i] = char::from(b"()[]{}=:,|&+-*^ab0"[(next() % 18) as usize]);
                    }
                }
                script.extend(bytes);
                script.push('\n');
            }
            _ => {
                script.push_str(a);
                script.push('\n');
            }
        }
    }
    let (out, code) = repl(&script);
    assert!(!out.contains("panicked"), "{out}");
    assert!(!out.contains("internal error"), "{out}");
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}\n{out}");
}

/// Under a real terminal: a loss typed over several lines, completion of a command and of
/// a name defined in the session, and history recalled by a second session.
#[test]
#[cfg(unix)]
fn terminal_multiline_history_and_completion() {
    use rexpect::session::spawn_command;
    let home = std::env::temp_dir().join(format!("lossc-repl-pty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lossc"));
        cmd.arg("repl")
            .env("HOME", &home)
            .env("XDG_STATE_HOME", home.join("state"))
            .env("TERM", "xterm")
            .env("NO_COLOR", "1");
        spawn_command(cmd, Some(20_000)).expect("spawn lossc repl under a pty")
    };

    let mut p = start();
    p.exp_string(":help").expect("the banner");
    // Multi-line: Enter inside an open `{` continues the entry.
    p.send_line("loss zz_square(x: [B]) {").unwrap();
    p.send_line("    mean[b](x[b] * x[b])").unwrap();
    p.send_line("}").unwrap();
    p.exp_string("defined loss zz_square(x: [B])")
        .expect("the three lines define one loss");
    // Completion of a command and of the session's name.
    p.send(":simp").unwrap();
    p.send("\t").unwrap();
    p.send("zz_sq").unwrap();
    p.send("\t").unwrap();
    p.send_line("").unwrap();
    p.exp_string("lossc> :simplify zz_square")
        .expect(":simp<TAB> zz_sq<TAB> completes to `:simplify zz_square`");
    p.exp_string("    mean[b](x[b] * x[b])\r\n}")
        .expect("the completed command ran");
    p.send_line(":quit").unwrap();
    p.exp_eof().expect("quits");

    let history = home.join("state/lossc/history");
    let saved = std::fs::read_to_string(&history).expect("the history file");
    assert!(saved.contains(":simplify zz_square"), "{saved}");

    // A second session recalls the first's entries: Up gives the last one (`:quit`), Up again
    // the `:simplify`, which runs again, failing now (zz_square is not defined here).
    let mut p = start();
    p.exp_string(":help").expect("the banner");
    p.send("\x1b[A").unwrap();
    p.send("\x1b[A").unwrap();
    p.send_line("").unwrap();
    p.exp_string("no stdlib loss named `zz_square`")
        .expect("the recalled entry ran");
    // The multi-line loss is one history entry: four entries back it returns whole.
    for _ in 0..4 {
        p.send("\x1b[A").unwrap();
    }
    p.send_line("").unwrap();
    p.exp_string("defined loss zz_square(x: [B])")
        .expect("the recalled multi-line entry defines the loss");
    p.send_control('d').unwrap();
    p.exp_eof().expect("Ctrl-D quits");
    let _ = std::fs::remove_dir_all(&home);
}
