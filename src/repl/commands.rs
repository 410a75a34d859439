//! The `:commands`: each parsed by clap from the words of its line (`:eval --help` shows its
//! options), run against the session, and answered with the text to print.

use super::session::{Backend, Session};
use crate::show::{self, signature};
use crate::source::{self, UserError};
use crate::stdlib;
use clap::{ColorChoice, Parser};
use compiler::ir::Loss;
use compiler::logic::{self, Relation};
use runtime::data::{self, TensorMap};
use runtime::interp;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What a command asks the loop to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Print this and read the next entry.
    Print(String),
    /// End the session.
    Quit,
}

/// Every command: its usage and what it does, as `:help` lists them.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        ":load FILE",
        "define the losses and fns of a file or stdlib loss (`:load dpo`, then edit it)",
    ),
    (
        ":doc [NAME]",
        "a loss's signature and doc comment; alone, the stdlib",
    ),
    (
        ":simplify NAME",
        "the loss simplified and made numerically stable, as .loss source",
    ),
    (
        ":grad NAME [INPUT,..]",
        "the gradient program (of every float input, or of those named)",
    ),
    (
        ":pairs NAME [MATRIX]",
        "the pair weights dL/ds[i, j] of a similarity-matrix loss",
    ),
    (
        ":logic NAME",
        "the logic of a preference loss: f, core ratio, P, P_C, P_A",
    ),
    (
        ":eval NAME [--random B=4,.. [--seed N] | --inputs DATA] [--set k=v] [--wrt a,b | --no-grad] [--backend B] [--max-memory BYTES]",
        "loss, metrics and gradients; the inputs stay in scope (without data: the inputs in scope)",
    ),
    (
        ":inputs [NAME (--random B=4,.. [--seed N] | --inputs DATA)]",
        "bring a loss's inputs into scope without evaluating; alone, show what is in scope",
    ),
    (
        ":compare A B [--random B=4,..] [--seed N]",
        "A and B on shared random inputs (sizes default to 4), and their logic for preference losses",
    ),
    (
        ":bench NAME --size B=4096,.. [--backend interp|cpu] [--reps N]",
        "time forward + gradient on random inputs",
    ),
    (
        ":backend [interp|cpu|gpu]",
        "where :eval, :compare and :bench compute (default interp, the f64 reference)",
    ),
    (
        ":set [k=v,..]",
        "session hyperparameters, applied to every loss that has them; alone, list them",
    ),
    (":unset NAME..", "drop session hyperparameters"),
    (
        ":list",
        "what the session has defined, the inputs in scope, the settings",
    ),
    (
        ":save FILE",
        "write the session's losses and fns (its lets as comments) to FILE",
    ),
    (":help [COMMAND]", "this list, or one command's options"),
    (":quit", "leave (also :q, :exit, Ctrl-D)"),
];

/// The command names, for completion.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .map(|(usage, _)| usage.split(' ').next().unwrap_or(usage))
        .chain([":q", ":exit"])
}

/// The text of `:help`.
pub fn help() -> String {
    let mut s = String::from(
        "Type a `loss` or `fn` to define it (a name typed again replaces it), a `let` to define a\n\
         session tensor, or an expression to evaluate it. Lines continue while a bracket is\n\
         open, a `loss ... {` is unfinished, or a line ends in an operator; a blank line ends\n\
         an entry.\n\n\
         Expressions and lets read the inputs in scope (the data of the last `:eval`, or of\n\
         `:inputs NAME --random B=4`), the session's lets and hyperparameters (`:set`), and the\n\
         session's fns, as inside a loss body: `sigmoid(policy_chosen_logps[b])` prints a\n\
         tensor over its free index `b`, `mean[b](x[b])` a number, and a name alone the whole\n\
         tensor. They are computed by the f64 interpreter.\n\n\
         NAME is a loss defined in the session, a stdlib loss or a .loss file with one loss.\n\n",
    );
    let width = COMMANDS
        .iter()
        .map(|(u, _)| u.len())
        .filter(|&w| w <= 28)
        .max()
        .unwrap_or(0);
    for (usage, what) in COMMANDS {
        if usage.len() > width {
            let _ = writeln!(s, "  {usage}\n  {:width$}  {what}", "");
        } else {
            let _ = writeln!(s, "  {usage:width$}  {what}");
        }
    }
    s
}

fn err(e: impl std::fmt::Display) -> UserError {
    UserError(format!("error: {e}"))
}

/// Define the losses and fns of a file or stdlib loss, replacing those of the same names.
#[derive(Debug, Parser)]
#[command(name = ":load", color = ColorChoice::Never)]
struct LoadCmd {
    /// A `.loss` file, or the name of a stdlib loss.
    file: String,
}

/// Show a loss's signature and doc comment; alone, list the session's losses and the stdlib.
#[derive(Debug, Parser)]
#[command(name = ":doc", color = ColorChoice::Never)]
struct DocCmd {
    /// A loss of the session, the stdlib or a file.
    name: Option<String>,
}

/// Show a loss simplified (`:simplify`) or its logic as a preference loss (`:logic`).
#[derive(Debug, Parser)]
#[command(color = ColorChoice::Never)]
struct NameCmd {
    /// A loss of the session, the stdlib or a file.
    name: String,
}

/// Show the gradient program of a loss, as `.loss` source.
#[derive(Debug, Parser)]
#[command(name = ":grad", color = ColorChoice::Never)]
struct GradCmd {
    /// A loss of the session, the stdlib or a file.
    name: String,
    /// The float inputs to differentiate with respect to (default: all of them).
    #[arg(value_delimiter = ',')]
    wrt: Vec<String>,
}

/// Show the pair weights dL/ds[i, j] of a loss built on a similarity matrix.
#[derive(Debug, Parser)]
#[command(name = ":pairs", color = ColorChoice::Never)]
struct PairsCmd {
    /// A loss of the session, the stdlib or a file.
    name: String,
    /// The matrix (default: the two-index `let` named `s`, or the first).
    matrix: Option<String>,
}

/// Where data comes from.
#[derive(Debug, clap::Args)]
struct DataArgs {
    /// Seeded random inputs with these dimension sizes, e.g. `B=8,C=10`.
    #[arg(long, value_name = "DIM=SIZE,..", conflicts_with = "inputs")]
    random: Option<String>,
    /// Seed for --random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input data: a .json, .npz or .safetensors file.
    #[arg(long, value_name = "DATA")]
    inputs: Option<PathBuf>,
}

/// Compute a loss, its metrics and gradients; fresh inputs stay in scope for expressions.
#[derive(Debug, Parser)]
#[command(name = ":eval", color = ColorChoice::Never)]
struct EvalCmd {
    /// A loss of the session, the stdlib or a file.
    name: String,
    #[command(flatten)]
    data: DataArgs,
    /// Override hyperparameters: `--set beta=0.2 --set gamma=1` or `--set beta=0.2,gamma=1`.
    #[arg(long = "set", value_name = "NAME=VALUE,..")]
    set: Vec<String>,
    /// The float inputs to differentiate with respect to (default: all of them).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "INPUT,..",
        conflicts_with = "no_grad"
    )]
    wrt: Vec<String>,
    /// Compute only the loss and metrics.
    #[arg(long)]
    no_grad: bool,
    /// Where to compute (default: the session's backend).
    #[arg(long, value_parser = ["interp", "cpu", "gpu"])]
    backend: Option<String>,
    /// The most memory the run may take, e.g. `512M`, `2G` [default: 4G].
    #[arg(long, value_name = "BYTES", value_parser = runtime::limits::parse_bytes)]
    max_memory: Option<u64>,
}

/// Bring a loss's inputs into scope for expressions; alone, show the inputs in scope.
#[derive(Debug, Parser)]
#[command(name = ":inputs", color = ColorChoice::Never)]
struct InputsCmd {
    /// A loss whose inputs to bring into scope.
    name: Option<String>,
    #[command(flatten)]
    data: DataArgs,
}

/// Compare two losses on shared random inputs, and as logic when both are preference losses.
#[derive(Debug, Parser)]
#[command(name = ":compare", color = ColorChoice::Never)]
struct CompareCmd {
    /// The first loss.
    a: String,
    /// The second loss.
    b: String,
    /// Dimension sizes (each dimension not named is 4).
    #[arg(long, value_name = "DIM=SIZE,..")]
    random: Option<String>,
    /// Seed for the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Time forward + gradient of a loss on random inputs.
#[derive(Debug, Parser)]
#[command(name = ":bench", color = ColorChoice::Never)]
struct BenchCmd {
    /// A loss of the session, the stdlib or a file.
    name: String,
    /// Dimension sizes, e.g. `B=4096,C=1000`.
    #[arg(long, value_name = "DIM=SIZE,..")]
    size: String,
    /// Where to run (default: the session's backend).
    #[arg(long, value_parser = ["interp", "cpu", "gpu"])]
    backend: Option<String>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 9)]
    reps: usize,
}

/// Choose where `:eval`, `:compare` and `:bench` compute; alone, show it.
#[derive(Debug, Parser)]
#[command(name = ":backend", color = ColorChoice::Never)]
struct BackendCmd {
    /// interp (the f64 reference), cpu (native f32 code) or gpu (WGSL compute shaders).
    #[arg(value_parser = ["interp", "cpu", "gpu"])]
    backend: Option<String>,
}

/// Set session hyperparameters, applied to every loss that has them; alone, list them.
#[derive(Debug, Parser)]
#[command(name = ":set", color = ColorChoice::Never)]
struct SetCmd {
    /// `beta=0.2`, `beta=0.2,gamma=1`; several may follow.
    values: Vec<String>,
}

/// Drop session hyperparameters.
#[derive(Debug, Parser)]
#[command(name = ":unset", color = ColorChoice::Never)]
struct UnsetCmd {
    /// Session hyperparameters to drop.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Write the session's losses and fns (and its lets, as comments) to a file.
#[derive(Debug, Parser)]
#[command(name = ":save", color = ColorChoice::Never)]
struct SaveCmd {
    /// Where to write the session's items.
    file: PathBuf,
}

/// List the commands, or show one command's options.
#[derive(Debug, Parser)]
#[command(name = ":help", color = ColorChoice::Never)]
struct HelpCmd {
    /// A command, with or without its colon.
    command: Option<String>,
}

/// Parses a command's words, or returns what clap prints (its help, or the error).
fn parse<T: Parser>(words: &[String]) -> Result<T, Result<Outcome, UserError>> {
    T::try_parse_from(words).map_err(|e| {
        let text = e.render().to_string();
        if e.use_stderr() {
            Err(UserError(text.trim_end().to_string()))
        } else {
            Ok(Outcome::Print(text))
        }
    })
}

macro_rules! parse {
    ($t:ty, $words:expr) => {
        match parse::<$t>($words) {
            Ok(a) => a,
            Err(r) => return r,
        }
    };
}

/// Runs one `:command` line.
pub fn run(s: &mut Session, line: &str) -> Result<Outcome, UserError> {
    let words = super::input::words(line.trim()).map_err(err)?;
    let Some(first) = words.first().cloned() else {
        return Ok(Outcome::Print(String::new()));
    };
    let print = |r: Result<String, UserError>| r.map(Outcome::Print);
    match first.as_str() {
        ":quit" | ":q" | ":exit" => Ok(Outcome::Quit),
        ":help" | ":h" | ":?" => {
            let a = parse!(HelpCmd, &words);
            match a.command {
                None => Ok(Outcome::Print(help())),
                Some(c) => {
                    let c = format!(":{}", c.trim_start_matches(':'));
                    if c == ":help" {
                        return Ok(Outcome::Print(help()));
                    }
                    run(s, &format!("{c} --help"))
                }
            }
        }
        ":load" => {
            let a = parse!(LoadCmd, &words);
            let src = source::load(&a.file)?;
            // Errors in the file alone are reported as `lossc check` reports them.
            source::check(&src)?;
            print(s.define(std::rc::Rc::new(src)))
        }
        ":doc" => {
            let a = parse!(DocCmd, &words);
            print(doc(s, a.name.as_deref()))
        }
        ":simplify" | ":logic" => {
            let a = parse!(NameCmd, &words);
            let loss = s.loss(&a.name)?;
            if first == ":simplify" {
                print(Ok(compiler::print::loss(&compiler::simplify::simplify(
                    &loss,
                ))))
            } else {
                print(logic_text(&loss))
            }
        }
        ":grad" => {
            let a = parse!(GradCmd, &words);
            let loss = s.loss(&a.name)?;
            let wrt = compiler::grad::resolve_wrt(&loss, &a.wrt).map_err(err)?;
            let stable = compiler::simplify::simplify(&loss);
            let grad = compiler::grad::gradient(&stable, &wrt);
            print(Ok(compiler::print::loss(&compiler::simplify::simplify(
                &grad,
            ))))
        }
        ":pairs" => {
            let a = parse!(PairsCmd, &words);
            print(pairs(s, &a.name, a.matrix.as_deref()))
        }
        ":eval" => {
            let a = parse!(EvalCmd, &words);
            print(eval(s, a))
        }
        ":inputs" => {
            let a = parse!(InputsCmd, &words);
            print(inputs(s, a))
        }
        ":compare" => {
            let a = parse!(CompareCmd, &words);
            print(compare(s, a))
        }
        ":bench" => {
            let a = parse!(BenchCmd, &words);
            print(bench(s, a))
        }
        ":backend" => {
            let a = parse!(BackendCmd, &words);
            print(backend(s, a.backend.as_deref()))
        }
        ":set" => {
            let a = parse!(SetCmd, &words);
            print(set(s, &a.values))
        }
        ":unset" => {
            let a = parse!(UnsetCmd, &words);
            let mut out = String::new();
            for n in a.names {
                let before = s.sets.len();
                s.sets.retain(|(k, _)| *k != n);
                if s.sets.len() == before {
                    return Err(err(format!("`{n}` is not set (see `:set`)")));
                }
                let _ = writeln!(out, "unset {n}");
            }
            out.push_str(&s.recheck_lets());
            print(Ok(out))
        }
        ":list" => print(Ok(list(s))),
        ":save" => {
            let a = parse!(SaveCmd, &words);
            let text = s.source();
            std::fs::write(&a.file, &text)
                .map_err(|e| err(format!("cannot write `{}`: {e}", a.file.display())))?;
            print(Ok(format!(
                "wrote {} item{} to {}\n",
                s.items.len(),
                if s.items.len() == 1 { "" } else { "s" },
                a.file.display()
            )))
        }
        other => {
            let mut msg = format!("error: unknown command `{other}`");
            if let Some(h) = compiler::check::did_you_mean(other, names()) {
                let _ = write!(msg, "\n  help: {h}");
            } else {
                msg.push_str("\n  help: `:help` lists the commands");
            }
            Err(UserError(msg))
        }
    }
}

/// `B=8,C=10`.
fn sizes(s: &str) -> Result<Vec<(String, usize)>, UserError> {
    crate::assign::sizes(s).map_err(err)
}

/// `beta=0.2,gamma=1` (each of several words; a later value replaces an earlier one).
fn sets(words: &[String]) -> Result<Vec<(String, f64)>, UserError> {
    let mut out: Vec<(String, f64)> = vec![];
    for w in words {
        for (k, v) in crate::assign::values(w).map_err(err)? {
            out.retain(|(n, _)| *n != k);
            out.push((k, v));
        }
    }
    Ok(out)
}

fn pick_backend(s: &Session, name: Option<&str>) -> Result<Backend, UserError> {
    match name {
        None => Ok(s.backend),
        Some("cpu") => Ok(Backend::Cpu),
        Some("interp") => Ok(Backend::Interp),
        Some("gpu") => {
            // Refused up front, with what to install, when there is no adapter.
            runtime::gpu::adapter_description().map_err(err)?;
            Ok(Backend::Gpu)
        }
        Some(other) => Err(err(format!(
            "unknown backend `{other}`: use interp, cpu or gpu"
        ))),
    }
}

/// The forward + gradient function of a backend.
fn eval_fn(backend: Backend) -> EvalFn {
    match backend {
        Backend::Cpu => runtime::cpu::eval_with_grad,
        Backend::Gpu => runtime::gpu::eval_with_grad,
        Backend::Interp => interp::eval_with_grad,
    }
}

type EvalFn = fn(
    &Loss,
    &runtime::Bound,
    &[compiler::ir::InputId],
) -> Result<(runtime::Outputs, runtime::interp::Gradients), runtime::RunError>;

/// The tensors a command runs on: random, from a file, or (with neither) those in scope.
/// Returns where fresh data came from (`None` for the scope's).
fn data_for(
    s: &Session,
    loss: &Loss,
    d: &DataArgs,
) -> Result<(TensorMap, Option<String>), UserError> {
    if let Some(r) = &d.random {
        let sz = sizes(r)?;
        let t = runtime::random::random_inputs(loss, &sz, d.seed).map_err(err)?;
        return Ok((t, Some(format!("random {r}, seed {}", d.seed))));
    }
    if let Some(path) = &d.inputs {
        let t = data::read_tensors(path).map_err(err)?;
        return Ok((t, Some(path.display().to_string())));
    }
    let Some(scope) = &s.scope else {
        let dims: Vec<String> = loss.dims.iter().map(|d| format!("{d}=4")).collect();
        return Err(err(format!(
            "no inputs are in scope: give --random {} or --inputs DATA",
            if dims.is_empty() {
                "..".to_string()
            } else {
                dims.join(",")
            }
        )));
    };
    let t: TensorMap = scope
        .tensors
        .iter()
        .filter(|(n, _)| loss.input(n).is_some())
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Ok((t, None))
}

fn eval(s: &mut Session, a: EvalCmd) -> Result<String, UserError> {
    let backend = pick_backend(s, a.backend.as_deref())?;
    let loss = s.loss(&a.name)?;
    let (tensors, from) = data_for(s, &loss, &a.data)?;
    let set = s.sets_for(&loss, &sets(&a.set)?);
    let mut bound = runtime::bind(&loss, &tensors, &set).map_err(|e| {
        let mut e = err(e);
        if let (None, Some(scope)) = (&from, &s.scope) {
            let _ = write!(
                e.0,
                "\n  note: the inputs in scope are {}'s; give --random or --inputs",
                scope.signature.name
            );
        }
        e
    })?;
    if let Some(bytes) = a.max_memory {
        bound.max_memory = bytes;
    }
    let wrt = if a.no_grad {
        vec![]
    } else {
        compiler::grad::resolve_wrt(&loss, &a.wrt).map_err(err)?
    };
    let run = eval_fn(backend);
    let (outputs, grads) = run(&loss, &bound, &wrt).map_err(err)?;
    let mut rows = vec![("loss".to_string(), show::number(outputs.loss))];
    rows.extend(
        outputs
            .metrics
            .iter()
            .map(|(n, v)| (n.clone(), show::number(*v))),
    );
    for (i, g) in &grads {
        rows.push((
            format!("grad_{}", loss.inputs[*i].name),
            format!("{:?} {}", bound.inputs[*i].shape, show::summary(g)),
        ));
    }
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(4);
    let mut out = String::new();
    for (n, v) in rows {
        let _ = writeln!(out, "{n:width$}  {v}");
    }
    if let Some(from) = from {
        out.push_str(&s.set_scope(&loss, tensors, from));
    }
    Ok(out)
}

fn inputs(s: &mut Session, a: InputsCmd) -> Result<String, UserError> {
    let Some(name) = &a.name else {
        if a.data.random.is_some() || a.data.inputs.is_some() {
            return Err(err(
                "name the loss whose inputs these are: `:inputs NAME --random B=4`",
            ));
        }
        return Ok(scope_text(s));
    };
    if a.data.random.is_none() && a.data.inputs.is_none() {
        return Err(err(format!(
            "give the data: `:inputs {name} --random B=4` or `:inputs {name} --inputs DATA`"
        )));
    }
    let loss = s.loss(name)?;
    let (tensors, from) = data_for(s, &loss, &a.data)?;
    let set = s.sets_for(&loss, &[]);
    runtime::bind(&loss, &tensors, &set).map_err(err)?;
    let notes = s.set_scope(&loss, tensors, from.unwrap_or_default());
    Ok(format!("{}{notes}", scope_text(s)))
}

/// The inputs in scope, one line each.
fn scope_text(s: &Session) -> String {
    let Some(scope) = &s.scope else {
        return "no inputs in scope (`:inputs NAME --random B=4` or `:eval NAME --random B=4` bring some in)\n".into();
    };
    let l = &scope.signature;
    let mut out = format!("inputs of {} ({}):\n", l.name, scope.from);
    let sigs: Vec<String> = l
        .inputs
        .iter()
        .map(|i| runtime::bind::signature(l, i))
        .collect();
    let width = sigs.iter().map(|x| x.len()).max().unwrap_or(0);
    for (input, sig) in l.inputs.iter().zip(&sigs) {
        let Some(t) = scope.tensors.get(&input.name) else {
            continue;
        };
        let (values, elem): (Vec<f64>, _) = match &t.data {
            runtime::Data::F64(v) => (v.clone(), show::Elem::Float),
            runtime::Data::F32(v) => (v.iter().map(|&x| f64::from(x)).collect(), show::Elem::Float),
            runtime::Data::I64(v) => (v.iter().map(|&x| x as f64).collect(), show::Elem::Int),
            runtime::Data::Bool(v) => (
                v.iter().map(|&x| f64::from(u8::from(x))).collect(),
                show::Elem::Bool,
            ),
        };
        let _ = writeln!(
            out,
            "  {sig:width$}  {:?} {}",
            t.shape,
            show::summary_of(&values, elem)
        );
    }
    for h in &l.hypers {
        let v = s
            .sets
            .iter()
            .find(|(n, _)| *n == h.name)
            .map_or(h.default, |(_, v)| *v);
        let _ = writeln!(out, "  {} = {}", h.name, compiler::print::hyper_value(v));
    }
    out
}

fn list(s: &Session) -> String {
    let mut out = String::new();
    if s.items.is_empty() {
        out.push_str("nothing defined yet\n");
    }
    for item in &s.items {
        let from = &item.seg.origin.name;
        if item.is_loss {
            if let Some(l) = s.program.loss(&item.name) {
                let sig = signature(l).replace('\n', "\n  ");
                let _ = writeln!(out, "{sig}   [{from}]");
            }
        } else {
            let _ = writeln!(out, "fn {}   [{from}]", item.name);
        }
    }
    for l in &s.lets {
        let _ = writeln!(out, "{}", l.seg.text().trim());
    }
    out.push_str(&scope_text(s));
    if !s.sets.is_empty() {
        let _ = writeln!(out, "set {}", sets_text(s));
    }
    let _ = writeln!(out, "backend {}", s.backend.name());
    out
}

fn sets_text(s: &Session) -> String {
    s.sets
        .iter()
        .map(|(n, v)| format!("{n}={}", compiler::print::hyper_value(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn set(s: &mut Session, words: &[String]) -> Result<String, UserError> {
    if words.is_empty() {
        return Ok(if s.sets.is_empty() {
            "no session hyperparameters (`:set beta=0.2` sets one)\n".into()
        } else {
            format!("{}\n", sets_text(s))
        });
    }
    let new = sets(words)?;
    for (n, _) in &new {
        if compiler::check::is_reserved(n) || n.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(format!("`{n}` cannot be a hyperparameter's name")));
        }
        let clash = s.lets.iter().any(|l| &l.name == n)
            || s.scope
                .as_ref()
                .is_some_and(|sc| sc.signature.input(n).is_some());
        if clash {
            return Err(err(format!(
                "`{n}` already names an input or a let in scope"
            )));
        }
    }
    for (n, v) in new {
        match s.sets.iter_mut().find(|(k, _)| *k == n) {
            Some(e) => e.1 = v,
            None => s.sets.push((n, v)),
        }
    }
    Ok(format!("{}\n", sets_text(s)))
}

fn backend(s: &mut Session, name: Option<&str>) -> Result<String, UserError> {
    if let Some(n) = name {
        s.backend = pick_backend(s, Some(n)).map_err(|e| {
            UserError(format!(
                "{}\n  note: the backend stays `{}`",
                e.0,
                s.backend.name()
            ))
        })?;
    }
    Ok(match s.backend {
        Backend::Interp => "backend interp (the f64 reference interpreter)\n".into(),
        Backend::Cpu => "backend cpu (native f32 code, Cranelift JIT)\n".into(),
        Backend::Gpu => format!(
            "backend gpu (f32 WGSL compute shaders on {})\n",
            runtime::gpu::adapter_description().map_err(err)?
        ),
    })
}

fn doc(s: &Session, name: Option<&str>) -> Result<String, UserError> {
    let mut out = String::new();
    let Some(name) = name else {
        if !s.program.losses.is_empty() {
            out.push_str("Session:\n");
            for l in &s.program.losses {
                let _ = writeln!(out, "  {}  {}", l.name, l.doc.lines().next().unwrap_or(""));
            }
            out.push('\n');
        }
        for family in stdlib::FAMILIES {
            let _ = writeln!(out, "{}:", stdlib::family_title(family));
            for e in stdlib::ENTRIES.iter().filter(|e| e.family == *family) {
                let first = compiler::check_source(e.source)
                    .ok()
                    .and_then(|p| {
                        p.losses
                            .first()
                            .map(|l| l.doc.lines().next().unwrap_or("").to_string())
                    })
                    .unwrap_or_default();
                let _ = writeln!(out, "  {}  {first}", e.name);
            }
            out.push('\n');
        }
        out.pop();
        return Ok(out);
    };
    let (losses, from) = match s.program.loss(name) {
        Some(l) => (vec![l.clone()], s.origin_of(name).unwrap_or("").to_string()),
        None => {
            let src = source::load(name)?;
            (source::check(&src)?.losses, src.name)
        }
    };
    for loss in &losses {
        let _ = writeln!(out, "{}\n", signature(loss));
        for line in loss.doc.lines() {
            let _ = writeln!(out, "{}", format!("    {line}").trim_end());
        }
        if !loss.doc.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "  source: {from}");
    }
    Ok(out)
}

fn pairs(s: &Session, name: &str, matrix: Option<&str>) -> Result<String, UserError> {
    let loss = s.loss(name)?;
    let stable = compiler::simplify::simplify(&loss);
    let candidates = compiler::grad::pair_matrices(&stable);
    let names: Vec<&str> = candidates
        .iter()
        .map(|&d| stable.defs[d].name.as_str())
        .collect();
    let chosen = match matrix {
        None => candidates.first().copied(),
        Some(m) => candidates
            .iter()
            .copied()
            .find(|&d| stable.defs[d].name == m),
    };
    let Some(d) = chosen else {
        return Err(err(format!(
            "loss `{}` has no pair matrix{}: :pairs needs a float `let` with two indices over one dimension (candidates: {})",
            stable.name,
            matrix.map(|m| format!(" named `{m}`")).unwrap_or_default(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let weights = compiler::grad::pair_weights(&stable, d).ok_or_else(|| {
        err(format!(
            "the loss does not depend on `{}`",
            stable.defs[d].name
        ))
    })?;
    Ok(compiler::print::loss(&compiler::simplify::simplify(
        &weights,
    )))
}

/// `lossc logic NAME`'s decompilation, for a loss at hand.
fn logic_text(loss: &Loss) -> Result<String, UserError> {
    let d = logic::decompile(loss).map_err(|e| {
        err(format!(
            "loss `{}` has no DPA logical semantics: {e}",
            loss.name
        ))
    })?;
    let s = &d.structure;
    let mut out = String::new();
    let _ = writeln!(out, "loss {}", d.loss);
    let _ = writeln!(out, "  atoms     {}", d.atoms);
    let f = if d.semantic {
        format!(
            "{} ({}), z = ρ: the loss is written -log(P / Q)",
            d.f.name(),
            d.f.definition()
        )
    } else {
        format!("{} ({}), z = {}", d.f.name(), d.f.definition(), d.z)
    };
    let _ = writeln!(out, "  f         {f}");
    let used = s.space().atoms();
    let legend: Vec<String> = d
        .inputs
        .iter()
        .filter(|(a, _)| used.contains(a))
        .map(|(a, input)| format!("{} = exp({input})", a.weight()))
        .collect();
    let _ = writeln!(
        out,
        "  ratio     {}   (ρ = log ratio; {})",
        s.ratio_text(),
        legend.join(", ")
    );
    let fs = s.formulas();
    let _ = writeln!(out, "  P         {}", fs.p);
    let _ = writeln!(
        out,
        "  P_C       {}",
        fs.pc
            .map_or("none (true: no conditioning)".to_string(), |x| x
                .to_string())
    );
    let _ = writeln!(
        out,
        "  P_A       {}",
        fs.pa.map_or("none (false)".to_string(), |x| x.to_string())
    );
    let _ = writeln!(out, "  ✓         {}", s.worlds_text(s.win));
    let _ = writeln!(out, "  ✗         {}", s.worlds_text(s.lose));
    match d.stripped.split_first() {
        None => out.push_str("  stripped  nothing\n"),
        Some((first, rest)) => {
            let _ = writeln!(out, "  stripped  {first}");
            for r in rest {
                let _ = writeln!(out, "            {r}");
            }
        }
    }
    Ok(out)
}

/// Numerical comparison on shared random inputs, then the logical one.
fn compare(s: &Session, a: CompareCmd) -> Result<String, UserError> {
    let la = s.loss(&a.a)?;
    let lb = s.loss(&a.b)?;
    let given = match &a.random {
        Some(r) => sizes(r)?,
        None => vec![],
    };
    for (d, _) in &given {
        if !la.dims.contains(d) && !lb.dims.contains(d) {
            return Err(err(format!(
                "neither `{}` nor `{}` has a dimension `{d}`",
                la.name, lb.name
            )));
        }
    }
    let sizes_of = |l: &Loss| -> Vec<(String, usize)> {
        l.dims
            .iter()
            .map(|d| {
                let n = given.iter().find(|(g, _)| g == d).map_or(4, |(_, n)| *n);
                (d.clone(), n)
            })
            .collect()
    };
    let (sa, sb) = (sizes_of(&la), sizes_of(&lb));
    let mut all: Vec<String> = sa.iter().map(|(d, n)| format!("{d}={n}")).collect();
    for (d, n) in &sb {
        let x = format!("{d}={n}");
        if !all.contains(&x) {
            all.push(x);
        }
    }
    let mut out = String::new();
    let numeric = (|| -> Result<String, UserError> {
        let ta = runtime::random::random_inputs(&la, &sa, a.seed).map_err(err)?;
        let mut tb = runtime::random::random_inputs(&lb, &sb, a.seed).map_err(err)?;
        let mut shared = vec![];
        for (name, t) in &ta {
            if let Some(u) = tb.get_mut(name)
                && u.shape == t.shape
                && u.data.type_name() == t.data.type_name()
            {
                *u = t.clone();
                shared.push(name.clone());
            }
        }
        if shared.is_empty() {
            return Err(err(
                "the two losses share no input (same name, type and shape)",
            ));
        }
        let run = |l: &Loss, t: &TensorMap| -> Result<_, UserError> {
            let bound = runtime::bind(l, t, &s.sets_for(l, &[])).map_err(err)?;
            let wrt = compiler::grad::resolve_wrt(l, &[]).map_err(err)?;
            let f = eval_fn(s.backend);
            let (o, g) = f(l, &bound, &wrt).map_err(err)?;
            Ok((
                o.loss,
                g.into_iter()
                    .map(|(i, v)| (l.inputs[i].name.clone(), v))
                    .collect::<Vec<_>>(),
            ))
        };
        let (va, ga) = run(&la, &ta)?;
        let (vb, gb) = run(&lb, &tb)?;
        let mut rows = vec![
            (format!("A {}", la.name), show::number(va)),
            (format!("B {}", lb.name), show::number(vb)),
            ("|A - B|".to_string(), show::number((va - vb).abs())),
        ];
        for (name, g) in &ga {
            if let Some((_, h)) = gb.iter().find(|(n, _)| n == name)
                && g.len() == h.len()
            {
                let d = g
                    .iter()
                    .zip(h)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                rows.push((
                    format!("grad_{name}"),
                    format!("max |A - B| {}", show::number(d)),
                ));
            }
        }
        let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut o = format!(
            "numerical, on shared random inputs ({}, seed {}; {}):\n",
            all.join(","),
            a.seed,
            s.backend.name()
        );
        for (n, v) in rows {
            let _ = writeln!(o, "  {n:width$}  {v}");
        }
        let only = |x: &Loss, y: &Loss| -> Vec<String> {
            x.inputs
                .iter()
                .filter(|i| !shared.contains(&i.name) && y.input(&i.name).is_none())
                .map(|i| i.name.clone())
                .collect()
        };
        for (who, names) in [("A", only(&la, &lb)), ("B", only(&lb, &la))] {
            if !names.is_empty() {
                let _ = writeln!(o, "  inputs only {who} takes: {}", names.join(", "));
            }
        }
        Ok(o)
    })();
    let numeric_failed = numeric.is_err();
    match numeric {
        Ok(t) => out.push_str(&t),
        Err(e) => {
            let _ = writeln!(
                out,
                "numerical: not compared: {}",
                e.0.trim_start_matches("error: ")
            );
        }
    }
    match (logic::decompile(&la), logic::decompile(&lb)) {
        (Ok(da), Ok(db)) => {
            let c = logic::compare(&da.structure, &db.structure);
            out.push_str("logic:\n");
            for (side, d) in [("A", &da), ("B", &db)] {
                let _ = writeln!(
                    out,
                    "  {side}  {}: {}; ratio {}",
                    d.loss,
                    d.structure.spec(),
                    d.structure.ratio_text()
                );
            }
            let rel = match c.relation {
                Relation::Equal => {
                    "equal: the same core ratio (as rational functions), so the same loss for every f"
                }
                Relation::Le => "le: A ⊑ B, A is more constrained (loss A ≥ loss B everywhere)",
                Relation::Ge => "ge: B ⊑ A, B is more constrained (loss B ≥ loss A everywhere)",
                Relation::Incomparable => "incomparable: neither is more constrained",
            };
            let _ = writeln!(out, "  relation: {rel}");
            if let Some(w) = c.witness {
                for (label, p) in [("A > B", &w.a_greater), ("A < B", &w.b_greater)] {
                    let at: Vec<String> = p
                        .weights
                        .iter()
                        .map(|(atom, v)| format!("{} = {v}", atom.weight()))
                        .collect();
                    let _ = writeln!(
                        out,
                        "    {label} at {}: loss A = {:.6}, loss B = {:.6}",
                        at.join(", "),
                        p.loss_a,
                        p.loss_b
                    );
                }
            }
        }
        (ra, rb) => {
            let why = [(&la, ra.err()), (&lb, rb.err())]
                .into_iter()
                .find_map(|(l, e)| {
                    e.map(|e| format!("`{}` has no DPA logical semantics: {e}", l.name))
                })
                .unwrap_or_default();
            if numeric_failed {
                return Err(UserError(format!(
                    "{}error: logic: not compared: {why}",
                    out.replace(
                        "numerical: not compared: ",
                        "error: numerical: not compared: "
                    )
                )));
            }
            let _ = writeln!(out, "logic: not compared: {why}");
        }
    }
    Ok(out)
}

fn bench(s: &Session, a: BenchCmd) -> Result<String, UserError> {
    let backend = pick_backend(s, a.backend.as_deref())?;
    let sz = sizes(&a.size).map_err(|e| UserError(e.0.replace("error: ", "error: --size: ")))?;
    let loss = s.loss(&a.name)?;
    let inputs = runtime::random::random_inputs(&loss, &sz, 0).map_err(err)?;
    let bound = runtime::bind(&loss, &inputs, &s.sets_for(&loss, &[])).map_err(err)?;
    let wrt = compiler::grad::resolve_wrt(&loss, &[]).map_err(err)?;
    let start = Instant::now();
    let compiled = match backend {
        Backend::Cpu => {
            let program = runtime::cpu::gradient_program(&loss, &wrt);
            Some(runtime::cpu::CpuLoss::compile_for_outputs(&program).map_err(err)?)
        }
        Backend::Interp | Backend::Gpu => None,
    };
    let gpu = match backend {
        Backend::Gpu => {
            let program = runtime::cpu::gradient_program(&loss, &wrt);
            let g = runtime::gpu::GpuLoss::compile(&program).map_err(err)?;
            let grads: Vec<usize> = compiler::grad::gradient_outputs(g.program())
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            Some((g, grads))
        }
        _ => None,
    };
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let interp_program = compiler::grad::gradient(&loss, &wrt);
    let mut times = vec![];
    let mut value = 0.0;
    for _ in 0..a.reps.clamp(1, 1000) + 1 {
        let t = Instant::now();
        value = match (&compiled, &gpu) {
            (Some(c), _) => c.run(&bound).map_err(err)?.0.loss,
            (_, Some((g, grads))) => g.run(&bound, grads).map_err(err)?.0.loss,
            _ => {
                runtime::eval_all(&interp_program, &bound)
                    .map_err(err)?
                    .0
                    .loss
            }
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0); // the first call warms caches and pages
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} --size {} on {} (forward + gradient of every float input)",
        loss.name,
        a.size,
        backend.name()
    );
    let _ = writeln!(out, "  compile      {compile_ms:.3} ms");
    let _ = writeln!(
        out,
        "  median       {median:.3} ms over {} runs (min {:.3} ms)",
        times.len(),
        times[0]
    );
    let _ = writeln!(out, "  loss         {value}");
    Ok(out)
}
