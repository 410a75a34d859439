//! The checker: resolves names, infers the range of every index variable, checks types and
//! arities, inlines `fn` items, and produces the typed [`ir::Program`]. Every error found is
//! reported (sorted by position), not just the first.

mod expr;
mod names;

use crate::ir::{self, DType, DefKind, Loss, Program};
use grammar::Diagnostic;
use grammar::ast::{self, Span};
use std::collections::{HashMap, HashSet};

pub use names::{did_you_mean, nearest};

/// True for names a program cannot use: built-ins, reductions, type names and keywords.
pub fn is_reserved(name: &str) -> bool {
    names::reserved_kind(name).is_some()
        || matches!(
            name,
            "loss" | "fn" | "let" | "metric" | "if" | "then" | "else" | "true" | "false" | "inf"
        )
}

/// Parses and checks a source file.
pub fn check_source(source: &str) -> Result<Program, Vec<Diagnostic>> {
    let file = grammar::parse(source)?;
    check(&file)
}

/// Checks a parsed file.
pub fn check(file: &ast::File) -> Result<Program, Vec<Diagnostic>> {
    let mut diags = vec![];
    let mut fns: HashMap<&str, &ast::FnItem> = HashMap::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for item in &file.items {
        let name = item.name();
        if let Some(first) = seen.get(name.name.as_str()) {
            diags.push(
                Diagnostic::new(
                    name.span,
                    format!("`{}` is defined twice", name.name),
                    "defined again here",
                )
                .with_secondary(*first, "first defined here")
                .with_note("names are unique within a file"),
            );
            continue;
        }
        seen.insert(&name.name, name.span);
        if let Some(kind) = names::reserved_kind(&name.name) {
            diags.push(reserved(name, kind));
        }
        if let ast::Item::Fn(f) = item {
            fns.insert(&f.name.name, f);
        }
    }
    let recursive = find_recursion(&fns, &mut diags);
    let file_cx = FileCx { fns, recursive };

    // Check every fn body once on its own, so errors in uncalled functions are reported too.
    for item in &file.items {
        if let ast::Item::Fn(f) = item {
            let mut params = HashMap::new();
            for p in &f.params {
                if params
                    .insert(p.name.clone(), (ir::Expr::Float(0.0), DType::Float))
                    .is_some()
                {
                    diags.push(Diagnostic::new(
                        p.span,
                        format!("parameter `{}` appears twice", p.name),
                        "repeated parameter",
                    ));
                }
                if let Some(kind) = names::reserved_kind(&p.name) {
                    diags.push(reserved(p, kind));
                }
            }
            if file_cx.recursive.contains(f.name.name.as_str()) {
                continue;
            }
            let mut cx = LossCx::new(&file_cx, &mut diags);
            cx.generic_fn = true;
            cx.fn_env.push(params);
            cx.inline_stack.push(f.name.name.clone());
            let _ = cx.expr(&f.body);
        }
    }

    let mut losses = vec![];
    for item in &file.items {
        if let ast::Item::Loss(l) = item {
            let cx = LossCx::new(&file_cx, &mut diags);
            losses.push(cx.check_loss(l));
        }
    }
    if diags.is_empty() {
        Ok(Program { losses })
    } else {
        let mut unique: Vec<Diagnostic> = vec![];
        for d in diags {
            if !unique
                .iter()
                .any(|u| u.span == d.span && u.message == d.message)
            {
                unique.push(d);
            }
        }
        unique.sort_by_key(|d| d.span.start);
        Err(unique)
    }
}

fn reserved(name: &ast::Ident, kind: &str) -> Diagnostic {
    Diagnostic::new(
        name.span,
        format!("`{}` is {kind} and cannot be used as a name", name.name),
        "reserved name",
    )
    .with_help("choose another name")
}

/// Reports every `fn` that calls itself, directly or through others; returns their names.
fn find_recursion<'a>(
    fns: &HashMap<&'a str, &'a ast::FnItem>,
    diags: &mut Vec<Diagnostic>,
) -> HashSet<&'a str> {
    let mut calls: HashMap<&str, Vec<(&str, Span)>> = HashMap::new();
    for (name, f) in fns {
        let mut out = vec![];
        collect_calls(&f.body, fns, &mut out);
        calls.insert(name, out);
    }
    let mut recursive = HashSet::new();
    let mut names: Vec<&str> = fns.keys().copied().collect();
    names.sort_by_key(|n| fns[n].span.start);
    for start in names {
        // Depth-first search for a path from `start` back to itself.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut visited = HashSet::new();
        while let Some((at, path)) = stack.pop() {
            for &(callee, span) in calls.get(at).map(Vec::as_slice).unwrap_or(&[]) {
                if callee == start {
                    if recursive.insert(start) && path.len() == 1 {
                        diags.push(Diagnostic::new(span, format!("`{start}` calls itself"), "recursive call")
                            .with_note("`fn` items are inlined where they are called, so they cannot be recursive"));
                    } else if path.len() > 1 {
                        let cycle = path
                            .iter()
                            .chain([&start])
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(" → ");
                        diags.push(
                            Diagnostic::new(fns[start].name.span, format!("`{start}` is recursive: {cycle}"), "part of a cycle of calls")
                                .with_note("`fn` items are inlined where they are called, so they cannot be recursive"),
                        );
                    }
                } else if visited.insert(callee) {
                    let mut p = path.clone();
                    p.push(callee);
                    stack.push((callee, p));
                }
            }
        }
    }
    recursive
}

fn collect_calls<'a>(
    e: &'a ast::Expr,
    fns: &HashMap<&'a str, &'a ast::FnItem>,
    out: &mut Vec<(&'a str, Span)>,
) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match &e.kind {
            ast::ExprKind::Call { func, args } => {
                if let Some((name, _)) = fns.get_key_value(func.name.as_str()) {
                    out.push((name, func.span));
                }
                stack.extend(args);
            }
            ast::ExprKind::Read { indices, .. } => stack.extend(indices),
            ast::ExprKind::Reduce { filter, body, .. } => {
                stack.extend(filter.iter().chain(body.iter()).map(|b| &**b))
            }
            ast::ExprKind::If {
                cond,
                then,
                otherwise,
            } => stack.extend([&**cond, &**then, &**otherwise]),
            ast::ExprKind::Unary { operand, .. } | ast::ExprKind::Paren(operand) => {
                stack.push(operand)
            }
            ast::ExprKind::Binary { lhs, rhs, .. } => stack.extend([&**lhs, &**rhs]),
            ast::ExprKind::Int(_)
            | ast::ExprKind::Float(_)
            | ast::ExprKind::Bool(_)
            | ast::ExprKind::Name(_) => {}
        }
    }
}

/// What the file knows: its `fn` items and which of them are recursive.
struct FileCx<'a> {
    fns: HashMap<&'a str, &'a ast::FnItem>,
    recursive: HashSet<&'a str>,
}

/// The most IR nodes `fn` inlining may copy into one loss.
const MAX_INLINED_NODES: usize = 200_000;

/// What the checker knows of an index variable.
struct VarInfo {
    /// Where it is bound.
    span: Span,
    /// Its dimension, once known, with the span that fixed it.
    dim: Option<(ir::DimId, Span)>,
    /// How many errors had been reported when it was bound.
    errors_before: usize,
}

/// What a loss-level name refers to.
#[derive(Debug, Clone, Copy)]
enum Binding {
    Input(ir::InputId),
    Hyper(ir::HyperId),
    Def(ir::DefId),
    Metric,
}

/// The checking state of one loss.
struct LossCx<'f, 'd> {
    file: &'f FileCx<'f>,
    diags: &'d mut Vec<Diagnostic>,
    loss: Loss,
    /// Loss-level names, with where they were declared.
    names: HashMap<String, (Binding, Span)>,
    dims: HashMap<String, ir::DimId>,
    /// Index variables in scope, innermost last.
    scope: Vec<(String, ir::VarId)>,
    /// What is known of each index variable while its scope is checked.
    var_info: Vec<VarInfo>,
    /// Variables whose range could not be found (already reported): reads through them are
    /// not unified, so one missing range does not cause more errors.
    unranged: HashSet<ir::VarId>,
    /// The `let` and `metric` names of the loss with where they are defined, to explain a
    /// use before the definition.
    all_defs: HashMap<String, Span>,
    /// True while checking a `fn` body on its own, where parameter types are unknown: type
    /// errors are then left to the call sites.
    generic_fn: bool,
    /// IR nodes copied so far by inlining `fn` arguments, bounded by [`MAX_INLINED_NODES`].
    inlined_nodes: usize,
    /// Set once an inlining limit has been reported, so it is reported once per loss.
    inline_limit_reported: bool,
    /// The calls written in the loss itself (outermost) that were inlined, for pointing
    /// inlining errors at the user's own call.
    inline_call_sites: Vec<Span>,
    /// Parameter bindings of the `fn` bodies being inlined, innermost last.
    fn_env: Vec<HashMap<String, (ir::Expr, DType)>>,
    inline_stack: Vec<String>,
    /// The name of the `let` being checked, to explain self-references.
    defining: Option<String>,
}

impl<'f, 'd> LossCx<'f, 'd> {
    fn new(file: &'f FileCx<'f>, diags: &'d mut Vec<Diagnostic>) -> Self {
        LossCx {
            file,
            diags,
            loss: Loss {
                name: String::new(),
                doc: String::new(),
                dims: vec![],
                inputs: vec![],
                hypers: vec![],
                vars: vec![],
                defs: vec![],
                result: ir::Expr::Float(0.0),
            },
            names: HashMap::new(),
            dims: HashMap::new(),
            scope: vec![],
            var_info: vec![],
            unranged: HashSet::new(),
            all_defs: HashMap::new(),
            generic_fn: false,
            inlined_nodes: 0,
            inline_limit_reported: false,
            inline_call_sites: vec![],
            fn_env: vec![],
            inline_stack: vec![],
            defining: None,
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Reports a type error, except in a `fn` body checked on its own (its parameters'
    /// types are known only at a call).
    fn type_error(&mut self, d: Diagnostic) {
        if !self.generic_fn {
            self.diags.push(d);
        }
    }

    /// Declares a loss-level name, reporting duplicates and reserved words.
    fn declare(&mut self, name: &ast::Ident, binding: Binding) {
        if let Some(kind) = names::reserved_kind(&name.name) {
            self.error(reserved(name, kind));
        }
        if let Some((_, first)) = self.names.get(&name.name) {
            let first = *first;
            self.error(
                Diagnostic::new(
                    name.span,
                    format!("`{}` is defined twice", name.name),
                    "defined again here",
                )
                .with_secondary(first, "first defined here"),
            );
            return;
        }
        self.names.insert(name.name.clone(), (binding, name.span));
    }

    fn check_loss(mut self, l: &ast::LossItem) -> Loss {
        self.loss.name = l.name.name.clone();
        self.loss.doc = l.doc.clone();
        for st in &l.statements {
            let name = match st {
                ast::Statement::Let(s) => &s.name,
                ast::Statement::Metric(m) => &m.name,
            };
            self.all_defs.entry(name.name.clone()).or_insert(name.span);
        }
        for input in &l.inputs {
            let mut shape = vec![];
            for d in &input.dims {
                let next = self.dims.len();
                let id = *self.dims.entry(d.name.clone()).or_insert(next);
                if id == next {
                    self.loss.dims.push(d.name.clone());
                }
                shape.push(id);
            }
            let dtype = match input.elem {
                ast::ElemType::Float => DType::Float,
                ast::ElemType::Int => DType::Int,
                ast::ElemType::Bool => DType::Bool,
            };
            let id = self.loss.inputs.len();
            self.loss.inputs.push(ir::Input {
                name: input.name.name.clone(),
                dtype,
                shape,
            });
            self.declare(&input.name, Binding::Input(id));
        }
        for h in &l.hypers {
            let id = self.loss.hypers.len();
            self.loss.hypers.push(ir::Hyper {
                name: h.name.name.clone(),
                default: h.default,
            });
            self.declare(&h.name, Binding::Hyper(id));
        }
        for st in &l.statements {
            match st {
                ast::Statement::Let(s) => self.let_stmt(s),
                ast::Statement::Metric(m) => {
                    let body = self.expect_number(&m.value, "a metric");
                    let id = self.loss.defs.len();
                    self.loss.defs.push(ir::Def {
                        name: m.name.name.clone(),
                        kind: DefKind::Metric,
                        indices: vec![],
                        dtype: DType::Float,
                        body: body.unwrap_or(ir::Expr::Float(0.0)),
                    });
                    let _ = id;
                    self.declare(&m.name, Binding::Metric);
                }
            }
        }
        let result = self.expect_number(&l.result, "the loss");
        if let Some(r) = result {
            self.loss.result = r;
        }
        self.loss
    }

    fn let_stmt(&mut self, s: &ast::LetStmt) {
        self.defining = Some(s.name.name.clone());
        let vars = self.bind(&s.indices);
        let body = self.expr(&s.value);
        self.unbind(&vars, Some(s));
        self.defining = None;
        let (body, dtype) = body.unwrap_or((ir::Expr::Float(0.0), DType::Float));
        let id = self.loss.defs.len();
        self.loss.defs.push(ir::Def {
            name: s.name.name.clone(),
            kind: DefKind::Let,
            indices: vars,
            dtype,
            body,
        });
        self.declare(&s.name, Binding::Def(id));
    }

    /// Brings index variables into scope, with their annotated ranges.
    fn bind(&mut self, params: &[ast::IndexParam]) -> Vec<ir::VarId> {
        let mut ids = vec![];
        for p in params {
            let name = &p.name;
            if let Some(kind) = names::reserved_kind(&name.name) {
                self.error(reserved(name, kind));
            } else if let Some(&(_, v)) = self.scope.iter().rev().find(|(n, _)| *n == name.name) {
                let first = self.var_info[v].span;
                self.error(
                    Diagnostic::new(
                        name.span,
                        format!("index `{}` is already bound", name.name),
                        "bound again here",
                    )
                    .with_secondary(first, "first bound here")
                    .with_help("use a different name for the inner index"),
                );
            } else if let Some((b, at)) = self.names.get(&name.name) {
                let what = binding_kind(*b);
                let at = *at;
                self.error(
                    Diagnostic::new(
                        name.span,
                        format!(
                            "index `{}` has the same name as {what} `{}`",
                            name.name, name.name
                        ),
                        "index named here",
                    )
                    .with_secondary(at, format!("{what} declared here"))
                    .with_help("rename the index"),
                );
            }
            let errors_before = self.diags.len();
            let range = p.range.as_ref().and_then(|r| self.dim(r));
            let v = self.loss.vars.len();
            self.loss.vars.push(ir::IndexVar {
                name: name.name.clone(),
                dim: range.unwrap_or(0),
            });
            self.var_info.push(VarInfo {
                span: name.span,
                dim: range.map(|d| (d, p.range.as_ref().unwrap().span)),
                errors_before,
            });
            self.scope.push((name.name.clone(), v));
            ids.push(v);
        }
        ids
    }

    /// Takes index variables out of scope; each must have a range by now. A missing range is
    /// not reported when other errors came up in the variable's scope: it is then most likely
    /// their consequence.
    fn unbind(&mut self, vars: &[ir::VarId], lhs_of: Option<&ast::LetStmt>) {
        for &v in vars {
            let info = &self.var_info[v];
            match info.dim {
                Some((d, _)) => self.loss.vars[v].dim = d,
                None => {
                    self.unranged.insert(v);
                    if self.diags.len() > info.errors_before {
                        continue;
                    }
                    let name = self.loss.vars[v].name.clone();
                    let dims = self.loss.dims.join(", ");
                    // Suggest the dimension named like the index (`k` → `K`), else the first.
                    let example = self
                        .loss
                        .dims
                        .iter()
                        .find(|d| d.eq_ignore_ascii_case(&name))
                        .or(self.loss.dims.first())
                        .map_or("D", String::as_str);
                    let mut d = Diagnostic::new(
                        info.span,
                        format!("index `{name}` has no range"),
                        "no tensor is read with this index",
                    )
                    .with_help(if dims.is_empty() {
                        format!(
                            "annotate its dimension where it is bound, e.g. `{name}: {example}`, with `{example}` a dimension of some input (this loss has none)"
                        )
                    } else {
                        format!(
                            "annotate its dimension where it is bound, e.g. `{name}: {example}` (dimensions: {dims})"
                        )
                    });
                    if lhs_of.is_some() {
                        d = d.with_note("an index of the left side that the right side never uses to read a tensor broadcasts, so its range must be written");
                    }
                    self.error(d);
                }
            }
        }
        let keep = self.scope.len() - vars.len();
        self.scope.truncate(keep);
    }

    /// Looks up a dimension named in an annotation.
    fn dim(&mut self, name: &ast::Ident) -> Option<ir::DimId> {
        if let Some(&d) = self.dims.get(&name.name) {
            return Some(d);
        }
        let mut d = Diagnostic::new(
            name.span,
            format!("unknown dimension `{}`", name.name),
            "not a dimension of any input",
        );
        if let Some((Binding::Hyper(_), _)) = self.names.get(&name.name) {
            d = d.with_note(format!(
                "`{}` is a hyperparameter; a range must be a dimension named in an input's type",
                name.name
            ));
        }
        let dims: Vec<&str> = self.loss.dims.iter().map(String::as_str).collect();
        d = match names::did_you_mean(&name.name, dims.iter().copied()) {
            Some(h) => d.with_help(h),
            None if dims.is_empty() => d.with_help("this loss's inputs name no dimensions"),
            None => d.with_help(format!("the dimensions are {}", dims.join(", "))),
        };
        self.error(d);
        None
    }

    /// Records that variable `v` indexes dimension `dim` at `span`.
    fn unify(&mut self, v: ir::VarId, dim: ir::DimId, span: Span) {
        match self.var_info[v].dim {
            None => self.var_info[v].dim = Some((dim, span)),
            Some((d, _)) if d == dim => {}
            Some((d, first)) => {
                let name = &self.loss.vars[v].name;
                let (a, b) = (&self.loss.dims[d], &self.loss.dims[dim]);
                let diag = Diagnostic::new(
                    span,
                    format!("index `{name}` is used for two different dimensions"),
                    format!("here it ranges over `{b}`"),
                )
                .with_secondary(first, format!("here it ranges over `{a}`"))
                .with_help("use a separate index for each dimension");
                self.error(diag);
            }
        }
    }

    fn expect_number(&mut self, e: &ast::Expr, what: &str) -> Option<ir::Expr> {
        self.number(e, what).map(|(x, _)| x)
    }
}

fn binding_kind(b: Binding) -> &'static str {
    match b {
        Binding::Input(_) => "input",
        Binding::Hyper(_) => "hyperparameter",
        Binding::Def(_) => "definition",
        Binding::Metric => "metric",
    }
}
