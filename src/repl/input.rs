//! Reading what was typed: whether an entry is complete or continues on the next line, what
//! kind of entry it is, and splitting a command line into words.

/// What an entry at the prompt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing but whitespace and comments.
    Empty,
    /// A `:command`.
    Command,
    /// One or more `loss` / `fn` items (a pasted file).
    Items,
    /// A session `let`.
    Let,
    /// `metric NAME = ...` outside a loss.
    Metric,
    /// Anything else: an expression to evaluate.
    Expr,
}

/// The text with `//` comments blanked out (same length, so offsets stay valid).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match line.find("//") {
            Some(i) => {
                out.push_str(&line[..i]);
                out.extend(
                    line[i..]
                        .chars()
                        .map(|c| if c == '\n' { '\n' } else { ' ' }),
                );
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The first word of the text after whitespace and comments.
fn first_word(text: &str) -> &str {
    let t = text.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(t.len());
    &t[..end]
}

/// Classifies an entry.
pub fn kind(text: &str) -> Kind {
    let code = without_comments(text);
    let trimmed = code.trim_start();
    if trimmed.is_empty() {
        return Kind::Empty;
    }
    if trimmed.starts_with(':') {
        return Kind::Command;
    }
    match first_word(trimmed) {
        "loss" | "fn" => Kind::Items,
        "let" => Kind::Let,
        "metric" => Kind::Metric,
        _ => Kind::Expr,
    }
}

/// The nesting depth of `( [ {` at the end of the text (negative when more close than open).
fn depth(code: &str) -> i64 {
    code.chars().fold(0i64, |d, c| match c {
        '(' | '[' | '{' => d + 1,
        ')' | ']' | '}' => d - 1,
        _ => d,
    })
}

/// True when the entry continues on the next line: brackets left open, an unfinished
/// `loss ... {` or `fn ... =`, or a trailing operator or keyword. A blank last line (after
/// the first) ends an entry whose brackets are balanced.
pub fn needs_more(text: &str) -> bool {
    let code = without_comments(text);
    let trimmed = code.trim();
    let last_blank = text
        .rsplit_once('\n')
        .is_some_and(|(_, last)| last.trim().is_empty());
    if trimmed.is_empty() {
        // A `///` doc comment belongs to the item on the lines after it.
        let doc = text.lines().any(|l| l.trim_start().starts_with("///"));
        return doc && !last_blank;
    }
    if trimmed.starts_with(':') {
        return false;
    }
    let d = depth(&code);
    if d > 0 {
        return true;
    }
    if d < 0 || last_blank {
        return false;
    }
    match first_word(trimmed) {
        "loss" if !trimmed.contains('{') => return true,
        "fn" | "let" if !trimmed.contains('=') => return true,
        _ => {}
    }
    dangling(text)
}

/// True when the entry ends in an operator or a keyword that needs something after it.
pub fn dangling(text: &str) -> bool {
    let code = without_comments(text);
    let trimmed = code.trim();
    if trimmed.ends_with(|c: char| "+-*/^=<>|&,!".contains(c)) {
        return true;
    }
    let last = trimmed
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    matches!(
        last,
        "if" | "then" | "else" | "let" | "metric" | "loss" | "fn"
    )
}

/// Splits a command line into words: whitespace separates them, `"..."` or `'...'` quotes
/// one with spaces (a path).
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    cur.push(q);
                }
                if !closed {
                    return Err(format!("unclosed quote {c}"));
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind("  // just a comment\n"), Kind::Empty);
        assert_eq!(kind(":help"), Kind::Command);
        assert_eq!(kind("/// doc\nloss f(x: [B]) { x[0] }"), Kind::Items);
        assert_eq!(kind("fn sq(a) = a * a"), Kind::Items);
        assert_eq!(kind("let m[b] = x[b]"), Kind::Let);
        assert_eq!(kind("lossy + 1"), Kind::Expr);
        assert_eq!(kind("metric m = 1"), Kind::Metric);
    }

    #[test]
    fn continuation() {
        assert!(needs_more("loss f(x: [B]) {"));
        assert!(needs_more("loss f(x: [B])"));
        assert!(needs_more("mean[b](x[b] +"));
        assert!(needs_more("let c ="));
        assert!(needs_more("if x[0] > 0 then"));
        assert!(!needs_more("loss f(x: [B]) { mean[b](x[b]) }"));
        assert!(!needs_more("1 + 2 // a comment with an open ( bracket"));
        assert!(!needs_more(":eval f --random B=4"));
        assert!(needs_more("/// A doc comment, then its item"));
        assert!(!needs_more("// a plain comment"));
        assert!(!needs_more("x[0] )"));
        assert!(!needs_more("let c =\n"));
        assert!(needs_more("loss f(x: [B]) {\n"));
        assert!(!needs_more("sigmoid(2)"));
    }

    #[test]
    fn splitting() {
        assert_eq!(
            words(r#":load "my file.loss" x"#).unwrap(),
            vec![":load", "my file.loss", "x"]
        );
        assert!(words(":load \"open").is_err());
        assert_eq!(words("").unwrap(), Vec::<String>::new());
    }
}
