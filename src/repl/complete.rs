//! The line editor's helper: tab completion (commands, built-ins, reductions, keywords,
//! stdlib losses, names defined in the session, and paths after `:load` and `:save`), and
//! multi-line entry (Enter continues an unfinished entry, see [`super::input::needs_more`]).

use super::commands;
use super::input;
use crate::stdlib;
use compiler::ir::{Builtin, Reducer};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

/// Keywords offered by completion.
const KEYWORDS: &[&str] = &[
    "loss", "fn", "let", "metric", "if", "then", "else", "true", "false", "inf", "int", "bool",
];

/// The REPL's rustyline helper.
pub struct ReplHelper {
    /// Names the session defines (losses, fns, lets, inputs in scope, hyperparameters),
    /// refreshed after every entry.
    pub names: Vec<String>,
    files: FilenameCompleter,
}

impl Default for ReplHelper {
    fn default() -> ReplHelper {
        ReplHelper {
            names: vec![],
            files: FilenameCompleter::new(),
        }
    }
}

impl ReplHelper {
    /// Every word completion may offer for `word` outside a command's file argument.
    fn words(&self) -> Vec<String> {
        let mut all: Vec<String> = self.names.clone();
        all.extend(Builtin::ALL.iter().map(|b| b.name().to_string()));
        all.extend(Reducer::ALL.iter().map(|r| r.keyword().to_string()));
        all.extend(KEYWORDS.iter().map(|k| k.to_string()));
        all.extend(stdlib::ENTRIES.iter().map(|e| e.name.to_string()));
        all.sort();
        all.dedup();
        all
    }

    /// The completions of the word ending at `pos`: where it starts, and the candidates.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let pos = pos.min(line.len());
        let before = line.get(..pos).unwrap_or("");
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        let pair = |s: &str, suffix: &str| Pair {
            display: s.to_string(),
            replacement: format!("{s}{suffix}"),
        };
        if before[..start].trim().is_empty() && word.starts_with(':') {
            let mut names: Vec<&str> = commands::names().filter(|c| c.starts_with(word)).collect();
            names.dedup();
            return (start, names.into_iter().map(|c| pair(c, " ")).collect());
        }
        if word.is_empty() && !before.trim_start().starts_with(':') {
            return (start, vec![]);
        }
        let mut out: Vec<Pair> = self
            .words()
            .iter()
            .filter(|w| w.starts_with(word) && !word.is_empty())
            .map(|w| pair(w, ""))
            .collect();
        out.dedup_by(|a, b| a.display == b.display);
        (start, out)
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = line.trim_start();
        let is_path_command = [":load ", ":save "].iter().any(|c| head.starts_with(c));
        if is_path_command {
            let (start, mut files) = self.files.complete_path(line, pos)?;
            if head.starts_with(":load ") {
                // Stdlib names load too.
                let word = line.get(start..pos).unwrap_or("");
                if !word.is_empty() {
                    files.extend(
                        stdlib::ENTRIES
                            .iter()
                            .filter(|e| e.name.starts_with(word))
                            .map(|e| Pair {
                                display: e.name.to_string(),
                                replacement: e.name.to_string(),
                            }),
                    );
                }
            }
            return Ok((start, files));
        }
        Ok(self.candidates(line, pos))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if input::needs_more(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(h: &ReplHelper, line: &str) -> Vec<String> {
        h.candidates(line, line.len())
            .1
            .into_iter()
            .map(|p| p.replacement)
            .collect()
    }

    #[test]
    fn commands_builtins_stdlib_and_session_names() {
        let mut h = ReplHelper::default();
        assert_eq!(shown(&h, ":simp"), vec![":simplify "]);
        assert!(shown(&h, "mean[b](sigm").contains(&"sigmoid".to_string()));
        assert!(shown(&h, "logsum").contains(&"logsumexp".to_string()));
        assert!(shown(&h, ":doc dp").contains(&"dpo".to_string()));
        h.names = vec!["my_margin".into()];
        assert_eq!(shown(&h, "1 + my_m"), vec!["my_margin"]);
        assert!(shown(&h, "").is_empty());
        // Never panics inside a multi-byte character.
        let _ = h.candidates("é", 1);
    }
}
