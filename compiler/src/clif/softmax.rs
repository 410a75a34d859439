//! A row logsumexp and its softmax (`crate::softmax`) in one pass over each row. The
//! logsumexp's second pass stores each term's `exp(x - max)` as the softmax's element, and a
//! last pass over the row (in cache) scales it by `1 / sum`: `exp(x - max) / sum` is
//! `exp(x - lse)` to a few ulp, for one `exp` per term instead of two. Where the max is not
//! finite, or the sum is NaN, the softmax is computed from its own body instead, so special
//! values come out as the definition says. Under a filter, the elements of dropped terms are
//! not written: the softmax is only ever read under its filter (`crate::softmax::share`).

use super::ClifError;
use super::expr::{Lowering, ReduceState};
use super::lse::Terms;
use crate::ir::{Expr, Reducer, Tensor, VarId};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_module::Module;

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
    /// doc).
    pub(super) fn softmax_pair(&mut self, h: usize, p: usize) -> Result<(), ClifError> {
        let (b, c, filter, term) =
            crate::softmax::row_logsumexp(self.loss, h).expect("a row logsumexp");
        let (filter, term) = (filter.cloned(), term.clone());
        let [bp, cp] = self.loss.defs[p].indices[..] else {
            unreachable!("a softmax has two indices")
        };
        let range = self.outer_range;
        self.for_each_from(&[b], range, &mut |s| {
            // The softmax's indices name the row and the term.
            let row = s.var(b);
            s.vars.insert(bp, row);
            let col = s.var(c);
            s.vars.insert(cp, col);
            let terms = Terms {
                vars: &[c],
                filter: filter.as_ref(),
                body: &term,
                range: None,
            };
            let m = s.lse_max(terms)?;
            let finite = s.finite(m);
            let (plain, guarded, scale, direct, done) = (
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
                s.b.create_block(),
            );
            s.b.ins().brif(finite, plain, &[], guarded, &[]);
            // A finite max: the sum pass stores exp(x - max). Terms the filter drops are left
            // as they are: the softmax is read only under its filter (`crate::softmax::share`).
            s.b.switch_to_block(plain);
            let total = s.lse_sum(terms, m, false, Some(p))?;
            s.store_logsumexp(h, m, total);
            let nan = s.b.ins().fcmp(FloatCC::Unordered, total, total);
            s.b.ins().brif(nan, direct, &[], scale, &[]);
            s.b.switch_to_block(scale);
            let one = s.f32(1.0);
            let r = s.b.ins().fdiv(one, total);
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
            // Not finite: the guarded sum, and the softmax from its body.
            s.b.switch_to_block(guarded);
            let total = s.lse_sum(terms, m, true, None)?;
            s.store_logsumexp(h, m, total);
            s.b.ins().jump(direct, &[]);
            s.b.switch_to_block(direct);
            s.fill(p, &[cp], None)?;
            s.b.ins().jump(done, &[]);
            s.b.switch_to_block(done);
            Ok(())
        })
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
