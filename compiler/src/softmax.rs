//! Shared softmax terms for the CPU backend. The gradient of a `logsumexp` is a softmax: after
//! differentiation, cross-entropy's gradient reads `exp(logits[b, c] - lse[b])` where
//! `lse[b] = logsumexp[c](logits[b, c])`, and Multi-Similarity's reads
//! `exp((s[i, j] - base) * beta - h[i])` under the filter of `h[i] = logsumexp[j | ..](beta *
//! (s[i, j] - base))`. The logsumexp's second pass already computes `exp(x - max)` for every
//! term; [`share`] gives the softmax a definition of its own, `p[b, c] = exp(T - lse[b])`
//! (`if F then .. else 0.0` under a filter `F`), read where the expression was, so that a
//! backend can fill `p` from the values of that pass (`clif::softmax`) instead of calling
//! `exp` again. The result is equivalent IR.

use crate::ir::{BinOp, Builtin, Def, DefKind, Expr, IndexVar, Loss, Reducer, Tensor, VarId};
use std::collections::HashMap;

/// The most nodes the filter and body of a `logsumexp` may have for its terms to be computed
/// twice (its two passes, `clif::lse`), and so for its softmax to be shared.
const CHEAP: usize = 12;

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
            Box::new(rename(term, &map)),
            Box::new(lse),
        )],
    );
    Some(match filter {
        None => e,
        Some(f) => Expr::Select(
            Box::new(rename(f, &map)),
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
/// operands of `+` and `*`, and under the logsumexp's filter when it has one) defined right
/// after it and read there instead; and the ids of the softmax definitions added.
pub fn share(loss: &Loss) -> (Loss, Vec<usize>) {
    let mut out = loss.clone();
    let mut added = vec![];
    let mut h = 0;
    while h < out.defs.len() {
        if row_logsumexp(&out, h).is_none()
            || !(h + 1..out.defs.len()).any(|k| replace(&out, h, h, &out.defs[k].body).1)
        {
            h += 1;
            continue;
        }
        // Room for the softmax at h + 1.
        let shift = |d: usize| if d > h { d + 1 } else { d };
        let mut defs: Vec<Def> = out.defs.iter().map(|d| renumber(d, &shift)).collect();
        let p = h + 1;
        let (b, c) = (
            fresh(&mut out.vars, h, &defs, 0),
            fresh(&mut out.vars, h, &defs, 1),
        );
        let body = softmax_body(&out, h, b, c).expect("a row logsumexp");
        defs.insert(
            p,
            Def {
                name: fresh_name(&out, &format!("softmax_{}", out.defs[h].name)),
                kind: DefKind::Let,
                indices: vec![b, c],
                dtype: crate::ir::DType::Float,
                body,
            },
        );
        out.result = remap(&out.result, &shift);
        out.defs = defs;
        for k in p + 1..out.defs.len() {
            let (body, _) = replace(&out, h, p, &out.defs[k].body);
            out.defs[k].body = body;
        }
        added.push(p);
        h = p + 1;
    }
    (out, added)
}

/// A new index variable over the dimension of the `k`th variable of row logsumexp `h` (its row
/// for 0, its term for 1), read in `defs` (already renumbered; `h` keeps its id).
fn fresh(vars: &mut Vec<IndexVar>, h: usize, defs: &[Def], k: usize) -> VarId {
    let def = &defs[h];
    let v = match (&def.body, k) {
        (_, 0) => def.indices[0],
        (Expr::Reduce { vars, .. }, _) => vars[0],
        _ => unreachable!("a row logsumexp"),
    };
    let var = IndexVar {
        name: format!("{}_p", vars[v].name),
        dim: vars[v].dim,
    };
    vars.push(var);
    vars.len() - 1
}

/// `base`, or `base` with a number, not the name of any definition or input of `loss`.
fn fresh_name(loss: &Loss, base: &str) -> String {
    let taken =
        |n: &str| loss.defs.iter().any(|d| d.name == n) || loss.inputs.iter().any(|i| i.name == n);
    let mut name = base.to_string();
    let mut k = 1;
    while taken(&name) {
        k += 1;
        name = format!("{base}{k}");
    }
    name
}

/// `def` with its reads of definitions renumbered by `shift`.
fn renumber(def: &Def, shift: &dyn Fn(usize) -> usize) -> Def {
    Def {
        body: remap(&def.body, shift),
        ..def.clone()
    }
}

fn remap(e: &Expr, shift: &dyn Fn(usize) -> usize) -> Expr {
    match e {
        Expr::Read {
            tensor: Tensor::Def(d),
            indices,
        } => Expr::Read {
            tensor: Tensor::Def(shift(*d)),
            indices: indices.iter().map(|i| remap(i, shift)).collect(),
        },
        other => other.map_children(|c| remap(c, shift)),
    }
}

/// `e` with every `exp(T' - h[b'])` that is the softmax of row logsumexp `h` at `(b', c')`
/// replaced by `p[b', c']`, and whether there was one.
fn replace(loss: &Loss, h: usize, p: usize, e: &Expr) -> (Expr, bool) {
    let mut found = false;
    let out = replace_under(loss, h, p, e, &[], &mut found);
    (out, found)
}

/// [`replace`] inside the `then` branches of the conditions `guards`.
fn replace_under(
    loss: &Loss,
    h: usize,
    p: usize,
    e: &Expr,
    guards: &[&Expr],
    found: &mut bool,
) -> Expr {
    if let Some((b, c)) = softmax_at(loss, h, e, guards) {
        *found = true;
        return Expr::Read {
            tensor: Tensor::Def(p),
            indices: vec![Expr::Index(b), Expr::Index(c)],
        };
    }
    match e {
        Expr::Select(cond, then, other) => {
            let mut inner = guards.to_vec();
            inner.push(cond);
            Expr::Select(
                Box::new(replace_under(loss, h, p, cond, guards, found)),
                Box::new(replace_under(loss, h, p, then, &inner, found)),
                Box::new(replace_under(loss, h, p, other, guards, found)),
            )
        }
        // Only elementwise readers: inside a reduction the term's index would be the
        // reduction's own variable, and the softmax read in a loop of its own.
        Expr::Reduce { .. } => e.clone(),
        other => other.map_children(|x| replace_under(loss, h, p, x, guards, found)),
    }
}

/// `(b', c')` when `e` is `exp(T' - h[b'])` with `T'` the terms of row logsumexp `h` at
/// `(b', c')`, and, when `h` has a filter, one of `guards` is that filter at `(b', c')`.
fn softmax_at(loss: &Loss, h: usize, e: &Expr, guards: &[&Expr]) -> Option<(VarId, VarId)> {
    let (hb, hc, filter, term) = row_logsumexp(loss, h)?;
    let Expr::Call(Builtin::Exp, args) = e else {
        return None;
    };
    let [Expr::Binary(BinOp::Sub, x, lse)] = &args[..] else {
        return None;
    };
    let Expr::Read {
        tensor: Tensor::Def(d),
        indices,
    } = &**lse
    else {
        return None;
    };
    let [Expr::Index(b)] = indices[..] else {
        return None;
    };
    if *d != h || loss.vars[b].dim != loss.vars[hb].dim {
        return None;
    }
    let mut map = HashMap::from([(hb, b)]);
    if !same(term, x, &mut map) {
        return None;
    }
    let &c = map.get(&hc)?;
    if c == b || loss.vars[c].dim != loss.vars[hc].dim {
        return None;
    }
    if let Some(f) = filter {
        let kept = guards.iter().any(|g| same(f, g, &mut map.clone()));
        if !kept {
            return None;
        }
    }
    Some((b, c))
}

/// True when `b` is `a` with its index variables renamed by `map` (extended with the first
/// use of each variable not in it), up to the order of the operands of `+`, `*`, `==` and
/// `!=`.
fn same(a: &Expr, b: &Expr, map: &mut HashMap<VarId, VarId>) -> bool {
    match (a, b) {
        (Expr::Index(u), Expr::Index(v)) => *map.entry(*u).or_insert(*v) == *v,
        (Expr::Binary(op, a1, a2), Expr::Binary(op2, b1, b2)) if op == op2 => {
            let mut straight = map.clone();
            if same(a1, b1, &mut straight) && same(a2, b2, &mut straight) {
                *map = straight;
                return true;
            }
            let commutes = matches!(op, BinOp::Add | BinOp::Mul | BinOp::Eq | BinOp::Ne);
            let mut crossed = map.clone();
            if commutes && same(a1, b2, &mut crossed) && same(a2, b1, &mut crossed) {
                *map = crossed;
                return true;
            }
            false
        }
        (Expr::Unary(o1, x), Expr::Unary(o2, y)) => o1 == o2 && same(x, y, map),
        (
            Expr::Read {
                tensor: t1,
                indices: i1,
            },
            Expr::Read {
                tensor: t2,
                indices: i2,
            },
        ) => t1 == t2 && i1.len() == i2.len() && i1.iter().zip(i2).all(|(x, y)| same(x, y, map)),
        (Expr::Call(f1, x1), Expr::Call(f2, x2)) => {
            f1 == f2 && x1.len() == x2.len() && x1.iter().zip(x2).all(|(x, y)| same(x, y, map))
        }
        (Expr::Select(c1, t1, e1), Expr::Select(c2, t2, e2)) => {
            same(c1, c2, map) && same(t1, t2, map) && same(e1, e2, map)
        }
        (Expr::Reduce { .. }, _) | (_, Expr::Reduce { .. }) => false,
        _ => a == b,
    }
}

/// `e` with its index variables renamed by `map`.
fn rename(e: &Expr, map: &HashMap<VarId, VarId>) -> Expr {
    match e {
        Expr::Index(v) => Expr::Index(*map.get(v).unwrap_or(v)),
        other => other.map_children(|c| rename(c, map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions of `source` after [`share`], printed.
    fn shared(source: &str) -> Vec<String> {
        let (out, _) = share(&crate::test_loss(source));
        out.defs
            .iter()
            .map(|d| format!("{} = {}", d.name, crate::print::expr(&out, &d.body)))
            .collect()
    }

    #[test]
    fn the_softmax_of_a_logsumexp_becomes_a_definition_read_where_it_was() {
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
                "softmax_r = exp(x[b_p, c_p] - r[b_p])",
                "g = softmax_r[b, k] * 2",
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
            "softmax_r = if t[c_p] != t[b_p] then exp(2 * x[b_p, c_p] - r[b_p]) else 0.0"
        );
        assert_eq!(defs[2], "g = if t[b] != t[k] then softmax_r[b, k] else 0.0");
        assert_eq!(defs[3], "u = exp(x[b, k] * 2 - r[b])");
        assert_eq!(
            defs[4],
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
