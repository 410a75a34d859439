//! Reading matrices down their columns. Column sums: `c[i] = sum[k](... x[k, i] ...)`,
//! reductions that read a matrix down its columns (and [`transposed`] definitions, which read
//! one transposed). Gradients of Gram matrices are full of them (`sum[i](d_s[i, j] ...)` in
//! Multi-Similarity's and InfoNCE's gradient with respect to the norms). Computed row by row
//! of `c`, each term is a cache miss and a new page. `hoist` makes each one a definition of its
//! own, and a backend runs it with the loops interchanged and tiled (`clif::column`): for a
//! tile of `i`, `k` outermost, `i` innermost and contiguous. Each `c[i]` still adds its terms
//! in the order of `k`.

use crate::contraction::plain_sum;
use crate::ir::{Expr, Loss, Tensor, VarId};

/// True when the reduction `e`, evaluated inside a definition over the single index `i`, is a
/// column sum: an unfiltered `sum` over one variable `k` whose body reads some matrix by
/// `[k, i]`.
pub fn is_column_sum(e: &Expr, i: VarId) -> bool {
    let Some((k, body)) = plain_sum(e) else {
        return false;
    };
    k != i
        && body.any(&mut |x| {
            matches!(x, Expr::Read { indices, .. }
                if matches!(indices[..], [Expr::Index(p), Expr::Index(q)] if p == k && q == i))
        })
}

/// Definition `d` as a column sum `c[i] = sum[k](body)` (see [`is_column_sum`]): `(i, k,
/// body)`.
pub fn column_sum(loss: &Loss, d: usize) -> Option<(VarId, VarId, &Expr)> {
    let def = &loss.defs[d];
    let [i] = def.indices[..] else { return None };
    if !is_column_sum(&def.body, i) {
        return None;
    }
    let (k, body) = plain_sum(&def.body)?;
    Some((i, k, body))
}

/// Definition `d` as `m[i, j] = body` (no reductions) whose body reads some matrix
/// transposed, by `[j, i]`: `(i, j)`. The merged gradient of a Gram matrix is one
/// (`dg[i, j] + dg[j, i]`, see `contraction::merge_products`); row by row of `m`, each such
/// read is a new cache line and page, so a backend runs it in square tiles.
pub fn transposed(loss: &Loss, d: usize) -> Option<(VarId, VarId)> {
    let def = &loss.defs[d];
    let [i, j] = def.indices[..] else { return None };
    let reduces = def.body.any(&mut |x| matches!(x, Expr::Reduce { .. }));
    let reads_ji = def.body.any(&mut |x| {
        matches!(x, Expr::Read { indices, .. }
            if matches!(indices[..], [Expr::Index(p), Expr::Index(q)] if p == j && q == i))
    });
    (!reduces && reads_ji && i != j).then_some((i, j))
}

/// True when definition `d` is symmetric by construction: `g[p, q] = sum[k](a[p, k] * a[q, k])`
/// (a Gram matrix), or the same with `a` read by `[k, p]` and `[k, q]`.
pub fn symmetric(loss: &Loss, d: usize) -> bool {
    let def = &loss.defs[d];
    let [p, q] = def.indices[..] else {
        return false;
    };
    let Some((k, body)) = plain_sum(&def.body) else {
        return false;
    };
    let Expr::Binary(crate::ir::BinOp::Mul, a, b) = body else {
        return false;
    };
    let (
        Expr::Read {
            tensor: ta,
            indices: ia,
        },
        Expr::Read {
            tensor: tb,
            indices: ib,
        },
    ) = (&**a, &**b)
    else {
        return false;
    };
    let index = |e: &Expr| match e {
        Expr::Index(v) => Some(*v),
        _ => None,
    };
    let ia: Option<Vec<VarId>> = ia.iter().map(index).collect();
    let ib: Option<Vec<VarId>> = ib.iter().map(index).collect();
    ta == tb
        && loss.vars[p].dim == loss.vars[q].dim
        && match (ia.as_deref(), ib.as_deref()) {
            (Some([x, y]), Some([u, w])) => {
                (*y == k && *w == k && [*x, *u] == [p, q])
                    || (*x == k && *u == k && [*y, *w] == [p, q])
            }
            _ => false,
        }
}

/// `loss` with every read `g[i, k]` of a symmetric definition ([`symmetric`]) inside a column
/// sum over `k` turned into `g[k, i]`: the same value, read along the rows the interchanged
/// loops run over (Multi-Similarity's and InfoNCE's Gram matrix in their column sums).
pub fn read_symmetric_along_rows(loss: &Loss) -> Loss {
    let mut out = loss.clone();
    let sym: Vec<bool> = (0..loss.defs.len()).map(|d| symmetric(loss, d)).collect();
    for d in 0..loss.defs.len() {
        let Some((i, k, _)) = column_sum(loss, d) else {
            continue;
        };
        out.defs[d].body = swap_reads(&loss.defs[d].body, &sym, i, k);
    }
    out
}

/// `e` with reads `g[i, k]` of the definitions marked in `sym` turned into `g[k, i]`.
fn swap_reads(e: &Expr, sym: &[bool], i: VarId, k: VarId) -> Expr {
    match e {
        Expr::Read {
            tensor: Tensor::Def(g),
            indices,
        } if sym[*g]
            && matches!(indices[..], [Expr::Index(p), Expr::Index(q)] if p == i && q == k) =>
        {
            Expr::Read {
                tensor: Tensor::Def(*g),
                indices: vec![Expr::Index(k), Expr::Index(i)],
            }
        }
        _ => e.map_children(|c| swap_reads(c, sym, i, k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_loss as loss;

    #[test]
    fn sums_down_a_column_are_column_sums_and_sums_along_a_row_are_not() {
        let l = loss(
            "loss f(x: [N, N], w: [N]) {
                let down[i] = sum[k](x[k, i] * w[k])
                let along[i] = sum[k](x[i, k] * w[k])
                let filtered[i] = sum[k | w[k] > 0](x[k, i])
                let largest[i] = max[k](x[k, i])
                sum[i](down[i] + along[i] + filtered[i] + largest[i])
            }",
        );
        assert!(column_sum(&l, 0).is_some());
        assert!(column_sum(&l, 1).is_none());
        assert!(column_sum(&l, 2).is_none());
        assert!(column_sum(&l, 3).is_none());
        let (i, k, _) = column_sum(&l, 0).unwrap();
        assert_eq!(l.vars[i].name, "i");
        assert_eq!(l.vars[k].name, "k");
    }

    #[test]
    fn definitions_reading_a_matrix_transposed_are_found() {
        let l = loss(
            "loss f(x: [N, N], v: [N]) {
                let t[i, j] = x[i, j] + x[j, i] * v[j]
                let straight[i, j] = x[i, j] * v[i]
                let summed[i, j] = sum[k](x[j, i] * x[i, k])
                sum[i, j](t[i, j] + straight[i, j] + summed[i, j])
            }",
        );
        let (i, j) = transposed(&l, 0).unwrap();
        assert_eq!(
            (l.vars[i].name.as_str(), l.vars[j].name.as_str()),
            ("i", "j")
        );
        assert_eq!(transposed(&l, 1), None);
        assert_eq!(transposed(&l, 2), None);
    }

    #[test]
    fn gram_matrices_are_symmetric_and_read_along_rows_in_column_sums() {
        let l = loss(
            "loss f(x: [N, D], w: [N, N], v: [N, D]) {
                let g[i, j] = sum[d](x[i, d] * x[j, d])
                let h[i, j] = sum[d](x[i, d] * v[j, d])
                let c[i] = sum[k](w[k, i] * g[i, k] * h[i, k])
                sum[i](c[i])
            }",
        );
        assert!(symmetric(&l, 0));
        assert!(!symmetric(&l, 1));
        assert_eq!(transposed(&l, 0), None);
        let out = read_symmetric_along_rows(&l);
        assert_eq!(
            crate::print::expr(&out, &out.defs[2].body),
            "sum[k](w[k, i] * g[k, i] * h[i, k])"
        );
    }
}
