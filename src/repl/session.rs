//! What a REPL session holds: the items defined so far (each with the text it came from, so
//! that errors point into what was typed or loaded), session `let`s, the inputs in scope,
//! session hyperparameters and the backend.
//!
//! Items are checked together, as one file: a new item is accepted when the session with
//! it (and without the items it replaces) checks. `let`s and expressions are checked inside a
//! synthetic loss, `__repl`, that takes the inputs in scope and every hyperparameter of the
//! session, so they are written exactly as inside a loss body.

use crate::show::signature;
use crate::source::{self, Source, UserError};
use compiler::ir::{DType, Loss, Program};
use grammar::Diagnostic;
use grammar::ast::{self, ExprKind, Span};
use runtime::data::TensorMap;
use std::fmt::Write;
use std::ops::Range;
use std::rc::Rc;

/// The name of the synthetic loss that `let`s and expressions are checked in.
pub const SCOPE_LOSS: &str = "__repl";
/// The name an expression typed alone is given inside [`SCOPE_LOSS`].
pub const EXPR_NAME: &str = "__expr";

/// A piece of a source text: `origin.text[range]`.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The text it was typed or loaded as, and that text's name for diagnostics.
    pub origin: Rc<Source>,
    /// Where in `origin.text` the piece lies.
    pub range: Range<usize>,
}

impl Segment {
    /// A segment covering all of `origin`.
    pub fn whole(origin: Rc<Source>) -> Segment {
        let range = 0..origin.text.len();
        Segment { origin, range }
    }

    /// The piece's text.
    pub fn text(&self) -> &str {
        &self.origin.text[self.range.clone()]
    }
}

/// A `loss` or `fn` defined in the session.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its name.
    pub name: String,
    /// True for a `loss`, false for a `fn`.
    pub is_loss: bool,
    /// Its text, with the doc comment above it.
    pub seg: Segment,
}

/// A `let` typed at the prompt.
#[derive(Debug, Clone)]
pub struct SessionLet {
    /// The defined name.
    pub name: String,
    /// The statement as typed.
    pub seg: Segment,
}

/// Inputs in scope: tensors bound to the inputs of a loss, which names their dimensions.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The loss whose inputs these are (its inputs, dimensions and hyperparameters).
    pub signature: Loss,
    /// The tensors, by input name.
    pub tensors: TensorMap,
    /// Where they came from: `random B=4 (seed 0)` or a file's path.
    pub from: String,
}

/// Where `:eval` and `:bench` compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The f64 reference interpreter.
    Interp,
    /// Native f32 code (Cranelift JIT).
    Cpu,
    /// f32 WGSL compute shaders on any wgpu adapter.
    Gpu,
}

impl Backend {
    /// `interp`, `cpu` or `gpu`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Interp => "interp",
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
}

/// Everything a session has defined.
#[derive(Debug)]
pub struct Session {
    /// The items, in the order they were (last) defined.
    pub items: Vec<Item>,
    /// The items' losses, checked.
    pub program: Program,
    /// Session `let`s, in order.
    pub lets: Vec<SessionLet>,
    /// The inputs in scope, if any.
    pub scope: Option<Scope>,
    /// Session hyperparameters (`:set`), applied to every loss that has them.
    pub sets: Vec<(String, f64)>,
    /// The backend of `:eval` and `:bench`.
    pub backend: Backend,
    /// How many entries have been read (numbers `<input N>`).
    pub entries: usize,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            items: vec![],
            program: Program { losses: vec![] },
            lets: vec![],
            scope: None,
            sets: vec![],
            backend: Backend::Interp,
            entries: 0,
        }
    }
}

/// A source text assembled from segments and glue, which maps diagnostics back to the
/// segments' own texts.
#[derive(Debug, Default)]
struct Assembly {
    text: String,
    /// Each segment with its offset in `text`.
    parts: Vec<(usize, Segment)>,
    /// The part that diagnostics in the glue are charged to: what was just typed.
    primary: Option<usize>,
}

impl Assembly {
    fn glue(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn part(&mut self, seg: &Segment) -> usize {
        self.parts.push((self.text.len(), seg.clone()));
        self.text.push_str(seg.text());
        self.parts.len() - 1
    }

    /// The part holding offset `at` (its end included).
    fn locate(&self, at: usize) -> Option<usize> {
        self.parts
            .iter()
            .position(|(start, seg)| (*start..*start + seg.range.len()).contains(&at))
            .or_else(|| {
                self.parts
                    .iter()
                    .position(|(start, seg)| *start + seg.range.len() == at)
            })
    }

    /// `span` (in `text`) as a span of part `p`'s origin, clamped to the part.
    fn map(&self, p: usize, span: Span) -> Span {
        let (start, seg) = &self.parts[p];
        let len = seg.range.len();
        let f = |x: usize| seg.range.start + x.saturating_sub(*start).min(len);
        Span::new(f(span.start), f(span.end.max(span.start)))
    }

    /// Renders diagnostics as `lossc check` does, each against the text it points into.
    fn render(&self, diags: &[Diagnostic]) -> String {
        let mut groups: Vec<(Rc<Source>, Vec<Diagnostic>)> = vec![];
        for d in diags {
            let (p, span) = match self.locate(d.span.start) {
                Some(p) => (p, self.map(p, d.span)),
                None => match self.primary.or(self.parts.len().checked_sub(1)) {
                    // In the glue: at the end of what was typed.
                    Some(p) => {
                        let end = self.parts[p].1.range.end;
                        (p, Span::new(end, end))
                    }
                    None => continue,
                },
            };
            let origin = self.parts[p].1.origin.clone();
            let mut mapped = Diagnostic {
                span,
                secondary: vec![],
                ..d.clone()
            };
            for (s, label) in &d.secondary {
                match self.locate(s.start) {
                    Some(q) if Rc::ptr_eq(&self.parts[q].1.origin, &origin) => {
                        mapped.secondary.push((self.map(q, *s), label.clone()));
                    }
                    Some(q) => {
                        let other = &self.parts[q].1.origin;
                        let (line, col) =
                            grammar::diagnostic::line_col(&other.text, self.map(q, *s).start);
                        mapped
                            .notes
                            .push(format!("{label}: {}:{line}:{col}", other.name));
                    }
                    None => {}
                }
            }
            match groups.iter_mut().find(|(o, _)| Rc::ptr_eq(o, &origin)) {
                Some((_, g)) => g.push(mapped),
                None => groups.push((origin, vec![mapped])),
            }
        }
        let mut out = String::new();
        for (origin, diags) in groups {
            let n = diags.len();
            out.push_str(&grammar::render(&origin.name, &origin.text, &diags));
            let _ = writeln!(
                out,
                "error: {n} error{} in `{}`",
                if n == 1 { "" } else { "s" },
                origin.name
            );
        }
        if out.is_empty() {
            out.push_str("error: the input does not check\n");
        }
        out.pop();
        out
    }
}

/// Where an item's text starts: the first of the `///` lines right above it.
fn with_doc(text: &str, start: usize) -> usize {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if !text[line_start..start].trim().is_empty() {
        return start;
    }
    let mut begin = line_start;
    while begin > 0 {
        let prev = text[..begin - 1].rfind('\n').map_or(0, |i| i + 1);
        if text[prev..begin - 1].trim_start().starts_with("///") {
            begin = prev;
        } else {
            break;
        }
    }
    begin
}

/// What a checked `let` or expression evaluated to.
#[derive(Debug, Clone)]
pub struct Value {
    /// The dimension sizes.
    pub shape: Vec<usize>,
    /// `b: B` for each axis (index variable and dimension).
    pub axes: Vec<String>,
    /// Row-major values.
    pub values: Vec<f64>,
    /// The element type.
    pub dtype: DType,
}

/// The free index variables of an expression typed alone, in order of first use: names
/// used as indices that no enclosing reduction binds and that name nothing in scope.
fn free_indices(e: &ast::Expr, known: &dyn Fn(&str) -> bool) -> Vec<String> {
    fn walk(
        e: &ast::Expr,
        index: bool,
        bound: &mut Vec<String>,
        known: &dyn Fn(&str) -> bool,
        out: &mut Vec<String>,
    ) {
        match &e.kind {
            ExprKind::Name(n) if index && !bound.contains(n) && !known(n) && !out.contains(n) => {
                out.push(n.clone());
            }
            ExprKind::Read { indices, .. } => {
                for i in indices {
                    walk(i, true, bound, known, out);
                }
            }
            ExprKind::Call { args, .. } => {
                for a in args {
                    walk(a, false, bound, known, out);
                }
            }
            ExprKind::Reduce {
                vars, filter, body, ..
            } => {
                let n = bound.len();
                bound.extend(vars.iter().map(|v| v.name.name.clone()));
                for x in filter.iter().chain(body.iter()) {
                    walk(x, false, bound, known, out);
                }
                bound.truncate(n);
            }
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => {
                for x in [cond, then, otherwise] {
                    walk(x, false, bound, known, out);
                }
            }
            ExprKind::Unary { operand, .. } => walk(operand, false, bound, known, out),
            ExprKind::Binary { lhs, rhs, .. } => {
                walk(lhs, false, bound, known, out);
                walk(rhs, false, bound, known, out);
            }
            ExprKind::Paren(x) => walk(x, index, bound, known, out),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(e, false, &mut vec![], known, &mut out);
    out
}

impl Session {
    /// The next entry's source name, `<input N>`, counting it.
    pub fn next_entry(&mut self) -> String {
        self.entries += 1;
        format!("<input {}>", self.entries)
    }

    /// The session's hyperparameter overrides that `loss` has, then `extra` (which may name
    /// hyperparameters it lacks: binding reports those).
    pub fn sets_for(&self, loss: &Loss, extra: &[(String, f64)]) -> Vec<(String, f64)> {
        self.sets
            .iter()
            .filter(|(n, _)| loss.hypers.iter().any(|h| &h.name == n))
            .chain(extra)
            .cloned()
            .collect()
    }

    /// The loss called `name`: a session loss, else a file or stdlib loss.
    pub fn loss(&self, name: &str) -> Result<Loss, UserError> {
        if let Some(l) = self.program.loss(name) {
            return Ok(l.clone());
        }
        let src = source::load(name).map_err(|e| {
            let e = UserError(e.0.replace("`lossc doc`", "`:doc`"));
            let mut names: Vec<&str> = self
                .program
                .losses
                .iter()
                .map(|l| l.name.as_str())
                .collect();
            if names.is_empty() {
                return e;
            }
            names.sort();
            UserError(format!(
                "{}\n  note: the session's losses: {}",
                e.0,
                names.join(", ")
            ))
        })?;
        let program = source::check(&src)?;
        match program.losses.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(UserError(format!("error: `{}` defines no loss", src.name))),
            many => Err(UserError(format!(
                "error: `{}` defines several losses ({}): `:load {name}` and name one",
                src.name,
                many.iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Where a session loss or fn was typed or loaded.
    pub fn origin_of(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.seg.origin.name.as_str())
    }

    /// Defines every item of `origin` (typed or loaded), replacing items of the same names.
    /// Nothing changes when the session with them does not check.
    pub fn define(&mut self, origin: Rc<Source>) -> Result<String, UserError> {
        let whole = Segment::whole(origin.clone());
        let file = grammar::parse(&origin.text).map_err(|d| {
            let mut a = Assembly::default();
            a.primary = Some(a.part(&whole));
            UserError(a.render(&d))
        })?;
        let mut new = vec![];
        for item in &file.items {
            let (is_loss, span) = match item {
                ast::Item::Loss(l) => (true, l.span),
                ast::Item::Fn(f) => (false, f.span),
            };
            let start = with_doc(&origin.text, span.start.min(origin.text.len()));
            new.push(Item {
                name: item.name().name.clone(),
                is_loss,
                seg: Segment {
                    origin: origin.clone(),
                    range: start..span.end.min(origin.text.len()),
                },
            });
        }
        if new.is_empty() {
            return Ok(String::new());
        }
        let mut items: Vec<Item> = self
            .items
            .iter()
            .filter(|i| !new.iter().any(|n| n.name == i.name))
            .cloned()
            .collect();
        let first_new = items.len();
        items.extend(new.iter().cloned());
        let mut asm = Assembly::default();
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                asm.glue("\n\n");
            }
            let p = asm.part(&item.seg);
            if k == first_new {
                asm.primary = Some(p);
            }
        }
        asm.glue("\n");
        let program = compiler::check_source(&asm.text).map_err(|d| UserError(asm.render(&d)))?;
        let mut out = String::new();
        for item in &new {
            let again = if self.items.iter().any(|i| i.name == item.name) {
                "redefined"
            } else {
                "defined"
            };
            if item.is_loss {
                if let Some(l) = program.loss(&item.name) {
                    let _ = writeln!(out, "{again} {}", signature(l));
                }
            } else {
                let _ = writeln!(out, "{again} fn {}", item.name);
            }
        }
        self.items = items;
        self.program = program;
        // A redefined fn may change what the session's lets mean.
        out.push_str(&self.recheck_lets());
        Ok(out)
    }

    /// The synthetic loss's source: the session's fns, then `loss __repl(inputs in scope;
    /// session hyperparameters) { lets; tail; 0.0 }`.
    fn scope_source(&self, lets: &[&Segment], tail: Option<(&str, &Segment)>) -> Assembly {
        let mut asm = Assembly::default();
        for item in self.items.iter().filter(|i| !i.is_loss) {
            asm.part(&item.seg);
            asm.glue("\n\n");
        }
        let mut inputs = vec![];
        let mut hypers: Vec<(String, f64)> = vec![];
        if let Some(s) = &self.scope {
            let l = &s.signature;
            inputs = l
                .inputs
                .iter()
                .map(|i| runtime::bind::signature(l, i))
                .collect();
            hypers = l
                .hypers
                .iter()
                .map(|h| (h.name.clone(), h.default))
                .collect();
        }
        for (name, v) in &self.sets {
            match hypers.iter_mut().find(|(n, _)| n == name) {
                Some(h) => h.1 = *v,
                None => hypers.push((name.clone(), *v)),
            }
        }
        let hypers: Vec<String> = hypers
            .iter()
            .map(|(n, v)| format!("{n} = {}", compiler::print::hyper_value(*v)))
            .collect();
        asm.glue(&format!("loss {SCOPE_LOSS}({}", inputs.join(", ")));
        if !hypers.is_empty() {
            asm.glue(&format!("; {}", hypers.join(", ")));
        }
        asm.glue(") {\n");
        for l in lets {
            asm.part(l);
            asm.glue("\n");
        }
        if let Some((prefix, seg)) = tail {
            asm.glue(prefix);
            let p = asm.part(seg);
            asm.primary = Some(p);
            asm.glue("\n");
        }
        asm.glue("0.0\n}\n");
        asm
    }

    /// Checks the synthetic loss and makes sure what was typed stayed one statement.
    fn check_scope(&self, asm: &Assembly, statements: usize) -> Result<Loss, UserError> {
        let program = compiler::check_source(&asm.text).map_err(|d| UserError(asm.render(&d)))?;
        match program.loss(SCOPE_LOSS) {
            Some(l) if program.losses.len() == 1 && l.defs.len() == statements => Ok(l.clone()),
            _ => Err(UserError(
                "error: expected one `let` or one expression (items are `loss` and `fn`)".into(),
            )),
        }
    }

    /// Evaluates the synthetic loss on the inputs in scope: its bound data and every
    /// definition's values.
    fn run_scope(&self, loss: &Loss) -> Result<(runtime::Bound, Vec<Vec<f64>>), UserError> {
        let empty = TensorMap::new();
        let tensors = self.scope.as_ref().map_or(&empty, |s| &s.tensors);
        let bound =
            runtime::bind(loss, tensors, &[]).map_err(|e| UserError(format!("error: {e}")))?;
        let (_, defs) =
            runtime::eval_all(loss, &bound).map_err(|e| UserError(format!("error: {e}")))?;
        Ok((bound, defs))
    }

    /// Definition `d`'s value.
    fn value_of(loss: &Loss, bound: &runtime::Bound, defs: &[Vec<f64>], d: usize) -> Value {
        let def = &loss.defs[d];
        Value {
            shape: def
                .indices
                .iter()
                .map(|&v| bound.dims[loss.vars[v].dim])
                .collect(),
            axes: def
                .indices
                .iter()
                .map(|&v| {
                    let var = &loss.vars[v];
                    format!("{}: {}", var.name, loss.dims[var.dim])
                })
                .collect(),
            values: defs[d].clone(),
            dtype: def.dtype,
        }
    }

    fn let_segs(&self) -> Vec<&Segment> {
        self.lets.iter().map(|l| &l.seg).collect()
    }

    /// A hint for errors when nothing is in scope.
    fn scope_hint(&self, e: UserError) -> UserError {
        if self.scope.is_some() {
            e
        } else {
            UserError(format!(
                "{}\n  note: no inputs are in scope: `:inputs NAME --random B=4` brings a loss's inputs in",
                e.0
            ))
        }
    }

    /// Defines (or redefines) a session `let`, typed as `origin`, and returns its value.
    pub fn define_let(&mut self, origin: Rc<Source>) -> Result<(String, Value), UserError> {
        let seg = Segment::whole(origin.clone());
        // Its name, from the statement parsed alone inside the synthetic loss.
        let probe = self.scope_source(&[], Some(("", &seg)));
        let name = match grammar::parse(&probe.text) {
            Err(d) => return Err(self.scope_hint(UserError(probe.render(&d)))),
            Ok(file) => file.items.iter().find_map(|i| match i {
                ast::Item::Loss(l) if l.name.name == SCOPE_LOSS => match l.statements.as_slice() {
                    [ast::Statement::Let(s)] => Some(s.name.name.clone()),
                    _ => None,
                },
                _ => None,
            }),
        };
        let Some(name) = name else {
            return Err(UserError(
                "error: expected one `let NAME = EXPR` or `let NAME[i, ..] = EXPR`".into(),
            ));
        };
        let mut lets = self.lets.clone();
        let new = SessionLet {
            name: name.clone(),
            seg: seg.clone(),
        };
        let position = match lets.iter().position(|l| l.name == name) {
            Some(p) => {
                lets[p] = new;
                p
            }
            None => {
                lets.push(new);
                lets.len() - 1
            }
        };
        let segs: Vec<&Segment> = lets.iter().map(|l| &l.seg).collect();
        let mut asm = self.scope_source(&segs, None);
        // Errors in the glue are charged to the new let.
        asm.primary = asm
            .parts
            .iter()
            .position(|(_, s)| Rc::ptr_eq(&s.origin, &origin));
        let loss = self
            .check_scope(&asm, lets.len())
            .map_err(|e| self.scope_hint(e))?;
        let (bound, defs) = self.run_scope(&loss)?;
        let value = Self::value_of(&loss, &bound, &defs, position);
        self.lets = lets;
        Ok((name, value))
    }

    /// Checks and evaluates an expression typed alone (as `origin`) on the inputs in scope.
    /// Its free index variables become the axes of the result.
    pub fn eval_expr(&self, origin: Rc<Source>) -> Result<Value, UserError> {
        let seg = Segment::whole(origin.clone());
        let text = origin.text.trim();
        // A tensor named alone: print it whole.
        if let Some(v) = self.named_tensor(text) {
            return Ok(v);
        }
        let lets = self.let_segs();
        let prefix = format!("let {EXPR_NAME} = ");
        let probe = self.scope_source(&lets, Some((&prefix, &seg)));
        let file = grammar::parse(&probe.text)
            .map_err(|d| self.scope_hint(UserError(probe.render(&d))))?;
        let known = |n: &str| self.knows(n);
        let free = file
            .items
            .iter()
            .find_map(|i| match i {
                ast::Item::Loss(l) if l.name.name == SCOPE_LOSS => {
                    l.statements.last().and_then(|s| match s {
                        ast::Statement::Let(s) if s.name.name == EXPR_NAME => {
                            Some(free_indices(&s.value, &known))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .unwrap_or_default();
        let prefix = if free.is_empty() {
            prefix
        } else {
            format!("let {EXPR_NAME}[{}] = ", free.join(", "))
        };
        let asm = self.scope_source(&lets, Some((&prefix, &seg)));
        let loss = self
            .check_scope(&asm, lets.len() + 1)
            .map_err(|e| self.scope_hint(e))?;
        let (bound, defs) = self.run_scope(&loss)?;
        Ok(Self::value_of(&loss, &bound, &defs, lets.len()))
    }

    /// True for a name the synthetic loss defines: an input in scope, a session let or a
    /// session hyperparameter.
    fn knows(&self, name: &str) -> bool {
        self.lets.iter().any(|l| l.name == name)
            || self.sets.iter().any(|(n, _)| n == name)
            || self.scope.as_ref().is_some_and(|s| {
                s.signature.inputs.iter().any(|i| i.name == name)
                    || s.signature.hypers.iter().any(|h| h.name == name)
            })
    }

    /// The value of an input in scope or a session let named `name`, whole.
    fn named_tensor(&self, name: &str) -> Option<Value> {
        if let Some(s) = &self.scope
            && let Some((_, input)) = s.signature.input(name)
            && let Some(t) = s.tensors.get(name)
        {
            let values = match &t.data {
                runtime::Data::F64(v) => v.clone(),
                runtime::Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
                runtime::Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
                runtime::Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            };
            return Some(Value {
                shape: t.shape.clone(),
                axes: input
                    .shape
                    .iter()
                    .map(|&d| s.signature.dims[d].clone())
                    .collect(),
                values,
                dtype: input.dtype,
            });
        }
        let position = self.lets.iter().position(|l| l.name == name)?;
        let asm = self.scope_source(&self.let_segs(), None);
        let loss = self.check_scope(&asm, self.lets.len()).ok()?;
        let (bound, defs) = self.run_scope(&loss).ok()?;
        Some(Self::value_of(&loss, &bound, &defs, position))
    }

    /// Keeps the session lets that still check (after the scope or a fn changed); says which
    /// were dropped.
    pub fn recheck_lets(&mut self) -> String {
        let mut kept: Vec<SessionLet> = vec![];
        let mut out = String::new();
        for l in std::mem::take(&mut self.lets) {
            let mut segs: Vec<&Segment> = kept.iter().map(|k| &k.seg).collect();
            segs.push(&l.seg);
            let asm = self.scope_source(&segs, None);
            if self.check_scope(&asm, segs.len()).is_ok() {
                kept.push(l);
            } else {
                let _ = writeln!(
                    out,
                    "note: dropped `let {}`: it does not check with the inputs in scope now",
                    l.name
                );
            }
        }
        self.lets = kept;
        out
    }

    /// Puts `tensors`, bound to `loss`'s inputs, in scope.
    pub fn set_scope(&mut self, loss: &Loss, tensors: TensorMap, from: String) -> String {
        self.scope = Some(Scope {
            signature: loss.clone(),
            tensors,
            from,
        });
        self.recheck_lets()
    }

    /// The source of every item, as `:save` writes it; the session lets follow as comments.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            out.push_str(item.seg.text().trim_end());
            out.push_str("\n\n");
        }
        if !self.lets.is_empty() {
            out.push_str("// Session lets (they belong inside a loss body):\n");
            for l in &self.lets {
                for line in l.seg.text().trim().lines() {
                    let _ = writeln!(out, "// {line}");
                }
            }
        }
        if out.ends_with("\n\n") {
            out.pop();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> Rc<Source> {
        Rc::new(Source {
            name: "<input 1>".into(),
            text: text.into(),
        })
    }

    #[test]
    fn doc_comments_belong_to_their_item() {
        let t = "fn f(a) = a\n\n/// Doc.\n/// More.\nloss g(x: [B]) { mean[b](x[b]) }";
        let start = t.find("loss").unwrap();
        assert!(t[with_doc(t, start)..].starts_with("/// Doc."));
    }

    #[test]
    fn free_indices_in_order() {
        let mut s = Session::default();
        s.define(typed("loss l(x: [B], y: [D]) { x[0] }")).unwrap();
        let l = s.program.losses[0].clone();
        s.set_scope(&l, TensorMap::new(), String::new());
        let file = grammar::parse("fn f(a) = x[b] * sum[k](y[k]) + y[d] * x[b]").unwrap();
        let ast::Item::Fn(f) = &file.items[0] else {
            panic!()
        };
        assert_eq!(free_indices(&f.body, &|n| s.knows(n)), vec!["b", "d"]);
    }

    #[test]
    fn errors_point_into_what_was_typed() {
        let mut s = Session::default();
        let e = s
            .define(typed("loss l(x: [B]) {\n  mean[b](sigmoi(x[b]))\n}"))
            .unwrap_err();
        assert!(e.0.contains("<input 1>:2:11"), "{e}");
        assert!(s.items.is_empty());
    }
}
