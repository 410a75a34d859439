//! Products regrouped so that their invariant factors multiply each other first, for the
//! compiled CPU backend.
//!
//! A factor is invariant when it is the same for every element a function computes: a
//! constant, a hyperparameter, a scalar definition, arithmetic on them (`(ls - 1) / n`).
//! Differentiation leaves gradients such as DPO's `beta * ((ls - 1) / n * sigmoid(-beta·m))`:
//! two invariant factors applied one after the other to every element. Regrouped as
//! `beta * ((ls - 1) / n) * sigmoid(-beta·m)`, the first product is a single invariant the
//! backend computes once, outside its loops (`clif::invariant`), and the loop multiplies
//! once. Floating-point multiplication is not associative, so results can move in the last
//! bit; the interpreter never sees this form.

use crate::ir::{BinOp, Expr, Loss};

/// `loss` with every product of two or more invariant factors and at least one other
/// regrouped as `(invariant factors) * (the others)`, each group in its original order.
pub fn regroup(loss: &Loss) -> Loss {
    let mut out = loss.clone();
    out.rewrite_bodies(rewrite);
    out
}

/// Bottom-up: inner products first.
fn rewrite(e: &Expr) -> Expr {
    let e = e.map_children(rewrite);
    if !matches!(e, Expr::Binary(BinOp::Mul, ..)) {
        return e;
    }
    let mut factors = vec![];
    flatten(&e, &mut factors);
    let (fixed, varying): (Vec<&Expr>, Vec<&Expr>) =
        factors.into_iter().partition(|f| invariant(f));
    if fixed.len() < 2 || varying.is_empty() || already_grouped(&e) {
        return e;
    }
    Expr::Binary(
        BinOp::Mul,
        Box::new(product(&fixed)),
        Box::new(product(&varying)),
    )
}

/// The factors of a product, left to right, through nested products.
fn flatten<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(BinOp::Mul, a, b) => {
            flatten(a, out);
            flatten(b, out);
        }
        _ => out.push(e),
    }
}

/// `a * b * ...` (left to right) of at least one factor.
fn product(factors: &[&Expr]) -> Expr {
    let mut it = factors.iter();
    let first = (*it.next().expect("at least one factor")).clone();
    it.fold(first, |acc, f| {
        Expr::Binary(BinOp::Mul, Box::new(acc), Box::new((*f).clone()))
    })
}

/// True when `e` already multiplies one invariant product by the others (or the others by
/// it): regrouping would only reorder it.
fn already_grouped(e: &Expr) -> bool {
    let Expr::Binary(BinOp::Mul, a, b) = e else {
        return false;
    };
    let varying = |x: &Expr| {
        let mut f = vec![];
        flatten(x, &mut f);
        !f.into_iter().any(invariant)
    };
    (invariant(a) && varying(b)) || (invariant(b) && varying(a))
}

/// True when `e` is the same everywhere: no index variable, reduction, or element of a
/// tensor with dimensions (scalar definitions are computed before any function reading them).
fn invariant(e: &Expr) -> bool {
    !e.any(&mut |x| match x {
        Expr::Index(_) | Expr::Reduce { .. } => true,
        Expr::Read { indices, .. } => !indices.is_empty(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions of `source` after [`regroup`], printed.
    fn regrouped(source: &str) -> Vec<String> {
        crate::printed_defs(&regroup(&crate::test_loss(source)))
    }

    #[test]
    fn invariant_factors_multiply_first() {
        let defs = regrouped(
            "loss l(x: [B]; beta = 0.1, ls = 0) {
                let n = count[b: B]()
                let g[b] = beta * ((ls - 1) / n * sigmoid(x[b] * -beta))
                let h[b] = (beta * sigmoid(x[b])) * (ls / n)
                let k[b] = x[b] * beta * 2 * x[b]
                sum[b](g[b] + h[b] + k[b])
            }",
        );
        assert_eq!(
            defs[1..],
            [
                "g = beta * ((ls - 1) / n) * sigmoid(x[b] * -beta)",
                "h = beta * (ls / n) * sigmoid(x[b])",
                "k = beta * 2 * (x[b] * x[b])",
            ]
        );
    }

    #[test]
    fn other_products_stay() {
        let defs = regrouped(
            "loss l(x: [B], y: [B]; beta = 0.1) {
                let a[b] = beta * x[b]
                let c[b] = beta * 2 * x[b]
                let d[b] = x[b] * y[b] * beta
                let e = beta * 2 * 3
                let f[b] = x[b] * (beta * 2)
                sum[b](a[b] + c[b] + d[b] + f[b]) + e
            }",
        );
        assert_eq!(
            defs,
            [
                "a = beta * x[b]",
                "c = beta * 2 * x[b]",
                "d = x[b] * y[b] * beta",
                "e = beta * 2 * 3",
                "f = x[b] * (beta * 2)",
            ]
        );
    }
}
