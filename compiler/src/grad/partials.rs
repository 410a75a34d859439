//! The chain rule through one expression: every differentiable read of a target tensor, with
//! the product of local derivatives on the way to it and the reductions and conditions that
//! surround it.
//!
//! Conventions at non-differentiable points follow PyTorch: `relu'(0) = 0`, `abs'(0) = 0`,
//! `min`/`max` of two values split the gradient evenly on a tie (as `torch.minimum`/`maximum`),
//! `clamp` passes it on `lo <= x <= hi`, `max`/`min` reductions send it to the first extremal
//! term (row-major order), `if` to the taken branch.

use super::Term;
use super::local::{self, Op};
use crate::fresh::Fresh;
use crate::ir::{BinOp, Builtin, Expr, Reducer, Tensor, UnaryOp, VarId};
use std::collections::HashMap;

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn is_one(e: &Expr) -> bool {
    matches!(e, Expr::Float(x) if *x == 1.0) || matches!(e, Expr::Int(1))
}

/// `a * b`, dropping factors of 1.
pub(super) fn mul(a: Expr, c: Expr) -> Expr {
    if is_one(&a) {
        c
    } else if is_one(&c) {
        a
    } else {
        Expr::Binary(BinOp::Mul, b(a), b(c))
    }
}

/// `-a`, folding constants and double negation.
fn neg(a: Expr) -> Expr {
    match a {
        Expr::Float(x) => Expr::Float(-x),
        Expr::Int(x) => Expr::Int(-x),
        Expr::Unary(UnaryOp::Neg, x) => *x,
        a => Expr::Unary(UnaryOp::Neg, b(a)),
    }
}

fn bin(op: BinOp, x: Expr, y: Expr) -> Expr {
    Expr::Binary(op, b(x), b(y))
}

fn call(f: Builtin, args: Vec<Expr>) -> Expr {
    Expr::Call(f, args)
}

/// A copy of `e` to use as a value inside a factor: its reductions bind new variables, so
/// they cannot capture the variables the factor is summed over.
fn value(fresh: &mut Fresh, e: &Expr) -> Expr {
    fresh.copy(e, &mut HashMap::new())
}

/// True when `e` reads `target`.
fn reads(e: &Expr, target: Tensor) -> bool {
    e.any(&mut |x| matches!(x, Expr::Read { tensor, .. } if *tensor == target))
}

/// Adds to `out` every differentiable read of `target` in `e`, where `factor` is the
/// derivative of the enclosing value with respect to `e`, summed over `vars` under `conds`.
pub(super) fn collect(
    fresh: &mut Fresh,
    e: &Expr,
    target: Tensor,
    factor: Expr,
    vars: &[VarId],
    conds: &[Expr],
    out: &mut Vec<Term>,
) {
    collect_at(fresh, e, None, target, factor, vars, conds, out)
}

/// [`collect`] for a definition's body, whose value is already available as `value` (a read
/// of the definition): a reduction making up the whole body uses it instead of recomputing.
#[allow(clippy::too_many_arguments)]
pub(super) fn collect_at(
    fresh: &mut Fresh,
    e: &Expr,
    value_of_e: Option<&Expr>,
    target: Tensor,
    factor: Expr,
    vars: &[VarId],
    conds: &[Expr],
    out: &mut Vec<Term>,
) {
    if !reads(e, target) {
        return;
    }
    match e {
        Expr::Read { tensor, indices } if *tensor == target => out.push(Term {
            indices: indices.clone(),
            factor,
            vars: vars.to_vec(),
            conds: conds.to_vec(),
        }),
        Expr::Unary(UnaryOp::Neg, a) => collect(fresh, a, target, neg(factor), vars, conds, out),
        Expr::Binary(op, x, y) => {
            let (x, y) = (&**x, &**y);
            match op {
                BinOp::Add => {
                    collect(fresh, x, target, factor.clone(), vars, conds, out);
                    collect(fresh, y, target, factor, vars, conds, out);
                }
                BinOp::Sub => {
                    collect(fresh, x, target, factor.clone(), vars, conds, out);
                    collect(fresh, y, target, neg(factor), vars, conds, out);
                }
                BinOp::Mul | BinOp::Div | BinOp::Pow => {
                    let values = [value(fresh, x), value(fresh, y)];
                    for (k, arg) in [x, y].into_iter().enumerate() {
                        if let Some(p) = local::partial(Op::Bin(*op), &values, k) {
                            collect(fresh, arg, target, mul(factor.clone(), p), vars, conds, out);
                        }
                    }
                }
                // Comparisons and logic are not differentiable.
                _ => {}
            }
        }
        Expr::Call(f, args) => {
            let values: Vec<Expr> = args.iter().map(|a| value(fresh, a)).collect();
            for (k, arg) in args.iter().enumerate() {
                if let Some(p) = local::partial(Op::Call(*f), &values, k) {
                    collect(fresh, arg, target, mul(factor.clone(), p), vars, conds, out);
                }
            }
        }
        Expr::Select(c, x, y) => {
            let mut taken = conds.to_vec();
            taken.push((**c).clone());
            collect(fresh, x, target, factor.clone(), vars, &taken, out);
            let mut other = conds.to_vec();
            other.push(Expr::Unary(UnaryOp::Not, c.clone()));
            collect(fresh, y, target, factor, vars, &other, out);
        }
        Expr::Reduce {
            op,
            vars: k,
            filter,
            body: Some(body),
        } if !matches!(op, Reducer::Count | Reducer::ArgMax | Reducer::ArgMin) => {
            let mut inner_vars = vars.to_vec();
            inner_vars.extend(k);
            let mut inner_conds = conds.to_vec();
            inner_conds.extend(filter.iter().map(|f| (**f).clone()));
            let local = match op {
                Reducer::Sum => Expr::Int(1),
                Reducer::Mean => {
                    // 1 / (number of kept terms)
                    let mut map = HashMap::new();
                    let k2 = fresh.copy_vars(k, &mut map);
                    let f2 = filter.as_ref().map(|f| Box::new(fresh.copy(f, &mut map)));
                    let count = Expr::Reduce {
                        op: Reducer::Count,
                        vars: k2,
                        filter: f2,
                        body: None,
                    };
                    // max(count, 1): the same where terms exist, and finite where there are
                    // none, so that factoring it out of an empty sum gives 0, not 0·inf.
                    bin(
                        BinOp::Div,
                        Expr::Int(1),
                        call(Builtin::Max, vec![count, Expr::Int(1)]),
                    )
                }
                Reducer::LogSumExp => {
                    let total = value_of_e.cloned().unwrap_or_else(|| value(fresh, e));
                    call(
                        Builtin::Exp,
                        vec![bin(BinOp::Sub, value(fresh, body), total)],
                    )
                }
                Reducer::Max | Reducer::Min => {
                    inner_conds.push(first_extremal(
                        fresh,
                        e,
                        value_of_e,
                        k,
                        filter.as_deref(),
                        body,
                    ));
                    Expr::Int(1)
                }
                Reducer::Count | Reducer::ArgMax | Reducer::ArgMin => {
                    unreachable!("integer reductions carry no gradient")
                }
            };
            collect(
                fresh,
                body,
                target,
                mul(factor, local),
                &inner_vars,
                &inner_conds,
                out,
            );
        }
        // Detach, reads of other tensors, indices, constants: no gradient.
        _ => {}
    }
}

/// The condition that term `k` of the max/min reduction `e` is its first extremal term:
/// `body == e && count[k' | filter' && k' < k && body' == e]() == 0`.
fn first_extremal(
    fresh: &mut Fresh,
    e: &Expr,
    value_of_e: Option<&Expr>,
    k: &[VarId],
    filter: Option<&Expr>,
    body: &Expr,
) -> Expr {
    let extreme = value_of_e.cloned().unwrap_or_else(|| value(fresh, e));
    let is_extremal = bin(BinOp::Eq, value(fresh, body), extreme.clone());
    let mut map = HashMap::new();
    let k2 = fresh.copy_vars(k, &mut map);
    // (k2 < k) in row-major order.
    let mut earlier: Option<Expr> = None;
    for (pos, (&a, &c)) in k2.iter().zip(k).enumerate().rev() {
        let less = bin(BinOp::Lt, Expr::Index(a), Expr::Index(c));
        earlier = Some(match earlier {
            None => less,
            Some(rest) => {
                let _ = pos;
                bin(
                    BinOp::Or,
                    less,
                    bin(
                        BinOp::And,
                        bin(BinOp::Eq, Expr::Index(a), Expr::Index(c)),
                        rest,
                    ),
                )
            }
        });
    }
    let mut cond = earlier.expect("a reduction binds at least one index");
    if let Some(f) = filter {
        cond = bin(BinOp::And, fresh.copy(f, &mut map.clone()), cond);
    }
    let body2 = fresh.copy(body, &mut map);
    let cond = bin(BinOp::And, cond, bin(BinOp::Eq, body2, extreme));
    let before = Expr::Reduce {
        op: Reducer::Count,
        vars: k2,
        filter: Some(b(cond)),
        body: None,
    };
    bin(
        BinOp::And,
        is_extremal,
        bin(BinOp::Eq, before, Expr::Int(0)),
    )
}
