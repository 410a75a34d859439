//! Loading a loss as the CLI names it: a path, or the name of a stdlib loss; checking it and
//! rendering its diagnostics.

use crate::stdlib;
use compiler::ir::{Loss, Program};
use std::path::Path;

/// The largest source file lossc reads.
pub const MAX_SOURCE_BYTES: usize = 4 << 20;

/// A source text and the name diagnostics call it by.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as given, or `<stdlib>/family/name.loss`.
    pub name: String,
    /// The text.
    pub text: String,
}

/// A user error: a message ready to print (diagnostics already rendered).
#[derive(Debug, Clone, PartialEq)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolves `FILE`: an existing path, else a stdlib name.
pub fn load(file: &str) -> Result<Source, UserError> {
    let path = Path::new(file);
    // A stdlib name wins over a folder of the same name (`lossc eval dco` inside fixtures/).
    if path.exists() && !(path.is_dir() && stdlib::get(file).is_some()) {
        let bytes = std::fs::read(path)
            .map_err(|e| UserError(format!("error: cannot read `{file}`: {e}")))?;
        if bytes.len() > MAX_SOURCE_BYTES {
            return Err(UserError(format!(
                "error: `{file}` is {} bytes; lossc reads source files of at most {MAX_SOURCE_BYTES} bytes",
                bytes.len()
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            UserError(format!(
                "error: `{file}` is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        return Ok(Source {
            name: file.to_string(),
            text,
        });
    }
    if let Some(e) = stdlib::get(file) {
        return Ok(Source {
            name: format!("<stdlib>/{}/{}.loss", e.family, e.name),
            text: e.source.to_string(),
        });
    }
    let mut msg = format!("error: no file `{file}` and no stdlib loss named `{file}`");
    if let Some(h) = compiler::check::did_you_mean(file, stdlib::ENTRIES.iter().map(|e| e.name)) {
        msg.push_str(&format!("\n  help: {h}"));
    } else {
        msg.push_str("\n  help: `lossc doc` lists the stdlib");
    }
    Err(UserError(msg))
}

/// Parses and checks a source, rendering every diagnostic on failure.
pub fn check(src: &Source) -> Result<Program, UserError> {
    compiler::check_source(&src.text).map_err(|diags| {
        let rendered = grammar::render(&src.name, &src.text, &diags);
        let n = diags.len();
        UserError(format!(
            "{rendered}error: {n} error{} in `{}`",
            if n == 1 { "" } else { "s" },
            src.name
        ))
    })
}

/// Picks the loss to run: the one named by `--loss`, or the file's only loss.
pub fn select<'p>(
    program: &'p Program,
    src: &Source,
    wanted: Option<&str>,
) -> Result<&'p Loss, UserError> {
    let names: Vec<&str> = program.losses.iter().map(|l| l.name.as_str()).collect();
    match wanted {
        Some(w) => program.loss(w).ok_or_else(|| {
            UserError(format!(
                "error: `{}` has no loss named `{w}` (it has: {})",
                src.name,
                names.join(", ")
            ))
        }),
        None => match program.losses.as_slice() {
            [only] => Ok(only),
            [] => Err(UserError(format!("error: `{}` defines no loss", src.name))),
            _ => Err(UserError(format!(
                "error: `{}` defines several losses ({}): choose one with --loss NAME",
                src.name,
                names.join(", ")
            ))),
        },
    }
}
