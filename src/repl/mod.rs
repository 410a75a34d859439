//! `lossc repl`: define losses, look at their simplified form, gradients and logic, and poke
//! them with numbers, interactively.
//!
//! On a terminal the REPL edits lines with rustyline: history saved between sessions (in
//! [`history_path`]), multi-line entries, tab completion. When standard input is not a
//! terminal it reads entries line by line and prints plain output (results on stdout, errors
//! on stderr, no prompts or colours), so it can be scripted; it then exits 1 when any entry
//! failed.

mod commands;
mod complete;
mod input;
mod session;

use crate::show;
use crate::source::{MAX_SOURCE_BYTES, Source, UserError};
use commands::Outcome;
use compiler::ir::DType;
use input::Kind;
use session::{Session, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;

/// Runs the REPL on the process's standard input and output.
pub fn run() -> Result<String, UserError> {
    if std::io::stdin().is_terminal() {
        interactive()
    } else {
        let stdin = std::io::stdin();
        let (failed, total) = script(stdin.lock(), &mut std::io::stdout(), &mut std::io::stderr());
        if failed > 0 {
            return Err(UserError(format!(
                "error: {failed} of {total} entries failed"
            )));
        }
        Ok(String::new())
    }
}

/// Where the history is kept: `$XDG_STATE_HOME/lossc/history`, else
/// `~/.local/state/lossc/history`; `None` when neither variable is set.
pub fn history_path() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let state = var("XDG_STATE_HOME").or_else(|| var("HOME").map(|h| h.join(".local/state")))?;
    Some(state.join("lossc").join("history"))
}

/// Reads entries from `reader` until it ends or `:quit`, writing results to `out` and
/// errors to `err`. Returns how many entries failed, and how many there were.
pub fn script(
    mut reader: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> (usize, usize) {
    let mut session = Session::default();
    let mut buf = String::new();
    let mut pending = false;
    let (mut failed, mut total) = (0, 0);
    let mut submit = |session: &mut Session, text: &str| -> bool {
        if input::kind(text) == Kind::Empty {
            return true;
        }
        total += 1;
        match entry(session, text) {
            Ok(Outcome::Print(s)) => {
                let _ = write!(out, "{s}");
                if !s.is_empty() && !s.ends_with('\n') {
                    let _ = writeln!(out);
                }
                let _ = out.flush();
                true
            }
            Ok(Outcome::Quit) => false,
            Err(e) => {
                failed += 1;
                let _ = out.flush();
                let _ = writeln!(err, "{}", grammar::diagnostic::printable(&e.0));
                let _ = err.flush();
                true
            }
        }
    };
    let mut raw = vec![];
    loop {
        raw.clear();
        let eof = !matches!(reader.read_until(b'\n', &mut raw), Ok(n) if n > 0);
        if eof {
            break;
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        // A command never continues an entry: what was pending is submitted first.
        if pending && line.trim_start().starts_with(':') {
            let text = std::mem::take(&mut buf);
            pending = false;
            if !submit(&mut session, &text) {
                return (failed, total);
            }
        }
        if pending {
            buf.push('\n');
        }
        buf.push_str(line);
        if input::needs_more(&buf) {
            pending = true;
            continue;
        }
        pending = false;
        let text = std::mem::take(&mut buf);
        if !submit(&mut session, &text) {
            return (failed, total);
        }
    }
    if !buf.trim().is_empty() {
        submit(&mut session, &buf);
    }
    (failed, total)
}

/// Handles one entry, turning a panic into an error so that the session goes on.
fn entry(session: &mut Session, text: &str) -> Result<Outcome, UserError> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(session, text)));
    run.unwrap_or_else(|_| {
        Err(UserError(
            "error: internal error in lossc (a bug: please report the entry that caused it)".into(),
        ))
    })
}

/// Handles one complete entry.
fn handle(s: &mut Session, text: &str) -> Result<Outcome, UserError> {
    let kind = input::kind(text);
    if kind == Kind::Empty {
        return Ok(Outcome::Print(String::new()));
    }
    let name = s.next_entry();
    if text.len() > MAX_SOURCE_BYTES {
        return Err(UserError(format!(
            "error: the entry is {} bytes; lossc reads sources of at most {MAX_SOURCE_BYTES} bytes",
            text.len()
        )));
    }
    let typed = || {
        Rc::new(Source {
            name: name.clone(),
            text: text.to_string(),
        })
    };
    if matches!(kind, Kind::Let | Kind::Expr) && input::dangling(text) {
        let end = text.trim_end().len();
        let d = grammar::Diagnostic::new(
            grammar::ast::Span::new(end, end),
            "unexpected end of the entry",
            "expected an expression here",
        );
        return Err(UserError(format!(
            "{}error: 1 error in `{name}`",
            grammar::render(&name, text, &[d])
        )));
    }
    match kind {
        Kind::Empty => Ok(Outcome::Print(String::new())),
        Kind::Command => commands::run(s, text),
        Kind::Items => s.define(typed()).map(Outcome::Print),
        Kind::Let => {
            let (n, v) = s.define_let(typed())?;
            Ok(Outcome::Print(value_text(Some(&n), &v)))
        }
        Kind::Metric => Err(UserError(
            "error: `metric` is written inside a loss; at the prompt, `let NAME = EXPR` defines a value and an expression alone prints one"
                .into(),
        )),
        Kind::Expr => {
            let v = s.eval_expr(typed())?;
            Ok(Outcome::Print(value_text(None, &v)))
        }
    }
}

/// A value as printed: a number, or `float[b: B=4]` and the tensor (`name = ...` for a let).
fn value_text(name: Option<&str>, v: &Value) -> String {
    let elem = match v.dtype {
        DType::Float => show::Elem::Float,
        DType::Int => show::Elem::Int,
        DType::Bool => show::Elem::Bool,
    };
    let label = name.map(|n| format!("{n} = ")).unwrap_or_default();
    if v.shape.is_empty() {
        let x = v.values.first().copied().unwrap_or(f64::NAN);
        let shown = match elem {
            show::Elem::Float => show::number(x),
            _ => show::tensor(&[], &[x], elem),
        };
        return format!("{label}{shown}\n");
    }
    let axes: Vec<String> = v
        .axes
        .iter()
        .zip(&v.shape)
        .map(|(a, n)| format!("{a}={n}"))
        .collect();
    format!(
        "{label}{}[{}]\n{}\n",
        v.dtype.name(),
        axes.join(", "),
        show::tensor(&v.shape, &v.values, elem)
    )
}

/// The names completion offers from the session.
fn session_names(s: &Session) -> Vec<String> {
    let mut names: Vec<String> = s.items.iter().map(|i| i.name.clone()).collect();
    names.extend(s.lets.iter().map(|l| l.name.clone()));
    names.extend(s.sets.iter().map(|(n, _)| n.clone()));
    if let Some(scope) = &s.scope {
        names.extend(scope.signature.inputs.iter().map(|i| i.name.clone()));
        names.extend(scope.signature.hypers.iter().map(|h| h.name.clone()));
    }
    names
}

/// `text` with its `error` lines in bold red.
fn red_errors(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("error") {
                format!("\x1b[1;31m{l}\x1b[0m")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The terminal loop.
fn interactive() -> Result<String, UserError> {
    use rustyline::config::{CompletionType, Config};
    use rustyline::error::ReadlineError;
    use rustyline::history::{FileHistory, History};
    let fail = |e: ReadlineError| UserError(format!("error: the terminal: {e}"));
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .max_history_size(2000)
        .map_err(fail)?
        .build();
    let mut ed: rustyline::Editor<complete::ReplHelper, FileHistory> =
        rustyline::Editor::with_config(config).map_err(fail)?;
    ed.set_helper(Some(complete::ReplHelper::default()));
    let history = history_path();
    if let Some(p) = &history {
        let _ = ed.load_history(p);
    }
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    println!(
        "lossc {} REPL: `:help` lists the commands; `:quit` or Ctrl-D leaves.",
        env!("CARGO_PKG_VERSION")
    );
    let mut session = Session::default();
    loop {
        let text = match ed.readline("lossc> ") {
            Ok(t) => t,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(fail(e)),
        };
        if !text.trim().is_empty() {
            let _ = ed.history_mut().add(&text);
            if let Some(p) = &history {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = ed.save_history(p);
            }
        }
        match entry(&mut session, &text) {
            Ok(Outcome::Print(s)) => {
                print!("{s}");
                if !s.is_empty() && !s.ends_with('\n') {
                    println!();
                }
            }
            Ok(Outcome::Quit) => break,
            Err(e) => {
                let msg = grammar::diagnostic::printable(&e.0);
                if colour {
                    eprintln!("{}", red_errors(&msg));
                } else {
                    eprintln!("{msg}");
                }
            }
        }
        let _ = std::io::stdout().flush();
        if let Some(h) = ed.helper_mut() {
            h.names = session_names(&session);
        }
    }
    Ok(String::new())
}
