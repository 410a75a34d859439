//! The f64 reference interpreter: the definition of what a loss means.
//!
//! Definitions are evaluated in order, each materialised as a dense row-major tensor.
//! Reductions follow the language reference: terms whose filter fails are not evaluated, and
//! an empty reduction gives `sum` 0, `mean` 0, `count` 0, `max` -inf, `min` +inf, `logsumexp`
//! -inf. `&&`, `||` and `if` evaluate only what decides the result, so a guarded gather never
//! reads out of range. An index out of range is an error naming the tensor, the position and
//! the value; nothing is read outside a buffer.

use crate::bind::Bound;
use crate::{Data, RunError};
use compiler::ir::{BinOp, Builtin, DefKind, Expr, Loss, Reducer, Tensor, UnaryOp, VarId};

/// The most elements one definition may hold (2^26, 512 MiB of f64).
pub const MAX_ELEMENTS: usize = 1 << 26;
/// The most elements all definitions together hold under the default memory budget
/// ([`crate::limits::DEFAULT_MAX_MEMORY`], 2^29 f64 values).
pub const MAX_TOTAL_ELEMENTS: usize = 1 << 29;
/// The most terms the interpreter evaluates for one loss, estimated before it starts.
pub const MAX_WORK: f64 = 2e9;

/// What evaluating a loss gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// The scalar loss.
    pub loss: f64,
    /// Each metric's name and value, in source order.
    pub metrics: Vec<(String, f64)>,
}

/// Evaluates the loss and its metrics on bound inputs.
pub fn eval(loss: &Loss, bound: &Bound) -> Result<Outputs, RunError> {
    eval_all(loss, bound).map(|(out, _)| out)
}

/// The arithmetic the interpreter does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Every value in f64: the reference.
    #[default]
    F64,
    /// Every input and every intermediate value rounded to f32, as compiled code computes:
    /// shows whether a form overflows, underflows or cancels in single precision.
    F32,
}

/// Evaluates the loss and its metrics, and returns every definition's values too (row-major,
/// indexed by `DefId`): a gradient program's `grad_<input>` definitions are read from there.
pub fn eval_all(loss: &Loss, bound: &Bound) -> Result<(Outputs, Vec<Vec<f64>>), RunError> {
    eval_all_in(loss, bound, Precision::F64)
}

/// [`eval_all`] in the given precision.
pub fn eval_all_in(
    loss: &Loss,
    bound: &Bound,
    precision: Precision,
) -> Result<(Outputs, Vec<Vec<f64>>), RunError> {
    check_budget(loss, bound)?;
    let mut ev = Evaluator::new(loss, bound);
    ev.f32 = precision == Precision::F32;
    if ev.f32 {
        for v in &mut ev.inputs {
            v.iter_mut().for_each(|x| *x = round32(*x));
        }
    }
    let mut metrics = vec![];
    for (id, def) in loss.defs.iter().enumerate() {
        let values = ev.materialize(id)?;
        if def.kind == DefKind::Metric {
            metrics.push((def.name.clone(), values[0]));
        }
        ev.defs.push(values);
    }
    let value = ev.eval(&loss.result)?;
    Ok((
        Outputs {
            loss: value,
            metrics,
        },
        ev.defs,
    ))
}

/// Gradients by input: each differentiated input with its gradient (row-major, its shape).
pub type Gradients = Vec<(compiler::ir::InputId, Vec<f64>)>;

/// Evaluates a loss and its gradient with respect to the inputs in `wrt`: the outputs, and
/// for each input in `wrt` its gradient, shaped like the input.
pub fn eval_with_grad(
    loss: &Loss,
    bound: &Bound,
    wrt: &[compiler::ir::InputId],
) -> Result<(Outputs, Gradients), RunError> {
    eval_with_grad_in(loss, bound, wrt, Precision::F64)
}

/// [`eval_with_grad`] in the given precision.
pub fn eval_with_grad_in(
    loss: &Loss,
    bound: &Bound,
    wrt: &[compiler::ir::InputId],
    precision: Precision,
) -> Result<(Outputs, Gradients), RunError> {
    let program = compiler::grad::gradient(loss, wrt);
    let (out, defs) = eval_all_in(&program, bound, precision)?;
    let grads = compiler::grad::gradient_outputs(&program)
        .into_iter()
        .filter(|(i, _)| wrt.contains(i))
        .map(|(i, d)| (i, defs[d].clone()))
        .collect();
    Ok((out, grads))
}

/// Refuses, before any work, a loss whose inputs and definitions would take more than the
/// memory budget (see [`check_memory`]) or whose evaluation would take more than [`MAX_WORK`]
/// terms.
pub fn check_budget(loss: &Loss, bound: &Bound) -> Result<(), RunError> {
    check_memory(loss, bound)?;
    let work = (0..loss.defs.len())
        .map(|d| {
            let n: f64 = loss.defs[d]
                .indices
                .iter()
                .map(|&v| bound.dims[loss.vars[v].dim] as f64)
                .product();
            n * work_of(loss, bound, &loss.defs[d].body)
        })
        .sum::<f64>()
        + work_of(loss, bound, &loss.result);
    if work > MAX_WORK {
        return Err(RunError::new(format!(
            "evaluating `{}` at these sizes would take about {work:.1e} steps in the reference interpreter (limit {MAX_WORK:.0e}): use smaller sizes, or --backend cpu",
            loss.name
        )));
    }
    Ok(())
}

/// Refuses a loss whose inputs and definitions would take more than the run's memory budget
/// (`bound.max_memory`, by default 4 GiB: [`MAX_TOTAL_ELEMENTS`] f64 values) in the
/// interpreter, naming the definition that would pass it.
pub fn check_memory(loss: &Loss, bound: &Bound) -> Result<(), RunError> {
    crate::limits::check_memory_for(loss, bound, 8, 8)
}

/// An upper estimate of the terms evaluated for one value of `e`.
fn work_of(loss: &Loss, bound: &Bound, e: &Expr) -> f64 {
    match e {
        Expr::Reduce {
            vars, filter, body, ..
        } => {
            let n: f64 = vars
                .iter()
                .map(|&v| bound.dims[loss.vars[v].dim] as f64)
                .product();
            let inner = filter.as_deref().map_or(0.0, |f| work_of(loss, bound, f))
                + body.as_deref().map_or(1.0, |b| work_of(loss, bound, b));
            1.0 + n * inner
        }
        Expr::Read { indices, .. } => {
            1.0 + indices.iter().map(|i| work_of(loss, bound, i)).sum::<f64>()
        }
        Expr::Unary(_, a) => 1.0 + work_of(loss, bound, a),
        Expr::Binary(_, a, b) => 1.0 + work_of(loss, bound, a) + work_of(loss, bound, b),
        Expr::Call(_, args) => 1.0 + args.iter().map(|a| work_of(loss, bound, a)).sum::<f64>(),
        Expr::Select(c, a, b) => {
            1.0 + work_of(loss, bound, c) + work_of(loss, bound, a).max(work_of(loss, bound, b))
        }
        _ => 1.0,
    }
}

/// Evaluation state: materialised definitions and the current value of each index variable.
struct Evaluator<'a> {
    loss: &'a Loss,
    bound: &'a Bound,
    inputs: Vec<Vec<f64>>,
    defs: Vec<Vec<f64>>,
    vars: Vec<i64>,
    /// Round every value to f32 ([`Precision::F32`]).
    f32: bool,
}

/// `x` rounded to the nearest f32.
fn round32(x: f64) -> f64 {
    x as f32 as f64
}

impl<'a> Evaluator<'a> {
    fn new(loss: &'a Loss, bound: &'a Bound) -> Self {
        let inputs = bound
            .inputs
            .iter()
            .map(|t| match &t.data {
                Data::F64(v) => v.clone(),
                Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
                Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
                Data::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            })
            .collect();
        Evaluator {
            loss,
            bound,
            inputs,
            defs: vec![],
            vars: vec![0; loss.vars.len()],
            f32: false,
        }
    }

    fn sizes(&self, t: Tensor) -> Vec<usize> {
        self.loss
            .shape_of(t)
            .iter()
            .map(|&d| self.bound.dims[d])
            .collect()
    }

    /// Evaluates definition `id` at every point of its index space.
    fn materialize(&mut self, id: usize) -> Result<Vec<f64>, RunError> {
        let def = &self.loss.defs[id];
        let sizes = self.sizes(Tensor::Def(id));
        let n = sizes
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .filter(|&n| n <= MAX_ELEMENTS);
        let Some(n) = n else {
            return Err(RunError::new(format!(
                "definition `{}` would hold {} elements, more than the limit of {MAX_ELEMENTS}",
                def.name,
                sizes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" × ")
            )));
        };
        let mut out = Vec::with_capacity(n);
        let mut point = vec![0usize; sizes.len()];
        for _ in 0..n {
            for (&v, &p) in def.indices.iter().zip(&point) {
                self.vars[v] = p as i64;
            }
            out.push(self.eval(&def.body)?);
            advance(&mut point, &sizes);
        }
        Ok(out)
    }

    fn eval(&mut self, e: &Expr) -> Result<f64, RunError> {
        let v = self.eval_exact(e)?;
        Ok(if self.f32 { round32(v) } else { v })
    }

    /// One operation in f64 on already-evaluated (and, in f32 mode, rounded) operands.
    fn eval_exact(&mut self, e: &Expr) -> Result<f64, RunError> {
        Ok(match e {
            Expr::Float(x) => *x,
            Expr::Int(x) => *x as f64,
            Expr::Bool(b) => f64::from(u8::from(*b)),
            Expr::Index(v) => self.vars[*v] as f64,
            Expr::Hyper(h) => self.bound.hypers[*h],
            Expr::Read { tensor, indices } => {
                let offset = self.offset(*tensor, indices)?;
                match tensor {
                    Tensor::Input(i) => self.inputs[*i][offset],
                    Tensor::Def(d) => self.defs[*d][offset],
                }
            }
            Expr::Unary(UnaryOp::Neg, a) => -self.eval(a)?,
            Expr::Unary(UnaryOp::Not, a) => truth(!(self.eval(a)? != 0.0)),
            Expr::Binary(BinOp::And, a, b) => truth(self.eval(a)? != 0.0 && self.eval(b)? != 0.0),
            Expr::Binary(BinOp::Or, a, b) => truth(self.eval(a)? != 0.0 || self.eval(b)? != 0.0),
            Expr::Binary(op, a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                match op {
                    BinOp::Eq => truth(x == y),
                    BinOp::Ne => truth(x != y),
                    BinOp::Lt => truth(x < y),
                    BinOp::Le => truth(x <= y),
                    BinOp::Gt => truth(x > y),
                    BinOp::Ge => truth(x >= y),
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    BinOp::Pow => x.powf(y),
                    BinOp::And | BinOp::Or => unreachable!("handled above"),
                }
            }
            Expr::Call(f, args) => {
                let mut v = [0.0; 3];
                for (slot, a) in v.iter_mut().zip(args) {
                    *slot = self.eval(a)?;
                }
                builtin(*f, v)
            }
            Expr::Select(c, a, b) => {
                if self.eval(c)? != 0.0 {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => self.reduce(*op, vars, filter.as_deref(), body.as_deref())?,
        })
    }

    /// The flat offset of a read, with every index checked against its dimension.
    fn offset(&mut self, t: Tensor, indices: &[Expr]) -> Result<usize, RunError> {
        let sizes = self.sizes(t);
        let mut offset = 0usize;
        for (pos, (ix, &size)) in indices.iter().zip(&sizes).enumerate() {
            let value = self.eval(ix)?;
            if !(value >= 0.0 && value < size as f64) {
                return Err(self.out_of_range(t, pos, ix, value, size));
            }
            offset = offset * size + value as usize;
        }
        Ok(offset)
    }

    fn out_of_range(&self, t: Tensor, pos: usize, ix: &Expr, value: f64, size: usize) -> RunError {
        let dim = &self.loss.dims[self.loss.shape_of(t)[pos]];
        let name = self.loss.tensor_name(t);
        let source = match ix {
            Expr::Read { tensor, indices } => {
                let at: Vec<String> = indices.iter().map(|i| self.describe_index(i)).collect();
                format!(
                    " from `{}[{}]`",
                    self.loss.tensor_name(*tensor),
                    at.join(", ")
                )
            }
            _ => String::new(),
        };
        RunError::new(format!(
            "index out of range: position {pos} of `{name}` (dimension `{dim}`, size {size}) got {value}{source}"
        ))
    }

    fn describe_index(&self, ix: &Expr) -> String {
        match ix {
            Expr::Index(v) => self.vars[*v].to_string(),
            Expr::Int(k) => k.to_string(),
            _ => "..".to_string(),
        }
    }

    fn reduce(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
    ) -> Result<f64, RunError> {
        let sizes: Vec<usize> = vars
            .iter()
            .map(|&v| self.bound.dims[self.loss.vars[v].dim])
            .collect();
        let total: usize = sizes
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .unwrap_or(usize::MAX);
        let mut point = vec![0usize; sizes.len()];
        let mut acc = Acc::new(op);
        for _ in 0..total {
            for (&v, &p) in vars.iter().zip(&point) {
                self.vars[v] = p as i64;
            }
            advance(&mut point, &sizes);
            if let Some(f) = filter
                && self.eval(f)? == 0.0
            {
                continue;
            }
            let x = match body {
                Some(b) => self.eval(b)?,
                None => 0.0,
            };
            // argmax/argmin bind one index: its value is the term's position.
            let at = vars.first().map_or(0, |&v| self.vars[v]);
            acc.push(x, at);
        }
        Ok(acc.finish())
    }
}

/// Steps a row-major multi-index forward by one.
fn advance(point: &mut [usize], sizes: &[usize]) {
    for (p, &s) in point.iter_mut().zip(sizes).rev() {
        *p += 1;
        if *p < s {
            return;
        }
        *p = 0;
    }
}

fn truth(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// A running reduction.
struct Acc {
    op: Reducer,
    sum: f64,
    count: usize,
    extreme: f64,
    terms: Vec<f64>,
    /// For argmax/argmin: the position of the extreme term so far (-1 before any).
    position: i64,
}

impl Acc {
    fn new(op: Reducer) -> Acc {
        let extreme = match op {
            Reducer::Min => f64::INFINITY,
            _ => f64::NEG_INFINITY,
        };
        Acc {
            op,
            sum: 0.0,
            count: 0,
            extreme,
            terms: vec![],
            position: -1,
        }
    }

    fn push(&mut self, x: f64, at: i64) {
        self.count += 1;
        match self.op {
            Reducer::Sum | Reducer::Mean => self.sum += x,
            Reducer::Max => self.extreme = nan_max(self.extreme, x),
            Reducer::Min => self.extreme = nan_min(self.extreme, x),
            Reducer::LogSumExp => {
                self.extreme = nan_max(self.extreme, x);
                self.terms.push(x);
            }
            Reducer::Count => {}
            Reducer::ArgMax | Reducer::ArgMin => {
                // The first extreme term wins ties; NaN beats everything, like torch.argmax.
                let better = if self.op == Reducer::ArgMax {
                    x > self.extreme
                } else {
                    x < self.extreme
                };
                let nan_first = x.is_nan() && !self.extreme.is_nan();
                if self.position < 0 || better || nan_first {
                    self.extreme = x;
                    self.position = at;
                }
            }
        }
    }

    fn finish(self) -> f64 {
        match self.op {
            Reducer::Sum => self.sum,
            Reducer::Mean if self.count == 0 => 0.0,
            Reducer::Mean => self.sum / self.count as f64,
            Reducer::Max | Reducer::Min => self.extreme,
            Reducer::Count => self.count as f64,
            Reducer::ArgMax | Reducer::ArgMin => self.position as f64,
            Reducer::LogSumExp => {
                let m = self.extreme;
                if !m.is_finite() {
                    return m; // empty or all -inf: -inf; any +inf: +inf; NaN: NaN
                }
                m + self.terms.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
            }
        }
    }
}

/// `max` that propagates NaN, like `torch.maximum`.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min` that propagates NaN, like `torch.minimum`.
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `log(1 + exp(x))`, computed without overflow.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A built-in applied to its (up to three) arguments, in f64.
pub fn builtin(f: Builtin, a: [f64; 3]) -> f64 {
    let x = a[0];
    match f {
        Builtin::Exp => x.exp(),
        Builtin::Log => x.ln(),
        Builtin::Log1p => x.ln_1p(),
        Builtin::Expm1 => x.exp_m1(),
        Builtin::Log1mexp => {
            if x > -std::f64::consts::LN_2 {
                (-x.exp_m1()).ln()
            } else {
                (-x.exp()).ln_1p()
            }
        }
        Builtin::Sqrt => x.sqrt(),
        Builtin::Abs => x.abs(),
        Builtin::Sigmoid => {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        }
        Builtin::LogSigmoid => -softplus(-x),
        Builtin::Softplus => softplus(x),
        Builtin::Tanh => x.tanh(),
        Builtin::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        Builtin::Cos => x.cos(),
        Builtin::Sin => x.sin(),
        Builtin::Min => nan_min(x, a[1]),
        Builtin::Max => nan_max(x, a[1]),
        Builtin::Clamp => nan_min(nan_max(x, a[1]), a[2]),
        Builtin::Pow => x.powf(a[1]),
        Builtin::Detach => x,
    }
}
