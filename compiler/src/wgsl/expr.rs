//! Expressions as WGSL: pure subexpressions inline, control flow (lazy selects and `&&`/`||`
//! whose right side needs statements, reductions) as statements before the use.

use super::names::{Names, var_names};
use crate::ir::{BinOp, Builtin, DType, Expr, Loss, Reducer, Tensor, UnaryOp, VarId};

/// A WGSL value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    F,
    I,
    B,
}

/// A top-level reduction already computed (by a two-level reduction before the kernel, or by
/// the workgroup of a row kernel), and the WGSL expression holding its value.
pub(super) struct Reduced<'e> {
    pub expr: &'e Expr,
    pub value: String,
    pub ty: Ty,
}

/// The statements of one function body being written.
pub(super) struct Body<'a, 'e> {
    pub names: &'a Names<'a>,
    pub text: String,
    pub indent: usize,
    next: usize,
    /// Reductions already computed.
    pub reduced: Vec<Reduced<'e>>,
    /// The inputs and definitions read or written.
    pub used: std::collections::BTreeSet<super::Binding>,
    /// The WGSL name of each index variable in this kernel.
    pub vars: Vec<String>,
}

/// An f32 literal.
pub(super) fn float_literal(x: f64) -> String {
    let f = x as f32;
    if f.is_nan() {
        "lossc_nan()".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "lossc_inf()".into()
        } else {
            "(-lossc_inf())".into()
        }
    } else {
        let s = format!("{f:?}");
        let s = if s.contains(['.', 'e']) {
            s
        } else {
            format!("{s}.0")
        };
        if f < 0.0 || s.starts_with('-') {
            format!("({s})")
        } else {
            s
        }
    }
}

/// An i32 literal (saturated).
fn int_literal(k: i64) -> String {
    let k = k.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if k == i64::from(i32::MIN) {
        "(-2147483647 - 1)".into()
    } else if k < 0 {
        format!("({k})")
    } else {
        format!("{k}")
    }
}

/// True when `e` can be evaluated eagerly inline: no reduction, no select, no `&&`/`||`, no
/// checked read (a gather or a literal index), so evaluating it where it is not needed can
/// neither fail nor cost a loop.
fn is_simple(loss: &Loss, e: &Expr) -> bool {
    !e.any(&mut |x| match x {
        Expr::Reduce { .. } | Expr::Select(..) => true,
        Expr::Binary(BinOp::And | BinOp::Or, ..) => true,
        Expr::Read { tensor, indices } => {
            let shape = loss.shape_of(*tensor);
            indices
                .iter()
                .zip(&shape)
                .any(|(ix, &dim)| !matches!(ix, Expr::Index(v) if loss.vars[*v].dim == dim))
        }
        _ => false,
    })
}

/// True when emitting `e` writes statements (a reduction, or a select that must be lazy).
fn needs_statements(loss: &Loss, e: &Expr) -> bool {
    e.any(&mut |x| match x {
        Expr::Reduce { .. } => true,
        Expr::Select(_, a, b) => !(is_simple(loss, a) && is_simple(loss, b)),
        _ => false,
    })
}

impl<'a, 'e> Body<'a, 'e> {
    /// A kernel body whose index variables are `bound` and those bound inside `exprs`.
    pub fn new(
        names: &'a Names<'a>,
        indent: usize,
        bound: &[VarId],
        exprs: &[&Expr],
    ) -> Body<'a, 'e> {
        let mut ids = bound.to_vec();
        for e in exprs {
            e.visit(&mut |x| {
                if let Expr::Reduce { vars, .. } = x {
                    ids.extend(vars);
                }
            });
        }
        Body {
            vars: var_names(names.loss, &ids),
            names,
            text: String::new(),
            indent,
            next: 0,
            reduced: vec![],
            used: Default::default(),
        }
    }

    /// Writes one line at the current indentation.
    pub fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.text.push_str("    ");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }

    fn temp(&mut self) -> String {
        self.next += 1;
        format!("t{}", self.next)
    }

    fn loss(&self) -> &'a Loss {
        self.names.loss
    }

    /// The value of `e` as f32 (an int literal as a float literal, an int-valued `if` with
    /// float branches).
    pub fn float(&mut self, e: &'e Expr) -> String {
        match e {
            Expr::Int(k) => float_literal(*k as f64),
            Expr::Select(c, a, b) if self.loss().type_of(e) == DType::Int => {
                self.select_as(c, a, b, Ty::F).0
            }
            _ => {
                let (s, t) = self.expr(e);
                as_float(s, t)
            }
        }
    }

    /// The value of `e` as a WGSL expression of its type.
    pub fn expr(&mut self, e: &'e Expr) -> (String, Ty) {
        if let Some(r) = self.reduced.iter().find(|r| std::ptr::eq(r.expr, e)) {
            return (r.value.clone(), r.ty);
        }
        match e {
            Expr::Float(x) => (float_literal(*x), Ty::F),
            Expr::Int(k) => (int_literal(*k), Ty::I),
            Expr::Bool(b) => (b.to_string(), Ty::B),
            Expr::Index(v) => (self.vars[*v].clone(), Ty::I),
            Expr::Hyper(h) => (self.names.hypers[*h].clone(), Ty::F),
            Expr::Read { tensor, indices } => self.read(*tensor, indices),
            Expr::Unary(UnaryOp::Neg, a) => {
                let (s, t) = self.expr(a);
                match t {
                    Ty::I => (format!("(-{s})"), Ty::I),
                    _ => (format!("(-{})", as_float(s, t)), Ty::F),
                }
            }
            Expr::Unary(UnaryOp::Not, a) => {
                let (s, t) = self.expr(a);
                (format!("!{}", as_truth(s, t)), Ty::B)
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, b) => self.logic(*op, a, b),
            Expr::Binary(op, a, b) => {
                let (x, tx) = self.expr(a);
                let (y, ty) = self.expr(b);
                binary(*op, x, tx, y, ty)
            }
            Expr::Call(f, args) => {
                let vals: Vec<String> = args.iter().map(|a| self.float(a)).collect();
                (call(*f, &vals), Ty::F)
            }
            Expr::Select(c, a, b) => self.select(e, c, a, b),
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => self.reduce(e, *op, vars, filter.as_deref(), body.as_deref()),
        }
    }

    /// The value of `e` as type `ty`.
    fn typed(&mut self, e: &'e Expr, ty: Ty) -> String {
        if ty == Ty::F {
            return self.float(e);
        }
        let (s, t) = self.expr(e);
        convert(s, t, ty)
    }

    /// `&&` / `||`: WGSL's own short-circuit operators when the right side is one expression,
    /// an `if` around the right side's statements otherwise.
    fn logic(&mut self, op: BinOp, a: &'e Expr, b: &'e Expr) -> (String, Ty) {
        let (x, tx) = self.expr(a);
        let left = as_truth(x, tx);
        if !needs_statements(self.loss(), b) {
            let (y, ty) = self.expr(b);
            let sym = if op == BinOp::And { "&&" } else { "||" };
            return (format!("({left} {sym} {})", as_truth(y, ty)), Ty::B);
        }
        let t = self.temp();
        self.line(&format!("var {t} = {left};"));
        let guard = if op == BinOp::And {
            t.clone()
        } else {
            format!("!{t}")
        };
        self.line(&format!("if ({guard}) {{"));
        self.indent += 1;
        let (y, ty) = self.expr(b);
        self.line(&format!("{t} = {};", as_truth(y, ty)));
        self.indent -= 1;
        self.line("}");
        (t, Ty::B)
    }

    /// `if c then a else b`: `select` when both branches are simple, otherwise an `if` that
    /// evaluates only the taken branch.
    fn select(&mut self, e: &'e Expr, c: &'e Expr, a: &'e Expr, b: &'e Expr) -> (String, Ty) {
        let ty = match self.loss().type_of(e) {
            DType::Float => Ty::F,
            DType::Int => Ty::I,
            DType::Bool => Ty::B,
        };
        self.select_as(c, a, b, ty)
    }

    /// A select whose branches are converted to `ty`.
    fn select_as(&mut self, c: &'e Expr, a: &'e Expr, b: &'e Expr, ty: Ty) -> (String, Ty) {
        let (cs, ct) = self.expr(c);
        let cond = as_truth(cs, ct);
        if is_simple(self.loss(), a) && is_simple(self.loss(), b) {
            let (x, y) = (self.typed(a, ty), self.typed(b, ty));
            return (format!("select({y}, {x}, {cond})"), ty);
        }
        let t = self.temp();
        self.line(&format!("var {t}: {};", wgsl_type(ty)));
        self.line(&format!("if {} {{", condition(&cond)));
        for (k, branch) in [a, b].into_iter().enumerate() {
            self.indent += 1;
            let x = self.typed(branch, ty);
            self.line(&format!("{t} = {x};"));
            self.indent -= 1;
            self.line(if k == 0 { "} else {" } else { "}" });
        }
        (t, ty)
    }

    /// An element of a tensor; indices that are not a loop variable over the same dimension
    /// go through `lossc_check`.
    fn read(&mut self, t: Tensor, indices: &'e [Expr]) -> (String, Ty) {
        let loss = self.loss();
        let shape = loss.shape_of(t);
        let mut flat = String::new();
        for (pos, (ix, &dim)) in indices.iter().zip(&shape).enumerate() {
            let size = self.names.dims[dim].clone();
            let i = match ix {
                Expr::Index(v) if loss.vars[*v].dim == dim => self.vars[*v].clone(),
                other => {
                    let (s, ty) = self.expr(other);
                    let s = convert(s, ty, Ty::I);
                    let (code, is_def) = match t {
                        Tensor::Input(k) => (k, false),
                        Tensor::Def(d) => (d, true),
                    };
                    format!(
                        "lossc_check({s}, {size}, {code}u /* {} */, {pos}u, {is_def})",
                        loss.tensor_name(t)
                    )
                }
            };
            flat = if pos == 0 {
                i
            } else {
                format!("({flat} * {size} + {i})")
            };
        }
        self.used.insert(match t {
            Tensor::Input(k) => super::Binding::Input(k),
            Tensor::Def(d) => super::Binding::Def(d),
        });
        let at = if flat.is_empty() {
            "0u".to_string()
        } else {
            format!("u32({flat})")
        };
        match t {
            Tensor::Input(k) => {
                let buf = &self.names.inputs[k];
                match loss.inputs[k].dtype {
                    DType::Float => (format!("{buf}[{at}]"), Ty::F),
                    DType::Int => (format!("{buf}[{at}]"), Ty::I),
                    DType::Bool => (format!("({buf}[{at}] != 0u)"), Ty::B),
                }
            }
            Tensor::Def(d) => {
                let x = format!("{}[{at}]", self.names.defs[d]);
                match loss.defs[d].dtype {
                    DType::Float => (x, Ty::F),
                    DType::Int => (format!("lossc_to_int({x})"), Ty::I),
                    DType::Bool => (format!("!({x} == 0.0)"), Ty::B),
                }
            }
        }
    }

    /// Opens nested `for` loops over `vars` (row-major); returns how many to close.
    pub fn open_loops(&mut self, vars: &[VarId]) -> usize {
        for &v in vars {
            let name = self.vars[v].clone();
            let size = self.names.dims[self.loss().vars[v].dim].clone();
            self.line(&format!(
                "for (var {name} = 0; {name} < {size}; {name} = {name} + 1) {{"
            ));
            self.indent += 1;
        }
        vars.len()
    }

    /// Closes `n` loops.
    pub fn close(&mut self, n: usize) {
        for _ in 0..n {
            self.indent -= 1;
            self.line("}");
        }
    }

    /// Inside a loop: skips the term unless `filter` holds.
    pub fn filter(&mut self, filter: Option<&'e Expr>) {
        if let Some(f) = filter {
            let (s, t) = self.expr(f);
            let skip = condition(&negate(as_truth(s, t)));
            self.line(&format!("if {skip} {{ continue; }}"));
        }
    }

    /// A reduction as loops in this invocation.
    fn reduce(
        &mut self,
        e: &'e Expr,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&'e Expr>,
        body: Option<&'e Expr>,
    ) -> (String, Ty) {
        let acc = self.temp();
        let comment = super::kernels::describe(self.loss(), e, 80);
        self.line(&format!("// {comment}"));
        match op {
            Reducer::Count => {
                self.line(&format!("var {acc} = 0;"));
                let n = self.open_loops(vars);
                self.filter(filter);
                self.line(&format!("{acc} = {acc} + 1;"));
                self.close(n);
                (acc, Ty::I)
            }
            Reducer::Sum | Reducer::Mean => {
                let body = body.expect("sum and mean have a body");
                self.line(&format!("var {acc} = 0.0;"));
                let kept = self.temp();
                if op == Reducer::Mean {
                    self.line(&format!("var {kept} = 0;"));
                }
                let n = self.open_loops(vars);
                self.filter(filter);
                let v = self.float(body);
                self.line(&format!("{acc} = {acc} + {v};"));
                if op == Reducer::Mean {
                    self.line(&format!("{kept} = {kept} + 1;"));
                }
                self.close(n);
                if op == Reducer::Sum {
                    (acc, Ty::F)
                } else {
                    (format!("({acc} / f32(max({kept}, 1)))"), Ty::F)
                }
            }
            Reducer::Max | Reducer::Min => {
                let body = body.expect("max and min have a body");
                let (start, f) = if op == Reducer::Max {
                    ("-lossc_inf()", "lossc_max")
                } else {
                    ("lossc_inf()", "lossc_min")
                };
                self.line(&format!("var {acc} = {start};"));
                let n = self.open_loops(vars);
                self.filter(filter);
                let v = self.float(body);
                self.line(&format!("{acc} = {f}({acc}, {v});"));
                self.close(n);
                (acc, Ty::F)
            }
            Reducer::LogSumExp => {
                let body = body.expect("logsumexp has a body");
                // max first, then the sum of exp(x - max): exp never overflows.
                self.line(&format!("var {acc} = -lossc_inf();"));
                let n = self.open_loops(vars);
                self.filter(filter);
                let v = self.float(body);
                self.line(&format!("{acc} = lossc_max({acc}, {v});"));
                self.close(n);
                let sum = self.temp();
                self.line(&format!("var {sum} = 0.0;"));
                let n = self.open_loops(vars);
                self.filter(filter);
                let v = self.float(body);
                self.line(&format!("{sum} = {sum} + lossc_exp({v} - {acc});"));
                self.close(n);
                (format!("lossc_logsumexp_finish({acc}, {sum})"), Ty::F)
            }
            Reducer::ArgMax | Reducer::ArgMin => {
                let body = body.expect("argmax and argmin have a body");
                let at = self.temp();
                self.line(&format!("var {acc} = 0.0;"));
                self.line(&format!("var {at} = -1;"));
                let n = self.open_loops(vars);
                self.filter(filter);
                let v = self.float(body);
                let x = self.temp();
                self.line(&format!("let {x} = {v};"));
                let cmp = if op == Reducer::ArgMax { ">" } else { "<" };
                // The first extreme term wins ties; NaN beats everything.
                self.line(&format!(
                    "if ({at} < 0 || {x} {cmp} {acc} || (lossc_is_nan({x}) && !lossc_is_nan({acc}))) {{"
                ));
                let position = self.vars[vars[0]].clone();
                self.line(&format!("    {acc} = {x};"));
                self.line(&format!("    {at} = {position};"));
                self.line("}");
                self.close(n);
                (at, Ty::I)
            }
        }
    }
}

/// The value of `s` when it is exactly an int literal as [`int_literal`] writes it (`5`,
/// `(-5)`).
fn int_literal_value(s: &str) -> Option<i64> {
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    if digits(s) {
        return s.parse().ok();
    }
    let inner = s.strip_prefix("(-")?.strip_suffix(')')?;
    if digits(inner) {
        inner.parse::<i64>().ok().map(|k| -k)
    } else {
        None
    }
}

/// True when `s` is one parenthesised expression: `(..)` with the first `(` closing last.
fn is_wrapped(s: &str) -> bool {
    if !s.starts_with('(') {
        return false;
    }
    let mut depth = 0;
    for (k, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return k == s.len() - 1;
        }
    }
    false
}

/// `!s`, or `s` without its leading `!` when it is `!(..)` as a whole.
fn negate(s: String) -> String {
    match s.strip_prefix('!') {
        Some(inner) if is_wrapped(inner) => inner.to_string(),
        _ => format!("!{s}"),
    }
}

/// `s` as an `if` condition: in parentheses unless it already is one parenthesised expression.
fn condition(s: &str) -> String {
    if is_wrapped(s) {
        s.to_string()
    } else {
        format!("({s})")
    }
}

fn wgsl_type(t: Ty) -> &'static str {
    match t {
        Ty::F => "f32",
        Ty::I => "i32",
        Ty::B => "bool",
    }
}

/// `s` (of type `from`) as type `to`, converting as the CPU backend does.
pub(super) fn convert(s: String, from: Ty, to: Ty) -> String {
    match to {
        Ty::F => as_float(s, from),
        Ty::I => match from {
            Ty::I => s,
            Ty::F => format!("lossc_to_int({s})"),
            Ty::B => format!("select(0, 1, {s})"),
        },
        Ty::B => as_truth(s, from),
    }
}

pub(super) fn as_float(s: String, t: Ty) -> String {
    match t {
        Ty::F => s,
        Ty::I => match int_literal_value(&s) {
            // An int literal becomes a float literal.
            Some(k) => float_literal(k as f64),
            _ => format!("f32({s})"),
        },
        Ty::B => format!("select(0.0, 1.0, {s})"),
    }
}

/// Nonzero is true (NaN too, as in the interpreter).
fn as_truth(s: String, t: Ty) -> String {
    match t {
        Ty::B => s,
        Ty::I => format!("({s} != 0)"),
        Ty::F => format!("!({s} == 0.0)"),
    }
}

fn binary(op: BinOp, x: String, tx: Ty, y: String, ty: Ty) -> (String, Ty) {
    let sym = match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Pow => {
            return (
                format!("lossc_pow({}, {})", as_float(x, tx), as_float(y, ty)),
                Ty::F,
            );
        }
        BinOp::And | BinOp::Or => unreachable!("handled by Body::logic"),
    };
    let comparison = op.is_comparison();
    if tx == Ty::I
        && ty == Ty::I
        && (comparison || matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul))
    {
        let t = if comparison { Ty::B } else { Ty::I };
        return (format!("({x} {sym} {y})"), t);
    }
    if tx == Ty::B && ty == Ty::B && comparison {
        let (x, y) = (convert(x, Ty::B, Ty::I), convert(y, Ty::B, Ty::I));
        return (format!("({x} {sym} {y})"), Ty::B);
    }
    let (x, y) = (as_float(x, tx), as_float(y, ty));
    if op == BinOp::Ne {
        // An unordered `!=` whatever the driver does with NaN.
        return (format!("!({x} == {y})"), Ty::B);
    }
    (
        format!("({x} {sym} {y})"),
        if comparison { Ty::B } else { Ty::F },
    )
}

fn call(f: Builtin, a: &[String]) -> String {
    let name = match f {
        Builtin::Detach => return a[0].clone(),
        Builtin::Abs => "abs",
        Builtin::Exp => "lossc_exp",
        Builtin::Log => "lossc_log",
        Builtin::Log1p => "lossc_log1p",
        Builtin::Expm1 => "lossc_expm1",
        Builtin::Log1mexp => "lossc_log1mexp",
        Builtin::Sqrt => "lossc_sqrt",
        Builtin::Sigmoid => "lossc_sigmoid",
        Builtin::LogSigmoid => "lossc_log_sigmoid",
        Builtin::Softplus => "lossc_softplus",
        Builtin::Tanh => "lossc_tanh",
        Builtin::Relu => "lossc_relu",
        Builtin::Cos => "lossc_cos",
        Builtin::Sin => "lossc_sin",
        Builtin::Min => "lossc_min",
        Builtin::Max => "lossc_max",
        Builtin::Clamp => "lossc_clamp",
        Builtin::Pow => "lossc_pow",
    };
    format!("{name}({})", a.join(", "))
}
