//! Four lanes at a time: innermost loops whose body allows it run over `f32x4` vectors, the
//! last few points in the scalar loop.
//!
//! In vector mode ([`Lowering::lanes`] is the loop variable `v`) every lowered value is a
//! vector: floats `f32x4`, integers `i32x4`, truth values `i32x4` masks (all ones or all
//! zeros). A subexpression that does not mention `v` is lowered once as a scalar and splatted;
//! `v` itself is `v + [0, 1, 2, 3]`; a read whose last index is `v` (and no other index
//! mentions it) is one unaligned vector load. A body is vectorised only when that is exact:
//! no reduction and no checked read mentions `v`, and both sides of every `if`, `&&` and `||`
//! mentioning `v` are safe to evaluate (they are then blended by mask).
//!
//! Reductions accumulate four lanes and combine them (and the scalar tail) in a fixed order,
//! so results do not depend on the number of threads.

use super::ClifError;
use super::expr::{Lowering, ReduceState, Val};
use crate::ir::{BinOp, DType, Expr, Reducer, Tensor, UnaryOp, VarId};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{ConstantData, Endianness, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::Variable;
use cranelift_module::Module;

/// The number of lanes.
const LANES: i64 = 4;

/// The body [`Lowering::innermost`] runs: given the innermost variable and its range.
type InnerLoop<'f, S> = dyn FnMut(&mut S, VarId, Value, Value) -> Result<(), ClifError> + 'f;

/// Flags of a vector load or store: in bounds, not necessarily 16-byte aligned.
fn unaligned() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// The element type of tensor `t`.
fn dtype_of(loss: &crate::ir::Loss, t: Tensor) -> DType {
    match t {
        Tensor::Input(k) => loss.inputs[k].dtype,
        Tensor::Def(d) => loss.defs[d].dtype,
    }
}

/// True when `e` mentions the loop variable `v`.
pub(super) fn mentions(e: &Expr, v: VarId) -> bool {
    e.any(&mut |x| matches!(x, Expr::Index(u) if *u == v))
}

impl<M: Module> Lowering<'_, M> {
    /// True when `e` can be computed four points of `v` at a time (see the module doc).
    pub(super) fn vectorizable(&self, e: &Expr, v: VarId) -> bool {
        if !mentions(e, v) {
            return true;
        }
        match e {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Hyper(_) | Expr::Index(_) => true,
            Expr::Read { tensor, indices } => {
                let shape = self.loss.shape_of(*tensor);
                let Some((last, rest)) = indices.split_last() else {
                    return false;
                };
                // i32 inputs load as i32x4, definitions (f32) convert; u8 inputs do not.
                let typed = !matches!(tensor, Tensor::Input(k)
                    if self.loss.inputs[*k].dtype == DType::Bool);
                typed
                    && matches!(last, Expr::Index(u) if *u == v
                        && shape.last() == Some(&self.loss.vars[v].dim))
                    && rest.iter().all(|i| !mentions(i, v))
            }
            Expr::Unary(_, a) => self.vectorizable(a, v),
            Expr::Binary(BinOp::And | BinOp::Or, a, c) => {
                self.vectorizable(a, v) && self.vectorizable(c, v) && self.speculatable(c)
            }
            Expr::Binary(_, a, c) => self.vectorizable(a, v) && self.vectorizable(c, v),
            Expr::Call(_, args) => args.iter().all(|a| self.vectorizable(a, v)),
            Expr::Select(c, a, d) => {
                self.vectorizable(c, v)
                    && self.vectorizable(a, v)
                    && self.vectorizable(d, v)
                    && self.speculatable(a)
                    && self.speculatable(d)
            }
            Expr::Reduce { .. } => false,
        }
    }

    /// True when the value `x` is a vector.
    pub(super) fn is_vector(&self, x: Value) -> bool {
        self.b.func.dfg.value_type(x).is_vector()
    }

    /// The float constant `c`, a vector when `like` is one.
    pub(super) fn konst(&mut self, like: Value, c: f32) -> Value {
        let k = self.b.ins().f32const(c);
        if self.is_vector(like) {
            self.b.ins().splat(types::F32X4, k)
        } else {
            k
        }
    }

    /// `if cond then a else d` for a scalar truth value or a vector mask.
    pub(super) fn pick(&mut self, cond: Value, a: Value, d: Value) -> Value {
        if !self.is_vector(a) {
            return self.b.ins().select(cond, a, d);
        }
        let ty = self.b.func.dfg.value_type(a);
        let mask = if self.b.func.dfg.value_type(cond) == ty {
            cond
        } else {
            self.b.ins().bitcast(
                ty,
                MemFlagsData::new().with_endianness(Endianness::Little),
                cond,
            )
        };
        self.b.ins().bitselect(mask, a, d)
    }

    /// A scalar value as a vector of four equal lanes.
    pub(super) fn splat(&mut self, v: Val) -> Val {
        match v {
            Val::F(x) => Val::F(self.b.ins().splat(types::F32X4, x)),
            Val::I(x) => {
                let x = self.b.ins().ireduce(types::I32, x);
                Val::I(self.b.ins().splat(types::I32X4, x))
            }
            Val::B(x) => {
                // 0 or 1 → all zeros or all ones.
                let x = self.b.ins().uextend(types::I32, x);
                let x = self.b.ins().ineg(x);
                Val::B(self.b.ins().splat(types::I32X4, x))
            }
        }
    }

    /// The vector `i + [0, 1, 2, 3]` of loop variable `v` at its current value `i`.
    fn lane_indices(&mut self, v: VarId) -> Value {
        let x = self.var(v);
        let i = self.b.use_var(x);
        let i = self.b.ins().ireduce(types::I32, i);
        let base = self.b.ins().splat(types::I32X4, i);
        let bytes: Vec<u8> = (0..LANES as i32).flat_map(|k| k.to_le_bytes()).collect();
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        let iota = self.b.ins().vconst(types::I32X4, c);
        self.b.ins().iadd(base, iota)
    }

    /// Lowers `e` in vector mode over `v` (the caller has checked [`Self::vectorizable`]).
    pub(super) fn vexpr(&mut self, e: &Expr, v: VarId) -> Result<Val, ClifError> {
        if !mentions(e, v) {
            let saved = self.lanes.take();
            let x = self.expr(e);
            self.lanes = saved;
            return Ok(self.splat(x?));
        }
        Ok(match e {
            Expr::Index(_) => Val::I(self.lane_indices(v)),
            Expr::Read {
                tensor: Tensor::Def(d),
                ..
            } if self.row_values.contains_key(d) => self.row_values[d],
            Expr::Read { tensor, indices } => {
                let (addr, flags) = self.address(*tensor, indices, unaligned())?;
                match (tensor, dtype_of(self.loss, *tensor)) {
                    (Tensor::Input(_), DType::Int) => {
                        Val::I(self.b.ins().load(types::I32X4, flags, addr, 0))
                    }
                    (_, DType::Float) => Val::F(self.b.ins().load(types::F32X4, flags, addr, 0)),
                    (_, DType::Int) => {
                        let x = self.b.ins().load(types::F32X4, flags, addr, 0);
                        Val::I(self.b.ins().fcvt_to_sint_sat(types::I32X4, x))
                    }
                    (_, DType::Bool) => {
                        let x = self.b.ins().load(types::F32X4, flags, addr, 0);
                        let zero = self.konst(x, 0.0);
                        Val::B(self.b.ins().fcmp(FloatCC::NotEqual, x, zero))
                    }
                }
            }
            Expr::Unary(UnaryOp::Neg, a) => match self.vexpr(a, v)? {
                Val::I(x) => Val::I(self.b.ins().ineg(x)),
                x => {
                    let x = self.float(x);
                    Val::F(self.b.ins().fneg(x))
                }
            },
            Expr::Unary(UnaryOp::Not, a) => {
                let x = self.vexpr(a, v)?;
                let t = self.truth(x);
                Val::B(self.b.ins().bnot(t))
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, c) => {
                let l = self.vexpr(a, v)?;
                let l = self.truth(l);
                let r = self.vexpr(c, v)?;
                let r = self.truth(r);
                Val::B(if *op == BinOp::And {
                    self.b.ins().band(l, r)
                } else {
                    self.b.ins().bor(l, r)
                })
            }
            Expr::Binary(BinOp::Pow, a, c) if super::math::small_power(c).is_some() => {
                Val::F(self.power(a, super::math::small_power(c).expect("checked"))?)
            }
            Expr::Binary(op, a, c) => {
                let (x, y) = (self.vexpr(a, v)?, self.vexpr(c, v)?);
                self.binary(*op, x, y)
            }
            Expr::Call(f, args) => Val::F(self.call(*f, args)?),
            Expr::Select(c, a, d) => {
                let cond = self.vexpr(c, v)?;
                let cond = self.truth(cond);
                let (x, y) = (self.vexpr(a, v)?, self.vexpr(d, v)?);
                match self.loss.type_of(e) {
                    DType::Float => {
                        let (x, y) = (self.float(x), self.float(y));
                        Val::F(self.pick(cond, x, y))
                    }
                    DType::Int => {
                        let (x, y) = (self.int(x), self.int(y));
                        Val::I(self.pick(cond, x, y))
                    }
                    DType::Bool => {
                        let (x, y) = (self.truth(x), self.truth(y));
                        Val::B(self.pick(cond, x, y))
                    }
                }
            }
            Expr::Float(_)
            | Expr::Int(_)
            | Expr::Bool(_)
            | Expr::Hyper(_)
            | Expr::Reduce { .. } => {
                unreachable!("does not mention the vector variable, or is not vectorizable")
            }
        })
    }

    /// Runs `run(last, start, end)` inside scalar loops over every variable of `vars` but the
    /// last, for the range of the last one: `range` when it is the only variable (else the
    /// first variable runs over `range`), its whole dimension otherwise.
    pub(super) fn innermost(
        &mut self,
        vars: &[VarId],
        range: Option<(Value, Value)>,
        run: &mut InnerLoop<'_, Self>,
    ) -> Result<(), ClifError> {
        let (&last, outer) = vars.split_last().expect("a variable");
        let (outer_range, inner_range) = if outer.is_empty() {
            (None, range)
        } else {
            (range, None)
        };
        let dim = self.dims[self.loss.vars[last].dim];
        self.for_each_from(outer, outer_range, &mut |s| {
            let (start, end) = match inner_range {
                Some(r) => r,
                None => (s.b.ins().iconst(types::I64, 0), dim),
            };
            run(s, last, start, end)
        })
    }

    /// Runs the innermost loop over `v` from `start` to `end`: `vector` four points at a time
    /// while four remain, then `scalar` for each point left. `v` holds the first point of
    /// each step.
    pub(super) fn vector_loop(
        &mut self,
        v: VarId,
        start: Value,
        end: Value,
        vector: &mut dyn FnMut(&mut Self) -> Result<(), ClifError>,
        scalar: &mut dyn FnMut(&mut Self, Value) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let x = self.var(v);
        self.b.def_var(x, start);
        let (header, body, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(x);
        let next = self.b.ins().iadd_imm_s(i, LANES);
        let more = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        self.b.ins().brif(more, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        let saved = self.lanes.replace(v);
        vector(self)?;
        self.lanes = saved;
        let i = self.b.use_var(x);
        let next = self.b.ins().iadd_imm_s(i, LANES);
        self.b.def_var(x, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        let rest = self.b.use_var(x);
        scalar(self, rest)
    }

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

    /// True when reduction `op` over `vars` can run four terms of its last variable at a time.
    pub(super) fn vector_reduction(
        &self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
    ) -> bool {
        let Some(&last) = vars.last() else {
            return false;
        };
        if matches!(op, Reducer::ArgMax | Reducer::ArgMin) {
            return false;
        }
        // A filtered body is computed for every term and blended: it must be safe to.
        let body_ok = body.is_none_or(|e| {
            self.vectorizable(e, last) && (filter.is_none() || self.speculatable(e))
        });
        body_ok && filter.is_none_or(|f| self.vectorizable(f, last))
    }

    /// [`Self::reduce_state`] for a reduction accepted by [`Self::vector_reduction`]: outer
    /// variables as scalar loops (the first over `range` when given), the last variable four
    /// terms at a time into lane accumulators, its remaining terms by the scalar reduction;
    /// then everything combined in a fixed order.
    pub(super) fn vector_reduce_state(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
        range: Option<(Value, Value)>,
    ) -> Result<ReduceState, ClifError> {
        let (vf, vg, vn) = self.lane_state(op);
        // The scalar tails' accumulators.
        let empty = self.empty_state(op);
        let run = self.state_vars(empty);
        self.innermost(vars, range, &mut |s, last, start, end| {
            s.vector_loop(
                last,
                start,
                end,
                &mut |s| s.accumulate(op, last, filter, body, (vf, vg, vn)),
                &mut |s, rest| {
                    let tail =
                        s.scalar_reduce_state(op, &[last], filter, body, Some((rest, end)))?;
                    let before = s.use_state(run);
                    let after = s.merge(op, before, tail);
                    s.def_state(run, after);
                    Ok(())
                },
            )
        })?;
        // Lanes 0..4, then the tails, in this order.
        let total = self.combine_lanes(op, (vf, vg, vn));
        let tails = self.use_state(run);
        Ok(self.merge(op, total, tails))
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

    /// The lane accumulators of `op` combined, lane 0 first.
    pub(super) fn combine_lanes(
        &mut self,
        op: Reducer,
        (vf, vg, vn): (Variable, Variable, Variable),
    ) -> ReduceState {
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

    /// Adds a term (four in vector mode) to the accumulators `(f, g, n)`: lanes or scalars.
    pub(super) fn accumulate(
        &mut self,
        op: Reducer,
        v: VarId,
        filter: Option<&Expr>,
        body: Option<&Expr>,
        (vf, vg, vn): (Variable, Variable, Variable),
    ) -> Result<(), ClifError> {
        let vector = self.lanes.is_some();
        debug_assert_eq!(self.lanes, vector.then_some(v));
        let keep = match filter {
            Some(f) => {
                let c = self.expr(f)?;
                Some(self.truth(c))
            }
            None => None,
        };
        // Counts: a kept lane adds 1 (a mask is -1 where kept).
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
        let Some(body) = body else {
            return Ok(());
        };
        // Four lanes the filter drops are skipped (a sparse filter, as same-label pairs, keeps
        // few): the body is computed only when some lane is kept.
        let skip = match keep {
            Some(mask) if vector => {
                let any = self.b.ins().vany_true(mask);
                let (work, done) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(any, work, &[], done, &[]);
                self.b.switch_to_block(work);
                Some(done)
            }
            _ => None,
        };
        self.accumulate_body(op, body, keep, (vf, vg))?;
        if let Some(done) = skip {
            self.b.ins().jump(done, &[]);
            self.b.switch_to_block(done);
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
                let a = self.b.ins().fabs(d);
                let na = self.b.ins().fneg(a);
                let e = self.math1("expf", na);
                let d_nan = self.b.ins().fcmp(FloatCC::Unordered, d, d);
                let x_num = self.b.ins().fcmp(FloatCC::Ordered, x, x);
                let nothing = self.b.ins().band(d_nan, x_num);
                let zero = self.konst(x, 0.0);
                let e = self.pick(nothing, zero, e);
                let bigger = self.b.ins().fcmp(FloatCC::GreaterThan, x, acc);
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

    pub(super) fn use_state(&mut self, vars: [Option<Variable>; 3]) -> ReduceState {
        let [f, g, n] = vars.map(|v| v.map(|v| self.b.use_var(v)));
        ReduceState::new(f, g, n)
    }

    fn def_state(&mut self, vars: [Option<Variable>; 3], s: ReduceState) {
        for (var, x) in vars.into_iter().zip([s.f, s.g, s.n]) {
            if let (Some(var), Some(x)) = (var, x) {
                self.b.def_var(var, x);
            }
        }
    }
}
