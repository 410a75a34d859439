//! Contractions: `sum[k](a[i, k] * b[k, j])`, the matrix products inside losses (Gram matrices of
//! embeddings, their gradients). [`split_product`] finds the reductions that are contractions
//! up to elementwise factors (`sum[j](w[i, j] / n[j] * x[j, d])`), which `hoist` turns into
//! definitions of their own; [`contraction`] recognises a definition that is exactly a product
//! of two matrices, which a backend may hand to a GEMM routine instead of running its loops.

use crate::ir::{BinOp, DType, DimId, Expr, Loss, Reducer, Tensor, VarId};
use std::collections::BTreeSet;

/// A reduction `sum[k](A * B)` whose factors split into those over `(i, k)` and those over
/// `(k, j)`, each side using `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// The summed variable.
    pub k: VarId,
    /// The free variable of the left side.
    pub i: VarId,
    /// The free variable of the right side.
    pub j: VarId,
    /// The product of the factors over `i` and `k` (and constants).
    pub left: Expr,
    /// The product of the factors over `k` and `j`.
    pub right: Expr,
}

/// The index variables `e` uses without binding them.
pub fn free_vars(e: &Expr) -> BTreeSet<VarId> {
    let mut free = BTreeSet::new();
    let mut bound = BTreeSet::new();
    e.visit(&mut |x| match x {
        Expr::Index(v) => {
            free.insert(*v);
        }
        Expr::Reduce { vars, .. } => bound.extend(vars.iter().copied()),
        _ => {}
    });
    free.difference(&bound).copied().collect()
}

/// Appends the operands of the tree of `op` at `e` to `out`, left to right (the terms of a
/// sum, the factors of a product).
pub(crate) fn operands<'e>(e: &'e Expr, op: BinOp, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(o, a, b) if *o == op => {
            operands(a, op, out);
            operands(b, op, out);
        }
        other => out.push(other),
    }
}

/// The factors of a product tree.
fn factors<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    operands(e, BinOp::Mul, out)
}

/// True when `a` and `b` are products of the same factors, in any order and grouping.
fn same_product(a: &Expr, b: &Expr) -> bool {
    let sorted = |e: &Expr| {
        let mut f = vec![];
        factors(e, &mut f);
        let mut f: Vec<String> = f.iter().map(|x| format!("{x:?}")).collect();
        f.sort();
        f
    };
    sorted(a) == sorted(b)
}

/// `a + b` as one contraction when both are contractions ([`split_product`]) over variables of
/// the same dimension (`dim_of`) with the same free variables and the same right side (up to
/// the name of the summed variable): `sum[k](l1 * r) + sum[k'](l2 * r')` is
/// `sum[k]((l1 + l2) * r)`. A gradient through a Gram matrix `g = x · xᵀ` has both
/// `dg · x` and `dgᵀ · x`; merged, they are one matrix product instead of two.
pub fn merge_products(a: &Expr, b: &Expr, dim_of: &dyn Fn(VarId) -> DimId) -> Option<Expr> {
    let (p, q) = (split_product(a)?, split_product(b)?);
    if dim_of(p.k) != dim_of(q.k) {
        return None;
    }
    let rename: std::collections::HashMap<VarId, VarId> = [(q.k, p.k)].into_iter().collect();
    let (q_left, q_right) = (q.left.rename_vars(&rename), q.right.rename_vars(&rename));
    let (q_left, q_right) = if (q.i, q.j) == (p.i, p.j) {
        (q_left, q_right)
    } else if (q.j, q.i) == (p.i, p.j) {
        (q_right, q_left)
    } else {
        return None;
    };
    let sum = |x: Expr, y: Expr| match (&x, &y) {
        // a / d + b / d' with d' the product d in another order: (a + b) / d.
        (Expr::Binary(BinOp::Div, a, d), Expr::Binary(BinOp::Div, b, e)) if same_product(d, e) => {
            Expr::Binary(
                BinOp::Div,
                Box::new(Expr::Binary(BinOp::Add, a.clone(), b.clone())),
                d.clone(),
            )
        }
        _ => Expr::Binary(BinOp::Add, Box::new(x), Box::new(y)),
    };
    let mul = |x: Expr, y: Expr| Expr::Binary(BinOp::Mul, Box::new(x), Box::new(y));
    let body = if q_right == p.right {
        mul(sum(p.left, q_left), p.right)
    } else if q_left == p.left {
        mul(p.left, sum(p.right, q_right))
    } else {
        return None;
    };
    Some(Expr::Reduce {
        op: Reducer::Sum,
        vars: vec![p.k],
        filter: None,
        body: Some(Box::new(body)),
    })
}

/// `e` as `(k, body)` when it is an unfiltered `sum[k](body)` over one variable.
pub fn plain_sum(e: &Expr) -> Option<(VarId, &Expr)> {
    match e {
        Expr::Reduce {
            op: Reducer::Sum,
            vars,
            filter: None,
            body: Some(body),
        } if vars.len() == 1 => Some((vars[0], body)),
        _ => None,
    }
}

/// `e` as a contraction of two sides when it is an unfiltered `sum` over one variable of a
/// product with exactly two free variables, one per side.
pub fn split_product(e: &Expr) -> Option<Product> {
    let (k, body) = plain_sum(e)?;
    let free: Vec<VarId> = free_vars(e).into_iter().collect();
    let [x, y] = free[..] else { return None };
    let mut all = vec![];
    factors(body, &mut all);
    // The side of each factor: the one whose free variable it uses.
    let first = all.iter().find_map(|f| {
        let fv = free_vars(f);
        match (fv.contains(&x), fv.contains(&y)) {
            (true, false) => Some(x),
            (false, true) => Some(y),
            _ => None,
        }
    })?;
    let (i, j) = if first == x { (x, y) } else { (y, x) };
    let (mut left, mut right) = (vec![], vec![]);
    for f in all {
        let fv = free_vars(f);
        match (fv.contains(&i), fv.contains(&j)) {
            (true, true) => return None,
            (false, true) => right.push(f.clone()),
            _ => left.push(f.clone()),
        }
    }
    let uses_k = |side: &[Expr]| side.iter().any(|f| free_vars(f).contains(&k));
    if right.is_empty() || !uses_k(&left) || !uses_k(&right) {
        return None;
    }
    let product = |side: Vec<Expr>| {
        side.into_iter()
            .reduce(|a, b| Expr::Binary(BinOp::Mul, Box::new(a), Box::new(b)))
            .expect("each side has a factor")
    };
    Some(Product {
        k,
        i,
        j,
        left: product(left),
        right: product(right),
    })
}

/// One operand of a [`Contraction`]: a float matrix, stored as `[row, k]` or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    /// The tensor read.
    pub tensor: Tensor,
    /// True when the summed variable is its first index (`a[k, i]`, `b[k, j]`).
    pub k_first: bool,
}

/// A definition `c[i, j] = sum[k](a[., .] * b[., .])` over float matrices read by plain index
/// variables: `c = A · B` with `A` an `[I, K]` and `B` a `[K, J]` matrix, each possibly stored
/// transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contraction {
    /// The left matrix, over `(i, k)`.
    pub a: Operand,
    /// The right matrix, over `(k, j)`.
    pub b: Operand,
    /// The dimensions of `i`, `k` and `j`.
    pub dims: [DimId; 3],
}

/// Definition `d` as a matrix product, when it is one.
pub fn contraction(loss: &Loss, d: usize) -> Option<Contraction> {
    let def = &loss.defs[d];
    let [i, j] = def.indices[..] else { return None };
    let Expr::Reduce {
        op: Reducer::Sum,
        vars,
        filter: None,
        body: Some(body),
    } = &def.body
    else {
        return None;
    };
    let [k] = vars[..] else { return None };
    let Expr::Binary(BinOp::Mul, x, y) = &**body else {
        return None;
    };
    // A float matrix read by the two variables `row` and `k`, in either order.
    let operand = |e: &Expr, row: VarId| -> Option<Operand> {
        let Expr::Read { tensor, indices } = e else {
            return None;
        };
        if loss.dtype_of(*tensor) != DType::Float {
            return None;
        }
        match indices[..] {
            [Expr::Index(p), Expr::Index(q)] if p == row && q == k => Some(Operand {
                tensor: *tensor,
                k_first: false,
            }),
            [Expr::Index(p), Expr::Index(q)] if p == k && q == row => Some(Operand {
                tensor: *tensor,
                k_first: true,
            }),
            _ => None,
        }
    };
    let (a, b) = match (operand(x, i), operand(y, j)) {
        (Some(a), Some(b)) => (a, b),
        _ => (operand(y, i)?, operand(x, j)?),
    };
    if i == j || i == k || j == k {
        return None;
    }
    let dim = |v: VarId| loss.vars[v].dim;
    Some(Contraction {
        a,
        b,
        dims: [dim(i), dim(k), dim(j)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_loss as loss;

    #[test]
    fn matrix_products_are_recognised_in_every_storage_order() {
        let l = loss(
            "loss l(x: [B, D], y: [D, C], n: [B]) {
                let g[i, j] = sum[d](x[i, d] * x[j, d])
                let h[i, c] = sum[d](y[d, c] * x[i, d])
                let t[c, i] = sum[d](x[i, d] * y[d, c])
                let scaled[i, j] = sum[d](x[i, d] * x[j, d] * n[i])
                let filtered[i, j] = sum[d | d > 0](x[i, d] * x[j, d])
                sum[i](g[i, i] + h[i, 0] + t[0, i] + scaled[i, i] + filtered[i, i])
            }",
        );
        let g = contraction(&l, 0).unwrap();
        assert!(!g.a.k_first && !g.b.k_first);
        let h = contraction(&l, 1).unwrap();
        assert_eq!(h.a.tensor, Tensor::Input(0));
        assert!(!h.a.k_first && h.b.k_first);
        let t = contraction(&l, 2).unwrap();
        assert_eq!(t.a.tensor, Tensor::Input(1));
        assert!(t.a.k_first && !t.b.k_first);
        assert_eq!(contraction(&l, 3), None);
        assert_eq!(contraction(&l, 4), None);
    }

    #[test]
    fn products_with_the_same_right_side_merge_and_others_do_not() {
        let l = loss(
            "loss l(x: [B, D], y: [D, B], g: [B, B], w: [B, B]) {
                let both[i, d] = sum[j](g[i, j] * x[j, d]) + sum[k](g[k, i] * w[i, k] * x[k, d])
                let apart[i, d] = sum[j](g[i, j] * x[j, d]) + sum[k](g[k, i] * y[d, k])
                sum[i, d](both[i, d] + apart[i, d])
            }",
        );
        let dim_of = |v: VarId| l.vars[v].dim;
        let terms = |d: usize| match &l.defs[d].body {
            Expr::Binary(BinOp::Add, a, b) => (a.as_ref().clone(), b.as_ref().clone()),
            _ => unreachable!(),
        };
        let (a, b) = terms(0);
        let merged = merge_products(&a, &b, &dim_of).unwrap();
        assert_eq!(
            crate::print::expr(&l, &merged),
            "sum[j]((g[i, j] + g[j, i] * w[i, j]) * x[j, d])"
        );
        // Gradients through normalised Gram matrices divide both sides by the same norms.
        let n = loss(
            "loss l(x: [B, D], g: [B, B], n: [B]) {
                let both[i, d] = sum[j](g[i, j] / (n[i] * n[j] * 2) * x[j, d]) + sum[k](g[k, i] / (2 * (n[i] * n[k])) * x[k, d])
                sum[i, d](both[i, d])
            }",
        );
        let Expr::Binary(BinOp::Add, a, b) = &n.defs[0].body else {
            unreachable!()
        };
        let n_dim = |v: VarId| n.vars[v].dim;
        assert_eq!(
            crate::print::expr(&n, &merge_products(a, b, &n_dim).unwrap()),
            "sum[j]((g[i, j] + g[j, i]) / (n[i] * n[j] * 2) * x[j, d])"
        );
        let (a, b) = terms(1);
        assert_eq!(merge_products(&a, &b, &dim_of), None);
    }

    #[test]
    fn products_split_into_their_two_sides() {
        let l = loss(
            "loss l(w: [B, B], n: [B], x: [B, D]) {
                let g[i, d] = sum[j](w[i, j] / n[j] * 2 * x[j, d])
                let no[i] = sum[j](w[i, j] * n[i])
                sum[i](g[i, 0] + no[i])
            }",
        );
        let p = split_product(&l.defs[0].body).unwrap();
        assert_eq!(free_vars(&p.left).len(), 2);
        assert!(matches!(
            p.right,
            Expr::Read {
                tensor: Tensor::Input(2),
                ..
            }
        ));
        // One side only: not a contraction.
        assert_eq!(split_product(&l.defs[1].body), None);
    }
}
