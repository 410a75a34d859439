//! Parse errors in human words: what was expected (grammar rules renamed, never shown raw),
//! what was found, and hints for the common mistakes (a keyword used as a name, a malformed
//! number, a final expression swallowed by the statement above, a space before `[`).

use super::Rule;
use crate::ast::Span;
use crate::diagnostic::Diagnostic;
use pest::error::{ErrorVariant, InputLocation};

/// The common cause of a missing final expression: a last line starting with `-` continues
/// the statement above it. A hint naming that line, if there is one.
fn continued_minus_help(text: &str, pos: usize) -> Option<String> {
    let before = &text[..pos];
    let item_start = before.rfind("loss ").unwrap_or(0);
    let line = before[item_start..]
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())?;
    line.trim_start().starts_with('-').then(|| {
        format!(
            "`{}` continues the statement above it (newlines do not end statements): write the final expression in parentheses, `({})`",
            line.trim(),
            line.trim()
        )
    })
}

/// The rules [`rule_name`] names, for looking them up by their Debug form.
const NAMED_RULES: &[Rule] = &[
    Rule::EOI,
    Rule::loss_item,
    Rule::fn_item,
    Rule::input,
    Rule::input_list,
    Rule::tensor_type,
    Rule::hyper,
    Rule::hyper_list,
    Rule::hyper_value,
    Rule::number,
    Rule::let_stmt,
    Rule::kw_let,
    Rule::kw_then,
    Rule::kw_else,
    Rule::kw_if,
    Rule::kw_loss,
    Rule::kw_fn,
    Rule::metric_stmt,
    Rule::kw_metric,
    Rule::index_params,
    Rule::index_param,
    Rule::reduce_var,
    Rule::filter,
    Rule::expr,
    Rule::primary,
    Rule::reducer,
    Rule::paren,
    Rule::if_expr,
    Rule::bool_lit,
    Rule::reduction,
    Rule::call,
    Rule::read,
    Rule::name,
    Rule::ident,
    Rule::callee,
    Rule::tensor_name,
    Rule::param_list,
    Rule::elem_type,
];

/// A human name for a grammar rule, or `None` for rules covered by a wider expectation.
fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::loss_item | Rule::fn_item => "an item (`loss` or `fn`)",
        Rule::input | Rule::input_list => "an input like `x: [B, C]`",
        Rule::tensor_type => "a tensor type like `[B, C]` or `int[B]`",
        Rule::hyper | Rule::hyper_list => "a hyperparameter like `beta = 0.1`",
        Rule::hyper_value | Rule::number => "a number",
        Rule::let_stmt | Rule::kw_let => "`let`",
        Rule::kw_then => "`then`",
        Rule::kw_else => "`else`",
        Rule::kw_if | Rule::primary | Rule::reducer => "an expression",
        Rule::kw_loss | Rule::kw_fn => "an item (`loss` or `fn`)",
        Rule::metric_stmt | Rule::kw_metric => "`metric`",
        Rule::index_params | Rule::index_param | Rule::reduce_var => "an index variable",
        Rule::expr
        | Rule::paren
        | Rule::if_expr
        | Rule::bool_lit
        | Rule::reduction
        | Rule::call
        | Rule::read
        | Rule::name => "an expression",
        Rule::or
        | Rule::and
        | Rule::eq
        | Rule::ne
        | Rule::lt
        | Rule::le
        | Rule::gt
        | Rule::ge
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::pow => "an operator",
        Rule::ident | Rule::callee | Rule::tensor_name | Rule::param_list => "a name",
        Rule::elem_type => "`int`, `bool` or `float`",
        _ => return None,
    })
}

/// What the text at `pos` looks like, for "found ..." in messages.
fn found_at(text: &str, pos: usize) -> String {
    let rest = &text[pos.min(text.len())..];
    let Some(c) = rest.chars().next() else {
        return "end of file".into();
    };
    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        if c.is_ascii_digit() || c == '.' {
            return format!("the number `{word}`");
        }
        if is_keyword(&word) {
            return format!("the keyword `{word}`");
        }
        return format!("`{word}`");
    }
    for op in ["||", "&&", "==", "!=", "<=", ">=", "///", "//"] {
        if rest.starts_with(op) {
            return format!("`{op}`");
        }
    }
    match c {
        '\n' | '\r' => "the end of the line".into(),
        c if c.is_whitespace() => "whitespace".into(),
        c => format!("`{c}`"),
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "loss" | "fn" | "let" | "metric" | "if" | "then" | "else" | "true" | "false" | "inf"
    )
}

/// The diagnostic for a pest error at byte `offset` of the file (`text` is what was parsed).
pub(super) fn describe_error(
    text: &str,
    offset: usize,
    e: &pest::error::Error<Rule>,
) -> Diagnostic {
    let mut pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    if let ErrorVariant::CustomError { message } = &e.variant {
        let span = Span::new(offset + pos, offset + pos);
        let msg = if message.contains("limit") {
            "this file nests too deeply to parse".to_string()
        } else {
            message.clone()
        };
        return Diagnostic::new(span, msg, "here");
    }
    let mut expected: Vec<String> = vec![];
    let mut push = |s: &str| {
        if !expected.iter().any(|e| e == s) {
            expected.push(s.to_string());
        }
    };
    let attempts = e.parse_attempts().filter(|a| a.max_position >= pos);
    match &attempts {
        Some(attempts) => {
            // The attempts made at the farthest position reached: the best guess of what the
            // writer meant.
            pos = attempts.max_position.min(text.len());
            for stack in &attempts.call_stacks {
                // pest does not export `ParseAttempt`; its Debug form is `Rule(name)` or `Token`.
                let deepest = format!("{:?}", stack.deepest);
                let rule = NAMED_RULES
                    .iter()
                    .copied()
                    .find(|r| deepest == format!("Rule({r:?})"))
                    .or(stack.parent);
                if let Some(n) = rule.and_then(rule_name) {
                    push(n);
                }
            }
            for t in attempts.expected_tokens() {
                let token = t.to_string();
                let punctuation =
                    !token.is_empty() && token.chars().all(|c| "()[]{},;:=|<>!&+-*/^".contains(c));
                if !punctuation || token == "//" || token == "///" {
                    continue;
                }
                push(match token.as_str() {
                    "-" | "!" | "(" => "an expression",
                    "||" | "&&" | "==" | "!=" | "<" | ">" | "<=" | ">=" | "+" | "*" | "/" | "^" => {
                        "an operator"
                    }
                    tok => {
                        push(&format!("`{tok}`"));
                        continue;
                    }
                });
            }
        }
        None => {
            if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
                for r in positives {
                    if let Some(n) = rule_name(*r) {
                        push(n);
                    }
                }
            }
        }
    }
    // Point at the next token, not at the whitespace before it.
    pos += text[pos..].len() - text[pos..].trim_start().len();
    let before = &text[..pos];
    // Right after a name, "a name" only means the name could have been longer: drop it.
    if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        expected.retain(|e| e != "a name");
    }
    // A keyword where a name belongs.
    let prev_word: String = before
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let word_here: String = text[pos..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let next_char = text[pos..].chars().next().unwrap_or(' ');
    let prev_start = before.trim_end().len() - prev_word.len();
    let declares = matches!(
        prev_word.as_str(),
        "loss" | "fn" | "let" | "metric" | "if" | "then" | "else"
    );
    let keyword_as_name = if is_keyword(&prev_word)
        && prev_start < pos
        && (matches!(next_char, '=' | ':')
            || (declares && matches!(next_char, ',' | ')' | ']' | '[')))
    {
        Some((prev_word.as_str(), prev_start))
    } else if is_keyword(&word_here) && expected.iter().any(|e| e == "a name") {
        Some((word_here.as_str(), pos))
    } else {
        None
    };
    if let Some((word, start)) = keyword_as_name {
        let span = Span::new(offset + start, offset + start + word.len());
        return Diagnostic::new(
            span,
            format!("`{word}` is a keyword and cannot be used as a name"),
            "a keyword",
        )
        .with_help("choose another name");
    }
    // Right after an operand (a name, a number, `)` or `]`) no expression can follow directly.
    if !is_keyword(&prev_word)
        && before
            .trim_end()
            .ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ')' || c == ']')
    {
        expected.retain(|e| e != "an expression");
    }
    // A malformed number such as `1e` or `2.5e-`.
    let mut token_start = before.len();
    let bb = before.as_bytes();
    while token_start > 0 {
        let c = bb[token_start - 1] as char;
        let sign_after_e =
            (c == '-' || c == '+') && token_start > 1 && matches!(bb[token_start - 2], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || sign_after_e {
            token_start -= 1;
        } else {
            break;
        }
    }
    let mut token_end = token_start;
    let bytes = text.as_bytes();
    while token_end < text.len() {
        let c = bytes[token_end] as char;
        let sign_after_e = (c == '-' || c == '+')
            && token_end > token_start
            && matches!(bytes[token_end - 1], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || sign_after_e {
            token_end += 1;
        } else {
            break;
        }
    }
    let token = &text[token_start..token_end];
    if token.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && token != "."
        && token.parse::<f64>().is_err()
    {
        let span = Span::new(offset + token_start, offset + token_end);
        return Diagnostic::new(span, format!("malformed number `{token}`"), "not a number")
            .with_help("numbers look like `2`, `0.5`, `1e-4` or `inf`");
    }
    expected.sort_by_key(|s| (s.starts_with('`'), s.clone()));
    let found = found_at(text, pos);
    let what = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].clone(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    let word_len = text[pos..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .count();
    let end = (pos + text[pos..].chars().next().map_or(0, char::len_utf8))
        .max(pos + word_len)
        .min(text.len());
    let span = Span::new(offset + pos, offset + end);
    let mut d = Diagnostic::new(
        span,
        format!("expected {what}, found {found}"),
        format!("expected {what}"),
    );
    if found == "`}`" && expected.iter().any(|e| e.starts_with("an item")) {
        // The loss body's last statement took what should have been the final expression.
        let mut d = Diagnostic::new(span, "this loss has no final expression", "the loss body ends here")
            .with_note("a loss body ends with the expression of the loss itself, after its `let` and `metric` statements");
        if let Some(help) = continued_minus_help(text, pos) {
            d = d.with_help(help);
        }
        return d;
    }
    if (found == "`[`" || found == "`(`")
        && before.ends_with(char::is_whitespace)
        && !prev_word.is_empty()
        && !is_keyword(&prev_word)
    {
        d = d.with_help(format!(
            "remove the space between `{prev_word}` and `{}`: reads, calls and reductions are written `{prev_word}{}...`",
            &found[1..2],
            &found[1..2]
        ));
    }
    if found == "`}`"
        && expected.iter().any(|e| e == "an expression")
        && !expected.iter().any(|e| e == "`)`")
    {
        d = d.with_note("a loss body ends with the expression of the loss itself, after its `let` and `metric` statements");
        if let Some(help) = continued_minus_help(text, pos) {
            d = d.with_help(help);
        }
    }
    if found.contains("`loss`") || found.contains("`fn`") {
        d = d.with_note("the item above is not finished: is a `}` or an expression missing?");
    }
    d
}
