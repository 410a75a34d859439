//! The parser: pest reads the grammar in `loss.pest`, a Pratt parser orders the operators, and
//! the result is an [`ast::File`](crate::ast::File) with spans. Parse errors become
//! [`Diagnostic`]s in human words; after an error the parser resumes at the next item so one
//! run reports the errors of every item.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use pest::Parser as _;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "loss.pest"]
struct LossParser;

/// A bound on the depth of the expression trees the parser builds: nested expressions count
/// the operands and operators of every enclosing expression, so both deep nesting and very
/// long operator chains are bounded. Later stages recurse over these trees.
pub const MAX_NESTING: usize = 1024;

/// After this many parse errors the parser stops looking for more.
pub const MAX_PARSE_ERRORS: usize = 20;

/// Parses a whole file. On failure, returns every parse error found (at most one per item).
pub fn parse(source: &str) -> Result<File, Vec<Diagnostic>> {
    let mut items = vec![];
    let mut errors = vec![];
    let mut offset = 0;
    pest::set_error_detail(true);
    while offset <= source.len() {
        let rest = &source[offset..];
        match LossParser::parse(Rule::file, rest) {
            Ok(mut pairs) => {
                let file = pairs.next().expect("the file rule always yields one pair");
                for pair in file.into_inner() {
                    if pair.as_rule() == Rule::EOI {
                        continue;
                    }
                    match build_item(source, offset, pair) {
                        Ok(item) => items.push(item),
                        Err(e) => errors.push(*e),
                    }
                }
                break;
            }
            Err(e) => {
                let d = describe_error(rest, offset, &e);
                let at = d.span.start;
                errors.push(d);
                if errors.len() >= MAX_PARSE_ERRORS {
                    break; // each resumption re-reads the rest of the file: stay linear
                }
                match next_item_start(source, at) {
                    Some(next) if next > offset => offset = next,
                    _ => break,
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(File { items })
    } else {
        Err(errors)
    }
}

/// The byte offset of the next line after `from` that starts an item (`loss`, `fn` or `///`).
fn next_item_start(source: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(nl) = source.get(pos..).and_then(|s| s.find('\n')) {
        let line_start = pos + nl + 1;
        let line = &source[line_start..];
        if line.starts_with("loss ") || line.starts_with("fn ") || line.starts_with("///") {
            return Some(line_start);
        }
        pos = line_start;
    }
    None
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        // Loosest first; must agree with `BinOp::precedence` and `UnaryOp::precedence`.
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::prefix(Rule::not))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
            .op(Op::prefix(Rule::neg))
            .op(Op::infix(Rule::pow, Assoc::Right))
    })
}

/// Parse results carry boxed diagnostics: errors are rare and the success path stays small.
type PResult<T> = Result<T, Box<Diagnostic>>;

/// Builds AST nodes from pest pairs, shifting spans by the offset the pairs were parsed at.
struct Builder<'s> {
    source: &'s str,
    offset: usize,
}

fn build_item(source: &str, offset: usize, pair: Pair<Rule>) -> PResult<Item> {
    let b = Builder { source, offset };
    b.check_depth(&pair)?;
    match pair.as_rule() {
        Rule::loss_item => b.loss_item(pair).map(Item::Loss),
        Rule::fn_item => b.fn_item(pair).map(Item::Fn),
        r => unreachable!("unexpected item rule {r:?}"),
    }
}

impl Builder<'_> {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(s.start() + self.offset, s.end() + self.offset)
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    /// Rejects items whose expression trees could be deeper than [`MAX_NESTING`], walking the
    /// pairs without recursion so that the builder's own recursion stays bounded.
    fn check_depth(&self, pair: &Pair<Rule>) -> PResult<()> {
        let mut stack = vec![(pair.clone(), 0usize)];
        while let Some((p, depth)) = stack.pop() {
            let depth = depth
                + if p.as_rule() == Rule::expr {
                    p.clone().into_inner().count()
                } else {
                    0
                };
            if depth > MAX_NESTING {
                return Err(Box::new(Diagnostic::new(
                    self.span(&p),
                    "expression too deeply nested or too long",
                    "too deep",
                )
                .with_note(format!("lossc accepts expressions up to a depth of about {MAX_NESTING} operators and brackets"))
                .with_help("split it into `let` definitions")));
            }
            stack.extend(p.into_inner().map(|c| (c, depth)));
        }
        Ok(())
    }

    /// The `///` lines directly above byte `start`, without the slashes.
    fn doc_above(&self, start: usize) -> String {
        let mut lines = vec![];
        let mut end = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
        if !self.source[end..start].trim().is_empty() {
            return String::new();
        }
        while end > 0 {
            let line_start = self.source[..end - 1].rfind('\n').map_or(0, |i| i + 1);
            let line = self.source[line_start..end - 1].trim();
            match line.strip_prefix("///") {
                Some(text) if !text.starts_with('/') => lines.push(
                    text.strip_prefix(' ')
                        .unwrap_or(text)
                        .trim_end()
                        .to_string(),
                ),
                _ => break,
            }
            end = line_start;
        }
        lines.reverse();
        lines.join("\n")
    }

    fn loss_item(&self, pair: Pair<Rule>) -> PResult<LossItem> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner().filter(|p| !is_kw(p.as_rule()));
        let name = self.ident(inner.next().unwrap());
        let mut inputs = vec![];
        let mut hypers = vec![];
        let mut statements = vec![];
        let mut result = None;
        for p in inner {
            match p.as_rule() {
                Rule::input_list => {
                    for input in p.into_inner() {
                        inputs.push(self.input(input));
                    }
                }
                Rule::hyper_list => {
                    for h in p.into_inner() {
                        hypers.push(self.hyper(h)?);
                    }
                }
                Rule::let_stmt => statements.push(Statement::Let(self.let_stmt(p)?)),
                Rule::metric_stmt => {
                    let span = self.span(&p);
                    let mut it = p.into_inner().filter(|p| !is_kw(p.as_rule()));
                    let name = self.ident(it.next().unwrap());
                    let value = self.expr(it.next().unwrap())?;
                    statements.push(Statement::Metric(MetricStmt { name, value, span }));
                }
                Rule::expr => result = Some(self.expr(p)?),
                r => unreachable!("unexpected rule in loss: {r:?}"),
            }
        }
        Ok(LossItem {
            doc: self.doc_above(span.start),
            name,
            inputs,
            hypers,
            statements,
            result: result.expect("grammar requires a final expression"),
            span,
        })
    }

    fn input(&self, pair: Pair<Rule>) -> InputDecl {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let name = self.ident(it.next().unwrap());
        let ty = it.next().unwrap();
        let mut elem = ElemType::Float;
        let mut dims = vec![];
        for p in ty.into_inner() {
            match p.as_rule() {
                Rule::elem_type => {
                    elem = match p.as_str() {
                        "int" => ElemType::Int,
                        "bool" => ElemType::Bool,
                        _ => ElemType::Float,
                    }
                }
                Rule::ident => dims.push(self.ident(p)),
                r => unreachable!("unexpected rule in tensor type: {r:?}"),
            }
        }
        InputDecl {
            name,
            elem,
            dims,
            span,
        }
    }

    fn hyper(&self, pair: Pair<Rule>) -> PResult<HyperDecl> {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let name = self.ident(it.next().unwrap());
        let value = it.next().unwrap();
        let mut negative = false;
        let mut default = 0.0;
        for p in value.into_inner() {
            match p.as_rule() {
                Rule::minus => negative = true,
                Rule::number => default = self.number(&p)?,
                r => unreachable!("unexpected rule in hyperparameter: {r:?}"),
            }
        }
        Ok(HyperDecl {
            name,
            default: if negative { -default } else { default },
            span,
        })
    }

    fn number(&self, pair: &Pair<Rule>) -> PResult<f64> {
        let text = pair.as_str();
        if text == "inf" {
            return Ok(f64::INFINITY);
        }
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            Ok(_) => Err(Box::new(
                Diagnostic::new(
                    self.span(pair),
                    format!("`{text}` is too large for a float"),
                    "overflows to infinity",
                )
                .with_help("write `inf` for infinity"),
            )),
            Err(_) => Err(Box::new(Diagnostic::new(
                self.span(pair),
                format!("`{text}` is not a number"),
                "not a number",
            ))),
        }
    }

    fn let_stmt(&self, pair: Pair<Rule>) -> PResult<LetStmt> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().filter(|p| !is_kw(p.as_rule()));
        let name = self.ident(it.next().unwrap());
        let mut indices = vec![];
        let mut value = None;
        for p in it {
            match p.as_rule() {
                Rule::index_params => {
                    for ip in p.into_inner() {
                        indices.push(self.index_param(ip));
                    }
                }
                Rule::expr => value = Some(self.expr(p)?),
                r => unreachable!("unexpected rule in let: {r:?}"),
            }
        }
        Ok(LetStmt {
            name,
            indices,
            value: value.unwrap(),
            span,
        })
    }

    fn index_param(&self, pair: Pair<Rule>) -> IndexParam {
        let mut it = pair.into_inner();
        let name = self.ident(it.next().unwrap());
        let range = it.next().map(|p| self.ident(p));
        IndexParam { name, range }
    }

    fn fn_item(&self, pair: Pair<Rule>) -> PResult<FnItem> {
        let span = self.span(&pair);
        let mut it = pair.into_inner().filter(|p| !is_kw(p.as_rule()));
        let name = self.ident(it.next().unwrap());
        let params = it
            .next()
            .unwrap()
            .into_inner()
            .map(|p| self.ident(p))
            .collect();
        let body = self.expr(it.next().unwrap())?;
        Ok(FnItem {
            doc: self.doc_above(span.start),
            name,
            params,
            body,
            span,
        })
    }

    fn expr(&self, pair: Pair<Rule>) -> PResult<Expr> {
        pratt()
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, rhs| {
                let operand = rhs?;
                let op_span = self.span(&op);
                let op = if op.as_rule() == Rule::neg {
                    UnaryOp::Neg
                } else {
                    UnaryOp::Not
                };
                let span = op_span.to(operand.span);
                Ok(Expr {
                    kind: ExprKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                    span,
                })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let op_span = self.span(&op);
                let op = match op.as_rule() {
                    Rule::or => BinOp::Or,
                    Rule::and => BinOp::And,
                    Rule::eq => BinOp::Eq,
                    Rule::ne => BinOp::Ne,
                    Rule::lt => BinOp::Lt,
                    Rule::le => BinOp::Le,
                    Rule::gt => BinOp::Gt,
                    Rule::ge => BinOp::Ge,
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    Rule::pow => BinOp::Pow,
                    r => unreachable!("unexpected infix rule {r:?}"),
                };
                if op.is_comparison()
                    && let ExprKind::Binary {
                        op: inner,
                        op_span: inner_span,
                        ..
                    } = &lhs.kind
                    && inner.is_comparison()
                {
                    return Err(Box::new(
                        Diagnostic::new(
                            op_span,
                            "comparisons cannot be chained",
                            format!("`{}` follows another comparison", op.symbol()),
                        )
                        .with_secondary(*inner_span, "first comparison")
                        .with_help("write `a < b && b < c`, or add parentheses"),
                    ));
                }
                let span = lhs.span.to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Binary {
                        op,
                        op_span,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                })
            })
            .parse(pair.into_inner())
    }

    fn primary(&self, pair: Pair<Rule>) -> PResult<Expr> {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::number if pair.as_str().bytes().all(|b| b.is_ascii_digit()) => {
                let value = pair.as_str().parse::<i64>().map_err(|_| {
                    Diagnostic::new(span, "integer literal too large", "does not fit in 64 bits")
                        .with_help("write it as a float, e.g. `1e20`")
                })?;
                ExprKind::Int(value)
            }
            Rule::number => ExprKind::Float(self.number(&pair)?),
            Rule::bool_lit => ExprKind::Bool(pair.as_str() == "true"),
            Rule::name => ExprKind::Name(pair.as_str().to_string()),
            Rule::paren => ExprKind::Paren(Box::new(self.expr(pair.into_inner().next().unwrap())?)),
            Rule::if_expr => {
                let mut it = pair.into_inner().filter(|p| p.as_rule() == Rule::expr);
                let cond = self.expr(it.next().unwrap())?;
                let then = self.expr(it.next().unwrap())?;
                let otherwise = self.expr(it.next().unwrap())?;
                ExprKind::If {
                    cond: Box::new(cond),
                    then: Box::new(then),
                    otherwise: Box::new(otherwise),
                }
            }
            Rule::call => {
                let mut it = pair.into_inner();
                let func = self.ident(it.next().unwrap());
                let args = it.map(|p| self.expr(p)).collect::<PResult<Vec<_>>>()?;
                ExprKind::Call { func, args }
            }
            Rule::read => {
                let mut it = pair.into_inner();
                let tensor = self.ident(it.next().unwrap());
                let indices = it.map(|p| self.expr(p)).collect::<PResult<Vec<_>>>()?;
                ExprKind::Read { tensor, indices }
            }
            Rule::reduction => {
                let mut it = pair.into_inner().peekable();
                let op_pair = it.next().unwrap();
                let op_span = self.span(&op_pair);
                let op = Reducer::ALL
                    .into_iter()
                    .find(|r| r.keyword() == op_pair.as_str())
                    .expect("grammar lists the reducers");
                let mut vars = vec![];
                while let Some(p) = it.next_if(|p| p.as_rule() == Rule::reduce_var) {
                    vars.push(self.index_param(p));
                }
                let mut filter = None;
                let mut body = None;
                for p in it {
                    if p.as_rule() == Rule::filter {
                        let e = self.expr(p.into_inner().next().unwrap())?;
                        filter = Some(Box::new(e));
                    } else {
                        body = Some(Box::new(self.expr(p)?));
                    }
                }
                ExprKind::Reduce {
                    op,
                    op_span,
                    vars,
                    filter,
                    body,
                }
            }
            r => unreachable!("unexpected primary rule {r:?}"),
        };
        Ok(Expr { kind, span })
    }
}

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

/// Keyword tokens, which carry no information once parsed.
fn is_kw(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_loss
            | Rule::kw_fn
            | Rule::kw_let
            | Rule::kw_metric
            | Rule::kw_if
            | Rule::kw_then
            | Rule::kw_else
    )
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

fn describe_error(text: &str, offset: usize, e: &pest::error::Error<Rule>) -> Diagnostic {
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
