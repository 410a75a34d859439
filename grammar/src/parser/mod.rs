//! The parser: pest reads the grammar in `loss.pest`, a Pratt parser orders the operators, and
//! the result is an [`ast::File`](crate::ast::File) with spans. Parse errors become
//! [`Diagnostic`]s in human words; after an error the parser resumes at the next item so one
//! run reports the errors of every item.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::OnceLock;

mod errors;

use errors::describe_error;

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
