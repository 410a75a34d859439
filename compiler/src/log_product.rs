//! Sums of softplus tails as logarithms of products, for the compiled CPU backend.
//!
//! `softplus(x) = max(x, 0) + log1p(exp(-|x|))` and `log_sigmoid(x) = min(x, 0) -
//! log1p(exp(-|x|))` (the bound written `if x > 0 then x else 0`, one compare and blend). A
//! sum or mean whose body is a linear combination of such terms (or of tails written out),
//! with coefficients that do not depend on the reduced variables, is split ([`expand`]):
//!
//! ```text
//! sum[b](rest + c·log1p(exp(-|y|)))  =  sum[b](rest) + c·sum[b](log1p(exp(-|y|)))
//! ```
//!
//! and the backend accumulates the last sum as the logarithm of a product: with every term's
//! `e = exp(-|y|)` in [0, 1], `Σ log1p(e) = log1p(Q)` where `Q = Π(1 + e) - 1` grows as
//! `Q + e + Q·e` — one fused multiply-add per term instead of a logarithm, and no cancellation
//! (every operand is non-negative), so `Q` is as accurate as a plain running sum. DPO and the
//! other preference losses built on `log_sigmoid`, the soft-margin loss and the seed losses'
//! `logsumexp2` take this form; a coefficient that varies from term to term (binary
//! cross-entropy's weights on `target[b]`) keeps the plain sum. The result is equivalent IR;
//! the interpreter never sees it.

use crate::ir::{BinOp, Builtin, Expr, Loss, Reducer, UnaryOp, VarId};

/// `loss` with every sum and mean of softplus tails split as the module doc says.
pub fn expand(loss: &Loss) -> Loss {
    let mut out = loss.clone();
    out.rewrite_bodies(rewrite);
    out
}

/// `log1p(exp(-|y|))`, the softplus tail of `±y`.
pub fn tail(y: Expr) -> Expr {
    let neg_abs = Expr::Unary(UnaryOp::Neg, Box::new(Expr::Call(Builtin::Abs, vec![y])));
    Expr::Call(
        Builtin::Log1p,
        vec![Expr::Call(Builtin::Exp, vec![neg_abs])],
    )
}

/// The argument `exp(-|y|)` (a number in [0, 1], or NaN) of a softplus tail [`tail`].
pub fn unit_tail(body: &Expr) -> Option<&Expr> {
    let Expr::Call(Builtin::Log1p, args) = body else {
        return None;
    };
    let e = &args[0];
    let Expr::Call(Builtin::Exp, inner) = e else {
        return None;
    };
    match &inner[0] {
        Expr::Unary(UnaryOp::Neg, a) if matches!(&**a, Expr::Call(Builtin::Abs, _)) => Some(e),
        _ => None,
    }
}

/// Bottom-up: inner reductions first.
fn rewrite(e: &Expr) -> Expr {
    let e = e.map_children(rewrite);
    if let Expr::Reduce {
        op: op @ (Reducer::Sum | Reducer::Mean),
        vars,
        filter,
        body: Some(body),
    } = &e
        && let Some(split) = split_tails(*op, vars, filter.as_deref(), body)
    {
        return split;
    }
    e
}

/// `op[vars | filter](body)` as a reduction of the rest plus reductions of tails, when the
/// body has tails.
fn split_tails(op: Reducer, vars: &[VarId], filter: Option<&Expr>, body: &Expr) -> Option<Expr> {
    let lin = linear(body, vars);
    if lin.tails.is_empty() {
        return None;
    }
    let reduce = |b: Expr| Expr::Reduce {
        op,
        vars: vars.to_vec(),
        filter: filter.map(|f| Box::new(f.clone())),
        body: Some(Box::new(b)),
    };
    let mut out = reduce(lin.rest);
    for (y, c) in lin.tails {
        let t = bin(BinOp::Mul, c, reduce(tail(y)));
        out = bin(BinOp::Add, out, t);
    }
    Some(out)
}

/// An expression as `rest + Σ c·tail(y)`.
struct Linear {
    rest: Expr,
    /// `(y, c)`, one per distinct `y`.
    tails: Vec<(Expr, Expr)>,
}

fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::Binary(op, Box::new(a), Box::new(b))
}

fn neg(a: Expr) -> Expr {
    Expr::Unary(UnaryOp::Neg, Box::new(a))
}

/// True when `e` is the same for every term of a reduction over `vars` (and cheap: no
/// reduction of its own).
fn invariant(e: &Expr, vars: &[VarId]) -> bool {
    !e.any(&mut |x| match x {
        Expr::Reduce { .. } => true,
        Expr::Index(v) => vars.contains(v),
        _ => false,
    })
}

/// `e` as a linear combination of softplus tails with coefficients invariant over `vars`;
/// what is not is the rest, unchanged.
fn linear(e: &Expr, vars: &[VarId]) -> Linear {
    let opaque = || Linear {
        rest: e.clone(),
        tails: vec![],
    };
    if let Some(Expr::Call(_, arg)) = unit_tail(e)
        && let Expr::Unary(_, abs) = &arg[0]
        && let Expr::Call(_, y) = &**abs
    {
        // A tail written out, as in `max(a, b) + log1p(exp(-abs(a - b)))`.
        return Linear {
            rest: Expr::Float(0.0),
            tails: vec![(y[0].strip_sign().0, Expr::Float(1.0))],
        };
    }
    match e {
        Expr::Call(f @ (Builtin::Softplus | Builtin::LogSigmoid), args) => {
            let x = &args[0];
            let (y, _) = x.strip_sign();
            // max(x, 0) or min(x, 0) as a compare and a blend; a NaN x gives 0 here and NaN
            // through its tail.
            let (side, sign) = if *f == Builtin::Softplus {
                (BinOp::Gt, 1.0)
            } else {
                (BinOp::Lt, -1.0)
            };
            let zero = || Box::new(Expr::Float(0.0));
            let rest = Expr::Select(
                Box::new(Expr::Binary(side, Box::new(x.clone()), zero())),
                Box::new(x.clone()),
                zero(),
            );
            Linear {
                rest,
                tails: vec![(y, Expr::Float(sign))],
            }
        }
        Expr::Binary(op @ (BinOp::Add | BinOp::Sub), a, b) => {
            let (la, lb) = (linear(a, vars), linear(b, vars));
            if la.tails.is_empty() && lb.tails.is_empty() {
                return opaque();
            }
            let minus = *op == BinOp::Sub;
            let mut tails = la.tails;
            for (y, c) in lb.tails {
                let c = if minus { neg(c) } else { c };
                match tails.iter_mut().find(|(z, _)| *z == y) {
                    Some((_, d)) => *d = bin(BinOp::Add, d.clone(), c),
                    None => tails.push((y, c)),
                }
            }
            Linear {
                rest: bin(*op, la.rest, lb.rest),
                tails,
            }
        }
        Expr::Unary(UnaryOp::Neg, a) => {
            let la = linear(a, vars);
            if la.tails.is_empty() {
                return opaque();
            }
            Linear {
                rest: neg(la.rest),
                tails: la.tails.into_iter().map(|(y, c)| (y, neg(c))).collect(),
            }
        }
        Expr::Binary(op @ (BinOp::Mul | BinOp::Div), a, b) => {
            // A factor (or divisor) the same for every term scales the tails.
            let (inner, factor, left) = if invariant(b, vars) {
                (a, b, false)
            } else if *op == BinOp::Mul && invariant(a, vars) {
                (b, a, true)
            } else {
                return opaque();
            };
            let li = linear(inner, vars);
            if li.tails.is_empty() {
                return opaque();
            }
            let scale = |x: Expr| {
                if left {
                    bin(*op, (**factor).clone(), x)
                } else {
                    bin(*op, x, (**factor).clone())
                }
            };
            Linear {
                rest: scale(li.rest),
                tails: li.tails.into_iter().map(|(y, c)| (y, scale(c))).collect(),
            }
        }
        _ => opaque(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions of `source` after [`expand`], printed.
    fn expanded(source: &str) -> Vec<String> {
        let out = expand(&crate::test_loss(source));
        crate::printed_defs(&out)
    }

    #[test]
    fn invariant_multiples_of_softplus_tails_become_a_sum_of_their_own() {
        let defs = expanded(
            "loss l(x: [B]; beta = 0.1, ls = 0) {
                let m = mean[b]((ls - 1) * log_sigmoid(beta * x[b]) - ls * log_sigmoid(x[b] * -beta))
                let s = sum[b](2 * softplus(x[b]) / beta)
                m + s
            }",
        );
        assert_eq!(
            defs,
            [
                "m = mean[b]((ls - 1) * (if beta * x[b] < 0.0 then beta * x[b] else 0.0) \
                 - ls * (if x[b] * -beta < 0.0 then x[b] * -beta else 0.0)) \
                 + ((ls - 1) * -1.0 + -(ls * -1.0)) * mean[b](log1p(exp(-abs(beta * x[b]))))",
                "s = sum[b](2 * (if x[b] > 0.0 then x[b] else 0.0) / beta) + 2 * 1.0 / beta * sum[b](log1p(exp(-abs(x[b]))))",
            ]
        );
    }

    #[test]
    fn tails_written_out_count_as_tails() {
        let out = expand(&crate::test_loss(
            "loss l(a: [B], b: [B]) {
                let s = sum[i](max(a[i], b[i]) + log1p(exp(-abs(a[i] - b[i]))))
                s
            }",
        ));
        assert_eq!(
            crate::print::expr(&out, &out.defs[0].body),
            "sum[i](max(a[i], b[i]) + 0.0) + 1.0 * sum[i](log1p(exp(-abs(a[i] - b[i]))))"
        );
    }

    #[test]
    fn tails_with_varying_coefficients_or_inside_other_functions_stay() {
        let defs = expanded(
            "loss l(x: [B], w: [B]) {
                let a = sum[b](w[b] * softplus(x[b]))
                let c = sum[b](exp(softplus(x[b])))
                let d = max[b](softplus(x[b]))
                a + c + d
            }",
        );
        assert_eq!(
            defs,
            [
                "a = sum[b](w[b] * softplus(x[b]))",
                "c = sum[b](exp(softplus(x[b])))",
                "d = max[b](softplus(x[b]))",
            ]
        );
    }

    #[test]
    fn a_filter_stays_on_both_sums_and_inner_reductions_split_too() {
        let defs = expanded(
            "loss l(x: [B, C], t: int[B]) {
                let r[b] = sum[c | c != t[b]](softplus(x[b, c]) + x[b, c])
                sum[b](r[b])
            }",
        );
        assert_eq!(
            defs,
            [
                "r = sum[c | c != t[b]]((if x[b, c] > 0.0 then x[b, c] else 0.0) + x[b, c]) \
              + 1.0 * sum[c | c != t[b]](log1p(exp(-abs(x[b, c]))))"
            ]
        );
        let tail = tail(Expr::Float(2.0));
        assert!(unit_tail(&tail).is_some());
        assert!(unit_tail(&Expr::Call(Builtin::Log1p, vec![Expr::Float(2.0)])).is_none());
    }
}
