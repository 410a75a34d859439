//! Alpha-equivalence of IR expressions: the same expression up to the names of its index
//! variables. Hoisting reuses an earlier definition by it, and `crate::softmax` finds a
//! logsumexp's terms inside its gradient by it.

use crate::ir::{BinOp, Expr, IndexVar, VarId};
use std::collections::HashMap;

/// True when `a` and `b` are the same expression up to the names of their variables: `pairs`
/// maps variables of `a` to those of `b` (the free ones on entry; binders are added as met),
/// and, with `commute`, up to the order of the operands of `+`, `*`, `==` and `!=` (each
/// tried both ways: for small expressions only).
pub(crate) fn alpha_eq(
    a: &Expr,
    b: &Expr,
    pairs: &mut HashMap<VarId, VarId>,
    vars: &[IndexVar],
    commute: bool,
) -> bool {
    match (a, b) {
        (Expr::Index(x), Expr::Index(y)) => pairs.get(x).map_or(x == y, |m| m == y),
        (Expr::Float(x), Expr::Float(y)) => x.to_bits() == y.to_bits(),
        (Expr::Int(x), Expr::Int(y)) => x == y,
        (Expr::Bool(x), Expr::Bool(y)) => x == y,
        (Expr::Hyper(x), Expr::Hyper(y)) => x == y,
        (
            Expr::Read {
                tensor: t,
                indices: i,
            },
            Expr::Read {
                tensor: u,
                indices: j,
            },
        ) => {
            t == u
                && i.len() == j.len()
                && i.iter()
                    .zip(j)
                    .all(|(x, y)| alpha_eq(x, y, pairs, vars, commute))
        }
        (Expr::Unary(o, x), Expr::Unary(p, y)) => o == p && alpha_eq(x, y, pairs, vars, commute),
        (Expr::Binary(o, x1, x2), Expr::Binary(p, y1, y2)) if o == p => {
            if !(commute && matches!(o, BinOp::Add | BinOp::Mul | BinOp::Eq | BinOp::Ne)) {
                return alpha_eq(x1, y1, pairs, vars, commute)
                    && alpha_eq(x2, y2, pairs, vars, commute);
            }
            // Both orders, each from the pairs as they are now.
            let mut straight = pairs.clone();
            if alpha_eq(x1, y1, &mut straight, vars, commute)
                && alpha_eq(x2, y2, &mut straight, vars, commute)
            {
                *pairs = straight;
                return true;
            }
            let mut crossed = pairs.clone();
            if alpha_eq(x1, y2, &mut crossed, vars, commute)
                && alpha_eq(x2, y1, &mut crossed, vars, commute)
            {
                *pairs = crossed;
                return true;
            }
            false
        }
        (Expr::Call(f, xs), Expr::Call(g, ys)) => {
            f == g
                && xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|(x, y)| alpha_eq(x, y, pairs, vars, commute))
        }
        (Expr::Select(c, x1, x2), Expr::Select(d, y1, y2)) => {
            alpha_eq(c, d, pairs, vars, commute)
                && alpha_eq(x1, y1, pairs, vars, commute)
                && alpha_eq(x2, y2, pairs, vars, commute)
        }
        (
            Expr::Reduce {
                op: o,
                vars: v,
                filter: f,
                body: b,
            },
            Expr::Reduce {
                op: p,
                vars: w,
                filter: g,
                body: c,
            },
        ) => {
            // Binders pair up in order, and must range over the same dimensions.
            if o != p
                || v.len() != w.len()
                || v.iter().zip(w).any(|(x, y)| vars[*x].dim != vars[*y].dim)
            {
                return false;
            }
            pairs.extend(v.iter().copied().zip(w.iter().copied()));
            let same_filter = match (f, g) {
                (Some(f), Some(g)) => alpha_eq(f, g, pairs, vars, commute),
                (None, None) => true,
                _ => false,
            };
            let same_body = match (b, c) {
                (Some(b), Some(c)) => alpha_eq(b, c, pairs, vars, commute),
                (None, None) => true,
                _ => false,
            };
            same_filter && same_body
        }
        _ => false,
    }
}
