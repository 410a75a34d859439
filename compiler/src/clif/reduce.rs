//! Reduction accumulators, for scalar loops and vector lanes alike: a reduction's state is
//! `f` (running value: sum, max, min, logsumexp's max), `g` (logsumexp's sum of `exp(x - m)`)
//! and `n` (count), each a Cranelift variable; [`Lowering::accumulate`] adds one term (four
//! in vector mode), [`Lowering::merge`] combines two states, [`Lowering::combine_lanes`] a
//! vector state's lanes in order. A vector sum of softplus tails keeps a product in `g`
//! instead of summing logarithms (`crate::log_product`).

use super::ClifError;
use super::expr::{Lowering, ReduceState};
use super::vector::LANES;
use crate::ir::{Expr, Reducer, VarId};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{Block, InstBuilder, Value, types};
use cranelift_frontend::Variable;
use cranelift_module::Module;

impl<M: Module> Lowering<'_, M> {
    /// The identity accumulators of `op` (for [`Self::merge`]).
    pub(super) fn empty_state(&mut self, op: Reducer) -> ReduceState {
        let zero = self.f32(0.0);
        let n = self.b.ins().iconst(types::I64, 0);
        match op {
            Reducer::Sum | Reducer::Mean => ReduceState::new(Some(zero), None, Some(n)),
            Reducer::Count => ReduceState::new(None, None, Some(n)),
            Reducer::Max => {
                let m = self.f32(f32::NEG_INFINITY);
                ReduceState::new(Some(m), None, None)
            }
            Reducer::Min => {
                let m = self.f32(f32::INFINITY);
                ReduceState::new(Some(m), None, None)
            }
            Reducer::LogSumExp => {
                let m = self.f32(f32::NEG_INFINITY);
                ReduceState::new(Some(m), Some(zero), None)
            }
            Reducer::ArgMax | Reducer::ArgMin => unreachable!("not vectorised"),
        }
    }

    /// The accumulators of two disjoint sets of terms of `op` combined (scalars).
    pub(super) fn merge(&mut self, op: Reducer, a: ReduceState, c: ReduceState) -> ReduceState {
        let n = match (a.n, c.n) {
            (Some(x), Some(y)) => Some(self.b.ins().iadd(x, y)),
            _ => None,
        };
        match op {
            Reducer::Sum | Reducer::Mean => {
                let f = self.b.ins().fadd(a.f.expect("sum"), c.f.expect("sum"));
                ReduceState::new(Some(f), None, n)
            }
            Reducer::Count => ReduceState::new(None, None, n),
            Reducer::Max => {
                let f = self.b.ins().fmax(a.f.expect("max"), c.f.expect("max"));
                ReduceState::new(Some(f), None, None)
            }
            Reducer::Min => {
                let f = self.b.ins().fmin(a.f.expect("min"), c.f.expect("min"));
                ReduceState::new(Some(f), None, None)
            }
            Reducer::LogSumExp => {
                // m = max(m1, m2); s = s1·exp(m1 - m) + s2·exp(m2 - m), a factor 1 where the
                // difference is NaN (both -inf: both sums 0 or NaN; both +inf: `finish`
                // returns m). The maxima are never NaN (NaN terms are carried in the sums).
                let (m1, s1) = (a.f.expect("max"), a.g.expect("sum"));
                let (m2, s2) = (c.f.expect("max"), c.g.expect("sum"));
                let first = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, m1, m2);
                let m = self.b.ins().select(first, m1, m2);
                let scaled = [(m1, s1), (m2, s2)].map(|(mk, sk)| {
                    let d = self.b.ins().fsub(mk, m);
                    let e = self.math1("expf", d);
                    let one = self.f32(1.0);
                    let nan = self.b.ins().fcmp(FloatCC::Unordered, d, d);
                    let e = self.b.ins().select(nan, one, e);
                    self.b.ins().fmul(sk, e)
                });
                let s = self.b.ins().fadd(scaled[0], scaled[1]);
                ReduceState::new(Some(m), Some(s), None)
            }
            Reducer::ArgMax | Reducer::ArgMin => unreachable!("not vectorised"),
        }
    }

    /// Lane accumulators of `op`, initialised: f32x4 value, f32x4 logsumexp sum, i32x4 count.
    pub(super) fn lane_state(&mut self, op: Reducer) -> (Variable, Variable, Variable) {
        let (vf, vg, vn) = (
            self.b.declare_var(types::F32X4),
            self.b.declare_var(types::F32X4),
            self.b.declare_var(types::I32X4),
        );
        let f0 = match op {
            Reducer::Max | Reducer::LogSumExp => f32::NEG_INFINITY,
            Reducer::Min => f32::INFINITY,
            _ => 0.0,
        };
        let k = self.f32(f0);
        let k = self.b.ins().splat(types::F32X4, k);
        self.b.def_var(vf, k);
        let z = self.f32(0.0);
        let z = self.b.ins().splat(types::F32X4, z);
        self.b.def_var(vg, z);
        let zi = self.b.ins().iconst(types::I32, 0);
        let zi = self.b.ins().splat(types::I32X4, zi);
        self.b.def_var(vn, zi);
        (vf, vg, vn)
    }

    /// The lane accumulators of `op` (over terms `body`) combined, lane 0 first.
    pub(super) fn combine_lanes(
        &mut self,
        op: Reducer,
        body: Option<&Expr>,
        (vf, vg, vn): (Variable, Variable, Variable),
    ) -> ReduceState {
        if log_product(op, body) {
            self.fold_log_product((vf, vg));
        }
        let mut total = self.empty_state(op);
        let (f, g, n) = (self.b.use_var(vf), self.b.use_var(vg), self.b.use_var(vn));
        for lane in 0..LANES as u8 {
            let lf = self.b.ins().extractlane(f, lane);
            let lg = self.b.ins().extractlane(g, lane);
            let ln = self.b.ins().extractlane(n, lane);
            let ln = self.b.ins().sextend(types::I64, ln);
            let one = ReduceState::new(Some(lf), Some(lg), Some(ln)).like(op);
            total = self.merge(op, total, one);
        }
        total
    }

    /// Scalar accumulators of `op` (all three, initialised as [`Self::empty_state`]): for the
    /// rows a one-loop group computes one at a time.
    pub(super) fn scalar_state(&mut self, op: Reducer) -> (Variable, Variable, Variable) {
        let empty = self.empty_state(op);
        let zero = self.f32(0.0);
        let n = self.b.ins().iconst(types::I64, 0);
        let full = ReduceState::new(empty.f.or(Some(zero)), empty.g.or(Some(zero)), Some(n));
        let [f, g, n] = self.state_vars(full);
        (f.expect("f"), g.expect("g"), n.expect("n"))
    }

    /// Adds a term (four in vector mode, [`Lowering::lanes`]) to the accumulators `(f, g, n)`:
    /// lanes or scalars. The filter, when given, is computed for every term and the body
    /// blended by it (the caller branches on a filter instead when the body is unsafe to
    /// compute where it fails); four terms the filter drops entirely are skipped, and with
    /// `scan_end` (the reduction alone in its vector loop, which ends there) passed over in a
    /// loop of their own ([`Self::any_lane_kept`]). Terms are counted into `n` only when
    /// `counted` and `op` has a count ([`super::expr::counts`]): a reduction with no filter
    /// has as many terms as its ranges ([`Self::term_count`]), and a count in each lane would
    /// only take registers.
    pub(super) fn accumulate(
        &mut self,
        op: Reducer,
        filter: Option<&Expr>,
        body: Option<&Expr>,
        (vf, vg, vn): (Variable, Variable, Variable),
        counted: bool,
        scan_end: Option<Value>,
    ) -> Result<(), ClifError> {
        let vector = self.lanes.is_some();
        let mut keep = match filter {
            Some(f) => {
                let c = self.expr(f)?;
                Some(self.truth(c))
            }
            None => None,
        };
        // The body is computed only when some lane is kept (a sparse filter, as same-label
        // pairs, keeps few); a skipped group adds nothing to the count either.
        let skip = match (keep, filter, body) {
            (Some(mask), Some(f), Some(_)) if vector => {
                let (mask, done) = self.any_lane_kept(mask, scan_end.map(|end| (f, end)))?;
                keep = Some(mask);
                Some(done)
            }
            _ => None,
        };
        // Counts: a kept lane adds 1 (a mask is -1 where kept).
        if counted && super::expr::counts(op) {
            let n = self.b.use_var(vn);
            let n = match (keep, vector) {
                (Some(mask), true) => self.b.ins().isub(n, mask),
                (None, true) => {
                    let one = self.b.ins().iconst(types::I32, 1);
                    let one = self.b.ins().splat(types::I32X4, one);
                    self.b.ins().iadd(n, one)
                }
                (Some(c), false) => {
                    let one = self.b.ins().uextend(types::I64, c);
                    self.b.ins().iadd(n, one)
                }
                (None, false) => self.b.ins().iadd_imm_s(n, 1),
            };
            self.b.def_var(vn, n);
        }
        if let Some(body) = body {
            self.accumulate_body(op, body, keep, (vf, vg))?;
        }
        if let Some(done) = skip {
            self.b.ins().jump(done, &[]);
            self.enter(done);
        }
        Ok(())
    }

    /// Adds the body's value(s) to the accumulators `(f, g)`, blended by `keep`.
    fn accumulate_body(
        &mut self,
        op: Reducer,
        body: &Expr,
        keep: Option<Value>,
        (vf, vg): (Variable, Variable),
    ) -> Result<(), ClifError> {
        if self.lanes.is_some()
            && matches!(op, Reducer::Sum | Reducer::Mean)
            && let Some(e) = crate::log_product::unit_tail(body)
        {
            return self.accumulate_log_product(e, keep, (vf, vg));
        }
        let x = self.expr(body)?;
        let mut x = self.float(x);
        let acc = self.b.use_var(vf);
        match op {
            Reducer::Sum | Reducer::Mean => {
                if let Some(mask) = keep {
                    let zero = self.konst(x, 0.0);
                    x = self.pick(mask, x, zero);
                }
                let a = self.b.ins().fadd(acc, x);
                self.b.def_var(vf, a);
            }
            Reducer::Max | Reducer::Min => {
                let max = op == Reducer::Max;
                if let Some(mask) = keep {
                    let id = self.konst(
                        x,
                        if max {
                            f32::NEG_INFINITY
                        } else {
                            f32::INFINITY
                        },
                    );
                    x = self.pick(mask, x, id);
                }
                let a = if max {
                    self.b.ins().fmax(acc, x)
                } else {
                    self.b.ins().fmin(acc, x)
                };
                self.b.def_var(vf, a);
            }
            Reducer::LogSumExp => {
                if let Some(mask) = keep {
                    let id = self.konst(x, f32::NEG_INFINITY);
                    x = self.pick(mask, x, id);
                }
                // Per lane, as the scalar one-pass update without its branch: with
                // e = exp(-|x - m|), a larger x gives s·e + 1 and m = x, otherwise s + e; e is
                // 0 where x - m is NaN for a number x (both -inf, both +inf), NaN for NaN x.
                let sum = self.b.use_var(vg);
                let d = self.b.ins().fsub(x, acc);
                let e = self.exp_neg_abs(d);
                let d_nan = self.b.ins().fcmp(FloatCC::Unordered, d, d);
                let x_num = self.b.ins().fcmp(FloatCC::Ordered, x, x);
                let nothing = self.b.ins().band(d_nan, x_num);
                let zero = self.konst(x, 0.0);
                let e = self.pick(nothing, zero, e);
                // `acc < x`, not `x > acc`: `m` below is then one `maxps` (see `lse_max`).
                let bigger = self.b.ins().fcmp(FloatCC::LessThan, acc, x);
                let one = self.konst(x, 1.0);
                let grown = self.b.ins().fmul(sum, e);
                let grown = self.b.ins().fadd(grown, one);
                let same = self.b.ins().fadd(sum, e);
                let s = self.pick(bigger, grown, same);
                let m = self.pick(bigger, x, acc);
                self.b.def_var(vg, s);
                self.b.def_var(vf, m);
            }
            Reducer::Count | Reducer::ArgMax | Reducer::ArgMin => {}
        }
        Ok(())
    }

    /// Adds four softplus-tail terms `log1p(e)`, `e` in [0, 1] (`crate::log_product`), to the
    /// lanes' product accumulator `vg`: `Q ← Q + e + Q·e`, so that the terms sum to
    /// `log1p(Q)`; [`Self::combine_lanes`] adds that to `vf`. The enclosing loop bounds `Q`
    /// at the end of each step ([`Self::bound_log_products`]; 64 terms at the least pass
    /// between two folds), so `Q` stays far inside f32's range. A NaN term keeps `Q` NaN.
    fn accumulate_log_product(
        &mut self,
        e: &Expr,
        keep: Option<Value>,
        (vf, vg): (Variable, Variable),
    ) -> Result<(), ClifError> {
        let x = self.expr(e)?;
        let mut x = self.float(x);
        if let Some(mask) = keep {
            let zero = self.konst(x, 0.0);
            x = self.pick(mask, x, zero);
        }
        let q = self.b.use_var(vg);
        let s = self.b.ins().fadd(q, x);
        let q = if self.fma {
            self.b.ins().fma(q, x, s)
        } else {
            let p = self.b.ins().fmul(q, x);
            self.b.ins().fadd(s, p)
        };
        self.b.def_var(vg, q);
        if !self.bounds.contains(&(vf, vg)) {
            self.bounds.push((vf, vg));
        }
        Ok(())
    }

    /// Ends a loop step by jumping to `header`, through a block that moves every lane's
    /// `log1p(Q)` into `vf` when a lane of any product accumulator `(vf, vg)` in `bounds` has
    /// passed 2^64 ([`Self::accumulate_log_product`]).
    pub(super) fn bound_log_products(&mut self, bounds: &[(Variable, Variable)], header: Block) {
        let mut any = None;
        for &(_, vg) in bounds {
            let q = self.b.use_var(vg);
            let limit = self.konst(q, 2f32.powi(64));
            let big = self.b.ins().fcmp(FloatCC::GreaterThan, q, limit);
            any = Some(match any {
                None => big,
                Some(a) => self.b.ins().bor(a, big),
            });
        }
        let any = self.b.ins().vany_true(any.expect("a product accumulator"));
        let flush = self.b.create_block();
        self.b.ins().brif(any, flush, &[], header, &[]);
        self.enter(flush);
        for &acc in bounds {
            self.fold_log_product(acc);
        }
        self.b.ins().jump(header, &[]);
    }

    /// `vf += log1p(vg)` and `vg = 0`, lane by lane: a product accumulator's terms moved
    /// into the sum.
    fn fold_log_product(&mut self, (vf, vg): (Variable, Variable)) {
        let q = self.b.use_var(vg);
        let l = super::vmath::log1p(&mut self.b, self.fma, q);
        let f = self.b.use_var(vf);
        let f = self.b.ins().fadd(f, l);
        self.b.def_var(vf, f);
        let zero = self.konst(q, 0.0);
        self.b.def_var(vg, zero);
    }

    /// The number of terms of a reduction over `vars` with no filter, the first variable
    /// running over `range` when given.
    pub(super) fn term_count(&mut self, vars: &[VarId], range: Option<(Value, Value)>) -> Value {
        let mut n = self.b.ins().iconst(types::I64, 1);
        for (k, &v) in vars.iter().enumerate() {
            let size = match range {
                Some((start, end)) if k == 0 => self.b.ins().isub(end, start),
                _ => self.dims[self.loss.vars[v].dim],
            };
            n = self.b.ins().imul(n, size);
        }
        n
    }

    /// Variables holding a scalar reduction state, initialised to `s`.
    pub(super) fn state_vars(&mut self, s: ReduceState) -> [Option<Variable>; 3] {
        let tys = [types::F32, types::F32, types::I64];
        let vals = [s.f, s.g, s.n];
        let mut out = [None; 3];
        for k in 0..3 {
            if let Some(x) = vals[k] {
                let var = self.b.declare_var(tys[k]);
                self.b.def_var(var, x);
                out[k] = Some(var);
            }
        }
        out
    }

    /// The current values of state variables.
    pub(super) fn use_state(&mut self, vars: [Option<Variable>; 3]) -> ReduceState {
        let [f, g, n] = vars.map(|v| v.map(|v| self.b.use_var(v)));
        ReduceState::new(f, g, n)
    }

    /// Assigns a state to state variables.
    pub(super) fn def_state(&mut self, vars: [Option<Variable>; 3], s: ReduceState) {
        for (var, x) in vars.into_iter().zip([s.f, s.g, s.n]) {
            if let (Some(var), Some(x)) = (var, x) {
                self.b.def_var(var, x);
            }
        }
    }
}

/// True when a vector reduction `op` of `body` sums softplus tails as the logarithm of a
/// product ([`Lowering::accumulate_log_product`]).
pub(super) fn log_product(op: Reducer, body: Option<&Expr>) -> bool {
    matches!(op, Reducer::Sum | Reducer::Mean)
        && body.is_some_and(|b| crate::log_product::unit_tail(b).is_some())
}
