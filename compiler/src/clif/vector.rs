//! Four lanes at a time: innermost loops whose body allows it run over `f32x4` vectors, the
//! last few points in the scalar loop.
//!
//! In vector mode ([`Lowering::lanes`] is the loop variable `v`) every lowered value is a
//! vector: floats `f32x4`, integers `i32x4`, truth values `i32x4` masks (all ones or all
//! zeros). A subexpression that does not mention `v` is lowered once as a scalar and splatted;
//! `v` itself is `v + [0, 1, 2, 3]`; a read whose last index is `v` (and no other index
//! mentions it) is one unaligned vector load, and a read indexed by loop variables only, `v`
//! once elsewhere (`d[v, i]`), four scalar loads. A body is vectorised only when that is
//! exact: no reduction and no checked read mentions `v`, and both sides of every `if`, `&&` and
//! `||` mentioning `v` are safe to evaluate (they are then blended by mask; a side that calls
//! a function is skipped when no lane takes it).
//!
//! Reductions accumulate four lanes and combine them (and the scalar tail) in a fixed order,
//! so results do not depend on the number of threads.

use super::ClifError;
use super::expr::{Lowering, ReduceState, Val};
use crate::ir::{BinOp, DType, Expr, Reducer, Tensor, UnaryOp, VarId};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    Block, ConstantData, Endianness, InstBuilder, InstructionData, MemFlagsData, Opcode, Value,
    ValueDef, types,
};
use cranelift_frontend::Variable;
use cranelift_module::Module;

/// The number of lanes.
pub(super) const LANES: i64 = 4;

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

/// The lane indices `i + [0, 1, 2, 3]` of vector loop variable `v`, carried in `var` from
/// step to step once the loop's body has `used` them; not after a scan (`scanned`), which
/// moves the variable on by itself ([`Lowering::any_lane_kept`]).
pub(super) struct LaneIndices {
    v: VarId,
    var: Variable,
    used: bool,
    scanned: bool,
}

impl<M: Module> Lowering<'_, M> {
    /// The float branch `e` of a vector `if` with lane mask `cond`, taken where `cond` holds
    /// (`then`) or fails: computed only when some lane takes it, so that a sparse condition
    /// (Multi-Similarity's positive pairs) skips its `exp` for most groups of four. Lanes
    /// that do not take it hold 0 (the blend drops them).
    fn lane_branch(
        &mut self,
        e: &Expr,
        v: VarId,
        cond: Value,
        then: bool,
    ) -> Result<Value, ClifError> {
        if !self.costly(e) {
            let x = self.vexpr(e, v)?;
            return Ok(self.float(x));
        }
        let out = self.b.declare_var(types::F32X4);
        let zero = self.f32(0.0);
        let zero = self.b.ins().splat(types::F32X4, zero);
        self.b.def_var(out, zero);
        let (work, done) = (self.b.create_block(), self.b.create_block());
        if then {
            let any = self.b.ins().vany_true(cond);
            self.b.ins().brif(any, work, &[], done, &[]);
        } else {
            let all = self.b.ins().vall_true(cond);
            self.b.ins().brif(all, done, &[], work, &[]);
        }
        self.enter(work);
        let x = self.vexpr(e, v)?;
        let x = self.float(x);
        self.b.def_var(out, x);
        self.b.ins().jump(done, &[]);
        self.enter(done);
        Ok(self.b.use_var(out))
    }

    /// True when `e` calls a function (or reduces) outside its hoisted parts: worth a branch
    /// to skip. A hoisted part is read, not computed (`invariant.rs`).
    fn costly(&self, e: &Expr) -> bool {
        if self.hoisted(e, true).is_some() {
            return false;
        }
        if matches!(e, Expr::Call(..) | Expr::Reduce { .. }) {
            return true;
        }
        let mut found = false;
        e.for_each_child(|x| found = found || self.costly(x));
        found
    }

    /// The position of `v` in a read of `t` by `indices` that is not contiguous in `v` but can
    /// be loaded lane by lane: every index a loop variable over its dimension (so in range),
    /// `v` exactly once and not last (`d_s[j, i]` in a loop over `j`).
    fn strided(&self, t: Tensor, indices: &[Expr], v: VarId) -> Option<usize> {
        let shape = self.loss.shape_of(t);
        let mut at = None;
        for (pos, (ix, &dim)) in indices.iter().zip(&shape).enumerate() {
            let Expr::Index(u) = ix else { return None };
            if self.loss.vars[*u].dim != dim {
                return None;
            }
            if *u == v {
                if at.is_some() {
                    return None;
                }
                at = Some(pos);
            }
        }
        at.filter(|&p| p + 1 < indices.len())
    }

    /// The four lanes of a [`Self::strided`] read (`v` at position `pos`): one scalar load
    /// per lane, `v + k` being `k` rows of the trailing dimensions further on.
    fn strided_lanes(
        &mut self,
        t: Tensor,
        indices: &[Expr],
        pos: usize,
        scalar: types::Type,
        vector: types::Type,
    ) -> Result<Value, ClifError> {
        let (addr, flags) = self.address(t, indices, unaligned())?;
        let shape = self.loss.shape_of(t);
        let mut stride = self.b.ins().iconst(types::I64, 4);
        for &dim in &shape[pos + 1..] {
            stride = self.b.ins().imul(stride, self.dims[dim]);
        }
        let stride = if self.ptr == types::I64 {
            stride
        } else {
            self.b.ins().ireduce(self.ptr, stride)
        };
        let first = self.b.ins().load(scalar, flags, addr, 0);
        let mut out = self.b.ins().splat(vector, first);
        let mut at = addr;
        for lane in 1..LANES as u8 {
            at = self.b.ins().iadd(at, stride);
            let x = self.b.ins().load(scalar, flags, at, 0);
            out = self.b.ins().insertlane(out, x, lane);
        }
        Ok(out)
    }

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
                let contiguous = matches!(last, Expr::Index(u) if *u == v
                        && shape.last() == Some(&self.loss.vars[v].dim))
                    && rest.iter().all(|i| !mentions(i, v));
                typed && (contiguous || self.strided(*tensor, indices, v).is_some())
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
        // With a zero `else`, the blend is one `and`, the same bits, where x64 would take an
        // `and`, an `andnot` and an `or` (cross-entropy's `kept[b] && target[b] == c`). Not
        // for a float comparison's mask: Cranelift blends by it with one `blendvps`, or makes
        // `x > 0 ? x : 0` a `maxps` (DPO's softplus terms; as an `and`, DPO took 7% longer).
        if self.is_zero_vector(d) && !self.is_float_comparison(mask) {
            return self.b.ins().band(mask, a);
        }
        self.b.ins().bitselect(mask, a, d)
    }

    /// True when `mask` is a float comparison's result (or its bits).
    fn is_float_comparison(&self, mask: Value) -> bool {
        let dfg = &self.b.func.dfg;
        let mut v = mask;
        loop {
            let ValueDef::Result(inst, _) = dfg.value_def(v) else {
                return false;
            };
            match dfg.insts[inst] {
                InstructionData::LoadNoOffset {
                    opcode: Opcode::Bitcast,
                    arg,
                    ..
                } => v = arg,
                InstructionData::FloatCompare { .. } => return true,
                _ => return false,
            }
        }
    }

    /// `a · c` as `p · k` with `k` not mentioning `v`, when one factor is a float not
    /// mentioning `v` and the other a product of `p` and another such float (cross-entropy's
    /// gradient `d_lse[b] · (p[b, c] · s[b])`): the two invariant factors are multiplied once,
    /// outside the loop, leaving one multiply per element. Reassociating changes the
    /// product's rounding, by about an ulp.
    fn regroup<'e>(&self, a: &'e Expr, c: &'e Expr, v: VarId) -> Option<(&'e Expr, Expr)> {
        // (the factor mentioning v, the one that does not)
        let split = |x: &'e Expr, y: &'e Expr| match (mentions(x, v), mentions(y, v)) {
            (true, false) => Some((x, y)),
            (false, true) => Some((y, x)),
            _ => None,
        };
        let (varying, i) = split(a, c)?;
        let Expr::Binary(BinOp::Mul, p, q) = varying else {
            return None;
        };
        let (p, q) = split(p, q)?;
        let float = |x: &Expr| self.loss.type_of(x) == DType::Float;
        (float(i) && float(q) && float(p)).then(|| {
            let k = Expr::Binary(BinOp::Mul, Box::new(i.clone()), Box::new(q.clone()));
            (p, k)
        })
    }

    /// True when `x` is a vector constant of zero bits (`0.0` or `0` in every lane).
    fn is_zero_vector(&self, x: Value) -> bool {
        let dfg = &self.b.func.dfg;
        let of = |v: Value| match dfg.value_def(v) {
            ValueDef::Result(inst, _) => Some(dfg.insts[inst]),
            _ => None,
        };
        match of(x) {
            Some(InstructionData::UnaryConst {
                opcode: Opcode::Vconst,
                constant_handle,
            }) => dfg
                .constants
                .get(constant_handle)
                .as_slice()
                .iter()
                .all(|&b| b == 0),
            Some(InstructionData::Unary {
                opcode: Opcode::Splat,
                arg,
            }) => match of(arg) {
                Some(InstructionData::UnaryIeee32 {
                    opcode: Opcode::F32const,
                    imm,
                }) => imm.bits() == 0,
                Some(InstructionData::UnaryImm {
                    opcode: Opcode::Iconst,
                    imm,
                }) => imm.bits() == 0,
                _ => false,
            },
            _ => false,
        }
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
        if let Some(l) = &mut self.lane_iv
            && l.v == v
            && !l.scanned
        {
            l.used = true;
            let var = l.var;
            return self.b.use_var(var);
        }
        let x = self.var(v);
        let i = self.b.use_var(x);
        self.indices_from(i)
    }

    /// The vector `i + [0, 1, 2, 3]` (i32x4) of the i64 `i`.
    fn indices_from(&mut self, i: Value) -> Value {
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
            if let Some(x) = self.hoisted(e, true) {
                return Ok(x);
            }
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
            Expr::Read { tensor, indices } if !matches!(indices.last(), Some(Expr::Index(u)) if *u == v) =>
            {
                let pos = self.strided(*tensor, indices, v).expect("vectorizable");
                match (tensor, dtype_of(self.loss, *tensor)) {
                    (Tensor::Input(_), DType::Int) => Val::I(self.strided_lanes(
                        *tensor,
                        indices,
                        pos,
                        types::I32,
                        types::I32X4,
                    )?),
                    (_, dtype) => {
                        let x =
                            self.strided_lanes(*tensor, indices, pos, types::F32, types::F32X4)?;
                        match dtype {
                            DType::Float => Val::F(x),
                            DType::Int => Val::I(self.b.ins().fcvt_to_sint_sat(types::I32X4, x)),
                            DType::Bool => {
                                let zero = self.konst(x, 0.0);
                                Val::B(self.b.ins().fcmp(FloatCC::NotEqual, x, zero))
                            }
                        }
                    }
                }
            }
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
            Expr::Binary(BinOp::Mul, a, c) if let Some((p, k)) = self.regroup(a, c, v) => {
                let x = self.vexpr(p, v)?;
                let y = self.vexpr(&k, v)?;
                self.binary(BinOp::Mul, x, y)
            }
            Expr::Binary(op, a, c) => {
                let (x, y) = (self.vexpr(a, v)?, self.vexpr(c, v)?);
                self.binary(*op, x, y)
            }
            Expr::Call(f, args) => Val::F(self.call(*f, args)?),
            Expr::Select(c, a, d) => {
                let cond = self.vexpr(c, v)?;
                let cond = self.truth(cond);
                let ty = self.loss.type_of(e);
                if ty == DType::Float && (self.costly(a) || self.costly(d)) {
                    let x = self.lane_branch(a, v, cond, true)?;
                    let y = self.lane_branch(d, v, cond, false)?;
                    return Ok(Val::F(self.pick(cond, x, y)));
                }
                let (x, y) = (self.vexpr(a, v)?, self.vexpr(d, v)?);
                match ty {
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
    /// first variable runs over `range`), its whole dimension otherwise. What of `bodies` (the
    /// innermost loop's) does not depend on the last variable is computed before each run
    /// ([`Self::with_loop_invariants`]).
    pub(super) fn innermost(
        &mut self,
        vars: &[VarId],
        range: Option<(Value, Value)>,
        bodies: &[&Expr],
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
            s.with_loop_invariants(bodies, last, &mut |s| run(s, last, start, end))
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
        // The lane indices, carried from step to step: one add a step instead of a splat
        // and an add (unused, the first value is dropped as dead code).
        let var = self.b.declare_var(types::I32X4);
        let first = self.indices_from(start);
        self.b.def_var(var, first);
        let outer = self.lane_iv.replace(LaneIndices {
            v,
            var,
            used: false,
            scanned: false,
        });
        self.counted_loop(x, start, end, LANES, &mut |s| {
            let saved = s.lanes.replace(v);
            vector(s)?;
            s.lanes = saved;
            if s.lane_iv.as_ref().is_some_and(|l| l.used) {
                let i = s.b.use_var(var);
                let four = s.b.ins().iconst(types::I32, LANES);
                let four = s.b.ins().splat(types::I32X4, four);
                let next = s.b.ins().iadd(i, four);
                s.b.def_var(var, next);
            }
            Ok(())
        })?;
        self.lane_iv = outer;
        let rest = self.b.use_var(x);
        scalar(self, rest)
    }

    /// Branches on `keep`, the filter mask of the four terms at the vector variable's current
    /// value, and switches to a block that runs when some lane is kept; returns the mask there
    /// and the block to go on with after the terms. With `scan = Some((filter, end))` (the
    /// reduction is alone in its loop), groups of four the filter drops entirely are passed
    /// over in a tight loop of their own, which moves the vector variable on while the group
    /// after ends by `end`: the accumulators stay out of it. A sparse filter, as same-label
    /// pairs among 64 labels, drops fifteen groups in sixteen.
    pub(super) fn any_lane_kept(
        &mut self,
        keep: Value,
        scan: Option<(&Expr, Value)>,
    ) -> Result<(Value, Block), ClifError> {
        let mask = self.b.declare_var(self.b.func.dfg.value_type(keep));
        self.b.def_var(mask, keep);
        let (work, done) = (self.b.create_block(), self.b.create_block());
        let any = self.b.ins().vany_true(keep);
        // A scan moves the vector variable on: not in a loop that carries its lane indices
        // already, and none carried after it (`lane_indices`).
        let scan = scan.filter(|_| !self.lane_iv.as_ref().is_some_and(|l| l.used));
        if scan.is_some()
            && let Some(l) = &mut self.lane_iv
        {
            l.scanned = true;
        }
        match (scan, self.lanes) {
            (Some((filter, end)), Some(v)) => {
                let (next, advance) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(any, work, &[], next, &[]);
                self.b.switch_to_block(next);
                let x = self.var(v);
                let j = self.b.use_var(x);
                let after = self.b.ins().iadd_imm_s(j, 2 * LANES);
                let more = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, after, end);
                self.b.ins().brif(more, advance, &[], done, &[]);
                self.enter(advance);
                let j = self.b.ins().iadd_imm_s(j, LANES);
                self.b.def_var(x, j);
                let k = self.expr(filter)?;
                let k = self.truth(k);
                self.b.def_var(mask, k);
                let any = self.b.ins().vany_true(k);
                self.b.ins().brif(any, work, &[], next, &[]);
                self.b.seal_block(next);
            }
            _ => {
                self.b.ins().brif(any, work, &[], done, &[]);
            }
        }
        self.enter(work);
        Ok((self.b.use_var(mask), done))
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
        let bodies: Vec<&Expr> = filter.into_iter().chain(body).collect();
        self.innermost(vars, range, &bodies, &mut |s, last, start, end| {
            s.vector_loop(
                last,
                start,
                end,
                &mut |s| s.accumulate(op, filter, body, (vf, vg, vn), filter.is_some(), Some(end)),
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
        let total = self.combine_lanes(op, body, (vf, vg, vn));
        let tails = self.use_state(run);
        Ok(self.merge(op, total, tails))
    }
}
