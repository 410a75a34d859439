//! The logic of lossc's fuzz targets, one plain function per target. Each takes the fuzzer's
//! bytes and panics only when lossc breaks a promise: a panic inside lossc, a diagnostic
//! pointing outside the source, a printed program that no longer checks, a simplified or
//! differentiated program that computes something else, a data file that reads back
//! differently. Errors lossc reports cleanly are fine.
//!
//! `fuzz/fuzz_targets/*.rs` hand these functions to libFuzzer; `tests/fuzz_corpus.rs` (in the
//! main workspace) includes this file by path and replays every committed corpus file through
//! them, so CI checks every input the fuzzers ever kept without building libFuzzer.

#![allow(dead_code)]

use compiler::ir::{Builtin, Expr, Loss};
use runtime::data::{self, Format, TensorMap};
use runtime::{Data, Tensor};
use std::collections::BTreeMap;

#[path = "../../compiler/tests/support/generate.rs"]
mod generate;

/// Inputs larger than this are not looked at (libFuzzer's `-max_len` normally keeps them
/// smaller): the targets test behaviour, not throughput on huge files.
const MAX_INPUT: usize = 1 << 16;

// ---------------------------------------------------------------------------------------------
// parse: arbitrary bytes as source text

/// Target `parse`: arbitrary bytes (as UTF-8, invalid sequences replaced) through the parser,
/// and when they parse, the checker. Every diagnostic must point inside the source and render.
pub fn parse(bytes: &[u8]) {
    if bytes.len() > MAX_INPUT {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    match grammar::parse(&text) {
        Ok(file) => {
            if let Err(diags) = compiler::check(&file) {
                diagnostics_are_sound(&text, &diags);
            }
        }
        Err(diags) => diagnostics_are_sound(&text, &diags),
    }
}

/// Every diagnostic's spans lie inside `source` on character boundaries, and the whole set
/// renders.
fn diagnostics_are_sound(source: &str, diags: &[grammar::Diagnostic]) {
    assert!(!diags.is_empty(), "an error without a diagnostic");
    for d in diags {
        let spans = std::iter::once(&d.span).chain(d.secondary.iter().map(|(s, _)| s));
        for s in spans {
            assert!(
                s.start <= s.end
                    && s.end <= source.len()
                    && source.is_char_boundary(s.start)
                    && source.is_char_boundary(s.end),
                "diagnostic {:?} has span {s:?} outside a source of {} bytes",
                d.message,
                source.len()
            );
        }
        assert!(!d.message.is_empty(), "a diagnostic without a message");
    }
    let rendered = grammar::render("fuzz.loss", source, diags);
    assert!(rendered.contains("fuzz.loss:"), "{rendered}");
}

// ---------------------------------------------------------------------------------------------
// check: programs generated from the grammar

/// Reads choices from the fuzzer's bytes; zeros once they run out (so every input, however
/// short, gives a finite program).
struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Choices<'_> {
    fn below(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(b) % n.max(1)
    }

    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.below(options.len())]
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

/// Names the generated programs use: a few of each kind, so that references resolve often and
/// fail sometimes (an unknown name, a tensor used as a scalar, an index used twice...).
const TENSORS: &[&str] = &["x", "y", "m", "s", "z", "t"];
const DIMS: &[&str] = &["B", "C", "D"];
const INDICES: &[&str] = &["i", "j", "k", "b"];
const HYPERS: &[&str] = &["alpha", "beta"];
const FNS: &[&str] = &["f", "g"];
const REDUCERS: &[&str] = &[
    "sum",
    "mean",
    "max",
    "min",
    "logsumexp",
    "count",
    "argmax",
    "argmin",
];
const BUILTINS: &[(&str, usize)] = &[
    ("exp", 1),
    ("log", 1),
    ("log1p", 1),
    ("expm1", 1),
    ("log1mexp", 1),
    ("sqrt", 1),
    ("abs", 1),
    ("sigmoid", 1),
    ("log_sigmoid", 1),
    ("softplus", 1),
    ("tanh", 1),
    ("relu", 1),
    ("cos", 1),
    ("sin", 1),
    ("min", 2),
    ("max", 2),
    ("clamp", 3),
    ("pow", 2),
    ("detach", 1),
];
const NUMBERS: &[&str] = &[
    "0", "1", "2", "0.5", "1e-4", "100", "inf", "3.25", "1e308", "1e400", ".5", "7",
];
const BINOPS: &[&str] = &[
    "+", "-", "*", "/", "^", "==", "!=", "<", "<=", ">", ">=", "&&", "||",
];

/// Writes a program that follows the grammar (nearly always: a few choices deliberately
/// produce near-misses) from the fuzzer's choices.
fn grammar_program(c: &mut Choices) -> String {
    let mut out = String::new();
    let items = 1 + c.below(2);
    for _ in 0..items {
        if c.below(5) == 0 {
            let name = c.pick(FNS);
            let params: Vec<&str> = (0..c.below(3)).map(|_| c.pick(&["a", "b", "x"])).collect();
            out.push_str(&format!("fn {name}({}) = ", params.join(", ")));
            expr(c, &mut out, 3);
            out.push('\n');
            continue;
        }
        out.push_str("loss ");
        out.push_str(c.pick(&["l", "loss2", "f"]));
        out.push('(');
        let inputs = c.below(5);
        for n in 0..inputs {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(TENSORS[n % TENSORS.len()]);
            out.push_str(": ");
            out.push_str(c.pick(&["", "", "int", "bool", "float"]));
            out.push('[');
            let rank = c.below(4);
            let dims: Vec<&str> = (0..rank).map(|_| c.pick(DIMS)).collect();
            out.push_str(&dims.join(", "));
            out.push(']');
        }
        if c.below(2) == 0 {
            out.push_str("; ");
            for h in 0..c.below(3) {
                if h > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.pick(HYPERS));
                out.push_str(" = ");
                out.push_str(c.pick(&["", "-"]));
                out.push_str(c.pick(NUMBERS));
            }
        }
        out.push_str(") {\n");
        for _ in 0..c.below(4) {
            if c.below(4) == 0 {
                out.push_str("    metric ");
                out.push_str(c.pick(&["acc", "t", "u"]));
                out.push_str(" = ");
            } else {
                out.push_str("    let ");
                out.push_str(c.pick(&["t", "u", "v", "x"]));
                let rank = c.below(3);
                if rank > 0 {
                    out.push('[');
                    for r in 0..rank {
                        if r > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(c.pick(INDICES));
                        if c.below(4) == 0 {
                            out.push_str(": ");
                            out.push_str(c.pick(DIMS));
                        }
                    }
                    out.push(']');
                }
                out.push_str(" = ");
            }
            expr(c, &mut out, 4);
            out.push('\n');
        }
        out.push_str("    (");
        expr(c, &mut out, 4);
        out.push_str(")\n}\n");
    }
    out
}

/// One expression of at most `depth` levels.
fn expr(c: &mut Choices, out: &mut String, depth: u32) {
    let choice = if depth == 0 || c.done() {
        c.below(4)
    } else {
        c.below(12)
    };
    match choice {
        0 => out.push_str(c.pick(NUMBERS)),
        1 => out.push_str(c.pick(INDICES)),
        2 => out.push_str(c.pick(&["true", "false", "alpha", "beta", "s", "t", "u"])),
        3 => {
            // A read with index expressions: indices, literals, gathers.
            out.push_str(c.pick(TENSORS));
            out.push('[');
            let n = 1 + c.below(3);
            for k in 0..n {
                if k > 0 {
                    out.push_str(", ");
                }
                match c.below(5) {
                    0 => out.push_str(c.pick(&["0", "1", "-1"])),
                    1 if depth > 0 => expr(c, out, depth - 1),
                    _ => out.push_str(c.pick(INDICES)),
                }
            }
            out.push(']');
        }
        4 | 5 => {
            out.push('(');
            expr(c, out, depth - 1);
            out.push(' ');
            out.push_str(c.pick(BINOPS));
            out.push(' ');
            expr(c, out, depth - 1);
            out.push(')');
        }
        6 => {
            out.push_str(c.pick(&["(-", "(!", "(- -"]));
            expr(c, out, depth - 1);
            out.push(')');
        }
        7 => {
            let (name, arity) = if c.below(4) == 0 {
                (c.pick(FNS), c.below(3))
            } else {
                let (n, a) = BUILTINS[c.below(BUILTINS.len())];
                // Now and then the wrong number of arguments.
                (n, if c.below(8) == 0 { c.below(4) } else { a })
            };
            out.push_str(name);
            out.push('(');
            for k in 0..arity {
                if k > 0 {
                    out.push_str(", ");
                }
                expr(c, out, depth - 1);
            }
            out.push(')');
        }
        8 | 9 => {
            out.push_str(c.pick(REDUCERS));
            out.push('[');
            let n = 1 + c.below(2);
            for k in 0..n {
                if k > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.pick(INDICES));
                if c.below(4) == 0 {
                    out.push_str(": ");
                    out.push_str(c.pick(DIMS));
                }
            }
            if c.below(2) == 0 {
                out.push_str(" | ");
                expr(c, out, depth - 1);
            }
            out.push_str("](");
            if c.below(6) != 0 {
                expr(c, out, depth - 1);
            }
            out.push(')');
        }
        10 => {
            out.push_str("(if ");
            expr(c, out, depth - 1);
            out.push_str(" then ");
            expr(c, out, depth - 1);
            out.push_str(" else ");
            expr(c, out, depth - 1);
            out.push(')');
        }
        _ => {
            out.push('(');
            expr(c, out, depth - 1);
            out.push(')');
        }
    }
}

/// Target `check`: a program generated from the grammar through the parser and the checker.
/// Errors must be sound diagnostics; a program that checks must print as source that checks
/// again to the same program.
pub fn check(bytes: &[u8]) {
    if bytes.len() > MAX_INPUT {
        return;
    }
    let source = grammar_program(&mut Choices { bytes, at: 0 });
    if std::env::var_os("LOSSC_FUZZ_SHOW").is_some() {
        eprintln!("{source}");
    }
    check_source_text(&source);
}

/// The `check` target's promises on one source text.
pub fn check_source_text(source: &str) {
    match compiler::check_source(source) {
        Err(diags) => diagnostics_are_sound(source, &diags),
        Ok(program) => {
            for loss in &program.losses {
                printed_program_checks(loss);
            }
        }
    }
}

/// A checked loss prints as source that checks again, and prints the same the second time.
fn printed_program_checks(loss: &Loss) {
    let printed = compiler::print::loss(loss);
    let again = match compiler::check_source(&printed) {
        Ok(mut p) if p.losses.len() == 1 => p.losses.remove(0),
        Ok(p) => panic!(
            "printed loss reads back as {} losses:\n{printed}",
            p.losses.len()
        ),
        Err(d) => panic!(
            "printed loss does not check:\n{printed}\n{}",
            grammar::render("printed.loss", &printed, &d)
        ),
    };
    let reprinted = compiler::print::loss(&again);
    assert_eq!(printed, reprinted, "printing is not stable");
}

// ---------------------------------------------------------------------------------------------
// pipeline: simplify, grad, interpreter (and the CPU backend) on generated well-typed programs

/// Target `pipeline`: a generated well-typed loss (its choices read from the bytes after the
/// first two) on seeded inputs (sizes and seed from the first two bytes, with NaN, infinities
/// and huge values mixed in when the first byte says so). The promises:
/// - nothing panics, and the CPU backend never reads outside a buffer;
/// - the printed program checks again;
/// - the simplified program computes the original's value (where the original is finite);
/// - the interpreter's gradient matches central finite differences (smooth points only);
/// - the compiled backends' program (simplify → grad → simplify → hoist), run by the
///   interpreter, gives the original's gradient;
/// - the CPU backend fails exactly when the interpreter does.
pub fn pipeline(bytes: &[u8]) {
    if bytes.len() < 2 || bytes.len() > 4096 {
        return;
    }
    let (head, rest) = bytes.split_at(2);
    let loss = generate::generate_from_bytes(rest);
    if std::env::var_os("LOSSC_FUZZ_SHOW").is_some() {
        eprintln!("{}", compiler::print::loss(&loss));
    }
    printed_program_checks(&loss);
    let sizes = vec![
        ("B".to_string(), 1 + usize::from(head[0] % 3)),
        ("D".to_string(), 1 + usize::from((head[0] / 3) % 3)),
    ];
    let extreme = head[0] >= 128;
    let Ok(mut inputs) = runtime::random::random_inputs(&loss, &sizes, u64::from(head[1])) else {
        panic!("random inputs for a generated loss");
    };
    if extreme {
        let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e30, -1e30, 0.0];
        for t in inputs.values_mut() {
            if let Data::F64(v) = &mut t.data {
                for (k, x) in v.iter_mut().enumerate() {
                    if (k + usize::from(head[1])) % 3 == 0 {
                        *x = specials[(k + usize::from(head[1])) % specials.len()];
                    }
                }
            }
        }
    }
    let bound = runtime::bind(&loss, &inputs, &[]).expect("generated inputs bind");
    let wrt = compiler::grad::resolve_wrt(&loss, &[]).expect("all float inputs");

    // The simplified program computes the original's value.
    let simple = compiler::simplify::simplify(&loss);
    printed_program_checks(&simple);
    let original = runtime::eval(&loss, &bound);
    let simplified = runtime::eval(&simple, &bound);
    match (&original, &simplified) {
        (Ok(a), Ok(b)) if !extreme => assert!(
            same_value(a.loss, b.loss, 1e-9),
            "simplify changed the value: {} vs {}\n{}\nsimplified:\n{}",
            a.loss,
            b.loss,
            compiler::print::loss(&loss),
            compiler::print::loss(&simple)
        ),
        (Ok(_), Err(e)) => panic!(
            "the simplified program fails where the original runs: {e}\n{}\nsimplified:\n{}",
            compiler::print::loss(&loss),
            compiler::print::loss(&simple)
        ),
        // The original may refuse (an index out of range) where the simplified form no
        // longer reads that index (`x[..] - x[..]` is 0): refusing less is allowed.
        _ => {}
    }

    // Gradients: interpreter vs finite differences, and vs the backends' program.
    let reference = runtime::eval_with_grad(&loss, &bound, &wrt);
    if !extreme && let Ok((out, grads)) = &reference {
        let detaches = |e: &Expr| e.any(&mut |x| matches!(x, Expr::Call(Builtin::Detach, _)));
        if !loss.defs.iter().any(|d| detaches(&d.body)) && !detaches(&loss.result) {
            let failures = finite_differences(&loss, &inputs, out.loss, grads);
            assert!(
                failures.is_empty(),
                "{}\n{}",
                compiler::print::loss(&loss),
                failures.join("\n")
            );
        }
    }
    let program = runtime::cpu::gradient_program(&loss, &wrt);
    printed_program_checks(&program);
    let backend_program = runtime::eval_all(&program, &bound);
    if let (Ok((_, grads)), Ok((_, defs))) = (&reference, &backend_program)
        && !extreme
    {
        for (input, d) in compiler::grad::gradient_outputs(&program) {
            let Some((_, want)) = grads.iter().find(|(i, _)| *i == input) else {
                continue;
            };
            let got = &defs[d];
            let scale = want
                .iter()
                .filter(|v| v.is_finite())
                .fold(1.0f64, |m, v| m.max(v.abs()));
            for (k, (a, b)) in want.iter().zip(got).enumerate() {
                assert!(
                    !a.is_finite() || same_value(*a, *b, 1e-6 * scale / a.abs().max(1e-300)),
                    "the backends' program gives grad_{}[{k}] = {b}, the reference {a}\n{}\nbackend program:\n{}",
                    loss.inputs[input].name,
                    compiler::print::loss(&loss),
                    compiler::print::loss(&program)
                );
            }
        }
    }

    // The CPU backend: never a wild read; fails exactly when the interpreter does.
    let cpu = runtime::cpu::eval_with_grad(&loss, &bound, &wrt);
    if let (Ok(_), Err(e)) = (&backend_program, &cpu) {
        panic!(
            "the CPU backend fails where the interpreter runs its program: {e}\n{}",
            compiler::print::loss(&program)
        );
    }
    if let (Err(e), Ok(_)) = (&backend_program, &cpu) {
        panic!(
            "the CPU backend runs where the interpreter refuses its program ({e})\n{}",
            compiler::print::loss(&program)
        );
    }
}

/// Equal up to `rel` relative error (at least 1e-12 absolute), or both NaN, or the same
/// infinity; a non-finite reference accepts anything (a stable form may be finite where the
/// original overflows).
fn same_value(a: f64, b: f64, rel: f64) -> bool {
    !a.is_finite() || a == b || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

/// The gradient check of `tests/gradients.rs`: central differences at two step sizes;
/// elements where the two disagree (a kink) are skipped.
fn finite_differences(
    loss: &Loss,
    inputs: &BTreeMap<String, Tensor>,
    value: f64,
    grads: &[(usize, Vec<f64>)],
) -> Vec<String> {
    let f = |inputs: &BTreeMap<String, Tensor>| {
        let b = runtime::bind(loss, inputs, &[]).expect("moved inputs bind");
        runtime::eval(loss, &b).map_or(f64::NAN, |o| o.loss)
    };
    let mut failures = vec![];
    for (i, g) in grads {
        let name = &loss.inputs[*i].name;
        let scale = g
            .iter()
            .fold(value.abs().max(1e-3) * 1e-6, |m, x| m.max(x.abs()));
        for (k, gk) in g.iter().enumerate() {
            let diff = |h: f64| {
                let mut plus = inputs.clone();
                let mut minus = inputs.clone();
                let (Data::F64(p), Data::F64(m)) = (
                    &mut plus.get_mut(name).expect("input").data,
                    &mut minus.get_mut(name).expect("input").data,
                ) else {
                    unreachable!("float input")
                };
                let x = p[k];
                let step = h * x.abs().max(1.0);
                p[k] = x + step;
                m[k] = x - step;
                (f(&plus) - f(&minus)) / (2.0 * step)
            };
            let (d1, d2) = (diff(1e-6), diff(5e-7));
            if !d1.is_finite() || !gk.is_finite() || (d1 - d2).abs() > 1e-6 * scale.max(d1.abs()) {
                continue;
            }
            // A difference quotient of values near |value| carries their rounding error,
            // about ε·|value| / step, whatever the gradient's own size.
            let x = match &inputs[name].data {
                Data::F64(v) => v[k],
                _ => unreachable!("float input"),
            };
            let noise = 4.0 * f64::EPSILON * value.abs().max(1.0) / (1e-6 * x.abs().max(1.0));
            if (gk - d1).abs() > 1e-5 * scale.max(d1.abs()) + noise {
                failures.push(format!("grad_{name}[{k}] = {gk}, finite difference {d1}"));
            }
        }
    }
    failures
}

// ---------------------------------------------------------------------------------------------
// data: the data-file readers on arbitrary bytes

/// Target `data`: the same bytes through the JSON, `.npz` and `.safetensors` readers. Whatever
/// a reader accepts must be a well-formed tensor map that writes and reads back the same
/// (bit for bit; JSON cannot keep the shape of an empty tensor, so there only the element
/// count and values).
pub fn data(bytes: &[u8]) {
    if bytes.len() > MAX_INPUT {
        return;
    }
    for format in [Format::Json, Format::Npz, Format::Safetensors] {
        let Ok(tensors) = data::parse_tensors(format, bytes, "fuzz") else {
            continue;
        };
        for (name, t) in &tensors {
            assert_eq!(
                t.shape.iter().product::<usize>(),
                t.data.len(),
                "{format:?}: tensor {name:?} has shape {:?} and {} elements",
                t.shape,
                t.data.len()
            );
        }
        let encoded = data::encode_tensors(format, &tensors)
            .unwrap_or_else(|e| panic!("{format:?}: a map read from a file does not write: {e}"));
        let back = data::parse_tensors(format, &encoded, "again")
            .unwrap_or_else(|e| panic!("{format:?}: a written file does not read back: {e}"));
        let keeps_shapes = format != Format::Json || tensors.values().all(|t| !t.data.is_empty());
        assert!(
            same_tensors(&tensors, &back, keeps_shapes),
            "{format:?}: read {tensors:?}, wrote and read back {back:?}"
        );
    }
}

/// Equal maps: same names, element types, values (bit for bit, NaN equal to NaN) and, when
/// `shapes`, shapes.
fn same_tensors(a: &TensorMap, b: &TensorMap, shapes: bool) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, ta), (nb, tb))| {
            na == nb
                && (!shapes || ta.shape == tb.shape)
                && match (&ta.data, &tb.data) {
                    (Data::F64(x), Data::F64(y)) => {
                        x.len() == y.len()
                            && x.iter().zip(y).all(|(p, q)| {
                                p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())
                            })
                    }
                    (x, y) if x.is_empty() && y.is_empty() => !shapes || x == y,
                    (x, y) => x == y,
                }
        })
}
