//! Between IR expressions and e-graph terms.

use super::lang::{Leaf, Math};
use crate::ir::{BinOp, Builtin, Expr, Reducer, Tensor, UnaryOp};
use egg::{Id, RecExpr};

/// Adds `e` to `out` and returns its root.
pub fn to_term(e: &Expr, out: &mut RecExpr<Math>) -> Id {
    let leaf = |out: &mut RecExpr<Math>, l: Leaf| out.add(Math::Leaf(l));
    match e {
        Expr::Float(x) => leaf(out, Leaf::float(*x)),
        Expr::Int(i) => leaf(out, Leaf::Int(*i)),
        Expr::Bool(b) => leaf(out, Leaf::Bool(*b)),
        Expr::Index(v) => leaf(out, Leaf::Var(*v as u32)),
        Expr::Hyper(h) => leaf(out, Leaf::Hyper(*h as u32)),
        Expr::Read { tensor, indices } => {
            let t = match tensor {
                Tensor::Input(i) => Leaf::Input(*i as u32),
                Tensor::Def(d) => Leaf::Def(*d as u32),
            };
            let mut kids = vec![leaf(out, t)];
            kids.extend(indices.iter().map(|i| to_term(i, out)));
            out.add(Math::Read(kids.into_boxed_slice()))
        }
        Expr::Unary(UnaryOp::Neg, a) => {
            let a = to_term(a, out);
            out.add(Math::Neg(a))
        }
        Expr::Unary(UnaryOp::Not, a) => {
            let a = to_term(a, out);
            out.add(Math::Not(a))
        }
        Expr::Binary(op, a, b) => {
            let ab = [to_term(a, out), to_term(b, out)];
            out.add(match op {
                BinOp::Add => Math::Add(ab),
                BinOp::Sub => Math::Sub(ab),
                BinOp::Mul => Math::Mul(ab),
                BinOp::Div => Math::Div(ab),
                BinOp::Pow => Math::Pow(ab),
                BinOp::Eq => Math::Eq(ab),
                BinOp::Ne => Math::Ne(ab),
                BinOp::Lt => Math::Lt(ab),
                BinOp::Le => Math::Le(ab),
                BinOp::Gt => Math::Gt(ab),
                BinOp::Ge => Math::Ge(ab),
                BinOp::And => Math::And(ab),
                BinOp::Or => Math::Or(ab),
            })
        }
        Expr::Call(f, args) => {
            let a: Vec<Id> = args.iter().map(|x| to_term(x, out)).collect();
            out.add(match f {
                Builtin::Exp => Math::Exp(a[0]),
                Builtin::Log => Math::Log(a[0]),
                Builtin::Log1p => Math::Log1p(a[0]),
                Builtin::Expm1 => Math::Expm1(a[0]),
                Builtin::Log1mexp => Math::Log1mexp(a[0]),
                Builtin::Sqrt => Math::Sqrt(a[0]),
                Builtin::Abs => Math::Abs(a[0]),
                Builtin::Sigmoid => Math::Sigmoid(a[0]),
                Builtin::LogSigmoid => Math::LogSigmoid(a[0]),
                Builtin::Softplus => Math::Softplus(a[0]),
                Builtin::Tanh => Math::Tanh(a[0]),
                Builtin::Relu => Math::Relu(a[0]),
                Builtin::Cos => Math::Cos(a[0]),
                Builtin::Sin => Math::Sin(a[0]),
                Builtin::Min => Math::Min([a[0], a[1]]),
                Builtin::Max => Math::Max([a[0], a[1]]),
                Builtin::Clamp => Math::Clamp([a[0], a[1], a[2]]),
                Builtin::Pow => Math::Pow([a[0], a[1]]),
                Builtin::Detach => Math::Detach(a[0]),
            })
        }
        Expr::Select(c, a, b) => {
            let k = [to_term(c, out), to_term(a, out), to_term(b, out)];
            out.add(Math::If(k))
        }
        Expr::Reduce {
            op,
            vars,
            filter,
            body,
        } => {
            let vs: Vec<Id> = vars
                .iter()
                .map(|&v| leaf(out, Leaf::Var(v as u32)))
                .collect();
            let vars = out.add(Math::Vars(vs.into_boxed_slice()));
            let f = match filter {
                Some(f) => to_term(f, out),
                None => leaf(out, Leaf::Bool(true)),
            };
            match (op, body) {
                (Reducer::Count, _) => out.add(Math::Count([vars, f])),
                (op, Some(b)) => {
                    let b = to_term(b, out);
                    let k = [vars, f, b];
                    out.add(match op {
                        Reducer::Sum => Math::Sum(k),
                        Reducer::Mean => Math::Mean(k),
                        Reducer::Max => Math::RMax(k),
                        Reducer::Min => Math::RMin(k),
                        Reducer::LogSumExp => Math::LogSumExp(k),
                        Reducer::ArgMax => Math::ArgMax(k),
                        Reducer::ArgMin => Math::ArgMin(k),
                        Reducer::Count => unreachable!(),
                    })
                }
                (_, None) => unreachable!("only count has no body"),
            }
        }
    }
}

/// The IR expression rooted at `id` of a term.
pub fn from_term(t: &RecExpr<Math>, id: Id) -> Expr {
    let n = &t[id];
    let e = |i: &Id| Box::new(from_term(t, *i));
    let bin = |op: BinOp, [a, b]: &[Id; 2]| Expr::Binary(op, e(a), e(b));
    let call =
        |f: Builtin, ids: &[Id]| Expr::Call(f, ids.iter().map(|i| from_term(t, *i)).collect());
    let reduce = |op: Reducer, [vars, f, b]: &[Id; 3]| Expr::Reduce {
        op,
        vars: var_list(t, *vars),
        filter: filter(t, *f),
        body: Some(e(b)),
    };
    match n {
        Math::Leaf(l) => match *l {
            Leaf::Float(b) => Expr::Float(f64::from_bits(b)),
            Leaf::Int(i) => Expr::Int(i),
            Leaf::Bool(b) => Expr::Bool(b),
            Leaf::Var(v) => Expr::Index(v as usize),
            Leaf::Hyper(h) => Expr::Hyper(h as usize),
            Leaf::Input(_) | Leaf::Def(_) => unreachable!("tensors appear only inside reads"),
        },
        Math::Read(kids) => {
            let tensor = match &t[kids[0]] {
                Math::Leaf(Leaf::Input(i)) => Tensor::Input(*i as usize),
                Math::Leaf(Leaf::Def(d)) => Tensor::Def(*d as usize),
                other => unreachable!("read of {other:?}"),
            };
            Expr::Read {
                tensor,
                indices: kids[1..].iter().map(|i| from_term(t, *i)).collect(),
            }
        }
        Math::Add(ab) => bin(BinOp::Add, ab),
        Math::Sub(ab) => bin(BinOp::Sub, ab),
        Math::Mul(ab) => bin(BinOp::Mul, ab),
        Math::Div(ab) => bin(BinOp::Div, ab),
        Math::Pow(ab) => bin(BinOp::Pow, ab),
        Math::Eq(ab) => bin(BinOp::Eq, ab),
        Math::Ne(ab) => bin(BinOp::Ne, ab),
        Math::Lt(ab) => bin(BinOp::Lt, ab),
        Math::Le(ab) => bin(BinOp::Le, ab),
        Math::Gt(ab) => bin(BinOp::Gt, ab),
        Math::Ge(ab) => bin(BinOp::Ge, ab),
        Math::And(ab) => bin(BinOp::And, ab),
        Math::Or(ab) => bin(BinOp::Or, ab),
        Math::Neg(a) => Expr::Unary(UnaryOp::Neg, e(a)),
        Math::Not(a) => Expr::Unary(UnaryOp::Not, e(a)),
        Math::If([c, a, b]) => Expr::Select(e(c), e(a), e(b)),
        Math::Exp(a) => call(Builtin::Exp, &[*a]),
        Math::Log(a) => call(Builtin::Log, &[*a]),
        Math::Log1p(a) => call(Builtin::Log1p, &[*a]),
        Math::Expm1(a) => call(Builtin::Expm1, &[*a]),
        Math::Log1mexp(a) => call(Builtin::Log1mexp, &[*a]),
        Math::Sqrt(a) => call(Builtin::Sqrt, &[*a]),
        Math::Abs(a) => call(Builtin::Abs, &[*a]),
        Math::Sigmoid(a) => call(Builtin::Sigmoid, &[*a]),
        Math::LogSigmoid(a) => call(Builtin::LogSigmoid, &[*a]),
        Math::Softplus(a) => call(Builtin::Softplus, &[*a]),
        Math::Tanh(a) => call(Builtin::Tanh, &[*a]),
        Math::Relu(a) => call(Builtin::Relu, &[*a]),
        Math::Cos(a) => call(Builtin::Cos, &[*a]),
        Math::Sin(a) => call(Builtin::Sin, &[*a]),
        Math::Min(ab) => call(Builtin::Min, ab),
        Math::Max(ab) => call(Builtin::Max, ab),
        Math::Clamp(k) => call(Builtin::Clamp, k),
        Math::Detach(a) => call(Builtin::Detach, &[*a]),
        Math::Sum(k) => reduce(Reducer::Sum, k),
        Math::Mean(k) => reduce(Reducer::Mean, k),
        Math::RMax(k) => reduce(Reducer::Max, k),
        Math::RMin(k) => reduce(Reducer::Min, k),
        Math::LogSumExp(k) => reduce(Reducer::LogSumExp, k),
        Math::ArgMax(k) => reduce(Reducer::ArgMax, k),
        Math::ArgMin(k) => reduce(Reducer::ArgMin, k),
        Math::Count([vars, f]) => Expr::Reduce {
            op: Reducer::Count,
            vars: var_list(t, *vars),
            filter: filter(t, *f),
            body: None,
        },
        Math::Vars(_) => unreachable!("vars appear only inside reductions"),
        Math::D(_) => unreachable!("extraction never picks an unresolved derivative"),
    }
}

fn var_list(t: &RecExpr<Math>, id: Id) -> Vec<usize> {
    match &t[id] {
        Math::Vars(vs) => vs
            .iter()
            .map(|v| match &t[*v] {
                Math::Leaf(Leaf::Var(v)) => *v as usize,
                other => unreachable!("bound {other:?}"),
            })
            .collect(),
        other => unreachable!("vars node expected, found {other:?}"),
    }
}

fn filter(t: &RecExpr<Math>, id: Id) -> Option<Box<Expr>> {
    match &t[id] {
        Math::Leaf(Leaf::Bool(true)) => None,
        _ => Some(Box::new(from_term(t, id))),
    }
}
