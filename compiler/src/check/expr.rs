//! Checking expressions: name resolution, indices and gathers, types, calls and `fn` inlining,
//! reductions. Each method returns `None` after reporting an error, and keeps checking the
//! siblings of a broken subexpression so that independent mistakes are all reported.

use super::{Binding, LossCx, names};
use crate::ir::{self, BinOp, Builtin, DType, Reducer, UnaryOp};
use grammar::Diagnostic;
use grammar::ast::{self, ExprKind, Span};
use std::collections::HashMap;

type Typed = Option<(ir::Expr, DType)>;

/// How deeply `fn` calls may nest while being inlined.
const MAX_INLINE_DEPTH: usize = 32;

impl LossCx<'_, '_> {
    /// Checks an expression and returns its IR and type.
    pub(super) fn expr(&mut self, e: &ast::Expr) -> Typed {
        match &e.kind {
            ExprKind::Int(v) => Some((ir::Expr::Int(*v), DType::Int)),
            ExprKind::Float(v) => Some((ir::Expr::Float(*v), DType::Float)),
            ExprKind::Bool(b) => Some((ir::Expr::Bool(*b), DType::Bool)),
            ExprKind::Paren(inner) => self.expr(inner),
            ExprKind::Name(n) => self.name(n, e.span),
            ExprKind::Read { tensor, indices } => self.read(tensor, indices, e.span),
            ExprKind::Call { func, args } => self.call(func, args, e.span),
            ExprKind::Reduce {
                op,
                op_span,
                vars,
                filter,
                body,
            } => self.reduce(
                *op,
                *op_span,
                vars,
                filter.as_deref(),
                body.as_deref(),
                e.span,
            ),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => {
                let c = self.condition(cond, "the condition of `if`");
                let a = self.expr(then);
                let b = self.expr(otherwise);
                let ((c, _), (a, ta), (b, tb)) = (c?, a?, b?);
                let t = match (ta, tb) {
                    (DType::Bool, DType::Bool) => DType::Bool,
                    (x, y) if x.is_numeric() && y.is_numeric() => {
                        if x == DType::Int && y == DType::Int {
                            DType::Int
                        } else {
                            DType::Float
                        }
                    }
                    _ => {
                        self.type_error(
                            Diagnostic::new(
                                e.span,
                                format!(
                                    "the branches of `if` have different types: {} and {}",
                                    ta.with_article(),
                                    tb.with_article()
                                ),
                                "branches differ",
                            )
                            .with_secondary(then.span, ta.name())
                            .with_secondary(otherwise.span, tb.name())
                            .with_help("booleans are not numbers: write `if c then 1 else 0`"),
                        );
                        return None;
                    }
                };
                Some((ir::Expr::Select(Box::new(c), Box::new(a), Box::new(b)), t))
            }
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } => {
                // A minus written before a number literal is part of the constant.
                match &operand.kind {
                    ExprKind::Int(v) => return Some((ir::Expr::Int(-v), DType::Int)),
                    ExprKind::Float(v) => return Some((ir::Expr::Float(-v), DType::Float)),
                    _ => {}
                }
                let (x, t) = self.number(operand, "the operand of `-`")?;
                Some((ir::Expr::Unary(UnaryOp::Neg, Box::new(x)), t))
            }
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand,
            } => {
                let (x, _) = self.condition(operand, "the operand of `!`")?;
                Some((ir::Expr::Unary(UnaryOp::Not, Box::new(x)), DType::Bool))
            }
            ExprKind::Binary {
                op,
                op_span,
                lhs,
                rhs,
            } => self.binary(*op, *op_span, lhs, rhs),
        }
    }

    fn binary(&mut self, op: BinOp, op_span: Span, lhs: &ast::Expr, rhs: &ast::Expr) -> Typed {
        let sym = op.symbol();
        if op.is_logical() {
            let a = self.condition(lhs, &format!("the left side of `{sym}`"));
            let b = self.condition(rhs, &format!("the right side of `{sym}`"));
            let ((a, _), (b, _)) = (a?, b?);
            return Some((ir::Expr::Binary(op, Box::new(a), Box::new(b)), DType::Bool));
        }
        if matches!(op, BinOp::Eq | BinOp::Ne) {
            let a = self.expr(lhs);
            let b = self.expr(rhs);
            let ((a, ta), (b, tb)) = (a?, b?);
            if ta.is_numeric() != tb.is_numeric() {
                self.type_error(
                    Diagnostic::new(
                        op_span,
                        format!(
                            "`{sym}` compares {} with {}",
                            ta.with_article(),
                            tb.with_article()
                        ),
                        "cannot compare these",
                    )
                    .with_secondary(lhs.span, ta.name())
                    .with_secondary(rhs.span, tb.name()),
                );
                return None;
            }
            return Some((ir::Expr::Binary(op, Box::new(a), Box::new(b)), DType::Bool));
        }
        let a = self.number(lhs, &format!("the left side of `{sym}`"));
        let b = self.number(rhs, &format!("the right side of `{sym}`"));
        let ((a, ta), (b, tb)) = (a?, b?);
        let t = if op.is_comparison() {
            DType::Bool
        } else if matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul)
            && ta == DType::Int
            && tb == DType::Int
        {
            DType::Int
        } else {
            DType::Float
        };
        Some((ir::Expr::Binary(op, Box::new(a), Box::new(b)), t))
    }

    /// Checks an expression that must be numeric.
    pub(super) fn number(&mut self, e: &ast::Expr, what: &str) -> Typed {
        let (x, t) = self.expr(e)?;
        if t == DType::Bool {
            self.type_error(
                Diagnostic::new(
                    e.span,
                    format!("{what} must be a number, found a boolean"),
                    "this is a boolean",
                )
                .with_help("booleans are not numbers: write `if c then 1 else 0`"),
            );
            return None;
        }
        Some((x, t))
    }

    /// Checks an expression that must be a boolean.
    fn condition(&mut self, e: &ast::Expr, what: &str) -> Typed {
        let (x, t) = self.expr(e)?;
        if t != DType::Bool {
            self.type_error(
                Diagnostic::new(
                    e.span,
                    format!("{what} must be a condition, found {}", t.with_article()),
                    format!("this is {}", t.with_article()),
                )
                .with_help("numbers are not conditions: compare it, e.g. `x > 0`"),
            );
            return None;
        }
        Some((x, t))
    }

    /// A bare name: a `fn` parameter, an index variable, a scalar input or `let`, a hyperparameter.
    fn name(&mut self, n: &str, span: Span) -> Typed {
        if let Some(env) = self.fn_env.last() {
            if let Some((x, t)) = env.get(n) {
                let (x, t) = (x.clone(), *t);
                self.inlined_nodes += x.size();
                if self.inlined_nodes > super::MAX_INLINED_NODES {
                    self.inline_limit(
                        span,
                        "inlining `fn` calls makes this loss too large".to_string(),
                    );
                    return None;
                }
                return Some((x, t));
            }
            let params: Vec<&str> = env.keys().map(String::as_str).collect();
            let mut d = Diagnostic::new(
                span,
                format!("unknown name `{n}` in a `fn` body"),
                "not a parameter",
            )
            .with_note("a `fn` body can use only its parameters, numbers and functions");
            if let Some(h) = names::did_you_mean(n, params) {
                d = d.with_help(h);
            }
            self.error(d);
            return None;
        }
        if let Some(&(_, v)) = self.scope.iter().rev().find(|(name, _)| name == n) {
            return Some((ir::Expr::Index(v), DType::Int));
        }
        match self.names.get(n).map(|(b, _)| *b) {
            Some(Binding::Hyper(h)) => Some((ir::Expr::Hyper(h), DType::Float)),
            Some(Binding::Input(i)) => {
                let input = &self.loss.inputs[i];
                if input.shape.is_empty() {
                    return Some((
                        ir::Expr::Read {
                            tensor: ir::Tensor::Input(i),
                            indices: vec![],
                        },
                        input.dtype,
                    ));
                }
                let dims: Vec<&str> = input
                    .shape
                    .iter()
                    .map(|&d| self.loss.dims[d].as_str())
                    .collect();
                let example = example_indices(&dims);
                self.error(
                    Diagnostic::new(
                        span,
                        format!("`{n}` is a tensor with dimensions [{}]", dims.join(", ")),
                        "used without indices",
                    )
                    .with_help(format!(
                        "read one element with indices, e.g. `{n}[{example}]`"
                    )),
                );
                None
            }
            Some(Binding::Def(d)) => {
                let def = &self.loss.defs[d];
                if def.indices.is_empty() {
                    return Some((
                        ir::Expr::Read {
                            tensor: ir::Tensor::Def(d),
                            indices: vec![],
                        },
                        def.dtype,
                    ));
                }
                let names: Vec<&str> = def
                    .indices
                    .iter()
                    .map(|&v| self.loss.vars[v].name.as_str())
                    .collect();
                self.error(
                    Diagnostic::new(
                        span,
                        format!(
                            "`{n}` is a tensor with {} ind{}",
                            names.len(),
                            if names.len() == 1 { "ex" } else { "ices" }
                        ),
                        "used without indices",
                    )
                    .with_help(format!(
                        "read one element with indices, e.g. `{n}[{}]`",
                        names.join(", ")
                    )),
                );
                None
            }
            Some(Binding::Metric) => {
                self.error(metric_used(n, span));
                None
            }
            None => {
                self.unknown(n, span, "name");
                None
            }
        }
    }

    /// Reports an unknown name, with the nearest known one.
    fn unknown(&mut self, n: &str, span: Span, what: &str) {
        let mut d = Diagnostic::new(span, format!("unknown {what} `{n}`"), "not defined");
        if self.defining.as_deref() == Some(n) {
            d = Diagnostic::new(
                span,
                format!("`{n}` is used in its own definition"),
                "not defined yet",
            )
            .with_note("a `let` can read only inputs, hyperparameters and earlier definitions");
        } else if let Some(&at) = self.all_defs.get(n) {
            d = Diagnostic::new(
                span,
                format!("`{n}` is used before its definition"),
                "not defined yet",
            )
            .with_secondary(at, "defined here, later")
            .with_help("move its `let` above this use: definitions are evaluated in order");
        } else if Builtin::from_name(n).is_some() || self.file.fns.contains_key(n) {
            d = Diagnostic::new(
                span,
                format!("`{n}` is a function, not a value"),
                "a function",
            )
            .with_help(format!("call it, e.g. `{n}(x)`"));
        } else {
            let mut candidates: Vec<&str> = self.names.keys().map(String::as_str).collect();
            candidates.extend(self.scope.iter().map(|(s, _)| s.as_str()));
            if let Some(h) = names::did_you_mean(n, candidates) {
                d = d.with_help(h);
            }
        }
        self.error(d);
    }

    /// `x[i, y[i], 0]`.
    fn read(&mut self, tensor: &ast::Ident, indices: &[ast::Expr], span: Span) -> Typed {
        let n = tensor.name.as_str();
        if !self.fn_env.is_empty() {
            self.error(
                Diagnostic::new(span, "a `fn` body cannot read tensors", "tensor read in a `fn`")
                    .with_note("`fn` items are scalar functions: pass the element as an argument, e.g. `f(x[i])`"),
            );
            return None;
        }
        let t = match self.names.get(n).map(|(b, _)| *b) {
            Some(Binding::Input(i)) => ir::Tensor::Input(i),
            Some(Binding::Def(d)) => ir::Tensor::Def(d),
            Some(Binding::Hyper(_)) => {
                self.error(
                    Diagnostic::new(
                        tensor.span,
                        format!("hyperparameter `{n}` is a scalar and takes no indices"),
                        "a hyperparameter",
                    )
                    .with_help(format!("write `{n}`")),
                );
                return None;
            }
            Some(Binding::Metric) => {
                self.error(metric_used(n, tensor.span));
                return None;
            }
            None => {
                if self.scope.iter().any(|(s, _)| s == n) {
                    self.error(Diagnostic::new(
                        tensor.span,
                        format!("`{n}` is an index variable and cannot be indexed"),
                        "an index",
                    ));
                } else {
                    self.unknown(n, tensor.span, "tensor");
                }
                // Check the indices anyway, for their own errors.
                for i in indices {
                    let _ = self.expr(i);
                }
                return None;
            }
        };
        let shape = self.loss.shape_of(t);
        // A position whose range is unknown (already reported) constrains nothing.
        let known: Vec<Option<ir::DimId>> = match t {
            ir::Tensor::Def(d) => self.loss.defs[d]
                .indices
                .iter()
                .zip(&shape)
                .map(|(v, &dim)| (!self.unranged.contains(v)).then_some(dim))
                .collect(),
            ir::Tensor::Input(_) => shape.iter().map(|&d| Some(d)).collect(),
        };
        if shape.len() != indices.len() {
            // A position whose range is unknown shows as `?`.
            let dims: Vec<&str> = known
                .iter()
                .map(|d| d.map_or("?", |d| self.loss.dims[d].as_str()))
                .collect();
            let mut d = Diagnostic::new(
                span,
                format!(
                    "`{n}` has {} dimension{} but is read with {} ind{}",
                    shape.len(),
                    plural(shape.len()),
                    indices.len(),
                    if indices.len() == 1 { "ex" } else { "ices" }
                ),
                format!(
                    "expected {} ind{}",
                    shape.len(),
                    if shape.len() == 1 { "ex" } else { "ices" }
                ),
            );
            d = if dims.is_empty() {
                d.with_help(format!("`{n}` is a scalar: write `{n}`"))
            } else {
                d.with_note(format!("`{n}` has dimensions [{}]", dims.join(", ")))
            };
            self.error(d);
            return None;
        }
        let mut out = vec![];
        let mut ok = true;
        for (pos, (ix, &dim)) in indices.iter().zip(&known).enumerate() {
            match self.index(ix, dim, n, pos) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then(|| {
            (
                ir::Expr::Read {
                    tensor: t,
                    indices: out,
                },
                self.loss.dtype_of(t),
            )
        })
    }

    /// One index of a read: an index variable, an integer literal, or a gather.
    fn index(
        &mut self,
        ix: &ast::Expr,
        dim: Option<ir::DimId>,
        tensor: &str,
        pos: usize,
    ) -> Option<ir::Expr> {
        match &ix.kind {
            ExprKind::Paren(inner) => self.index(inner, dim, tensor, pos),
            ExprKind::Name(n) if self.scope.iter().any(|(s, _)| s == n) => {
                let v = self.scope.iter().rev().find(|(s, _)| s == n).unwrap().1;
                if let Some(dim) = dim {
                    self.unify(v, dim, ix.span);
                }
                Some(ir::Expr::Index(v))
            }
            ExprKind::Int(k) if *k >= 0 => Some(ir::Expr::Int(*k)),
            ExprKind::Unary {
                op: UnaryOp::Neg,
                operand,
            } if matches!(operand.kind, ExprKind::Int(_)) => {
                self.error(
                    Diagnostic::new(ix.span, "an index cannot be negative", "negative index")
                        .with_note("indices count from 0; there is no indexing from the end"),
                );
                None
            }
            ExprKind::Read { .. } => {
                let (x, t) = self.expr(ix)?;
                if t != DType::Int {
                    self.error(
                        Diagnostic::new(
                            ix.span,
                            format!(
                                "a gather index must be an int tensor, found a {} tensor",
                                t.name()
                            ),
                            format!("{} values cannot index", t.name()),
                        )
                        .with_note(format!(
                            "position {pos} of `{tensor}` is indexed by the values of this tensor"
                        ))
                        .with_help("declare the index tensor as `int[...]`"),
                    );
                    return None;
                }
                Some(x)
            }
            // An int scalar (an input `n: int[]` or a `let`) indexes like a gather: this is how
            // the printer writes a gather that `hoist` moved into a definition of its own.
            ExprKind::Name(n)
                if self.fn_env.is_empty()
                    && matches!(
                        self.names.get(n).map(|(b, _)| *b),
                        Some(Binding::Input(_) | Binding::Def(_))
                    ) =>
            {
                let (x, t) = self.expr(ix)?;
                if t != DType::Int {
                    self.error(
                        Diagnostic::new(
                            ix.span,
                            "an index must be an index variable, an integer, or a read of an int tensor",
                            "not an index",
                        )
                        .with_note(format!(
                            "`{n}` is a {} value, not an index variable",
                            t.name()
                        )),
                    );
                    return None;
                }
                Some(x)
            }
            ExprKind::Name(n) if !self.names.contains_key(n) && self.fn_env.is_empty() => {
                let mut d = Diagnostic::new(ix.span, format!("unknown index `{n}`"), "not bound")
                    .with_help(format!(
                        "bind it on the left side (`let t[{n}] = ...`) or in a reduction (`sum[{n}](...)`)"
                    ));
                let bound: Vec<&str> = self.scope.iter().map(|(s, _)| s.as_str()).collect();
                if let Some(h) = names::did_you_mean(n, bound) {
                    d = d.with_help(h);
                } else if let Some(at) = self.all_defs.get(n) {
                    d = d.with_secondary(*at, "a definition of this name, not an index");
                }
                self.error(d);
                None
            }
            _ => {
                let found = self.expr(ix);
                let mut d = Diagnostic::new(
                    ix.span,
                    "an index must be an index variable, an integer, or a read of an int tensor",
                    "not an index",
                );
                if let ExprKind::Name(n) = &ix.kind {
                    d = match self.names.get(n).map(|(b, _)| *b) {
                        Some(Binding::Hyper(_)) => d.with_note(format!(
                            "`{n}` is a hyperparameter; hyperparameters cannot index tensors"
                        )),
                        Some(Binding::Input(_)) | Some(Binding::Def(_)) => {
                            d.with_note(format!("`{n}` is a scalar value, not an index variable"))
                        }
                        _ => d,
                    };
                } else if found.is_some() {
                    d = d.with_note("index arithmetic is not supported: compute the index into an int input instead");
                } else {
                    return None;
                }
                self.error(d);
                None
            }
        }
    }

    /// A call of a built-in or a `fn`.
    fn call(&mut self, func: &ast::Ident, args: &[ast::Expr], span: Span) -> Typed {
        let n = func.name.as_str();
        let checked: Vec<Typed> = args.iter().map(|a| self.expr(a)).collect();
        if let Some(b) = Builtin::from_name(n) {
            if args.len() != b.arity() {
                self.error(
                    arity(func, b.arity(), args.len(), span)
                        .with_note(format!("`{n}{}`", b.signature())),
                );
                return None;
            }
            let mut out = vec![];
            for (a, c) in args.iter().zip(checked) {
                let (x, t) = c?;
                if t == DType::Bool {
                    self.type_error(
                        Diagnostic::new(
                            a.span,
                            format!("the argument of `{n}` must be a number, found a boolean"),
                            "this is a boolean",
                        )
                        .with_help("booleans are not numbers: write `if c then 1 else 0`"),
                    );
                    return None;
                }
                out.push(x);
            }
            return Some((ir::Expr::Call(b, out), DType::Float));
        }
        let Some(f) = self.file.fns.get(n).copied() else {
            let mut d = Diagnostic::new(
                func.span,
                format!("unknown function `{n}`"),
                "not a built-in or a `fn`",
            );
            if Reducer::ALL.iter().any(|r| r.keyword() == n) {
                d = d.with_help(format!("`{n}` is a reduction: write `{n}[i](...)`"));
            } else if self.names.contains_key(n) {
                d = d.with_help(format!("`{n}` is a tensor: read it with `{n}[...]`"));
            } else {
                let mut candidates: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                candidates.extend(self.file.fns.keys().copied());
                if let Some(h) = names::did_you_mean(n, candidates) {
                    d = d.with_help(h);
                }
            }
            self.error(d);
            return None;
        };
        if f.params.len() != args.len() {
            self.error(
                arity(func, f.params.len(), args.len(), span)
                    .with_secondary(f.name.span, "defined here"),
            );
            return None;
        }
        if self.file.recursive.contains(n) || self.inline_stack.iter().any(|s| s == n) {
            return None; // reported once, where the recursion is found
        }
        if self.inline_stack.len() >= MAX_INLINE_DEPTH {
            self.inline_limit(
                span,
                format!("`fn` calls nest more than {MAX_INLINE_DEPTH} deep"),
            );
            return None;
        }
        if self.generic_fn {
            // A body checked on its own does not inline its callees: they are checked on their own.
            return Some((ir::Expr::Float(0.0), DType::Float));
        }
        // Every inlined call counts towards the limit, and once it is passed nothing more is
        // inlined: `fn f2() = f1() + f1()` chains double the work at each level.
        self.inlined_nodes += 1;
        if self.inline_limit_reported || self.inlined_nodes > super::MAX_INLINED_NODES {
            self.inline_limit(
                span,
                "inlining `fn` calls makes this loss too large".to_string(),
            );
            return None;
        }
        if self.inline_stack.is_empty() {
            self.inline_call_sites.push(span);
        }
        let mut env = HashMap::new();
        for (p, c) in f.params.iter().zip(checked) {
            let (x, t) = c?;
            env.insert(p.name.clone(), (x, t));
        }
        self.fn_env.push(env);
        self.inline_stack.push(n.to_string());
        let errors_before = self.diags.len();
        let body = self.expr(&f.body);
        // Errors inside a body come from the arguments of the call written in the loss: show it.
        if self.inline_stack.len() == 1 {
            for d in &mut self.diags[errors_before..] {
                if d.span != span {
                    d.secondary.push((span, format!("in this call of `{n}`")));
                }
            }
        }
        self.inline_stack.pop();
        self.fn_env.pop();
        body
    }

    /// Reports, once per loss, that inlining `fn` calls went past a limit.
    fn inline_limit(&mut self, span: Span, message: String) {
        if !self.inline_limit_reported {
            self.inline_limit_reported = true;
            let outer = self.inline_call_sites.last().copied().unwrap_or(span);
            self.error(
                Diagnostic::new(outer, message, "inlining this call goes past the limit")
                    .with_note("`fn` items are inlined where they are called")
                    .with_help("compute shared values once with `let`"),
            );
        }
    }

    /// `R[i, j: D | filter](body)`.
    fn reduce(
        &mut self,
        op: Reducer,
        op_span: Span,
        vars: &[ast::IndexParam],
        filter: Option<&ast::Expr>,
        body: Option<&ast::Expr>,
        span: Span,
    ) -> Typed {
        let kw = op.keyword();
        if !self.fn_env.is_empty() {
            self.error(
                Diagnostic::new(
                    span,
                    "a `fn` body cannot contain a reduction",
                    "reduction in a `fn`",
                )
                .with_note("`fn` items are scalar functions applied elementwise"),
            );
            return None;
        }
        let ids = self.bind(vars);
        let f = filter.map(|f| self.condition(f, &format!("the filter of `{kw}`")));
        let b = body.map(|b| self.number(b, &format!("the body of `{kw}`")));
        self.unbind(&ids, None);
        let mut ok = true;
        match (op, body) {
            (Reducer::Count, Some(b)) => {
                self.error(
                    Diagnostic::new(b.span, "`count` takes no expression", "remove this")
                        .with_help(
                            "`count[j | condition]()` counts the terms that meet the condition",
                        ),
                );
                ok = false;
            }
            (Reducer::Count, None) => {}
            (Reducer::ArgMax | Reducer::ArgMin, Some(_)) if vars.len() != 1 => {
                self.error(
                    Diagnostic::new(
                        op_span,
                        format!("`{kw}` binds exactly one index, here {}", vars.len()),
                        "one index",
                    )
                    .with_note(format!(
                        "`{kw}` gives the position of the extreme term along one dimension"
                    )),
                );
                ok = false;
            }
            (_, None) => {
                self.error(
                    Diagnostic::new(
                        op_span.to(span),
                        format!("`{kw}` needs an expression to reduce"),
                        "nothing to reduce",
                    )
                    .with_help(format!("write `{kw}[...](expression)`")),
                );
                ok = false;
            }
            _ => {}
        }
        let filter = match f {
            Some(Some((x, _))) => Some(Box::new(x)),
            Some(None) => return None,
            None => None,
        };
        let body = match b {
            Some(Some((x, _))) => Some(Box::new(x)),
            Some(None) => return None,
            None => None,
        };
        if !ok {
            return None;
        }
        let t = match op {
            Reducer::Count | Reducer::ArgMax | Reducer::ArgMin => DType::Int,
            _ => DType::Float,
        };
        Some((
            ir::Expr::Reduce {
                op,
                vars: ids,
                filter,
                body,
            },
            t,
        ))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn arity(func: &ast::Ident, expected: usize, found: usize, span: Span) -> Diagnostic {
    Diagnostic::new(
        span,
        format!(
            "`{}` takes {expected} argument{} but {found} {} given",
            func.name,
            plural(expected),
            if found == 1 { "was" } else { "were" }
        ),
        format!("expected {expected} argument{}", plural(expected)),
    )
}

fn metric_used(n: &str, span: Span) -> Diagnostic {
    Diagnostic::new(
        span,
        format!("metric `{n}` cannot be used in an expression"),
        "a metric",
    )
    .with_note("metrics are reported beside the loss; they are not values to compute with")
    .with_help("define the value with `let` and report it with `metric`")
}

/// Lower-case index names for an example read of a tensor with these dimensions.
fn example_indices(dims: &[&str]) -> String {
    dims.iter()
        .map(|d| {
            d.chars()
                .next()
                .map_or("i".to_string(), |c| c.to_ascii_lowercase().to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
