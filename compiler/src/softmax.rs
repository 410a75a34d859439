//! Shared softmax terms for the CPU backend. The gradient of a `logsumexp` is a softmax: after
//! differentiation, cross-entropy's gradient reads `exp(logits[b, c] - lse[b])` where
//! `lse[b] = logsumexp[c](logits[b, c])`, and Multi-Similarity's reads
//! `exp((s[i, j] - base) * beta - h[i])` under the filter of `h[i] = logsumexp[j | ..](beta *
//! (s[i, j] - base))`. The logsumexp's second pass already computes `exp(x - max)` for every
//! term; [`share`] gives the softmax a definition of its own, `p[b, c] = exp(T - lse[b])`
//! (`if F then .. else 0.0` under a filter `F`), and a row scale `s[b] = 1`, read where the
//! expression was as `p[b, c] * s[b]`, so that a backend can fill `p` (and `s`) from the
//! values of that pass (`clif::softmax`) instead of calling `exp` again. The result is
//! equivalent IR.

use crate::alpha::alpha_eq;
use crate::fresh::Fresh;
use crate::ir::{BinOp, Builtin, DType, Def, DefKind, Expr, Loss, Reducer, Tensor, VarId};
use std::collections::HashMap;

/// The most nodes the filter and body of a `logsumexp` may have for its terms to be computed
/// twice (its two passes, `clif::lse`), and so for its softmax to be shared. 20 takes in
/// Multi-Similarity's positive pairs (`labels[j] == labels[i] && j != i`, `-alpha * (s[i, j] -
/// base)`: 17 nodes), whose one-pass update chained an `exp` from each kept group of four to
/// the next (12 left them there: 6.28–6.39 ms against 6.19–6.25, 2026-12-07).
const CHEAP: usize = 20;

/// True when the terms of `logsumexp[.. | filter](body)` are cheap to compute twice: no call,
/// no reduction, at most [`CHEAP`] nodes.
pub fn cheap_terms(filter: Option<&Expr>, body: &Expr) -> bool {
    let mut nodes = 0;
    let mut costly = false;
    for e in filter.into_iter().chain([body]) {
        e.visit(&mut |x| {
            nodes += 1;
            costly |= matches!(x, Expr::Call(..) | Expr::Reduce { .. });
        });
    }
    !costly && nodes <= CHEAP
}

/// A row logsumexp `h[b] = logsumexp[c | F](T)` with cheap terms that read no index but `b`
/// and `c`: `(b, c, F, T)`.
pub fn row_logsumexp(loss: &Loss, h: usize) -> Option<(VarId, VarId, Option<&Expr>, &Expr)> {
    let def = &loss.defs[h];
    let [b] = def.indices[..] else { return None };
    let Expr::Reduce {
        op: Reducer::LogSumExp,
        vars,
        filter,
        body: Some(body),
    } = &def.body
    else {
        return None;
    };
    let [c] = vars[..] else { return None };
    let filter = filter.as_deref();
    let mut others = false;
    for e in filter.into_iter().chain([&**body]) {
        e.visit(&mut |x| others |= matches!(x, Expr::Index(v) if *v != b && *v != c));
    }
    (def.kind == DefKind::Let && !others && cheap_terms(filter, body))
        .then_some((b, c, filter, body))
}

/// The body of the softmax of row logsumexp `h` over indices `(b, c)`:
/// `exp(T - h[b])`, or `if F then exp(T - h[b]) else 0.0`, with `T` and `F` read at `(b, c)`.
pub fn softmax_body(loss: &Loss, h: usize, b: VarId, c: VarId) -> Option<Expr> {
    let (hb, hc, filter, term) = row_logsumexp(loss, h)?;
    let map = HashMap::from([(hb, b), (hc, c)]);
    let lse = Expr::Read {
        tensor: Tensor::Def(h),
        indices: vec![Expr::Index(b)],
    };
    let e = Expr::Call(
        Builtin::Exp,
        vec![Expr::Binary(
            BinOp::Sub,
            Box::new(term.rename_vars(&map)),
            Box::new(lse),
        )],
    );
    Some(match filter {
        None => e,
        Some(f) => Expr::Select(
            Box::new(f.rename_vars(&map)),
            Box::new(e),
            Box::new(Expr::Float(0.0)),
        ),
    })
}

/// True when definition `p` is the softmax of row logsumexp `h` ([`softmax_body`] at `p`'s
/// own indices).
pub fn is_softmax_of(loss: &Loss, h: usize, p: usize) -> bool {
    let def = &loss.defs[p];
    match def.indices[..] {
        [b, c] => softmax_body(loss, h, b, c).is_some_and(|body| body == def.body),
        _ => false,
    }
}

/// `loss` with the softmax of each row logsumexp that a later definition computes as
/// `exp(T' - h[b'])` (with `T'` the logsumexp's terms at `(b', c')`, up to the order of the
/// operands of `+`, `*`, `==` and `!=`, and under the logsumexp's filter when it has one)
/// defined right after it, with a row scale `s[b] = 1` after that, and read there as
/// `p[b', c'] * s[b']`; and the ids `(p, s)` of the definitions added.
///
/// The program only ever reads the product, which is what the bodies say. A backend may
/// store another factorisation of it: `clif::softmax` stores `exp(T - max)` in `p` and
/// `1 / Σ exp(T - max)` in `s` from the logsumexp's passes, so that no pass over the row
/// scales the softmax.
pub fn share(loss: &Loss) -> (Loss, Vec<(usize, usize)>) {
    let mut out = loss.clone();
    let mut added = vec![];
    let mut h = 0;
    while h < out.defs.len() {
        let Some((hb, hc, _, _)) = row_logsumexp(&out, h) else {
            h += 1;
            continue;
        };
        if !(h + 1..out.defs.len()).any(|k| replace(&out, h, None, k).1) {
            h += 1;
            continue;
        }
        // The softmax and its scale go right after the logsumexp: the definitions after it
        // move up two.
        let (p, sc) = (h + 1, h + 2);
        let map: Vec<usize> = (0..out.defs.len())
            .map(|d| if d > h { d + 2 } else { d })
            .collect();
        let mut fresh = Fresh::new(&out);
        let (b, c) = (fresh.copy_var(hb), fresh.copy_var(hc));
        let name = fresh.def_name(&format!("softmax_{}", out.defs[h].name));
        let scale_row = fresh.copy_var(hb);
        let scale_name = fresh.def_name(&format!("softmax_scale_{}", out.defs[h].name));
        out.vars = fresh.vars;
        let body = softmax_body(&out, h, b, c).expect("a row logsumexp");
        out.rewrite_bodies(|e| e.renumber_defs(&map));
        out.defs.insert(
            p,
            Def {
                name,
                kind: DefKind::Let,
                indices: vec![b, c],
                dtype: DType::Float,
                body,
            },
        );
        out.defs.insert(
            sc,
            Def {
                name: scale_name,
                kind: DefKind::Let,
                indices: vec![scale_row],
                dtype: DType::Float,
                body: Expr::Float(1.0),
            },
        );
        for k in sc + 1..out.defs.len() {
            out.defs[k].body = replace(&out, h, Some((p, sc)), k).0;
        }
        added.push((p, sc));
        h = sc + 1;
    }
    (out, added)
}

/// The body of definition `k` with every `exp(T' - h[b'])` that is the softmax of row
/// logsumexp `h` at `(b', c')` replaced by `p[b', c'] * s[b']` (left as it is without
/// `(p, s)`), and whether there was one.
fn replace(loss: &Loss, h: usize, p: Option<(usize, usize)>, k: usize) -> (Expr, bool) {
    let def = &loss.defs[k];
    let mut found = false;
    let out = replace_under(loss, h, p, &def.body, &def.indices, &[], &mut found);
    (out, found)
}

/// [`replace`] in `e`, inside the `then` branches of the conditions `guards`; `indices` are
/// the definition's, among which `c'` is.
fn replace_under(
    loss: &Loss,
    h: usize,
    p: Option<(usize, usize)>,
    e: &Expr,
    indices: &[VarId],
    guards: &[&Expr],
    found: &mut bool,
) -> Expr {
    if let Some((b, c)) = softmax_at(loss, h, e, indices, guards) {
        *found = true;
        let Some((p, s)) = p else {
            return e.clone();
        };
        let softmax = Expr::Read {
            tensor: Tensor::Def(p),
            indices: vec![Expr::Index(b), Expr::Index(c)],
        };
        let scale = Expr::Read {
            tensor: Tensor::Def(s),
            indices: vec![Expr::Index(b)],
        };
        return Expr::Binary(BinOp::Mul, Box::new(softmax), Box::new(scale));
    }
    match e {
        Expr::Select(cond, then, other) => {
            let mut inner = guards.to_vec();
            inner.push(cond);
            Expr::Select(
                Box::new(replace_under(loss, h, p, cond, indices, guards, found)),
                Box::new(replace_under(loss, h, p, then, indices, &inner, found)),
                Box::new(replace_under(loss, h, p, other, indices, guards, found)),
            )
        }
        // Only elementwise readers: inside a reduction the term's index would be the
        // reduction's own variable, and the softmax read in a loop of its own.
        Expr::Reduce { .. } => e.clone(),
        other => other.map_children(|x| replace_under(loss, h, p, x, indices, guards, found)),
    }
}

/// `(b', c')` when `e` is `exp(T' - h[b'])` with `T'` the terms of row logsumexp `h` at
/// `(b', c')`, `c'` one of `indices`, and, when `h` has a filter, one of `guards` that filter
/// at `(b', c')` (both up to the order of the operands of `+`, `*`, `==` and `!=`).
fn softmax_at(
    loss: &Loss,
    h: usize,
    e: &Expr,
    indices: &[VarId],
    guards: &[&Expr],
) -> Option<(VarId, VarId)> {
    let (hb, hc, filter, term) = row_logsumexp(loss, h)?;
    let Expr::Call(Builtin::Exp, args) = e else {
        return None;
    };
    let [Expr::Binary(BinOp::Sub, x, lse)] = &args[..] else {
        return None;
    };
    let Expr::Read {
        tensor: Tensor::Def(d),
        indices: at,
    } = &**lse
    else {
        return None;
    };
    let [Expr::Index(b)] = at[..] else {
        return None;
    };
    if *d != h || loss.vars[b].dim != loss.vars[hb].dim {
        return None;
    }
    let same = |a: &Expr, other: &Expr, c: VarId| {
        let mut pairs = HashMap::from([(hb, b), (hc, c)]);
        alpha_eq(a, other, &mut pairs, &loss.vars, true)
    };
    indices
        .iter()
        .copied()
        .filter(|&c| c != b && loss.vars[c].dim == loss.vars[hc].dim)
        .find(|&c| same(term, x, c) && filter.is_none_or(|f| guards.iter().any(|g| same(f, g, c))))
        .map(|c| (b, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions of `source` after [`share`], printed.
    fn shared(source: &str) -> Vec<String> {
        let (out, _) = share(&crate::test_loss(source));
        crate::printed_defs(&out)
    }

    #[test]
    fn the_softmax_of_a_logsumexp_becomes_a_definition_read_where_it_was_with_its_scale() {
        let defs = shared(
            "loss l(x: [B, C]) {
                let r[b] = logsumexp[c](x[b, c])
                let g[b, k] = exp(x[b, k] - r[b]) * 2
                sum[b, c](g[b, c])
            }",
        );
        assert_eq!(
            defs,
            [
                "r = logsumexp[c](x[b, c])",
                "softmax_r = exp(x[b1, c1] - r[b1])",
                "softmax_scale_r = 1.0",
                "g = softmax_r[b, k] * softmax_scale_r[b] * 2",
            ]
        );
    }

    #[test]
    fn terms_match_up_to_operand_order_and_a_filter_only_under_itself() {
        // Under the filter (written the other way round) with the term's product commuted:
        // shared. Unguarded, or with another term: left alone.
        let defs = shared(
            "loss l(x: [B, B], t: int[B]) {
                let r[b] = logsumexp[c | t[c] != t[b]](2 * x[b, c])
                let g[b, k] = if t[b] != t[k] then exp(x[b, k] * 2 - r[b]) else 0.0
                let u[b, k] = exp(x[b, k] * 2 - r[b])
                let v[b, k] = if t[b] != t[k] then exp(x[b, k] * 3 - r[b]) else 0.0
                sum[b, c](g[b, c] + u[b, c] + v[b, c])
            }",
        );
        assert_eq!(
            defs[1],
            "softmax_r = if t[c1] != t[b1] then exp(2 * x[b1, c1] - r[b1]) else 0.0"
        );
        assert_eq!(defs[2], "softmax_scale_r = 1.0");
        assert_eq!(
            defs[3],
            "g = if t[b] != t[k] then softmax_r[b, k] * softmax_scale_r[b] else 0.0"
        );
        assert_eq!(defs[4], "u = exp(x[b, k] * 2 - r[b])");
        assert_eq!(
            defs[5],
            "v = if t[b] != t[k] then exp(x[b, k] * 3 - r[b]) else 0.0"
        );
    }

    #[test]
    fn costly_terms_and_unread_softmaxes_add_nothing() {
        let source = "loss l(x: [B, C]) {
            let r[b] = logsumexp[c](exp(x[b, c]))
            let g[b, k] = exp(exp(x[b, k]) - r[b])
            let q[b] = logsumexp[c](x[b, c])
            sum[b, c](g[b, c]) + sum[b](q[b])
        }";
        let (out, added) = share(&crate::test_loss(source));
        assert!(added.is_empty());
        assert_eq!(out, crate::test_loss(source));
    }
}
