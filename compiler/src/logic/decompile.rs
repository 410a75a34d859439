//! Decompilation (dpa_logic.md §3.1): a loss → its normal form `f(s·ρ + c)` → the reduced
//! core ratio `N / D` → the preference structure, or a precise reason why the loss is outside
//! the fragment.
//!
//! 1. `let`s are inlined into the loss; the result is split into terms, each a scalar weight
//!    times a per-example term inside the batch reduction (`mean[b]` or `sum[b]`).
//! 2. Each term is recognised as `f(z)` for a convex `f` (`-log_sigmoid(z)`, `softplus(-z)`,
//!    `relu(-z)`, `z^2`), as a sum of log-probabilities (a regulariser such as CPO's NLL, or,
//!    when no term has an `f`, the whole loss `-log(P / Q)` = `-log σ(log P - log(Q - P))`,
//!    e.g. the semantic loss `-log WMC(✓)`), or as a constant. The body of the batch
//!    reduction is read both as written and after the e-graph pass of [`super::normal`];
//!    where the two disagree the normal form wins (it fuses identities such as
//!    `softplus(x) - x = softplus(-x)` that a literal split would take apart), where they
//!    agree the loss as written is reported (it prints what the user wrote).
//! 3. `z` is read as `Σ cᵢ·log Pᵢ + c` with each `Pᵢ` a polynomial in the atom weights:
//!    an atom's input is `log p`, `log1mexp(x)` is `log(1 - eˣ)`, `softplus` and
//!    `log_sigmoid` of a log-ratio are logs of rational functions, `log` and `log1p` of
//!    probability expressions (`exp`, `1 - p`, products, quotients, sums) are read as such;
//!    an atom divided by data that is not an atom (`policy_chosen_logps[b] / len[b]`) is the
//!    log of the length-normalised weight `p^(1/len)` (§1.2), the same for every read of that
//!    atom in the core.
//!    Each `Pᵢ` is factored; equal factors merge, so common factors of numerator and
//!    denominator cancel (the GCD reduction of §3.1 step 2).
//! 4. The coefficients must be integer multiples of one positive scale `s` (β, pulled into
//!    `f`), the same multiples at the default hyperparameters and at perturbed ones. With
//!    all multiples ±1 and no atom in two factors of one side, `N` and `D` are multilinear;
//!    each must count worlds (every world coefficient 0 or 1), and the worlds where each is
//!    1 are `✓` and `✗`.
//!
//! Weights are judged at the hyperparameters' defaults: a term whose weight is 0 there (the
//! label-smoothing term of DPO) is dropped and reported; so are scales, constants inside `f`
//! (margins), weights, regularisers outside `f`, and length normalisations.

use super::FKind;
use super::LogicError;
use super::atoms::{Atoms, atoms};
use super::compare::Ratio;
use super::formula::Atom;
use super::normal::normalize;
use super::poly::Poly;
use super::structure::{Space, Structure};
use crate::ir::{BinOp, Builtin, Expr, Loss, Reducer, Tensor, UnaryOp, VarId};
use crate::print;
use std::cell::RefCell;
use std::collections::HashMap;

/// What [`decompile`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Decompiled {
    /// The loss's name.
    pub loss: String,
    /// Which input is which atom: `Mw = policy_chosen_logps, ...`.
    pub atoms: String,
    /// The convex function recognised.
    pub f: FKind,
    /// True when no `f` is written around the core: the loss is `-log(P / Q)`, which is the
    /// logistic loss of the ratio `P / (Q - P)` (the semantic loss `-log WMC(✓)` when
    /// `Q = 1`).
    pub semantic: bool,
    /// The argument of `f` in terms of `ρ`, e.g. `beta * ρ - gamma`.
    pub z: String,
    /// The reduced core ratio.
    pub ratio: Ratio,
    /// Each atom the loss has, with its log-weight: the name of its input, or the input
    /// divided by its length normaliser (`policy_chosen_logps / chosen_lengths`).
    pub inputs: Vec<(Atom, String)>,
    /// The preference structure.
    pub structure: Structure,
    /// What was stripped: `scale: beta`, `constant: -gamma`, `weight: ...`,
    /// `regulariser: ...`, `zero term: ...`, `constant term: ...`, `length normalisation: ...`.
    pub stripped: Vec<String>,
}

/// The most expression nodes inlining may produce.
const MAX_NODES: usize = 200_000;
/// The largest power of a factor a log-ratio may raise (`log1mexp(3·x)`...).
const MAX_POWER: i64 = 8;

/// A scalar (no reads) kept both as an expression, for messages, and as its values at the
/// default hyperparameters and at perturbed ones.
#[derive(Debug, Clone)]
struct Scalar {
    expr: Expr,
    v: [f64; 2],
}

fn lit(e: &Expr) -> Option<f64> {
    match e {
        Expr::Float(x) => Some(*x),
        Expr::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn num_expr(x: f64) -> Expr {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Expr::Int(x as i64)
    } else {
        Expr::Float(x)
    }
}

fn neg_expr(a: Expr) -> Expr {
    match a {
        Expr::Unary(UnaryOp::Neg, x) => *x,
        ref e if lit(e).is_some() => num_expr(-lit(e).unwrap_or(0.0)),
        Expr::Binary(BinOp::Sub, x, y) => Expr::Binary(BinOp::Sub, y, x),
        other => Expr::Unary(UnaryOp::Neg, Box::new(other)),
    }
}

fn add_expr(a: Expr, b: Expr) -> Expr {
    match (lit(&a), lit(&b)) {
        (Some(0.0), _) => b,
        (_, Some(0.0)) => a,
        (Some(x), Some(y)) => num_expr(x + y),
        (_, Some(y)) if y < 0.0 => Expr::Binary(BinOp::Sub, Box::new(a), Box::new(num_expr(-y))),
        _ => match b {
            Expr::Unary(UnaryOp::Neg, y) => Expr::Binary(BinOp::Sub, Box::new(a), y),
            b => Expr::Binary(BinOp::Add, Box::new(a), Box::new(b)),
        },
    }
}

fn mul_expr(a: Expr, b: Expr) -> Expr {
    match (lit(&a), lit(&b)) {
        (Some(0.0), _) | (_, Some(0.0)) => Expr::Int(0),
        (Some(1.0), _) => b,
        (_, Some(1.0)) => a,
        (Some(-1.0), _) => neg_expr(b),
        (_, Some(-1.0)) => neg_expr(a),
        (Some(x), Some(y)) => num_expr(x * y),
        _ => match (a, b) {
            (Expr::Unary(UnaryOp::Neg, x), y) => neg_expr(mul_expr(*x, y)),
            (x, Expr::Unary(UnaryOp::Neg, y)) => neg_expr(mul_expr(x, *y)),
            (x, y) => Expr::Binary(BinOp::Mul, Box::new(x), Box::new(y)),
        },
    }
}

fn div_expr(a: Expr, b: Expr) -> Expr {
    match (lit(&a), lit(&b)) {
        (_, Some(1.0)) => a,
        (Some(x), Some(y)) if (x / y).fract() == 0.0 => num_expr(x / y),
        _ => Expr::Binary(BinOp::Div, Box::new(a), Box::new(b)),
    }
}

impl Scalar {
    fn num(x: f64) -> Scalar {
        Scalar {
            expr: num_expr(x),
            v: [x, x],
        }
    }

    fn add(&self, o: &Scalar) -> Scalar {
        Scalar {
            expr: add_expr(self.expr.clone(), o.expr.clone()),
            v: [self.v[0] + o.v[0], self.v[1] + o.v[1]],
        }
    }

    fn neg(&self) -> Scalar {
        Scalar {
            expr: neg_expr(self.expr.clone()),
            v: [-self.v[0], -self.v[1]],
        }
    }

    fn mul(&self, o: &Scalar) -> Scalar {
        Scalar {
            expr: mul_expr(self.expr.clone(), o.expr.clone()),
            v: [self.v[0] * o.v[0], self.v[1] * o.v[1]],
        }
    }

    fn div(&self, o: &Scalar) -> Scalar {
        Scalar {
            expr: div_expr(self.expr.clone(), o.expr.clone()),
            v: [self.v[0] / o.v[0], self.v[1] / o.v[1]],
        }
    }

    fn is_zero(&self) -> bool {
        self.v[0] == 0.0 && self.v[1] == 0.0
    }

    fn is_one(&self) -> bool {
        self.v == [1.0, 1.0]
    }

    fn close(&self, o: &Scalar) -> bool {
        (0..2).all(|k| close(self.v[k], o.v[k]))
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// True when `e` reads nothing: a constant of the hyperparameters.
fn is_scalar(e: &Expr) -> bool {
    !e.any(&mut |x| matches!(x, Expr::Read { .. } | Expr::Index(_) | Expr::Reduce { .. }))
}

fn eval_scalar(e: &Expr, hypers: &[f64]) -> f64 {
    let ev = |x: &Expr| eval_scalar(x, hypers);
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    match e {
        Expr::Float(x) => *x,
        Expr::Int(i) => *i as f64,
        Expr::Bool(x) => b(*x),
        Expr::Hyper(h) => hypers[*h],
        Expr::Unary(UnaryOp::Neg, a) => -ev(a),
        Expr::Unary(UnaryOp::Not, a) => b(ev(a) == 0.0),
        Expr::Binary(op, x, y) => {
            let (x, y) = (ev(x), ev(y));
            match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Pow => x.powf(y),
                BinOp::Eq => b(x == y),
                BinOp::Ne => b(x != y),
                BinOp::Lt => b(x < y),
                BinOp::Le => b(x <= y),
                BinOp::Gt => b(x > y),
                BinOp::Ge => b(x >= y),
                BinOp::And => b(x != 0.0 && y != 0.0),
                BinOp::Or => b(x != 0.0 || y != 0.0),
            }
        }
        Expr::Select(c, x, y) => {
            if ev(c) != 0.0 {
                ev(x)
            } else {
                ev(y)
            }
        }
        Expr::Call(f, args) => {
            let a: Vec<f64> = args.iter().map(ev).collect();
            let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
            match f {
                Builtin::Exp => a[0].exp(),
                Builtin::Log => a[0].ln(),
                Builtin::Log1p => a[0].ln_1p(),
                Builtin::Expm1 => a[0].exp_m1(),
                Builtin::Log1mexp => (-a[0].exp_m1()).ln(),
                Builtin::Sqrt => a[0].sqrt(),
                Builtin::Abs => a[0].abs(),
                Builtin::Sigmoid => 1.0 / (1.0 + (-a[0]).exp()),
                Builtin::LogSigmoid => -softplus(-a[0]),
                Builtin::Softplus => softplus(a[0]),
                Builtin::Tanh => a[0].tanh(),
                Builtin::Relu => a[0].max(0.0),
                Builtin::Cos => a[0].cos(),
                Builtin::Sin => a[0].sin(),
                Builtin::Min => a[0].min(a[1]),
                Builtin::Max => a[0].max(a[1]),
                Builtin::Clamp => a[0].max(a[1]).min(a[2]),
                Builtin::Pow => a[0].powf(a[1]),
                Builtin::Detach => a[0],
            }
        }
        Expr::Read { .. } | Expr::Index(_) | Expr::Reduce { .. } => f64::NAN,
    }
}

/// A sum `Σ cᵢ·log Pᵢ + c` over canonical factors `Pᵢ` (the zero polynomial stands for
/// `log 0 = -inf`).
#[derive(Debug, Clone)]
struct LogLin {
    terms: Vec<(Poly, Scalar)>,
    constant: Scalar,
}

impl LogLin {
    fn constant(c: Scalar) -> LogLin {
        LogLin {
            terms: vec![],
            constant: c,
        }
    }

    /// Adds `c·log p`. A `log 0` is never merged with another (`log 0 - log 0` is the
    /// undefined `0/0`, not `log 1`).
    fn push(&mut self, p: Poly, c: Scalar) {
        match self.terms.iter_mut().find(|(q, _)| *q == p && !p.is_zero()) {
            Some((_, k)) => *k = k.add(&c),
            None => self.terms.push((p, c)),
        }
    }

    /// `c·log p`, factored.
    fn log(p: &Poly, c: Scalar) -> Result<LogLin, LogicError> {
        let mut out = LogLin::constant(Scalar::num(0.0));
        if p.is_zero() {
            out.push(Poly::zero(), c);
            return Ok(out);
        }
        let f = p.factor();
        if f.content < 0 {
            return Err(LogicError(format!(
                "the core takes the log of {p}, which is negative inside the unit cube"
            )));
        }
        if f.content > 1 {
            let k = f.content as f64;
            let log_k = Scalar {
                expr: Expr::Call(Builtin::Log, vec![num_expr(k)]),
                v: [k.ln(); 2],
            };
            out.constant = c.mul(&log_k);
        }
        for (q, m) in f.factors {
            out.push(q, c.mul(&Scalar::num(f64::from(m))));
        }
        Ok(out)
    }

    fn add(mut self, o: LogLin) -> LogLin {
        for (p, c) in o.terms {
            self.push(p, c);
        }
        self.constant = self.constant.add(&o.constant);
        self
    }

    fn scale(self, s: &Scalar) -> LogLin {
        LogLin {
            terms: self.terms.into_iter().map(|(p, c)| (p, c.mul(s))).collect(),
            constant: self.constant.mul(s),
        }
    }

    fn neg(self) -> LogLin {
        self.scale(&Scalar::num(-1.0))
    }

    fn nonzero(&self) -> Vec<&(Poly, Scalar)> {
        self.terms.iter().filter(|(_, c)| !c.is_zero()).collect()
    }
}

/// A probability expression `k · n / d`, `k` a positive constant.
#[derive(Debug, Clone)]
struct Rat {
    k: Scalar,
    n: Poly,
    d: Poly,
}

fn too_large<T>(r: Result<T, super::poly::TooLarge>) -> Result<T, LogicError> {
    r.map_err(|_| LogicError("the core's polynomials grow too large to analyse".into()))
}

/// The length normaliser each atom of a term was read with, and one read of the atom.
type Norms = Vec<(Atom, Option<Expr>, Expr)>;

/// One analysed term.
#[derive(Debug, Clone)]
enum Class {
    /// `weight · f(z)`.
    F { f: FKind, z: LogLin, weight: Scalar },
    /// A sum of log-probabilities (already multiplied by its weight).
    Log(LogLin),
}

/// A term of the loss before analysis: `coef · R[b](term)` (or `coef · term` without a
/// batch reduction).
#[derive(Debug, Clone)]
struct Piece {
    coef: Scalar,
    batch: Option<(Reducer, VarId)>,
    term: Expr,
    origin: usize,
}

struct Reader<'a> {
    loss: &'a Loss,
    atoms: &'a Atoms,
    hypers: [Vec<f64>; 2],
    /// The length normaliser in force while reading `x / len` (dpa_logic.md §1.2: the
    /// weight of an atom read as `log p / |y|` is `p^(1/|y|)`).
    normaliser: RefCell<Option<Expr>>,
    /// The normaliser each atom was read with (`None`: none), and one read of it.
    normalised: RefCell<Vec<(Atom, Option<Expr>, Expr)>>,
}

impl Reader<'_> {
    fn show(&self, e: &Expr) -> String {
        print::expr(self.loss, e)
    }

    fn scalar(&self, e: &Expr) -> Scalar {
        Scalar {
            expr: e.clone(),
            v: [
                eval_scalar(e, &self.hypers[0]),
                eval_scalar(e, &self.hypers[1]),
            ],
        }
    }

    fn atom(&self, e: &Expr, batch: Option<VarId>) -> Result<Atom, LogicError> {
        let Expr::Read {
            tensor: Tensor::Input(i),
            indices,
        } = e
        else {
            return Err(LogicError(format!(
                "`{}` is not an input of the loss",
                self.show(e)
            )));
        };
        let Some(a) = self.atoms.atom_of(*i) else {
            return Err(LogicError(format!(
                "the core reads `{}`, which is not a preference atom (the atoms here: {}); a loss with other input names says which is which with a doc line `/// @atoms Mw = INPUT, Ml = INPUT`",
                self.loss.inputs[*i].name,
                self.atoms.describe(self.loss)
            )));
        };
        let per_example = match (indices.as_slice(), batch) {
            ([], _) => true,
            ([Expr::Index(v)], Some(b)) => *v == b,
            _ => false,
        };
        if !per_example {
            return Err(LogicError(format!(
                "`{}` does not read the atom {} of the current example: lossc logic reads each atom as one log-probability per example, indexed by the batch index",
                self.show(e),
                a.name()
            )));
        }
        Ok(a)
    }

    /// True for an expression of the data that reads no atom (a length, say).
    fn is_data(&self, e: &Expr) -> bool {
        !is_scalar(e)
            && !e.any(&mut |x| match x {
                Expr::Read {
                    tensor: Tensor::Input(i),
                    ..
                } => self.atoms.atom_of(*i).is_some(),
                Expr::Reduce { .. } => true,
                _ => false,
            })
    }

    /// Records the normaliser an atom is read with: one per atom.
    fn record(&self, a: Atom, read: &Expr) -> Result<(), LogicError> {
        let now = self.normaliser.borrow().clone();
        let mut seen = self.normalised.borrow_mut();
        match seen.iter().find(|(b, _, _)| *b == a) {
            None => {
                seen.push((a, now, read.clone()));
                Ok(())
            }
            Some((_, before, _)) if *before == now => Ok(()),
            Some((_, before, _)) => {
                let show = |n: &Option<Expr>| {
                    n.as_ref()
                        .map_or("without a length normalisation".to_string(), |e| {
                            format!("divided by `{}`", self.show(e))
                        })
                };
                Err(LogicError(format!(
                    "the atom {} ({}) is read {} in one place and {} in another, so it has no single weight",
                    a.name(),
                    self.atoms.input_name(self.loss, a).unwrap_or("?"),
                    show(before),
                    show(&now)
                )))
            }
        }
    }

    fn describe(&self, p: &Poly) -> String {
        for a in Atom::ALL {
            if let Some(name) = self.atoms.input_name(self.loss, a) {
                if *p == Poly::var(a) {
                    return name.to_string();
                }
                if *p == Poly::one_minus(a) {
                    return format!("log1mexp({name})");
                }
            }
        }
        format!("log({p})")
    }

    /// Reads a log-space expression.
    fn log(&self, e: &Expr, batch: Option<VarId>) -> Result<LogLin, LogicError> {
        if is_scalar(e) {
            let s = self.scalar(e);
            return match s.v {
                [x, y] if x == f64::NEG_INFINITY && y == x => {
                    LogLin::log(&Poly::zero(), Scalar::num(1.0))
                }
                [x, y] if x == f64::INFINITY && y == x => {
                    LogLin::log(&Poly::zero(), Scalar::num(-1.0))
                }
                [x, y] if x.is_finite() && y.is_finite() => Ok(LogLin::constant(s)),
                // `-inf + inf`: read the parts.
                _ if matches!(e, Expr::Binary(..) | Expr::Unary(..)) => self.log_parts(e, batch),
                _ => Err(LogicError(format!(
                    "the constant `{}` is not finite at the default hyperparameters",
                    self.show(e)
                ))),
            };
        }
        self.log_parts(e, batch)
    }

    fn log_parts(&self, e: &Expr, batch: Option<VarId>) -> Result<LogLin, LogicError> {
        let fail = |what: &str| {
            Err(LogicError(format!(
                "`{}` {what}; the core ρ is a combination of the atoms' log-probabilities with +, -, constant factors, log1mexp, softplus, log_sigmoid, and log of probability expressions",
                self.show(e)
            )))
        };
        match e {
            Expr::Read { .. } => {
                let a = self.atom(e, batch)?;
                self.record(a, e)?;
                LogLin::log(&Poly::var(a), Scalar::num(1.0))
            }
            Expr::Unary(UnaryOp::Neg, a) => Ok(self.log(a, batch)?.neg()),
            Expr::Binary(BinOp::Add, a, b) => Ok(self.log(a, batch)?.add(self.log(b, batch)?)),
            Expr::Binary(BinOp::Sub, a, b) => {
                Ok(self.log(a, batch)?.add(self.log(b, batch)?.neg()))
            }
            Expr::Binary(BinOp::Mul, a, b) if is_scalar(a) => {
                Ok(self.log(b, batch)?.scale(&self.scalar(a)))
            }
            Expr::Binary(BinOp::Mul, a, b) if is_scalar(b) => {
                Ok(self.log(a, batch)?.scale(&self.scalar(b)))
            }
            Expr::Binary(BinOp::Mul, a, b) if self.is_data(a) || self.is_data(b) => fail(
                "multiplies by a quantity of the data that is not an atom, so ρ is not a log-ratio (a length normalisation is written as a division)",
            ),
            Expr::Binary(BinOp::Mul, ..) => {
                fail("multiplies two quantities that depend on the atoms, so ρ is not a log-ratio")
            }
            Expr::Binary(BinOp::Div, a, b) if is_scalar(b) => {
                let inv = Scalar::num(1.0).div(&self.scalar(b));
                Ok(self.log(a, batch)?.scale(&inv))
            }
            Expr::Binary(BinOp::Div, a, b) if self.is_data(b) => {
                // Length normalisation: the atoms read in `a` stand for p^(1/len).
                if self.normaliser.borrow().is_some() {
                    return fail("divides by the data twice");
                }
                *self.normaliser.borrow_mut() = Some((**b).clone());
                let lin = self.log(a, batch);
                *self.normaliser.borrow_mut() = None;
                lin
            }
            Expr::Binary(BinOp::Div, ..) => {
                fail("divides by a quantity that depends on the atoms, so ρ is not a log-ratio")
            }
            Expr::Call(Builtin::Detach, args) => self.log(&args[0], batch),
            Expr::Call(Builtin::Log1mexp, args) => {
                // log(1 - n/d) = log(d - n) - log d.
                let (n, d) = self.rational(&args[0], batch, "log1mexp")?;
                let top = too_large(d.sub(&n))?;
                Ok(LogLin::log(&top, Scalar::num(1.0))?.add(LogLin::log(&d, Scalar::num(-1.0))?))
            }
            Expr::Call(Builtin::Softplus, args) => {
                // log(1 + n/d) = log(d + n) - log d.
                let (n, d) = self.rational(&args[0], batch, "softplus")?;
                let top = too_large(d.add(&n))?;
                Ok(LogLin::log(&top, Scalar::num(1.0))?.add(LogLin::log(&d, Scalar::num(-1.0))?))
            }
            Expr::Call(Builtin::LogSigmoid, args) => {
                // log(n / (n + d)).
                let (n, d) = self.rational(&args[0], batch, "log_sigmoid")?;
                let bottom = too_large(d.add(&n))?;
                Ok(
                    LogLin::log(&n, Scalar::num(1.0))?
                        .add(LogLin::log(&bottom, Scalar::num(-1.0))?),
                )
            }
            Expr::Call(Builtin::Log, args) => {
                let r = self.prob(&args[0], batch)?;
                self.log_rat(r, e)
            }
            Expr::Call(Builtin::Log1p, args) => {
                let r = self.prob(&args[0], batch)?;
                let one = Rat {
                    k: r.k.clone(),
                    n: Poly::one(),
                    d: Poly::one(),
                };
                let sum = self.rat_sum(one, r, false, e)?;
                self.log_rat(sum, e)
            }
            Expr::Reduce { .. } => fail("is a reduction inside the per-example core"),
            Expr::Select(..) => fail("is a conditional (`if`), which has no logical reading"),
            Expr::Call(f, _) => fail(&format!("applies `{}` to the atoms", f.name())),
            _ => fail("cannot be read as a log-probability"),
        }
    }

    /// `log(y)` for a probability expression `y`.
    fn log_of(&self, y: &Expr, batch: Option<VarId>) -> Result<LogLin, LogicError> {
        let r = self.prob(y, batch)?;
        self.log_rat(r, y)
    }

    fn log_rat(&self, r: Rat, e: &Expr) -> Result<LogLin, LogicError> {
        if r.k.v[0] <= 0.0 || r.k.v[1] <= 0.0 {
            return Err(LogicError(format!(
                "`{}` takes the log of a quantity that is not positive",
                self.show(e)
            )));
        }
        let log_k = if r.k.is_one() {
            Scalar::num(0.0)
        } else {
            Scalar {
                expr: Expr::Call(Builtin::Log, vec![r.k.expr.clone()]),
                v: [r.k.v[0].ln(), r.k.v[1].ln()],
            }
        };
        Ok(LogLin::log(&r.n, Scalar::num(1.0))?
            .add(LogLin::log(&r.d, Scalar::num(-1.0))?)
            .add(LogLin::constant(log_k)))
    }

    /// `x` as the log of a rational function `n / d` with integer powers and no constant.
    fn rational(
        &self,
        x: &Expr,
        batch: Option<VarId>,
        what: &str,
    ) -> Result<(Poly, Poly), LogicError> {
        let lin = self.log(x, batch)?;
        if !lin.constant.is_zero() {
            return Err(LogicError(format!(
                "`{what}({})` adds the constant `{}` to a log-probability inside {what}, so the result is not the log of a ratio of probabilities",
                self.show(x),
                print::expr(self.loss, &lin.constant.expr)
            )));
        }
        self.powers(&lin, &format!("{what}({})", self.show(x)))
    }

    fn powers(&self, lin: &LogLin, context: &str) -> Result<(Poly, Poly), LogicError> {
        let (mut n, mut d) = (Poly::one(), Poly::one());
        for (p, c) in lin.nonzero() {
            let k = c.v[0].round();
            if !(close(c.v[0], k) && close(c.v[1], k)) || k.abs() > MAX_POWER as f64 {
                return Err(LogicError(format!(
                    "in `{context}`, {} has the coefficient `{}`: only small integer powers of probabilities can be read",
                    self.describe(p),
                    print::expr(self.loss, &c.expr)
                )));
            }
            let pk = too_large(p.pow(k.abs() as u32))?;
            if k > 0.0 {
                n = too_large(n.mul(&pk))?;
            } else {
                d = too_large(d.mul(&pk))?;
            }
        }
        Ok((n, d))
    }

    fn rat_sum(&self, a: Rat, b: Rat, subtract: bool, e: &Expr) -> Result<Rat, LogicError> {
        if !a.k.close(&b.k) {
            return Err(LogicError(format!(
                "`{}` adds probabilities with different constant factors",
                self.show(e)
            )));
        }
        let left = too_large(a.n.mul(&b.d))?;
        let right = too_large(b.n.mul(&a.d))?;
        let n = if subtract {
            too_large(left.sub(&right))?
        } else {
            too_large(left.add(&right))?
        };
        Ok(Rat {
            k: a.k,
            n,
            d: too_large(a.d.mul(&b.d))?,
        })
    }

    /// `a ^ k` in probability space, for a small integer `k`.
    fn prob_pow(
        &self,
        a: &Expr,
        k: &Expr,
        batch: Option<VarId>,
        e: &Expr,
    ) -> Result<Rat, LogicError> {
        let Some(k) = lit(k).filter(|k| k.fract() == 0.0 && (0.0..=8.0).contains(k)) else {
            return Err(LogicError(format!(
                "`{}` raises a probability to a power other than 0, 1, ..., 8",
                self.show(e)
            )));
        };
        let ra = self.prob(a, batch)?;
        let mut out = Rat {
            k: Scalar::num(1.0),
            n: Poly::one(),
            d: Poly::one(),
        };
        for _ in 0..k as u32 {
            out = Rat {
                k: out.k.mul(&ra.k),
                n: too_large(out.n.mul(&ra.n))?,
                d: too_large(out.d.mul(&ra.d))?,
            };
        }
        Ok(out)
    }

    /// Reads a probability-space expression.
    fn prob(&self, e: &Expr, batch: Option<VarId>) -> Result<Rat, LogicError> {
        let fail = |what: &str| {
            Err(LogicError(format!(
                "`{}` {what}; inside `log`, lossc logic reads probabilities built from exp(log-probability), 1 - p, products, quotients and sums",
                self.show(e)
            )))
        };
        if is_scalar(e) {
            let s = self.scalar(e);
            let hyper_free = !e.any(&mut |x| matches!(x, Expr::Hyper(_)));
            let x = s.v[0];
            if !s.v.iter().all(|v| v.is_finite()) {
                return fail("is not finite at the default hyperparameters");
            }
            if hyper_free && x.fract() == 0.0 && x.abs() < 1e12 {
                return Ok(Rat {
                    k: Scalar::num(1.0),
                    n: Poly::constant(x as i128),
                    d: Poly::one(),
                });
            }
            if s.v[0] > 0.0 && s.v[1] > 0.0 {
                return Ok(Rat {
                    k: s,
                    n: Poly::one(),
                    d: Poly::one(),
                });
            }
            return fail("is a constant that is not positive");
        }
        match e {
            Expr::Call(Builtin::Exp, args) => {
                let lin = self.log(&args[0], batch)?;
                let k = Scalar {
                    expr: Expr::Call(Builtin::Exp, vec![lin.constant.expr.clone()]),
                    v: [lin.constant.v[0].exp(), lin.constant.v[1].exp()],
                };
                let k = if lin.constant.is_zero() {
                    Scalar::num(1.0)
                } else {
                    k
                };
                let (n, d) = self.powers(&lin, &self.show(e))?;
                Ok(Rat { k, n, d })
            }
            Expr::Call(Builtin::Sigmoid, args) => {
                let (n, d) = self.rational(&args[0], batch, "sigmoid")?;
                Ok(Rat {
                    k: Scalar::num(1.0),
                    d: too_large(n.add(&d))?,
                    n,
                })
            }
            Expr::Call(Builtin::Detach, args) => self.prob(&args[0], batch),
            Expr::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let (ra, rb) = (self.prob(a, batch)?, self.prob(b, batch)?);
                self.rat_sum(ra, rb, *op == BinOp::Sub, e)
            }
            Expr::Binary(BinOp::Mul, a, b) => {
                let (ra, rb) = (self.prob(a, batch)?, self.prob(b, batch)?);
                Ok(Rat {
                    k: ra.k.mul(&rb.k),
                    n: too_large(ra.n.mul(&rb.n))?,
                    d: too_large(ra.d.mul(&rb.d))?,
                })
            }
            Expr::Binary(BinOp::Div, a, b) => {
                let (ra, rb) = (self.prob(a, batch)?, self.prob(b, batch)?);
                Ok(Rat {
                    k: ra.k.div(&rb.k),
                    n: too_large(ra.n.mul(&rb.d))?,
                    d: too_large(ra.d.mul(&rb.n))?,
                })
            }
            Expr::Binary(BinOp::Pow, a, k) => self.prob_pow(a, k, batch, e),
            Expr::Call(Builtin::Pow, args) => self.prob_pow(&args[0], &args[1], batch, e),
            Expr::Unary(UnaryOp::Neg, a) => {
                let r = self.prob(a, batch)?;
                Ok(Rat { n: r.n.neg(), ..r })
            }
            Expr::Read { .. } => match self.atom(e, batch) {
                Ok(_) => fail(
                    "is a log-probability used as a probability (write exp(...) for the probability)",
                ),
                Err(err) => Err(err),
            },
            _ => fail("cannot be read as a probability"),
        }
    }
}

/// Inlines every `let` read into `e`.
fn inline(
    loss: &Loss,
    e: &Expr,
    subst: &HashMap<VarId, Expr>,
    budget: &mut usize,
) -> Result<Expr, LogicError> {
    if *budget == 0 {
        return Err(LogicError(format!(
            "loss `{}` is too large to analyse once its definitions are inlined",
            loss.name
        )));
    }
    *budget -= 1;
    let go = |x: &Expr, budget: &mut usize| inline(loss, x, subst, budget);
    Ok(match e {
        Expr::Index(v) => subst.get(v).cloned().unwrap_or(Expr::Index(*v)),
        Expr::Read {
            tensor: Tensor::Def(d),
            indices,
        } => {
            let def = &loss.defs[*d];
            let mut inner = HashMap::new();
            for (v, ix) in def.indices.iter().zip(indices) {
                inner.insert(*v, go(ix, budget)?);
            }
            inline(loss, &def.body, &inner, budget)?
        }
        Expr::Read { tensor, indices } => Expr::Read {
            tensor: *tensor,
            indices: indices
                .iter()
                .map(|i| go(i, budget))
                .collect::<Result<_, _>>()?,
        },
        Expr::Unary(op, a) => Expr::Unary(*op, Box::new(go(a, budget)?)),
        Expr::Binary(op, a, b) => {
            Expr::Binary(*op, Box::new(go(a, budget)?), Box::new(go(b, budget)?))
        }
        Expr::Call(f, args) => Expr::Call(
            *f,
            args.iter()
                .map(|a| go(a, budget))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Select(c, a, b) => Expr::Select(
            Box::new(go(c, budget)?),
            Box::new(go(a, budget)?),
            Box::new(go(b, budget)?),
        ),
        Expr::Reduce {
            op,
            vars,
            filter,
            body,
        } => Expr::Reduce {
            op: *op,
            vars: vars.clone(),
            filter: match filter {
                Some(f) => Some(Box::new(go(f, budget)?)),
                None => None,
            },
            body: match body {
                Some(b) => Some(Box::new(go(b, budget)?)),
                None => None,
            },
        },
        leaf => leaf.clone(),
    })
}

/// The summands of `e` at its top level (through `+` and `-` only), with their signs.
fn summands(e: &Expr, negative: bool, out: &mut Vec<(bool, Expr)>) {
    match e {
        Expr::Binary(BinOp::Add, a, b) => {
            summands(a, negative, out);
            summands(b, negative, out);
        }
        Expr::Binary(BinOp::Sub, a, b) => {
            summands(a, negative, out);
            summands(b, !negative, out);
        }
        other => out.push((negative, other.clone())),
    }
}

/// Splits `e` into weighted pieces: through `+`, `-`, negation, constant factors and
/// divisors, and (once) the batch reduction.
/// With `normal`, the body of the batch reduction is put in the e-graph normal form first
/// (so that `softplus(x) - x` is read as `softplus(-x)`, not as `softplus(x)` and a term
/// `-x`).
#[allow(clippy::too_many_arguments)]
fn split(
    r: &Reader,
    e: &Expr,
    coef: Scalar,
    batch: Option<(Reducer, VarId)>,
    origin: usize,
    normal: bool,
    out: &mut Vec<Piece>,
) {
    let go = |x: &Expr, c: Scalar, batch, out: &mut Vec<Piece>| {
        split(r, x, c, batch, origin, normal, out)
    };
    match e {
        Expr::Binary(BinOp::Add, a, b) => {
            go(a, coef.clone(), batch, out);
            go(b, coef, batch, out);
        }
        Expr::Binary(BinOp::Sub, a, b) => {
            go(a, coef.clone(), batch, out);
            go(b, coef.neg(), batch, out);
        }
        Expr::Unary(UnaryOp::Neg, a) => go(a, coef.neg(), batch, out),
        Expr::Binary(BinOp::Mul, a, b) if is_scalar(a) && !is_scalar(b) => {
            go(b, coef.mul(&r.scalar(a)), batch, out)
        }
        Expr::Binary(BinOp::Mul, a, b) if is_scalar(b) && !is_scalar(a) => {
            go(a, coef.mul(&r.scalar(b)), batch, out)
        }
        Expr::Binary(BinOp::Div, a, b) if is_scalar(b) && !is_scalar(a) => {
            go(a, coef.div(&r.scalar(b)), batch, out)
        }
        Expr::Call(Builtin::Detach, args) => go(&args[0], coef, batch, out),
        Expr::Reduce {
            op: op @ (Reducer::Mean | Reducer::Sum),
            vars,
            filter: None,
            body: Some(body),
        } if batch.is_none() && vars.len() == 1 => {
            let body = if normal {
                normalize(&strip_detach(body))
            } else {
                (**body).clone()
            };
            go(&body, coef, Some((*op, vars[0])), out)
        }
        other => out.push(Piece {
            coef,
            batch,
            term: other.clone(),
            origin,
        }),
    }
}

fn strip_detach(e: &Expr) -> Expr {
    match e {
        Expr::Call(Builtin::Detach, args) => strip_detach(&args[0]),
        Expr::Unary(op, a) => Expr::Unary(*op, Box::new(strip_detach(a))),
        Expr::Binary(op, a, b) => {
            Expr::Binary(*op, Box::new(strip_detach(a)), Box::new(strip_detach(b)))
        }
        Expr::Call(f, args) => Expr::Call(*f, args.iter().map(strip_detach).collect()),
        Expr::Select(c, a, b) => Expr::Select(
            Box::new(strip_detach(c)),
            Box::new(strip_detach(a)),
            Box::new(strip_detach(b)),
        ),
        other => other.clone(),
    }
}

/// `y` of `1 + y` or `y + 1`.
fn one_plus(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Binary(BinOp::Add, a, b) if lit(a) == Some(1.0) => Some(b),
        Expr::Binary(BinOp::Add, a, b) if lit(b) == Some(1.0) => Some(a),
        _ => None,
    }
}

/// Recognises `coef · term` as `f(z)`, a sum of log-probabilities, or fails.
fn classify(
    r: &Reader,
    term: &Expr,
    coef: &Scalar,
    batch: Option<VarId>,
) -> Result<Vec<(Class, Norms)>, LogicError> {
    let mut parts = vec![];
    // A batch is given so that `split` does not take a reduction inside the term for one.
    split(
        r,
        term,
        coef.clone(),
        Some((Reducer::Sum, usize::MAX)),
        0,
        false,
        &mut parts,
    );
    let mut out = vec![];
    for p in parts {
        r.normalised.borrow_mut().clear();
        let c = p.coef;
        let t = &p.term;
        let zero = Expr::Int(0);
        let is_zero = |e: &Expr| lit(e) == Some(0.0) || *e == zero;
        let class = match t {
            Expr::Call(Builtin::LogSigmoid, a) => Class::F {
                f: FKind::Logistic,
                z: r.log(&a[0], batch)?,
                weight: c.neg(),
            },
            Expr::Call(Builtin::Softplus, a) => Class::F {
                f: FKind::Logistic,
                z: r.log(&a[0], batch)?.neg(),
                weight: c,
            },
            Expr::Call(Builtin::Log, a) if matches!(&a[0], Expr::Call(Builtin::Sigmoid, _)) => {
                let Expr::Call(_, inner) = &a[0] else {
                    unreachable!()
                };
                Class::F {
                    f: FKind::Logistic,
                    z: r.log(&inner[0], batch)?,
                    weight: c.neg(),
                }
            }
            // log(1 + y) = softplus(log y), when y reads as a probability ratio.
            Expr::Call(Builtin::Log1p, a) if r.log_of(&a[0], batch).is_ok() => Class::F {
                f: FKind::Logistic,
                z: r.log_of(&a[0], batch)?.neg(),
                weight: c,
            },
            Expr::Call(Builtin::Log, a)
                if one_plus(&a[0]).is_some_and(|y| r.log_of(y, batch).is_ok()) =>
            {
                let y = one_plus(&a[0]).expect("checked");
                Class::F {
                    f: FKind::Logistic,
                    z: r.log_of(y, batch)?.neg(),
                    weight: c,
                }
            }
            Expr::Call(Builtin::Relu, a) => Class::F {
                f: FKind::Hinge,
                z: r.log(&a[0], batch)?.neg(),
                weight: c,
            },
            Expr::Call(Builtin::Max, a) if is_zero(&a[1]) || is_zero(&a[0]) => {
                let u = if is_zero(&a[1]) { &a[0] } else { &a[1] };
                Class::F {
                    f: FKind::Hinge,
                    z: r.log(u, batch)?.neg(),
                    weight: c,
                }
            }
            Expr::Binary(BinOp::Pow, u, k) if lit(k) == Some(2.0) => Class::F {
                f: FKind::Squared,
                z: r.log(u, batch)?,
                weight: c,
            },
            Expr::Call(Builtin::Pow, a) if lit(&a[1]) == Some(2.0) => Class::F {
                f: FKind::Squared,
                z: r.log(&a[0], batch)?,
                weight: c,
            },
            Expr::Binary(BinOp::Mul, u, v) if u == v => Class::F {
                f: FKind::Squared,
                z: r.log(u, batch)?,
                weight: c,
            },
            other => match r.log(other, batch) {
                Ok(lin) => Class::Log(lin.scale(&c)),
                Err(e) => {
                    let shown = r.show(other);
                    let reason = match e.0.strip_prefix(&format!("`{shown}` ")) {
                        Some(rest) => {
                            format!("it {}", rest.split("; the core").next().unwrap_or(rest))
                        }
                        None => e.0,
                    };
                    return Err(LogicError(format!(
                        "the term `{shown}` is neither f(z) for a recognised convex f (logistic -log_sigmoid(z), squared z^2, hinge relu(-z)) nor a sum of log-probabilities: {reason}"
                    )));
                }
            },
        };
        out.push((class, r.normalised.borrow().clone()));
    }
    Ok(out)
}

/// Merges the normalisers of several terms: one per atom.
fn merge_norms(r: &Reader, all: &[&Norms]) -> Result<Norms, LogicError> {
    r.normalised.borrow_mut().clear();
    for norms in all {
        for (a, n, read) in norms.iter() {
            *r.normaliser.borrow_mut() = n.clone();
            let recorded = r.record(*a, read);
            *r.normaliser.borrow_mut() = None;
            recorded?;
        }
    }
    Ok(r.normalised.borrow().clone())
}

/// The normalised core of one `f(z)` term: `z = s·Σ nⱼ log Fⱼ + c`.
#[derive(Debug, Clone)]
struct Core {
    factors: Vec<(Poly, i64)>,
    scale: Scalar,
    constant: Scalar,
}

impl Core {
    fn same(&self, o: &Core) -> bool {
        let mut a = self.factors.clone();
        let mut b = o.factors.clone();
        a.sort();
        b.sort();
        a == b && self.scale.close(&o.scale) && self.constant.close(&o.constant)
    }
}

/// Finds the scale `s > 0` and integer multiples `nⱼ` of a combination of logs.
fn core_of(r: &Reader, lin: &LogLin, what: &str) -> Result<Core, LogicError> {
    let terms: Vec<&(Poly, Scalar)> = lin.nonzero();
    for (p, c) in &terms {
        if c.v[0] == 0.0 {
            return Err(LogicError(format!(
                "in {what}, the coefficient `{}` of {} is 0 at the default hyperparameters but not at others",
                print::expr(r.loss, &c.expr),
                r.describe(p)
            )));
        }
    }
    if terms.is_empty() {
        // A constant core: the ratio is 1 (every structure with ✓ = ✗).
        return Ok(Core {
            factors: vec![],
            scale: Scalar::num(1.0),
            constant: lin.constant.clone(),
        });
    }
    let cmin = terms
        .iter()
        .map(|(_, c)| c.v[0].abs())
        .fold(f64::INFINITY, f64::min);
    let near_int = |x: f64| (x - x.round()).abs() <= 1e-9 * x.abs().max(1.0);
    let Some(m) = (1..=12).find(|m| {
        let s = cmin / f64::from(*m);
        terms.iter().all(|(_, c)| near_int(c.v[0] / s))
    }) else {
        let shown: Vec<String> = terms
            .iter()
            .map(|(p, c)| format!("{} has `{}`", r.describe(p), print::expr(r.loss, &c.expr)))
            .collect();
        return Err(LogicError(format!(
            "in {what}, the coefficients are not integer multiples of one scale ({}), so ρ is not the log of a ratio of polynomials",
            shown.join(", ")
        )));
    };
    let s0 = cmin / f64::from(m);
    let ints: Vec<i64> = terms
        .iter()
        .map(|(_, c)| (c.v[0] / s0).round() as i64)
        .collect();
    let (j, &nj) = ints
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| n.abs())
        .expect("non-empty");
    let s1 = terms[j].1.v[1] / nj as f64;
    let consistent = s1 > 0.0
        && terms
            .iter()
            .zip(&ints)
            .all(|((_, c), n)| close(c.v[1], *n as f64 * s1));
    if !consistent {
        let shown: Vec<String> = terms
            .iter()
            .map(|(p, c)| format!("{} has `{}`", r.describe(p), print::expr(r.loss, &c.expr)))
            .collect();
        return Err(LogicError(format!(
            "in {what}, the coefficients keep no fixed ratio as the hyperparameters change ({}), so ρ has no single logical reading",
            shown.join(", ")
        )));
    }
    let scale = Scalar {
        expr: if nj == 1 {
            terms[j].1.expr.clone()
        } else if nj == -1 {
            neg_expr(terms[j].1.expr.clone())
        } else {
            div_expr(terms[j].1.expr.clone(), num_expr(nj as f64))
        },
        v: [s0, s1],
    };
    Ok(Core {
        factors: terms
            .iter()
            .zip(&ints)
            .map(|((p, _), n)| (p.clone(), *n))
            .collect(),
        scale,
        constant: lin.constant.clone(),
    })
}

/// `N` and `D` of a core: checks that every power is ±1 and that no atom appears in two
/// factors of one side.
fn sides(r: &Reader, core: &Core) -> Result<Ratio, LogicError> {
    for (p, n) in &core.factors {
        if n.abs() != 1 {
            return Err(LogicError(format!(
                "the core is not multilinear: {} appears with coefficient {n}",
                r.describe(p)
            )));
        }
        if !p.is_multilinear() {
            return Err(LogicError(format!(
                "the core is not multilinear: {} has a squared weight",
                r.describe(p)
            )));
        }
    }
    let mut out = [Poly::one(), Poly::one()];
    for (k, name) in [(1i64, "numerator"), (-1, "denominator")] {
        let fs: Vec<&Poly> = core
            .factors
            .iter()
            .filter(|(_, n)| *n == k)
            .map(|(p, _)| p)
            .collect();
        for a in Atom::ALL {
            let with: Vec<&&Poly> = fs.iter().filter(|p| p.degree_in(a) > 0).collect();
            if with.len() > 1 {
                let shown: Vec<String> = with.iter().map(|p| r.describe(p)).collect();
                return Err(LogicError(format!(
                    "the core is not multilinear: the {name} has the weight {} of {} in {} factors ({})",
                    a.weight(),
                    r.atoms.input_name(r.loss, a).unwrap_or(a.name()),
                    with.len(),
                    shown.join(", ")
                )));
            }
        }
        let side = if k == 1 { &mut out[0] } else { &mut out[1] };
        for p in fs {
            *side = too_large(side.mul(p))?;
        }
    }
    let [n, d] = out;
    Ok(Ratio { n, d })
}

/// The structure of a ratio, or why a side does not count worlds.
fn structure_of(ratio: &Ratio) -> Result<Structure, LogicError> {
    ratio.structure().map_err(|e| {
        let p = if e.numerator { &ratio.n } else { &ratio.d };
        let space = if p.atoms().iter().any(|a| a.is_reference())
            || ratio
                .n
                .atoms()
                .iter()
                .chain(ratio.d.atoms().iter())
                .any(|a| a.is_reference())
        {
            Space::Reference
        } else {
            Space::Single
        };
        let world = super::worlds::BoolFn(1 << e.world).world_names(space.atoms());
        LogicError(format!(
            "the {} {p} is not a weighted model count: its coefficient on world {} over {} is {} (a side of the core ratio counts worlds exactly when every world's coefficient is 0 or 1)",
            if e.numerator { "numerator" } else { "denominator" },
            world.first().map_or("?", String::as_str),
            super::structure::atom_list(space),
            e.coefficient
        ))
    })
}

/// `beta * ρ - gamma`.
fn z_text(loss: &Loss, core: &Core) -> String {
    let mut s = if core.scale.is_one() {
        "ρ".to_string()
    } else {
        let e = &core.scale.expr;
        let shown = print::expr(loss, e);
        if matches!(
            e,
            Expr::Binary(BinOp::Add | BinOp::Sub, ..) | Expr::Unary(..) | Expr::Select(..)
        ) {
            format!("({shown}) * ρ")
        } else {
            format!("{shown} * ρ")
        }
    };
    if !core.constant.is_zero() {
        match &core.constant.expr {
            Expr::Unary(UnaryOp::Neg, x) => {
                s.push_str(&format!(" - {}", print::expr(loss, x)));
            }
            e if lit(e).is_some_and(|x| x < 0.0) => {
                s.push_str(&format!(" - {}", print::expr(loss, &neg_expr(e.clone()))));
            }
            e => s.push_str(&format!(" + {}", print::expr(loss, e))),
        }
    }
    s
}

/// The hyperparameters an expression uses, with their defaults: `label_smoothing = 0`.
fn hypers_of(loss: &Loss, e: &Expr) -> String {
    let mut hs = vec![];
    e.visit(&mut |x| {
        if let Expr::Hyper(h) = x
            && !hs.contains(h)
        {
            hs.push(*h);
        }
    });
    hs.iter()
        .map(|&h| {
            format!(
                "{} = {}",
                loss.hypers[h].name,
                print::hyper_value(loss.hypers[h].default)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decompiles a loss: see the module documentation.
pub fn decompile(loss: &Loss) -> Result<Decompiled, LogicError> {
    let atoms = atoms(loss)?;
    let defaults: Vec<f64> = loss.hypers.iter().map(|h| h.default).collect();
    let perturbed: Vec<f64> = defaults.iter().map(|d| d * 1.37 + 0.29).collect();
    let r = Reader {
        loss,
        atoms: &atoms,
        hypers: [defaults, perturbed],
        normaliser: RefCell::new(None),
        normalised: RefCell::new(vec![]),
    };
    let mut budget = MAX_NODES;
    let result = inline(loss, &loss.result, &HashMap::new(), &mut budget)?;
    // The loss as written, and in the e-graph normal form: where both read, they agree unless
    // the literal reading split an identity apart (`softplus(x) - x` as a logistic term and a
    // regulariser), and the normal form is kept; where they agree, the loss as written is
    // (it prints what the user wrote). Where neither reads, the reason given is for the loss
    // as written.
    let written = analyse(&r, &atoms, &result, false);
    let normal = analyse(&r, &atoms, &result, true);
    match (written, normal) {
        (Ok(w), Ok(n)) if w.structure != n.structure || w.f != n.f => Ok(n),
        (Ok(w), _) => Ok(w),
        (Err(_), Ok(n)) => Ok(n),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Decompiles the inlined result of a loss.
fn analyse(
    r: &Reader,
    atoms: &Atoms,
    result: &Expr,
    normal: bool,
) -> Result<Decompiled, LogicError> {
    let loss = r.loss;
    r.normalised.borrow_mut().clear();
    let mut origins = vec![];
    summands(result, false, &mut origins);
    let mut pieces = vec![];
    for (k, (negative, e)) in origins.iter().enumerate() {
        let sign = Scalar::num(if *negative { -1.0 } else { 1.0 });
        split(r, e, sign, None, k, normal, &mut pieces);
    }
    let pieces_per_origin = |k: usize| pieces.iter().filter(|p| p.origin == k).count();
    let show_piece = |p: &Piece| -> String {
        if pieces_per_origin(p.origin) == 1 {
            let (negative, e) = &origins[p.origin];
            let shown = print::expr(loss, e);
            if *negative {
                format!("-({shown})")
            } else {
                shown
            }
        } else {
            let body = match lit(&p.coef.expr) {
                Some(1.0) => p.term.clone(),
                Some(-1.0) => Expr::Unary(UnaryOp::Neg, Box::new(p.term.clone())),
                _ => Expr::Binary(
                    BinOp::Mul,
                    Box::new(p.coef.expr.clone()),
                    Box::new(p.term.clone()),
                ),
            };
            match p.batch {
                Some((op, v)) => print::expr(
                    loss,
                    &Expr::Reduce {
                        op,
                        vars: vec![v],
                        filter: None,
                        body: Some(Box::new(body)),
                    },
                ),
                None => print::expr(loss, &body),
            }
        }
    };

    let mut stripped = vec![];
    let mut cores: Vec<(FKind, Core, Scalar, String, Norms)> = vec![];
    let mut constant_cores: Vec<(FKind, Core, Scalar, String, Norms)> = vec![];
    let mut logs: Vec<(LogLin, String, Norms)> = vec![];
    for p in &pieces {
        if p.coef.v[0] == 0.0 {
            let hs = hypers_of(loss, &p.coef.expr);
            stripped.push(format!(
                "zero term: {} (its weight is 0 at the defaults{})",
                show_piece(p),
                if hs.is_empty() {
                    String::new()
                } else {
                    format!(" {hs}")
                }
            ));
            continue;
        }
        let batch = p.batch.map(|(_, v)| v);
        if is_scalar(&p.term) {
            // f of a constant (the loss of a structure with ✓ = ✗, or with an empty side)
            // counts only when nothing else does.
            match classify(r, &p.term, &p.coef, batch).as_deref() {
                Ok([(Class::F { f, z, weight }, norms)]) if weight.v[0] != 0.0 => {
                    let what = format!("the argument of {} in `{}`", f.name(), show_piece(p));
                    let core = core_of(r, z, &what)?;
                    constant_cores.push((*f, core, weight.clone(), show_piece(p), norms.clone()));
                }
                _ => stripped.push(format!("constant term: {}", show_piece(p))),
            }
            continue;
        }
        let term = strip_detach(&p.term);
        let classes = match classify(r, &term, &p.coef, batch) {
            Ok(c) => c,
            Err(first) => classify(r, &normalize(&term), &p.coef, batch).map_err(|_| first)?,
        };
        for (class, norms) in classes {
            match class {
                Class::F { f, z, weight } => {
                    if weight.v[0] == 0.0 {
                        stripped.push(format!("zero term: {}", show_piece(p)));
                        continue;
                    }
                    let what = format!("the argument of {} in `{}`", f.name(), show_piece(p));
                    let core = core_of(r, &z, &what)?;
                    cores.push((f, core, weight, show_piece(p), norms));
                }
                Class::Log(lin) => logs.push((lin, show_piece(p), norms)),
            }
        }
    }

    if cores.is_empty() && logs.is_empty() {
        cores = constant_cores;
    } else {
        for (_, _, _, shown, _) in constant_cores {
            stripped.push(format!("constant term: {shown}"));
        }
    }
    // Merge equal f(ρ) terms; more than one distinct term is a mixture.
    let mut groups: Vec<(FKind, Core, Scalar, Vec<String>, Norms)> = vec![];
    for (f, core, weight, shown, norms) in cores {
        match groups
            .iter_mut()
            .find(|(g, c, _, _, _)| *g == f && c.same(&core))
        {
            Some((_, _, w, names, _)) => {
                *w = w.add(&weight);
                if !names.contains(&shown) {
                    names.push(shown);
                }
            }
            None => groups.push((f, core, weight, vec![shown], norms)),
        }
    }
    if groups.len() > 1 {
        let shown: Vec<String> = groups
            .iter()
            .map(|(f, _, _, names, _)| format!("{} `{}`", f.name(), names.join("` + `")))
            .collect();
        return Err(LogicError(format!(
            "loss `{}` is a weighted sum of {} different f(ρ) terms ({}): a mixture (as in KTO, conservative DPO or NCA) has no single preference structure",
            loss.name,
            groups.len(),
            shown.join("; ")
        )));
    }

    let (f, semantic, core, normalised) = match groups.pop() {
        Some((f, core, weight, names, norms)) => {
            if weight.v[0] < 0.0 {
                return Err(LogicError(format!(
                    "the core term `{}` enters with the weight `{}`, negative at the default hyperparameters: a DPA loss minimises f(ρ) with a positive weight",
                    names.join("` + `"),
                    print::expr(loss, &weight.expr)
                )));
            }
            if !weight.is_one() {
                stripped.insert(0, format!("weight: {}", print::expr(loss, &weight.expr)));
            }
            // Log-probability terms beside f are regularisers (unless they cancel out).
            let total = logs
                .iter()
                .map(|(lin, _, _)| lin.clone())
                .reduce(LogLin::add);
            if total.is_some_and(|t| !t.nonzero().is_empty() || !t.constant.is_zero()) {
                for (_, shown, _) in &logs {
                    stripped.push(format!("regulariser: {shown}"));
                }
            }
            (f, false, core, norms)
        }
        None => {
            // The semantic-loss form: the loss is -log of a probability.
            let all: Vec<&Norms> = logs.iter().map(|(_, _, n)| n).collect();
            let norms = merge_norms(r, &all)?;
            let Some(total) = logs.into_iter().map(|(lin, _, _)| lin).reduce(LogLin::add) else {
                return Err(LogicError(format!(
                    "loss `{}` has no term that depends on the preference atoms ({})",
                    loss.name,
                    atoms.describe(loss)
                )));
            };
            let what = format!("loss `{}`", loss.name);
            let core = core_of(r, &total.neg(), &what)?;
            (FKind::Logistic, true, core, norms)
        }
    };
    if !core.scale.is_one() {
        stripped.insert(0, format!("scale: {}", print::expr(loss, &core.scale.expr)));
    }
    if !core.constant.is_zero() {
        let at = stripped
            .iter()
            .position(|s| !s.starts_with("scale"))
            .unwrap_or(stripped.len());
        stripped.insert(
            at,
            format!("constant: {}", print::expr(loss, &core.constant.expr)),
        );
    }
    let ratio = if semantic {
        // -log(P / Q) = -log σ(log P - log(Q - P)).
        let Ratio { n, d: q } = sides(r, &core)?;
        let d = too_large(q.sub(&n))?;
        if !d.is_multilinear() {
            return Err(LogicError(format!(
                "loss `{}` is -log(P / Q) with P = {n} and Q = {q}, so its core ratio is P / (Q - P), and Q - P = {d} is not multilinear",
                loss.name
            )));
        }
        Ratio { n, d }
    } else {
        sides(r, &core)?
    };
    let structure = structure_of(&ratio)?;
    let weight_of = |a: Atom, input: &str| match normalised.iter().find(|(b, _, _)| *b == a) {
        Some((_, Some(n), read)) => {
            let read = print::expr(loss, read);
            let n = print::expr(loss, n);
            format!(
                "{read} / {}",
                if n.contains(' ') { format!("({n})") } else { n }
            )
        }
        _ => input.to_string(),
    };
    for a in Atom::ALL {
        if let Some(input) = atoms.input_name(loss, a)
            && normalised.iter().any(|(b, n, _)| *b == a && n.is_some())
        {
            stripped.push(format!("length normalisation: {}", weight_of(a, input)));
        }
    }
    Ok(Decompiled {
        loss: loss.name.clone(),
        atoms: atoms.describe(loss),
        inputs: Atom::ALL
            .into_iter()
            .filter_map(|a| atoms.input_name(loss, a).map(|n| (a, weight_of(a, n))))
            .collect(),
        f,
        semantic,
        z: z_text(loss, &core),
        ratio,
        structure,
        stripped,
    })
}
