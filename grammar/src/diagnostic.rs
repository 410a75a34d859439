//! Diagnostics: an error with a primary span, labels, notes and a hint, rendered like a
//! compiler's (file:line:column, the source line, the span underlined) by codespan-reporting.

use crate::ast::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config, DisplayStyle};

/// Source lines longer than this are not reproduced in diagnostics.
const MAX_SHOWN_LINE: usize = 300;

/// One error found in a source file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// The headline, e.g. "unknown function `sigmod`".
    pub message: String,
    /// The span the error is about.
    pub span: Span,
    /// A short label under the primary span.
    pub label: String,
    /// Other places worth showing, with their labels.
    pub secondary: Vec<(Span, String)>,
    /// Explanatory notes (`= note: ...`).
    pub notes: Vec<String>,
    /// A suggestion (`= help: ...`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span` with a headline and a label.
    pub fn new(span: Span, message: impl Into<String>, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            label: label.into(),
            secondary: vec![],
            notes: vec![],
            help: None,
        }
    }

    /// Adds a secondary labelled span.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Sets the hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// At most this many diagnostics are rendered; a line says how many more there were.
const MAX_SHOWN: usize = 50;

/// True for characters that must not be echoed to a terminal: controls (except newline and
/// tab), and Unicode format characters such as bidirectional overrides and the BOM.
fn unprintable(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// `text` with unprintable characters escaped (`\u{1b}`).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with each unprintable character replaced by as many `?` as it has bytes.
fn printable_same_length(text: &str) -> String {
    text.chars()
        .map(|c| {
            if unprintable(c) {
                "?".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = clamp_to_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Length in bytes of the line holding `offset`.
fn line_len(source: &str, offset: usize) -> usize {
    let offset = clamp_to_char_boundary(source, offset);
    let start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    end - start
}

fn clamp_to_char_boundary(source: &str, mut offset: usize) -> usize {
    offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn clamp_span(source: &str, span: Span) -> std::ops::Range<usize> {
    let start = clamp_to_char_boundary(source, span.start);
    let end = clamp_to_char_boundary(source, span.end.max(start));
    start..end
}

/// Renders diagnostics as plain text (no colour), each followed by a blank line.
pub fn render(file_name: &str, source: &str, diagnostics: &[Diagnostic]) -> String {
    // Control and direction-changing characters must not reach the terminal: each becomes
    // `?`s of the same byte length, so spans stay valid.
    let shown = printable_same_length(source);
    let source = shown.as_str();
    let file = SimpleFile::new(printable(file_name), source);
    let mut out = String::new();
    for d in diagnostics.iter().take(MAX_SHOWN) {
        let d = &Diagnostic {
            message: printable(&d.message),
            label: printable(&d.label),
            secondary: d
                .secondary
                .iter()
                .map(|(s, l)| (*s, printable(l)))
                .collect(),
            notes: d.notes.iter().map(|n| printable(n)).collect(),
            help: d.help.as_deref().map(printable),
            span: d.span,
        };
        let mut config = Config::default();
        let spans = std::iter::once(d.span).chain(d.secondary.iter().map(|(s, _)| *s));
        let long_line = spans.into_iter().any(|s| {
            line_len(source, s.start) > MAX_SHOWN_LINE || line_len(source, s.end) > MAX_SHOWN_LINE
        });
        if long_line {
            // One-line form: a huge line would drown the message.
            config.display_style = DisplayStyle::Medium;
        }
        let mut labels =
            vec![Label::primary((), clamp_span(source, d.span)).with_message(&d.label)];
        for (span, msg) in &d.secondary {
            labels.push(Label::secondary((), clamp_span(source, *span)).with_message(msg));
        }
        let mut notes: Vec<String> = d.notes.iter().map(|n| format!("note: {n}")).collect();
        if let Some(h) = &d.help {
            notes.push(format!("help: {h}"));
        }
        let cs = CsDiagnostic::error()
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes);
        match term::emit_into_string(&config, &file, &cs) {
            Ok(s) if long_line => {
                out.push_str(&format!("{s} = the source line is too long to show\n\n"))
            }
            Ok(s) => out.push_str(&s),
            Err(_) => {
                let (line, col) = line_col(source, d.span.start);
                out.push_str(&format!(
                    "error: {}\n  at {file_name}:{line}:{col}\n",
                    d.message
                ));
            }
        }
    }
    if diagnostics.len() > MAX_SHOWN {
        out.push_str(&format!(
            "error: ... and {} more errors\n\n",
            diagnostics.len() - MAX_SHOWN
        ));
    }
    out
}
