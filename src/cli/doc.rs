//! `lossc doc [NAME]`: the stdlib grouped by family, or one loss's signature and doc comment.

use crate::show::signature;
use crate::source::{self, UserError};
use crate::stdlib;
use compiler::ir::Loss;
use std::fmt::Write;

pub fn run(name: Option<&str>) -> Result<String, UserError> {
    match name {
        None => Ok(list()),
        Some(n) => show(n),
    }
}

/// The first sentence-line of a doc comment.
fn summary(loss: &Loss) -> &str {
    loss.doc.lines().next().unwrap_or("")
}

fn checked(entry: &stdlib::StdlibEntry) -> Loss {
    let src = source::Source {
        name: entry.name.into(),
        text: entry.source.into(),
    };
    let program = source::check(&src)
        .unwrap_or_else(|e| panic!("stdlib `{}` does not check:\n{e}", entry.name));
    program
        .losses
        .into_iter()
        .next()
        .expect("a stdlib file holds one loss")
}

fn list() -> String {
    let mut out = String::new();
    let mut family = "";
    let width = stdlib::ENTRIES
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0);
    let mut entries: Vec<&stdlib::StdlibEntry> = stdlib::ENTRIES.iter().collect();
    entries.sort_by_key(|e| {
        (
            stdlib::FAMILIES
                .iter()
                .position(|f| *f == e.family)
                .unwrap_or(usize::MAX),
            e.family,
            e.name,
        )
    });
    for e in entries {
        if e.family != family {
            if !family.is_empty() {
                out.push('\n');
            }
            family = e.family;
            let _ = writeln!(out, "{}:", stdlib::family_title(family));
        }
        let loss = checked(e);
        let _ = writeln!(out, "  {:width$}  {}", e.name, summary(&loss));
    }
    out
}

fn show(name: &str) -> Result<String, UserError> {
    let src = source::load(name)?;
    let program = source::check(&src)?;
    let mut out = String::new();
    for loss in &program.losses {
        let _ = writeln!(out, "{}", signature(loss));
        let _ = writeln!(out);
        for line in loss.doc.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  source: {}", src.name);
    }
    Ok(out)
}
