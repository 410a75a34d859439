//! Row reductions out of scalar reductions, for the compiled CPU backend: in a scalar
//! reduction over rows, `mean[b | kept[b]](if count[c | x[b, c] > t[b]]() == 0 then 1 else 0)`,
//! each reduction over a row's terms that every evaluation reaches becomes a row definition
//! of its own, `let r[b] = count[c | x[b, c] > t[b]]()`, read where it was. The backend can
//! then compute it in the same pass over the row as a row logsumexp's largest term
//! (`clif::softmax`): cross-entropy's accuracy count and label-smoothing mean read each row of
//! logits once with its logsumexp instead of once each.
//!
//! A row reduction moves only when it is safe to compute for every row, including rows the
//! outer filter drops: it reads tensors at index variables only (no gather or constant
//! index, which could be out of range there; `crate::hoist`'s rule). The result is
//! equivalent IR.

use crate::contraction::free_vars;
use crate::fresh::Fresh;
use crate::hoist::reads_in_range;
use crate::ir::{BinOp, DType, Def, DefKind, Expr, Loss, Tensor};
use std::collections::HashMap;

/// `loss` with the row reductions of its scalar reductions over one variable as definitions
/// of their own (see the module doc), each right before the definition it came from.
pub fn extract(loss: &Loss) -> Loss {
    let mut out = loss.clone();
    let mut d = 0;
    while d < out.defs.len() {
        let (b, found) = match &out.defs[d] {
            Def {
                indices,
                body: body @ Expr::Reduce { vars, .. },
                ..
            } if indices.is_empty() && vars.len() == 1 => (vars[0], row_reductions(body)),
            _ => (0, vec![]),
        };
        if found.is_empty() {
            d += 1;
            continue;
        }
        let k = found.len();
        // The new definitions go right before `d`: it and the definitions after it move up.
        let map: Vec<usize> = (0..out.defs.len())
            .map(|e| if e >= d { e + k } else { e })
            .collect();
        out.rewrite_bodies(|e| e.renumber_defs(&map));
        let mut fresh = Fresh::new(&out);
        let mut new_defs = vec![];
        let mut body = out.defs[d].body.clone();
        for (j, r) in found.iter().enumerate() {
            let r = r.renumber_defs(&map);
            let row = fresh.copy_var(b);
            let name = fresh.def_name(&format!("{}_row", out.defs[d].name));
            let renamed = r.rename_vars(&HashMap::from([(b, row)]));
            new_defs.push(Def {
                name,
                kind: DefKind::Let,
                indices: vec![row],
                dtype: DType::Float,
                body: renamed,
            });
            let read = Expr::Read {
                tensor: Tensor::Def(d + j),
                indices: vec![Expr::Index(b)],
            };
            body = replace(&body, &r, &read);
        }
        out.vars = fresh.vars;
        out.defs[d].body = body;
        for (j, def) in new_defs.into_iter().enumerate() {
            out.defs.insert(d + j, def);
        }
        d += k + 1;
    }
    out
}

/// The row reductions of a scalar reduction `op[b | f](E)` that move (see the module doc):
/// reductions over other variables in `E`'s eagerly evaluated positions whose only free
/// variable is `b` and whose reads stay in range.
fn row_reductions(e: &Expr) -> Vec<Expr> {
    let Expr::Reduce {
        vars,
        body: Some(body),
        ..
    } = e
    else {
        return vec![];
    };
    let [b] = vars[..] else {
        return vec![];
    };
    let mut found = vec![];
    eager(body, &mut |r| {
        if let Expr::Reduce { vars: inner, .. } = r
            && !inner.contains(&b)
            && free_vars(r).into_iter().eq([b])
            && reads_in_range(r)
            && !found.contains(r)
        {
            found.push(r.clone());
            return true;
        }
        false
    });
    found
}

/// Calls `f` on the subexpressions of `e` that every evaluation of `e` evaluates, outermost
/// first; not inside one where `f` returns true.
fn eager(e: &Expr, f: &mut impl FnMut(&Expr) -> bool) {
    if f(e) {
        return;
    }
    match e {
        Expr::Unary(_, a) => eager(a, f),
        Expr::Binary(BinOp::And | BinOp::Or, a, _) => eager(a, f),
        Expr::Binary(_, a, b) => {
            eager(a, f);
            eager(b, f);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| eager(a, f)),
        Expr::Select(c, _, _) => eager(c, f),
        _ => {}
    }
}

/// `e` with each occurrence of `from` replaced by `to`.
fn replace(e: &Expr, from: &Expr, to: &Expr) -> Expr {
    if e == from {
        return to.clone();
    }
    e.map_children(|c| replace(c, from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions of `source` after [`extract`], printed.
    fn extracted(source: &str) -> Vec<String> {
        let loss = crate::split::split(&crate::test_loss(source));
        let out = extract(&loss);
        crate::printed_defs(&out)
    }

    #[test]
    fn row_reductions_of_a_scalar_reduction_become_row_definitions() {
        let defs = extracted(
            "loss l(x: [B, C], t: int[B]) {
                let m = mean[b | t[b] >= 0](if count[c | x[b, c] > 0.0 && c < t[b]]() == 0 then 1 else 0)
                m + mean[b](x[b, 0] - mean[c](x[b, c]))
            }",
        );
        assert_eq!(
            defs,
            [
                "m_row = count[c | x[b1, c] > 0.0 && c < t[b1]]()",
                "m = mean[b | t[b] >= 0](if m_row[b] == 0 then 1 else 0)",
                "loss_part1_row = mean[c](x[b2, c])",
                "loss_part1 = mean[b](x[b, 0] - loss_part1_row[b])",
            ]
        );
    }

    #[test]
    fn gathers_branches_and_terms_of_other_rows_stay() {
        let defs = extracted(
            "loss l(x: [B, C], t: int[B]) {
                let g = sum[b](sum[c](x[b, t[b]] * x[b, c]))
                let s = sum[b](if t[b] > 0 then sum[c](x[b, c]) else 0.0)
                let o = sum[b](sum[c](x[0, c]) * x[b, 0])
                g + s + o
            }",
        );
        assert_eq!(
            defs,
            [
                "g = sum[b](sum[c](x[b, t[b]] * x[b, c]))",
                "s = sum[b](if t[b] > 0 then sum[c](x[b, c]) else 0.0)",
                "o = sum[b](sum[c](x[0, c]) * x[b, 0])",
            ]
        );
    }
}
