//! A row logsumexp and its softmax (`crate::softmax`) in one pass over each row. The
//! logsumexp's second pass stores each term's `exp(x - max)` as the softmax's element and
//! `1 / sum` as its row scale, which the readers multiply by (`p[b, c] * s[b]`, as
//! `crate::softmax::share` writes them); without a scale definition, a last pass over the row
//! (in cache) scales the elements instead. `exp(x - max) / sum` is `exp(x - lse)` to a few
//! ulp, for one `exp` per term instead of two. Where the max is not finite, or the sum is
//! NaN, the softmax is computed from its own body instead (and its scale is 1), so special
//! values come out as the definition says. Under a filter, the elements of dropped terms are
//! not written: the softmax is only ever read under its filter (`crate::softmax::share`).
//!
//! Row reductions over the same terms (`crate::rows`: cross-entropy's accuracy count and
//! smoothing mean) accumulate in the logsumexp's first pass ([`Lowering::companions`]).

use super::ClifError;
use super::expr::{Lowering, ReduceState};
use super::lse::{Companion, Terms};
use crate::ir::{Expr, Reducer, Tensor, VarId};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_module::Module;
use std::collections::HashMap;

impl<M: Module> Lowering<'_, M> {
    /// True when member `h` and the member `p` after it run as a pair ([`Self::softmax_pair`]):
    /// `p` is the softmax of row logsumexp `h`, whose terms run four at a time.
    pub(super) fn softmax_pairs(&self, h: usize, p: usize) -> bool {
        let Some((_, c, filter, term)) = crate::softmax::row_logsumexp(self.loss, h) else {
            return false;
        };
        crate::softmax::is_softmax_of(self.loss, h, p)
            && self.vector_reduction(Reducer::LogSumExp, &[c], filter, Some(term))
    }

    /// Emits row logsumexp `h` and its softmax `p` for the rows of the block (see the module
    /// doc), and the row reductions `companions` ([`Self::companions`]) in the logsumexp's
    /// first pass.
    pub(super) fn softmax_pair(
        &mut self,
        h: usize,
        p: usize,
        scale: Option<usize>,
        companions: &[usize],
    ) -> Result<(), ClifError> {
        let (b, c, filter, term) =
            crate::softmax::row_logsumexp(self.loss, h).expect("a row logsumexp");
        let (filter, term) = (filter.cloned(), term.clone());
        let [bp, cp] = self.loss.defs[p].indices[..] else {
            unreachable!("a softmax has two indices")
        };
        // The companions' terms over the logsumexp's own variables, which the vector loop
        // knows as its row and lane variables.
        let rows: Vec<RowReduction> = companions
            .iter()
            .map(|&r| {
                let mut rr = row_reduction(self.loss, r).expect("a row reduction");
                let map = HashMap::from([(rr.row, b), (rr.term, c)]);
                rr.filter = rr.filter.map(|f| f.rename_vars(&map));
                rr.body = rr.body.map(|e| e.rename_vars(&map));
                rr
            })
            .collect();
        let range = self.outer_range;
        self.for_each_from(&[b], range, &mut |s| {
            // The softmax's, its scale's and the companions' indices name the row and the
            // term.
            let row = s.var(b);
            s.vars.insert(bp, row);
            let col = s.var(c);
            s.vars.insert(cp, col);
            if let Some(sc) = scale {
                s.vars.insert(s.loss.defs[sc].indices[0], row);
            }
            for r in &rows {
                s.vars.insert(r.row, row);
            }
            let terms = Terms {
                vars: &[c],
                filter: filter.as_ref(),
                body: &term,
                range: None,
            };
            let mut states = vec![];
            for r in &rows {
                states.push(Companion {
                    op: r.op,
                    filter: r.filter.as_ref(),
                    body: r.body.as_ref(),
                    lanes: s.lane_state(r.op),
                    rest: s.scalar_state(r.op),
                });
            }
            let m = s.lse_max(terms, &states)?;
            for (k, r) in rows.iter().enumerate() {
                let total = s.combine_lanes(r.op, r.body.as_ref(), states[k].lanes);
                let (f, g, n) = states[k].rest;
                let rest = s.use_state([Some(f), Some(g), Some(n)]).like(r.op);
                let mut state = s.merge(r.op, total, rest);
                if r.filter.is_none() && state.n.is_some() {
                    state.n = Some(s.term_count(&[c], None));
                }
                let value = s.finish(r.op, state);
                let value = s.float(value);
                s.store_element(companions[k], value);
            }
            let finite = s.finite(m);
            let (plain, guarded, scale_block, direct, done) = (
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
            );
            s.b.ins().brif(finite, plain, &[], guarded, &[]);
            // A finite max: the sum pass stores exp(x - max). Terms the filter drops are left
            // as they are: the softmax is read only under its filter (`crate::softmax::share`).
            s.enter(plain);
            let total = s.lse_sum(terms, m, false, Some(p))?;
            s.store_logsumexp(h, m, total);
            let nan = s.b.ins().fcmp(FloatCC::Unordered, total, total);
            s.b.ins().brif(nan, direct, &[], scale_block, &[]);
            s.enter(scale_block);
            let one = s.f32(1.0);
            let r = s.b.ins().fdiv(one, total);
            if let Some(sc) = scale {
                // The softmax stays exp(x - max); its readers multiply by the row's scale.
                s.store_element(sc, r);
                s.b.ins().jump(done, &[]);
            } else {
                let read = Expr::Read {
                    tensor: Tensor::Def(p),
                    indices: vec![Expr::Index(bp), Expr::Index(cp)],
                };
                s.each_of_row(cp, &|s, vector| {
                    let x = s.expr(&read)?;
                    let x = s.float(x);
                    let r = if vector {
                        s.b.ins().splat(types::F32X4, r)
                    } else {
                        r
                    };
                    let y = s.b.ins().fmul(x, r);
                    s.store_element(p, y);
                    Ok(())
                })?;
                s.b.ins().jump(done, &[]);
            }
            // Not finite: the guarded sum, and the softmax from its body.
            s.enter(guarded);
            let total = s.lse_sum(terms, m, true, None)?;
            s.store_logsumexp(h, m, total);
            s.b.ins().jump(direct, &[]);
            s.enter(direct);
            s.fill(p, &[cp], None)?;
            if let Some(sc) = scale {
                let one = s.f32(1.0);
                s.store_element(sc, one);
            }
            s.b.ins().jump(done, &[]);
            s.enter(done);
            Ok(())
        })
    }

    /// The members after the pair of row logsumexp `members[i]` and its softmax that can be
    /// computed in the logsumexp's first pass, and the members they read that must then be
    /// computed before it: `(companions, earlier)`. A companion is a row reduction other than
    /// a logsumexp over the logsumexp's row and term dimensions ([`row_reduction`], as
    /// `crate::rows` makes them) that reads no member computed after the pair but the
    /// `earlier` ones: row definitions without reductions that read only what is computed
    /// before the pair.
    pub(super) fn companions(&self, members: &[usize], i: usize) -> (Vec<usize>, Vec<usize>) {
        let h = members[i];
        let Some((b, c, _, _)) = crate::softmax::row_logsumexp(self.loss, h) else {
            return (vec![], vec![]);
        };
        let dims = |v: VarId| self.loss.vars[v].dim;
        let before = &members[..i];
        let reads = |e: usize| -> Vec<usize> {
            let mut out = vec![];
            self.loss.defs[e].body.visit(&mut |x| {
                if let Expr::Read {
                    tensor: Tensor::Def(d),
                    ..
                } = x
                {
                    out.push(*d);
                }
            });
            out
        };
        let ready = |d: usize| !members.contains(&d) || before.contains(&d);
        let (mut companions, mut earlier) = (vec![], vec![]);
        for (j, &r) in members.iter().enumerate().skip(i + 2) {
            let Some(rr) = row_reduction(self.loss, r) else {
                continue;
            };
            // A logsumexp keeps its own two passes (and its softmax, when it has one).
            if rr.op == Reducer::LogSumExp
                || dims(rr.row) != dims(b)
                || dims(rr.term) != dims(c)
                || !self.vector_reduction(rr.op, &[rr.term], rr.filter.as_ref(), rr.body.as_ref())
            {
                continue;
            }
            let mut need = vec![];
            let ok = reads(r).into_iter().all(|d| {
                if ready(d) || earlier.contains(&d) {
                    return true;
                }
                let Some(pos) = members.iter().position(|&m| m == d) else {
                    return false;
                };
                let def = &self.loss.defs[d];
                let movable = pos > i + 1
                    && pos < j
                    && def.indices.len() == 1
                    && dims(def.indices[0]) == dims(b)
                    && !def.body.any(&mut |x| matches!(x, Expr::Reduce { .. }))
                    && reads(d).into_iter().all(ready);
                if movable && !need.contains(&d) {
                    need.push(d);
                }
                movable
            });
            if ok {
                companions.push(r);
                earlier.extend(need);
            }
        }
        (companions, earlier)
    }

    /// Stores logsumexp `h`'s value from its accumulators at the current row.
    fn store_logsumexp(&mut self, h: usize, m: Value, total: Value) {
        let state = ReduceState::new(Some(m), Some(total), None);
        let value = self.finish(Reducer::LogSumExp, state);
        let value = self.float(value);
        self.store_element(h, value);
    }

    /// Runs `step` over variable `v`'s dimension: four points at a time (`step(s, true)`),
    /// then the rest one by one.
    fn each_of_row(
        &mut self,
        v: VarId,
        step: &dyn Fn(&mut Self, bool) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        self.innermost(&[v], None, &[], &mut |s, last, start, end| {
            s.vector_loop(last, start, end, &mut |s| step(s, true), &mut |s, rest| {
                s.for_each_from(&[last], Some((rest, end)), &mut |s| step(s, false))
            })
        })
    }
}

/// A row definition `r[row] = op[term | filter](body)`.
struct RowReduction {
    row: VarId,
    term: VarId,
    op: Reducer,
    filter: Option<Expr>,
    body: Option<Expr>,
}

/// Definition `r` as a [`RowReduction`], when it is one (not an arg-max or arg-min).
fn row_reduction(loss: &crate::ir::Loss, r: usize) -> Option<RowReduction> {
    let def = &loss.defs[r];
    let [row] = def.indices[..] else { return None };
    let Expr::Reduce {
        op,
        vars,
        filter,
        body,
    } = &def.body
    else {
        return None;
    };
    let [term] = vars[..] else { return None };
    if matches!(op, Reducer::ArgMax | Reducer::ArgMin) || def.dtype != crate::ir::DType::Float {
        return None;
    }
    Some(RowReduction {
        row,
        term,
        op: *op,
        filter: filter.as_deref().cloned(),
        body: body.as_deref().cloned(),
    })
}
