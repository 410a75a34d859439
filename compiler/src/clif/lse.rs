//! `logsumexp` in two passes over its terms when they are cheap to compute twice (a read, a
//! scaled difference, `crate::softmax::cheap_terms`): first the largest term, then the sum of
//! `exp(x - max)`. The one-pass update (`reduce.rs`) needs, for every term, a comparison, two
//! blends, a multiply and `exp(-|x - m|)`; the second pass here needs only `exp(x - max)` and
//! an add, and the first a compare and a blend. The result is the same pair (max, sum) the
//! one-pass update keeps, so blocks still merge with [`Lowering::merge`].
//!
//! NaN terms are left out of the max and carried by the sum. When the max is not finite
//! (every term `-inf`, or a `+inf` term), `exp(x - max)` would be NaN for the infinite terms,
//! so the second pass then counts those as 0, as the one-pass update does.

use super::ClifError;
use super::expr::{Lowering, ReduceState};
use super::vector::LANES;
use crate::ir::{Expr, VarId};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::Variable;
use cranelift_module::Module;

/// The terms of a logsumexp: its variables (the first over `range` when given), filter and
/// body.
#[derive(Clone, Copy)]
pub(super) struct Terms<'e> {
    pub vars: &'e [VarId],
    pub filter: Option<&'e Expr>,
    pub body: &'e Expr,
    pub range: Option<(Value, Value)>,
}

/// A reduction computed in a row logsumexp's first pass (`clif::softmax`): its reducer,
/// filter and body over the logsumexp's variables, and its lane and scalar accumulators.
pub(super) struct Companion<'e> {
    pub op: crate::ir::Reducer,
    pub filter: Option<&'e Expr>,
    pub body: Option<&'e Expr>,
    pub lanes: (Variable, Variable, Variable),
    pub rest: (Variable, Variable, Variable),
}

/// What a pass does with each term (four in its vector loop, whose end it is given).
type PassStep<'a, L> = dyn Fn(&mut L, Variable, Option<Value>) -> Result<(), ClifError> + 'a;

impl<M: Module> Lowering<'_, M> {
    /// The accumulators (max, sum of `exp(x - max)`) of `logsumexp[vars | filter](body)`, the
    /// first variable over `range` when given, in two passes (see the module doc).
    pub(super) fn logsumexp_in_two_passes(
        &mut self,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: &Expr,
        range: Option<(Value, Value)>,
    ) -> Result<ReduceState, ClifError> {
        let terms = Terms {
            vars,
            filter,
            body,
            range,
        };
        let m = self.lse_max(terms, &[])?;
        // The sum of exp(x - max): plain where the max is finite, guarded otherwise.
        let total = self.b.declare_var(types::F32);
        let finite = self.finite(m);
        let (plain, guarded, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().brif(finite, plain, &[], guarded, &[]);
        for (block, guard) in [(plain, false), (guarded, true)] {
            self.enter(block);
            let t = self.lse_sum(terms, m, guard, None)?;
            self.b.def_var(total, t);
            self.b.ins().jump(done, &[]);
        }
        self.enter(done);
        let total = self.b.use_var(total);
        Ok(ReduceState::new(Some(m), Some(total), None))
    }

    /// True (an `i8`) when the scalar `x` is neither infinite nor NaN.
    pub(super) fn finite(&mut self, x: Value) -> Value {
        let inf = self.f32(f32::INFINITY);
        let magnitude = self.b.ins().fabs(x);
        self.b.ins().fcmp(FloatCC::LessThan, magnitude, inf)
    }

    /// The first pass: the largest term (NaN terms left out). The `companions`, reductions
    /// over the same terms' variable, accumulate in the same pass (every group of four: then
    /// the pass does not skip the groups the logsumexp's filter drops).
    pub(super) fn lse_max(
        &mut self,
        terms: Terms,
        companions: &[Companion],
    ) -> Result<Value, ClifError> {
        let (lanes, rest) = self.lse_vars(f32::NEG_INFINITY);
        let also: Vec<&Expr> = companions
            .iter()
            .flat_map(|c| c.filter.into_iter().chain(c.body))
            .collect();
        self.lse_pass(terms, &also, (lanes, rest), &|s, acc, end| {
            let vector = s.lanes.is_some();
            for c in companions {
                let state = if vector { c.lanes } else { c.rest };
                let counted = c.filter.is_some();
                s.accumulate(c.op, c.filter, c.body, state, counted, None)?;
            }
            let scan = if companions.is_empty() { end } else { None };
            s.lse_term(terms, scan, &|s, x| {
                let m = s.b.use_var(acc);
                // `m < x ? x : m`: in four lanes one `maxps` on x64 (the pattern its back end
                // matches; `x > m` is the same test but not the same pattern).
                let bigger = s.b.ins().fcmp(FloatCC::LessThan, m, x);
                let m = s.pick(bigger, x, m);
                s.b.def_var(acc, m);
                Ok(())
            })
        })?;
        let v = self.b.use_var(lanes);
        let mut m = self.b.use_var(rest);
        for lane in 0..LANES as u8 {
            let x = self.b.ins().extractlane(v, lane);
            let bigger = self.b.ins().fcmp(FloatCC::GreaterThan, x, m);
            m = self.b.ins().select(bigger, x, m);
        }
        Ok(m)
    }

    /// The second pass: the sum of `exp(x - m)` over the terms (`guard`: for a max `m` that is
    /// not finite). With `capture`, each term's `exp(x - m)` is also stored as the element of
    /// that definition at the current point (its indices bound to the row and the term's
    /// variable; `clif::softmax`); terms the filter drops store 0, or nothing in groups of
    /// four it drops entirely.
    pub(super) fn lse_sum(
        &mut self,
        terms: Terms,
        m: Value,
        guard: bool,
        capture: Option<usize>,
    ) -> Result<Value, ClifError> {
        let (lanes, rest) = self.lse_vars(0.0);
        self.lse_pass(terms, &[], (lanes, rest), &|s, acc, end| {
            s.lse_term(terms, end, &|s, x| s.lse_add(x, m, guard, acc, capture))
        })?;
        // Lanes 0..4, then the rest.
        let v = self.b.use_var(lanes);
        let mut total = self.b.ins().extractlane(v, 0);
        for lane in 1..LANES as u8 {
            let x = self.b.ins().extractlane(v, lane);
            total = self.b.ins().fadd(total, x);
        }
        let tail = self.b.use_var(rest);
        Ok(self.b.ins().fadd(total, tail))
    }

    /// Adds `exp(x - m)` to `acc` (0 for an infinite `x` at an infinite `m` when `guard`), and
    /// stores it as the current element of `capture` when given.
    fn lse_add(
        &mut self,
        x: Value,
        m: Value,
        guard: bool,
        acc: Variable,
        capture: Option<usize>,
    ) -> Result<(), ClifError> {
        let max = if self.is_vector(x) {
            self.b.ins().splat(types::F32X4, m)
        } else {
            m
        };
        let d = self.b.ins().fsub(x, max);
        // x <= max: where the max is finite, exp(x - max) has a cheaper vector form; the
        // exact one when the terms are stored (a softmax), whose elements below e^-87.33
        // are subnormal or 0, not the flushed form's 1.2e-38.
        let mut e = if self.is_vector(d) && !guard && capture.is_some() {
            super::vmath::exp_nonpositive_exact(&mut self.b, self.fma, d)
        } else if self.is_vector(d) && !guard {
            super::vmath::exp_nonpositive(&mut self.b, self.fma, d)
        } else {
            self.math1("expf", d)
        };
        if guard {
            // 0 where x - max is NaN for a number x (both infinite).
            let d_nan = self.b.ins().fcmp(FloatCC::Unordered, d, d);
            let x_num = self.b.ins().fcmp(FloatCC::Ordered, x, x);
            let nothing = self.b.ins().band(d_nan, x_num);
            let zero = self.konst(x, 0.0);
            e = self.pick(nothing, zero, e);
        }
        if let Some(p) = capture {
            self.store_element(p, e);
        }
        let total = self.b.use_var(acc);
        let total = self.b.ins().fadd(total, e);
        self.b.def_var(acc, total);
        Ok(())
    }

    /// A lane accumulator and a scalar one, both starting at `init`.
    fn lse_vars(&mut self, init: f32) -> (Variable, Variable) {
        let (lanes, rest) = (
            self.b.declare_var(types::F32X4),
            self.b.declare_var(types::F32),
        );
        let k = self.f32(init);
        let v = self.b.ins().splat(types::F32X4, k);
        self.b.def_var(lanes, v);
        self.b.def_var(rest, k);
        (lanes, rest)
    }

    /// Runs `step` for every term: four at a time into `acc.0` (with the end of the vector
    /// loop), the rest one by one into `acc.1`; what of the filter and body, and of the
    /// expressions `also` that `step` computes too, does not depend on the innermost variable
    /// is computed before its loop.
    fn lse_pass(
        &mut self,
        terms: Terms,
        also: &[&Expr],
        (lanes, rest): (Variable, Variable),
        step: &PassStep<'_, Self>,
    ) -> Result<(), ClifError> {
        let bodies: Vec<&Expr> = terms
            .filter
            .into_iter()
            .chain([terms.body])
            .chain(also.iter().copied())
            .collect();
        self.innermost(
            terms.vars,
            terms.range,
            &bodies,
            &mut |s, last, start, end| {
                s.vector_loop(
                    last,
                    start,
                    end,
                    &mut |s| step(s, lanes, Some(end)),
                    &mut |s, r| {
                        s.for_each_from(&[last], Some((r, end)), &mut |s| step(s, rest, None))
                    },
                )
            },
        )
    }

    /// Runs `add` with the term's value, `-inf` where the filter drops it (four lanes in
    /// vector mode), unless the filter drops every lane; in a vector loop ending at
    /// `scan_end`, groups the filter drops are passed over ([`Self::any_lane_kept`]).
    fn lse_term(
        &mut self,
        Terms { filter, body, .. }: Terms,
        scan_end: Option<Value>,
        add: &dyn Fn(&mut Self, Value) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let Some(f) = filter else {
            let x = self.expr(body)?;
            let x = self.float(x);
            return add(self, x);
        };
        let keep = self.expr(f)?;
        let keep = self.truth(keep);
        let (keep, done) = if self.is_vector(keep) {
            self.any_lane_kept(keep, scan_end.map(|end| (f, end)))?
        } else {
            let (work, done) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(keep, work, &[], done, &[]);
            self.enter(work);
            (keep, done)
        };
        let x = self.expr(body)?;
        let x = self.float(x);
        let none = self.konst(x, f32::NEG_INFINITY);
        let x = self.pick(keep, x, none);
        add(self, x)?;
        self.b.ins().jump(done, &[]);
        self.enter(done);
        Ok(())
    }
}
