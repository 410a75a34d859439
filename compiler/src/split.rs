//! Splitting scalar expressions for the compiled backends: every reduction at the top of a
//! scalar definition or of the loss (`mean[b](...) + 0.1 * mean[b](...)`) becomes a scalar
//! definition of its own whose body is just that reduction. A backend can then compute such a
//! definition in blocks of its first index, in parallel, and combine the blocks' partial
//! results in a fixed order (see `clif::Part::Partial`).
//!
//! Only reductions every evaluation reaches move: one under an `if` branch, or on the right of
//! `&&`/`||`, might not be evaluated by the original (and may index out of range there), so it
//! stays. The result is equivalent IR.

use crate::ir::{BinOp, Def, DefKind, Expr, Loss, Tensor};

/// `loss` with each eagerly evaluated reduction of a scalar context in a definition of its own.
pub fn split(loss: &Loss) -> Loss {
    let mut out = loss.clone();
    out.defs.clear();
    // Old definition id → new id.
    let mut map = vec![];
    for def in &loss.defs {
        let mut body = def.body.renumber_defs(&map);
        if def.indices.is_empty() && !matches!(body, Expr::Reduce { .. }) {
            body = extract(loss, body, &mut out.defs, &def.name);
        }
        map.push(out.defs.len());
        out.defs.push(Def {
            body,
            ..def.clone()
        });
    }
    let result = loss.result.renumber_defs(&map);
    out.result = extract(loss, result, &mut out.defs, "loss");
    out
}

/// Moves the eagerly evaluated top-level reductions of the scalar expression `e` into new
/// definitions (named after `owner`) appended to `defs`.
fn extract(loss: &Loss, e: Expr, defs: &mut Vec<Def>, owner: &str) -> Expr {
    match e {
        Expr::Reduce { .. } => {
            let dtype = loss.type_of(&e);
            let id = defs.len();
            defs.push(Def {
                name: format!("{owner}_part{id}"),
                kind: DefKind::Let,
                indices: vec![],
                dtype,
                body: e,
            });
            Expr::Read {
                tensor: Tensor::Def(id),
                indices: vec![],
            }
        }
        // Lazily evaluated parts keep their reductions where they are.
        Expr::Select(c, a, b) => Expr::Select(Box::new(extract(loss, *c, defs, owner)), a, b),
        Expr::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
            Expr::Binary(op, Box::new(extract(loss, *a, defs, owner)), b)
        }
        other => other.map_children(|c| extract(loss, c.clone(), defs, owner)),
    }
}
