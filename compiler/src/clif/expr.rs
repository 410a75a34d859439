//! Lowering definitions, loops and expressions.

use super::ClifError;
use super::math::small_power;
use crate::ir::{BinOp, DType, Expr, Loss, Reducer, Tensor, UnaryOp, VarId};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    Block, BlockArg, FuncRef, InstBuilder, MemFlagsData, Type, Value, types,
};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_module::Module;
use std::collections::HashMap;

/// A lowered value with its IR type: f32 numbers, i64 integers, i8 truth values.
#[derive(Debug, Clone, Copy)]
pub(super) enum Val {
    F(Value),
    I(Value),
    B(Value),
}

/// The accumulators of a reduction after its loops (`None` where the reducer has none): `f`
/// the f32 running value (sum, max, min, best term), `g` the f32 sum of `exp(x - max)` of
/// logsumexp, `n` the i64 count or position. `Part::Partial` stores them at byte offsets 0, 4
/// and 8 of `result`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReduceState {
    pub(super) f: Option<Value>,
    pub(super) g: Option<Value>,
    pub(super) n: Option<Value>,
}

impl ReduceState {
    pub(super) fn new(f: Option<Value>, g: Option<Value>, n: Option<Value>) -> ReduceState {
        ReduceState { f, g, n }
    }

    /// Only the accumulators `op` has.
    pub(super) fn like(self, op: Reducer) -> ReduceState {
        let (f, g) = match op {
            Reducer::Count => (false, false),
            Reducer::LogSumExp => (true, true),
            _ => (true, false),
        };
        let n = counts(op);
        ReduceState {
            f: self.f.filter(|_| f),
            g: self.g.filter(|_| g),
            n: self.n.filter(|_| n),
        }
    }
}

/// True when `op`'s state has a count (`n`): a max, min or logsumexp has none, so its loops
/// need not count the terms a filter keeps.
pub(super) fn counts(op: Reducer) -> bool {
    !matches!(op, Reducer::Max | Reducer::Min | Reducer::LogSumExp)
}

/// The state of lowering one loss into one function.
pub(super) struct Lowering<'a, M: Module> {
    pub(super) loss: &'a Loss,
    pub(super) module: &'a mut M,
    pub(super) b: FunctionBuilder<'a>,
    pub(super) ptr: Type,
    pub(super) inputs: Vec<Value>,
    hypers: Value,
    pub(super) work: Value,
    pub(super) result: Value,
    error: Value,
    pub(super) dims: Vec<Value>,
    pub(super) offsets: Vec<Value>,
    pub(super) vars: HashMap<VarId, Variable>,
    error_block: Option<Block>,
    pub(super) funcs: HashMap<&'static str, FuncRef>,
    /// For a one-definition function: the range of its outermost index to compute.
    pub(super) outer_range: Option<(Value, Value)>,
    /// In vector mode, the loop variable whose four consecutive points are computed at once
    /// (see `vector.rs`).
    pub(super) lanes: Option<VarId>,
    /// For [`super::Part::Group`]: the members, in order.
    pub(super) members: Vec<usize>,
    /// For [`super::Part::Group`]: the members kept in the scratch buffer.
    pub(super) locals: Vec<usize>,
    /// For each definition, the member whose storage it borrows (`crate::fuse::hosts`).
    pub(super) hosts: Vec<Option<usize>>,
    /// The softmax scale definitions of `crate::softmax::share` (see `softmax.rs`).
    pub(super) scales: Vec<usize>,
    /// In a one-loop group (`group.rs`): the current row's value of each member computed so far.
    pub(super) row_values: HashMap<usize, Val>,
    /// For each definition: whether this function writes it (reads of the others cannot
    /// change while it runs).
    pub(super) written: Vec<bool>,
    /// Invariant subexpressions computed so far: at the function's entry, and before the
    /// innermost loops being lowered (`invariant.rs`).
    pub(super) hoisted: Vec<super::invariant::Hoisted>,
    /// Whether the target has a fused multiply-add for `vmath` to use.
    pub(super) fma: bool,
    /// Each definition's base address in the workspace, for those the function uses
    /// ([`Lowering::def_bases`]).
    pub(super) bases: Vec<Option<Value>>,
    /// Product accumulators `(vf, vg)` of the innermost loop being lowered, to bound at the
    /// end of each step ([`Lowering::accumulate_log_product`]).
    pub(super) bounds: Vec<(Variable, Variable)>,
    /// How many loops enclose the code being emitted (`loops.rs`).
    pub(super) depth: usize,
    /// Whether a loop was emitted in the innermost loop being emitted, so far (`loops.rs`).
    pub(super) nests: bool,
    /// The lane indices of the vector loop being lowered (`vector.rs`).
    pub(super) lane_iv: Option<super::vector::LaneIndices>,
}

fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Flags of a load from memory no compiled code writes (hyperparameters) at an address known
/// to be in bounds wherever its operands are defined.
fn readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

impl<'a, M: Module> Lowering<'a, M> {
    pub(super) fn new(loss: &'a Loss, module: &'a mut M, b: FunctionBuilder<'a>) -> Self {
        let ptr = module.target_config().pointer_type();
        let fma = module.isa().has_native_fma();
        let placeholder = Value::from_u32(0);
        Lowering {
            loss,
            module,
            b,
            ptr,
            inputs: vec![],
            hypers: placeholder,
            work: placeholder,
            result: placeholder,
            error: placeholder,
            dims: vec![],
            offsets: vec![],
            vars: HashMap::new(),
            error_block: None,
            funcs: HashMap::new(),
            outer_range: None,
            lanes: None,
            members: vec![],
            locals: vec![],
            hosts: vec![],
            scales: vec![],
            row_values: HashMap::new(),
            written: vec![],
            hoisted: vec![],
            fma,
            bases: vec![],
            bounds: vec![],
            depth: 0,
            nests: false,
            lane_iv: None,
        }
    }

    /// Emits the function for `part` of the program.
    pub(super) fn function(mut self, part: super::Part) -> Result<(), ClifError> {
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.enter(entry);
        let params = self.b.block_params(entry).to_vec();
        if let super::Part::Def(_) | super::Part::Partial(_) | super::Part::Group = part {
            self.outer_range = Some((params[6], params[7]));
        }
        let (inputs, dims, hypers) = (params[0], params[1], params[2]);
        (self.work, self.result, self.error) = (params[3], params[4], params[5]);
        self.hypers = hypers;
        let word = self.ptr.bytes() as i32;
        for i in 0..self.loss.inputs.len() {
            let p = self
                .b
                .ins()
                .load(self.ptr, trusted(), inputs, i as i32 * word);
            self.inputs.push(p);
        }
        for d in 0..self.loss.dims.len() {
            let n = self.b.ins().load(types::I64, trusted(), dims, d as i32 * 8);
            self.dims.push(n);
        }
        let mut off = self.b.ins().iconst(types::I64, 0);
        for def in &self.loss.defs {
            self.offsets.push(off);
            let mut n = self.b.ins().iconst(types::I64, 1);
            for &v in &def.indices {
                n = self.b.ins().imul(n, self.dims[self.loss.vars[v].dim]);
            }
            off = self.b.ins().iadd(off, n);
        }
        if let super::Part::Group = part {
            self.scratch_offsets(params[8]);
        }
        let n = self.loss.defs.len();
        self.written = match part {
            super::Part::All => vec![true; n],
            super::Part::Def(d) => (0..n).map(|e| e == d).collect(),
            super::Part::Group => (0..n).map(|e| self.members.contains(&e)).collect(),
            super::Part::Partial(_) | super::Part::Result => vec![false; n],
        };
        let bodies: Vec<Expr> = match part {
            super::Part::All => self.loss.defs.iter().map(|d| d.body.clone()).collect(),
            super::Part::Def(d) | super::Part::Partial(d) => vec![self.loss.defs[d].body.clone()],
            super::Part::Group => self
                .members
                .iter()
                .map(|&d| self.loss.defs[d].body.clone())
                .collect(),
            super::Part::Result => vec![],
        };
        // The definitions this function writes or reads (the result only where it is
        // lowered), less a group's reductions (stored once, at its end) and a one-loop
        // group's local row members (kept in registers, `group.rs`).
        let one_loop = match part {
            super::Part::Group => self.one_loop_members(),
            _ => None,
        };
        let mut used = self.written.clone();
        let result = matches!(part, super::Part::All | super::Part::Result);
        for e in bodies.iter().chain(result.then_some(&self.loss.result)) {
            e.visit(&mut |x| {
                if let Expr::Read {
                    tensor: Tensor::Def(d),
                    ..
                } = x
                {
                    used[*d] = true;
                }
            });
        }
        for &d in &self.members {
            let local_row = one_loop.is_some() && self.locals.contains(&d);
            if local_row || self.loss.defs[d].indices.is_empty() {
                used[d] = false;
            }
        }
        self.def_bases(&used);
        self.hoist_invariants(&bodies.iter().collect::<Vec<_>>())?;
        match part {
            super::Part::All => {
                for d in 0..self.loss.defs.len() {
                    self.definition(d)?;
                }
            }
            super::Part::Def(d) => self.definition(d)?,
            super::Part::Partial(d) => self.partial(d, 0)?,
            super::Part::Group => self.group(one_loop)?,
            super::Part::Result => {}
        }
        if !matches!(
            part,
            super::Part::Def(_) | super::Part::Partial(_) | super::Part::Group
        ) {
            let value = self.expr(&self.loss.result.clone())?;
            let value = self.float(value);
            self.b.ins().store(trusted(), value, self.result, 0);
        }
        let ok = self.b.ins().iconst(types::I64, 0);
        self.b.ins().return_(&[ok]);
        if let Some(err) = self.error_block {
            self.b.switch_to_block(err);
            let one = self.b.ins().iconst(types::I64, 1);
            self.b.ins().return_(&[one]);
        }
        self.b.seal_all_blocks();
        let config = self.module.target_config();
        self.b.finalize(config);
        Ok(())
    }

    /// Points the group's local definitions into `scratch`: each holds the block's rows
    /// `start..end` one after the other, so that element `[row, ...]` of local `d` lies at
    /// `scratch + before + (row - start) * width(d) + ...`, expressed as an offset from `work`
    /// like every other definition. A local with a host (`crate::fuse::hosts`) takes its
    /// host's offset instead.
    fn scratch_offsets(&mut self, scratch: Value) {
        let (start, end) = self.outer_range.expect("a group has a row range");
        let rows = self.b.ins().isub(end, start);
        let (scratch, work) = if self.ptr == types::I64 {
            (scratch, self.work)
        } else {
            (
                self.b.ins().uextend(types::I64, scratch),
                self.b.ins().uextend(types::I64, self.work),
            )
        };
        let bytes = self.b.ins().isub(scratch, work);
        let mut at = self.b.ins().sshr_imm_u(bytes, 2);
        for d in self.locals.clone() {
            if let Some(&Some(g)) = self.hosts.get(d) {
                self.offsets[d] = self.offsets[g];
                continue;
            }
            let mut width = self.b.ins().iconst(types::I64, 1);
            for &v in &self.loss.defs[d].indices[1..] {
                width = self.b.ins().imul(width, self.dims[self.loss.vars[v].dim]);
            }
            let first = self.b.ins().imul(start, width);
            self.offsets[d] = self.b.ins().isub(at, first);
            let size = self.b.ins().imul(rows, width);
            at = self.b.ins().iadd(at, size);
        }
    }

    pub(super) fn var(&mut self, v: VarId) -> Variable {
        if let Some(&x) = self.vars.get(&v) {
            return x;
        }
        let x = self.b.declare_var(types::I64);
        self.vars.insert(v, x);
        x
    }

    /// Emits the loop nest that fills definition `d`; its innermost loop four points at a time
    /// when the body allows (`vector.rs`).
    pub(super) fn definition(&mut self, d: usize) -> Result<(), ClifError> {
        if let Some((i, k, body)) = crate::column::column_sum(self.loss, d) {
            let body = body.clone();
            return self.column_sum(d, i, k, &body);
        }
        if let Some((i, j)) = crate::column::transposed(self.loss, d) {
            let body = self.loss.defs[d].body.clone();
            return self.transposed_definition(d, i, j, &body);
        }
        let def = self.loss.defs[d].clone();
        self.fill(d, &def.indices, self.outer_range)
    }

    /// Stores `value` (four lanes in vector mode) as the element of definition `d` at the
    /// current values of its index variables.
    pub(super) fn store_element(&mut self, d: usize, value: Value) {
        let mut flat = self.b.ins().iconst(types::I64, 0);
        for &v in &self.loss.defs[d].indices {
            let size = self.dims[self.loss.vars[v].dim];
            let x = self.var(v);
            let i = self.b.use_var(x);
            flat = self.b.ins().imul(flat, size);
            flat = self.b.ins().iadd(flat, i);
        }
        let addr = self.def_element(d, flat);
        let flags = if self.is_vector(value) {
            MemFlagsData::new().with_notrap()
        } else {
            trusted()
        };
        self.b.ins().store(flags, value, addr, 0);
    }

    /// Emits the loops over `indices` (a suffix of definition `d`'s, the ones before bound
    /// already; the first over `range` when given) that store `d`'s body at each point; the
    /// innermost four points at a time when the body allows (`vector.rs`).
    pub(super) fn fill(
        &mut self,
        d: usize,
        indices: &[VarId],
        range: Option<(Value, Value)>,
    ) -> Result<(), ClifError> {
        let def = self.loss.defs[d].clone();
        let store = |s: &mut Self, value: Val| -> Result<(), ClifError> {
            let value = s.float(value);
            s.store_element(d, value);
            Ok(())
        };
        let last = indices.last().copied();
        if !last.is_some_and(|v| self.vectorizable(&def.body, v)) {
            return self.for_each_from(indices, range, &mut |s| {
                let value = s.expr(&def.body)?;
                store(s, value)
            });
        }
        self.innermost(indices, range, &[&def.body], &mut |s, last, start, end| {
            s.vector_loop(
                last,
                start,
                end,
                &mut |s| {
                    let value = s.expr(&def.body)?;
                    store(s, value)
                },
                &mut |s, rest| {
                    s.for_each_from(&[last], Some((rest, end)), &mut |s| {
                        let value = s.expr(&def.body)?;
                        store(s, value)
                    })
                },
            )
        })
    }

    /// Emits the partial reduction of scalar definition `d` (a reduction) over the range of its
    /// first variable, stored at byte `at` of `result` as `{f32, f32, i64}` (see
    /// [`ReduceState`]).
    pub(super) fn partial(&mut self, d: usize, at: i32) -> Result<(), ClifError> {
        let Expr::Reduce {
            op,
            vars,
            filter,
            body,
        } = self.loss.defs[d].body.clone()
        else {
            unreachable!("only reductions are lowered in parts")
        };
        let range = self.outer_range;
        let state = self.reduce_state(op, &vars, filter.as_deref(), body.as_deref(), range)?;
        self.store_state(state, at);
        Ok(())
    }

    /// The address of element `flat` of definition `d` in the workspace: from `d`'s own base
    /// address ([`Self::def_bases`]), so that the address of an element is one addressing
    /// mode `[base + flat·4]`.
    pub(super) fn def_element(&mut self, d: usize, flat: Value) -> Value {
        let base = match self.bases[d] {
            Some(base) => base,
            None => self.element(self.work, self.offsets[d]),
        };
        self.element(base, flat)
    }

    /// Computes the base address (`work + 4·offset`) of each definition the function uses
    /// once, and passes them as parameters of a new block that the rest of the function
    /// starts in (any other definition's is computed where it is needed). Computed where
    /// they are used, Cranelift's value numbering shares a constant such as the shift by 2
    /// with loop-variant addresses and then keeps the whole invariant computation inside the
    /// loop (ten instructions a store in a softmax's pass); a block parameter is a value of
    /// its own, which loops only read.
    fn def_bases(&mut self, used: &[bool]) {
        let body = self.b.create_block();
        let mut args = vec![];
        for (d, &u) in used.iter().enumerate() {
            if u {
                let base = self.element(self.work, self.offsets[d]);
                args.push(BlockArg::Value(base));
                self.b.append_block_param(body, self.ptr);
            }
        }
        // Two predecessors with different values, or Cranelift removes the parameters as
        // constant: the workspace pointer is never null, so the zeros never arrive.
        let zero = self.b.ins().iconst(self.ptr, 0);
        let zeros = vec![BlockArg::Value(zero); args.len()];
        self.b.ins().brif(self.work, body, &args, body, &zeros);
        self.enter(body);
        let mut params = self.b.block_params(body).to_vec().into_iter();
        self.bases = used
            .iter()
            .map(|&u| if u { params.next() } else { None })
            .collect();
    }

    /// The address of f32/i32 element `index` of `base`.
    pub(super) fn element(&mut self, base: Value, index: Value) -> Value {
        let bytes = self.b.ins().imul_imm_s(index, 4);
        let bytes = if self.ptr == types::I64 {
            bytes
        } else {
            self.b.ins().ireduce(self.ptr, bytes)
        };
        self.b.ins().iadd(base, bytes)
    }

    pub(super) fn float(&mut self, v: Val) -> Value {
        match v {
            Val::F(x) => x,
            Val::I(x) if self.is_vector(x) => self.b.ins().fcvt_from_sint(types::F32X4, x),
            Val::I(x) => self.b.ins().fcvt_from_sint(types::F32, x),
            Val::B(x) if self.is_vector(x) => {
                let one = self.f32(1.0);
                let one = self.b.ins().splat(types::F32X4, one);
                let zero = self.konst(one, 0.0);
                self.pick(x, one, zero)
            }
            Val::B(x) => {
                let wide = self.b.ins().uextend(types::I32, x);
                self.b.ins().fcvt_from_uint(types::F32, wide)
            }
        }
    }

    pub(super) fn int(&mut self, v: Val) -> Value {
        match v {
            Val::I(x) => x,
            Val::F(x) if self.is_vector(x) => self.b.ins().fcvt_to_sint_sat(types::I32X4, x),
            Val::F(x) => self.b.ins().fcvt_to_sint_sat(types::I64, x),
            // A mask is -1 where true.
            Val::B(x) if self.is_vector(x) => self.b.ins().ineg(x),
            Val::B(x) => self.b.ins().uextend(types::I64, x),
        }
    }

    pub(super) fn truth(&mut self, v: Val) -> Value {
        match v {
            Val::B(x) => x,
            Val::I(x) if self.is_vector(x) => {
                let zero = self.b.ins().iconst(types::I32, 0);
                let zero = self.b.ins().splat(types::I32X4, zero);
                self.b.ins().icmp(IntCC::NotEqual, x, zero)
            }
            Val::I(x) => self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
            Val::F(x) => {
                let zero = self.konst(x, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
            }
        }
    }

    pub(super) fn f32(&mut self, x: f32) -> Value {
        self.b.ins().f32const(x)
    }

    /// The shared block that returns the error status.
    fn error_exit(&mut self) -> Block {
        *self
            .error_block
            .get_or_insert_with(|| self.b.create_block())
    }

    /// Lowers an expression.
    pub(super) fn expr(&mut self, e: &Expr) -> Result<Val, ClifError> {
        if let Some(v) = self.lanes {
            return self.vexpr(e, v);
        }
        if let Some(x) = self.hoisted(e, false) {
            return Ok(x);
        }
        Ok(match e {
            Expr::Float(x) => Val::F(self.f32(*x as f32)),
            Expr::Int(k) => Val::I(self.b.ins().iconst(types::I64, *k)),
            Expr::Bool(t) => Val::B(self.b.ins().iconst(types::I8, i64::from(*t))),
            Expr::Index(v) => {
                let x = self.var(*v);
                Val::I(self.b.use_var(x))
            }
            Expr::Hyper(h) => Val::F(self.b.ins().load(
                types::F32,
                readonly(),
                self.hypers,
                *h as i32 * 4,
            )),
            Expr::Read { tensor, indices } => self.read(*tensor, indices)?,
            Expr::Unary(UnaryOp::Neg, a) => match self.expr(a)? {
                Val::I(x) => Val::I(self.b.ins().ineg(x)),
                v => {
                    let x = self.float(v);
                    Val::F(self.b.ins().fneg(x))
                }
            },
            Expr::Unary(UnaryOp::Not, a) => {
                let v = self.expr(a)?;
                let t = self.truth(v);
                Val::B(self.b.ins().icmp_imm_s(IntCC::Equal, t, 0))
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, c) => self.logic(*op, a, c)?,
            Expr::Binary(BinOp::Pow, a, c) if small_power(c).is_some() => {
                Val::F(self.power(a, small_power(c).expect("checked"))?)
            }
            Expr::Binary(op, a, c) => {
                let (x, y) = (self.expr(a)?, self.expr(c)?);
                self.binary(*op, x, y)
            }
            Expr::Call(f, args) => Val::F(self.call(*f, args)?),
            Expr::Select(c, a, d) => self.select(e, c, a, d)?,
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => self.reduce(*op, vars, filter.as_deref(), body.as_deref())?,
        })
    }

    pub(super) fn binary(&mut self, op: BinOp, x: Val, y: Val) -> Val {
        if let (Val::I(a), Val::I(c)) = (x, y) {
            match op {
                BinOp::Add => return Val::I(self.b.ins().iadd(a, c)),
                BinOp::Sub => return Val::I(self.b.ins().isub(a, c)),
                BinOp::Mul => return Val::I(self.b.ins().imul(a, c)),
                _ if op.is_comparison() => return Val::B(self.b.ins().icmp(int_cc(op), a, c)),
                _ => {}
            }
        }
        if let (Val::B(a), Val::B(c)) = (x, y)
            && op.is_comparison()
        {
            if self.is_vector(a) {
                // Masks are -1 where true: compare 0/1.
                let (a, c) = (self.b.ins().ineg(a), self.b.ins().ineg(c));
                return Val::B(self.b.ins().icmp(int_cc(op), a, c));
            }
            return Val::B(self.b.ins().icmp(int_cc(op), a, c));
        }
        let (a, c) = (self.float(x), self.float(y));
        match op {
            BinOp::Add => Val::F(self.b.ins().fadd(a, c)),
            BinOp::Sub => Val::F(self.b.ins().fsub(a, c)),
            BinOp::Mul => Val::F(self.b.ins().fmul(a, c)),
            BinOp::Div => Val::F(self.b.ins().fdiv(a, c)),
            BinOp::Pow => Val::F(self.math2("powf", a, c)),
            _ => Val::B(self.b.ins().fcmp(float_cc(op), a, c)),
        }
    }

    /// True when evaluating `e` where the program would not is harmless and cheap: it reads
    /// only elements indexed by loop variables of their own dimension (no check can fail) and
    /// holds no reduction (no loop). Such parts of `if`, `&&`, `||` and filtered sums are
    /// computed without branches, which random data would mispredict half the time.
    pub(super) fn speculatable(&self, e: &Expr) -> bool {
        !e.any(&mut |x| match x {
            Expr::Reduce { .. } => true,
            Expr::Read { tensor, indices } => {
                let shape = self.loss.shape_of(*tensor);
                indices
                    .iter()
                    .zip(&shape)
                    .any(|(i, &dim)| !matches!(i, Expr::Index(v) if self.loss.vars[*v].dim == dim))
            }
            _ => false,
        })
    }

    /// `&&` and `||`, evaluating the right side only when the left does not decide (or both,
    /// without a branch, when the right side is speculatable).
    fn logic(&mut self, op: BinOp, a: &Expr, c: &Expr) -> Result<Val, ClifError> {
        if self.speculatable(c) {
            let left = self.expr(a)?;
            let left = self.truth(left);
            let right = self.expr(c)?;
            let right = self.truth(right);
            return Ok(Val::B(if op == BinOp::And {
                self.b.ins().band(left, right)
            } else {
                self.b.ins().bor(left, right)
            }));
        }
        let out = self.b.declare_var(types::I8);
        let left = self.expr(a)?;
        let left = self.truth(left);
        self.b.def_var(out, left);
        let (right, done) = (self.b.create_block(), self.b.create_block());
        if op == BinOp::And {
            self.b.ins().brif(left, right, &[], done, &[]);
        } else {
            self.b.ins().brif(left, done, &[], right, &[]);
        }
        self.enter(right);
        let r = self.expr(c)?;
        let r = self.truth(r);
        self.b.def_var(out, r);
        self.b.ins().jump(done, &[]);
        self.enter(done);
        Ok(Val::B(self.b.use_var(out)))
    }

    /// `if c then a else d`, evaluating only the taken branch (or both, and choosing without
    /// a branch, when both are speculatable).
    fn select(&mut self, e: &Expr, c: &Expr, a: &Expr, d: &Expr) -> Result<Val, ClifError> {
        let ty = self.loss.type_of(e);
        let typed = |s: &mut Self, v: Val| match ty {
            DType::Float => s.float(v),
            DType::Int => s.int(v),
            DType::Bool => s.truth(v),
        };
        let wrap = |v: Value| match ty {
            DType::Float => Val::F(v),
            DType::Int => Val::I(v),
            DType::Bool => Val::B(v),
        };
        if self.speculatable(a) && self.speculatable(d) {
            let cond = self.expr(c)?;
            let cond = self.truth(cond);
            let x = self.expr(a)?;
            let x = typed(self, x);
            let y = self.expr(d)?;
            let y = typed(self, y);
            return Ok(wrap(self.b.ins().select(cond, x, y)));
        }
        let out = self.b.declare_var(match ty {
            DType::Float => types::F32,
            DType::Int => types::I64,
            DType::Bool => types::I8,
        });
        let cond = self.expr(c)?;
        let cond = self.truth(cond);
        let (yes, no, done) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().brif(cond, yes, &[], no, &[]);
        for (block, branch) in [(yes, a), (no, d)] {
            self.enter(block);
            let v = self.expr(branch)?;
            let v = match ty {
                DType::Float => self.float(v),
                DType::Int => self.int(v),
                DType::Bool => self.truth(v),
            };
            self.b.def_var(out, v);
            self.b.ins().jump(done, &[]);
        }
        self.enter(done);
        let v = self.b.use_var(out);
        Ok(match ty {
            DType::Float => Val::F(v),
            DType::Int => Val::I(v),
            DType::Bool => Val::B(v),
        })
    }

    /// An element of an input or definition, every index checked against its dimension.
    fn read(&mut self, t: Tensor, indices: &[Expr]) -> Result<Val, ClifError> {
        if let Tensor::Def(d) = t
            && let Some(&v) = self.row_values.get(&d)
        {
            return Ok(v);
        }
        let (addr, flags) = self.address(t, indices, trusted())?;
        Ok(match t {
            Tensor::Input(k) => match self.loss.inputs[k].dtype {
                DType::Float => Val::F(self.b.ins().load(types::F32, flags, addr, 0)),
                DType::Int => {
                    let x = self.b.ins().load(types::I32, flags, addr, 0);
                    Val::I(self.b.ins().sextend(types::I64, x))
                }
                DType::Bool => {
                    let x = self.b.ins().load(types::I8, flags, addr, 0);
                    Val::B(self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0))
                }
            },
            Tensor::Def(d) => {
                let x = self.b.ins().load(types::F32, flags, addr, 0);
                match self.loss.defs[d].dtype {
                    DType::Float => Val::F(x),
                    DType::Int => Val::I(self.b.ins().fcvt_to_sint_sat(types::I64, x)),
                    DType::Bool => {
                        let zero = self.f32(0.0);
                        Val::B(self.b.ins().fcmp(FloatCC::NotEqual, x, zero))
                    }
                }
            }
        })
    }

    /// The address of element `indices` of `t` (every index that is not a loop variable of
    /// its dimension computed as a scalar and checked), with the flags of its load: `base`,
    /// plus readonly when this function does not write `t` (inputs never are), plus movable
    /// when no index needed a check — so equal reads are computed once and invariant ones
    /// leave loops.
    pub(super) fn address(
        &mut self,
        t: Tensor,
        indices: &[Expr],
        base: MemFlagsData,
    ) -> Result<(Value, MemFlagsData), ClifError> {
        let shape = self.loss.shape_of(t);
        let mut flat = self.b.ins().iconst(types::I64, 0);
        let mut checked = false;
        for (pos, (ix, &dim)) in indices.iter().zip(&shape).enumerate() {
            let size = self.dims[dim];
            let i = match ix {
                // A loop variable over this dimension is in range by construction.
                Expr::Index(v) if self.loss.vars[*v].dim == dim => {
                    let x = self.var(*v);
                    self.b.use_var(x)
                }
                other => {
                    checked = true;
                    let lanes = self.lanes.take();
                    let i = self.read_index(t, pos, other, size);
                    self.lanes = lanes;
                    i?
                }
            };
            flat = self.b.ins().imul(flat, size);
            flat = self.b.ins().iadd(flat, i);
        }
        let (addr, written) = match t {
            Tensor::Input(k) if self.loss.inputs[k].dtype == DType::Bool => {
                (self.b.ins().iadd(self.inputs[k], flat), false)
            }
            Tensor::Input(k) => (self.element(self.inputs[k], flat), false),
            Tensor::Def(d) => (self.def_element(d, flat), self.written[d]),
        };
        let flags = match (written, checked) {
            (true, _) => base,
            (false, true) => base.with_readonly(),
            (false, false) => base.with_readonly().with_can_move(),
        };
        Ok((addr, flags))
    }

    /// Index `ix` at position `pos` of a read of `t`, checked against the dimension's `size`.
    pub(super) fn read_index(
        &mut self,
        t: Tensor,
        pos: usize,
        ix: &Expr,
        size: Value,
    ) -> Result<Value, ClifError> {
        let v = self.expr(ix)?;
        let i = self.int(v);
        self.check(t, pos, i, size);
        Ok(i)
    }

    /// Leaves through the error exit, with `error = {tensor, position, value, is_def}`, when
    /// `i` is outside `0..size`.
    fn check(&mut self, t: Tensor, pos: usize, i: Value, size: Value) {
        let bad = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, i, size);
        let (report, ok) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(bad, report, &[], ok, &[]);
        self.enter(report);
        let (tensor, is_def) = match t {
            Tensor::Input(k) => (k as i64, 0),
            Tensor::Def(d) => (d as i64, 1),
        };
        let fields = [tensor, pos as i64];
        for (k, f) in fields.iter().enumerate() {
            let v = self.b.ins().iconst(types::I64, *f);
            self.b.ins().store(trusted(), v, self.error, k as i32 * 8);
        }
        self.b.ins().store(trusted(), i, self.error, 16);
        let v = self.b.ins().iconst(types::I64, is_def);
        self.b.ins().store(trusted(), v, self.error, 24);
        let exit = self.error_exit();
        self.b.ins().jump(exit, &[]);
        self.enter(ok);
    }

    /// A reduction: nested loops over its variables, kept terms accumulated in registers.
    fn reduce(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
    ) -> Result<Val, ClifError> {
        let state = self.reduce_state(op, vars, filter, body, None)?;
        Ok(self.finish(op, state))
    }

    /// The accumulators of a reduction after its loops, the first variable running over `range`
    /// when given (one block of a reduction split over threads); four terms at a time when the
    /// reduction allows (`vector.rs`).
    fn reduce_state(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
        range: Option<(Value, Value)>,
    ) -> Result<ReduceState, ClifError> {
        let vector = self.vector_reduction(op, vars, filter, body);
        let two_pass = vector
            && op == Reducer::LogSumExp
            && body.is_some_and(|b| crate::softmax::cheap_terms(filter, b));
        let mut state = if let (true, Some(body)) = (two_pass, body) {
            self.logsumexp_in_two_passes(vars, filter, body, range)?
        } else if vector {
            self.vector_reduce_state(op, vars, filter, body, range)?
        } else {
            self.scalar_reduce_state(op, vars, filter, body, range)?
        };
        if filter.is_none() && state.n.is_some() && !matches!(op, Reducer::ArgMax | Reducer::ArgMin)
        {
            state.n = Some(self.term_count(vars, range));
        }
        Ok(state)
    }

    /// [`Self::reduce_state`] one term at a time. Terms accumulate as in vector loops
    /// ([`Self::accumulate`]); a filter is blended where the body is safe and cheap to compute
    /// for every term (a count, a speculatable sum), and branched on otherwise.
    pub(super) fn scalar_reduce_state(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
        range: Option<(Value, Value)>,
    ) -> Result<ReduceState, ClifError> {
        if let Reducer::ArgMax | Reducer::ArgMin = op {
            return self.arg_reduce_state(op, vars, filter, body, range);
        }
        let blend = match op {
            Reducer::Count => true,
            Reducer::Sum | Reducer::Mean => body.is_some_and(|b| self.speculatable(b)),
            _ => false,
        };
        let (blended, branched) = if blend {
            (filter, None)
        } else {
            (None, filter)
        };
        let (f, g, n) = self.scalar_state(op);
        self.terms(vars, range, branched, &mut |s| {
            s.accumulate(op, blended, body, (f, g, n), filter.is_some(), None)
        })?;
        Ok(self.use_state([Some(f), Some(g), Some(n)]).like(op))
    }

    /// The best term's value and position of `argmax`/`argmin`, one term at a time.
    fn arg_reduce_state(
        &mut self,
        op: Reducer,
        vars: &[VarId],
        filter: Option<&Expr>,
        body: Option<&Expr>,
        range: Option<(Value, Value)>,
    ) -> Result<ReduceState, ClifError> {
        let body = body.expect("argmax and argmin have a body");
        let (best, at) = (
            self.b.declare_var(types::F32),
            self.b.declare_var(types::I64),
        );
        let (z, minus_one) = (self.f32(0.0), self.b.ins().iconst(types::I64, -1));
        self.b.def_var(best, z);
        self.b.def_var(at, minus_one);
        let position = vars[0];
        self.terms(vars, range, filter, &mut |s| {
            let v = s.expr(body)?;
            let v = s.float(v);
            let (b, p) = (s.b.use_var(best), s.b.use_var(at));
            // The first extreme term wins ties; NaN beats everything.
            let cc = if op == Reducer::ArgMax {
                FloatCC::GreaterThan
            } else {
                FloatCC::LessThan
            };
            let better = s.b.ins().fcmp(cc, v, b);
            let v_nan = s.b.ins().fcmp(FloatCC::Unordered, v, v);
            let b_num = s.b.ins().fcmp(FloatCC::Ordered, b, b);
            let nan_first = s.b.ins().band(v_nan, b_num);
            let first = s.b.ins().icmp_imm_s(IntCC::SignedLessThan, p, 0);
            let take = s.b.ins().bor(better, nan_first);
            let take = s.b.ins().bor(take, first);
            let here = s.var(position);
            let here = s.b.use_var(here);
            let nb = s.b.ins().select(take, v, b);
            let np = s.b.ins().select(take, here, p);
            s.b.def_var(best, nb);
            s.b.def_var(at, np);
            Ok(())
        })?;
        Ok(ReduceState {
            f: Some(self.b.use_var(best)),
            g: None,
            n: Some(self.b.use_var(at)),
        })
    }

    /// The value of a reduction from its accumulators.
    pub(super) fn finish(&mut self, op: Reducer, state: ReduceState) -> Val {
        let (f, g, n) = (state.f, state.g, state.n);
        match op {
            Reducer::Count | Reducer::ArgMax | Reducer::ArgMin => Val::I(n.expect("a count")),
            Reducer::Sum | Reducer::Max | Reducer::Min => Val::F(f.expect("an accumulator")),
            Reducer::Mean => {
                // 0 over an empty set.
                let (total, k) = (f.expect("a sum"), n.expect("a count"));
                let one = self.b.ins().iconst(types::I64, 1);
                let k = self.b.ins().smax(k, one);
                let k = self.b.ins().fcvt_from_sint(types::F32, k);
                Val::F(self.b.ins().fdiv(total, k))
            }
            Reducer::LogSumExp => {
                // max + log(sum exp(x - max)); the max itself when it is not finite; NaN
                // after a NaN term (the sum carries it).
                let (m, total) = (f.expect("a max"), g.expect("a sum"));
                let log = self.math1("logf", total);
                let shifted = self.b.ins().fadd(m, log);
                let inf = self.f32(f32::INFINITY);
                let magnitude = self.b.ins().fabs(m);
                let finite = self.b.ins().fcmp(FloatCC::LessThan, magnitude, inf);
                let value = self.b.ins().select(finite, shifted, m);
                let nan = self.b.ins().fcmp(FloatCC::Unordered, total, total);
                Val::F(self.b.ins().select(nan, total, value))
            }
        }
    }

    /// Runs `kept` for every term of `vars` that passes `filter`.
    fn terms(
        &mut self,
        vars: &[VarId],
        range: Option<(Value, Value)>,
        filter: Option<&Expr>,
        kept: &mut dyn FnMut(&mut Self) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        self.for_each_from(vars, range, &mut |s| match filter {
            None => kept(s),
            Some(f) => {
                let c = s.expr(f)?;
                let c = s.truth(c);
                let (yes, next) = (s.b.create_block(), s.b.create_block());
                s.b.ins().brif(c, yes, &[], next, &[]);
                s.enter(yes);
                kept(s)?;
                s.b.ins().jump(next, &[]);
                s.enter(next);
                Ok(())
            }
        })
    }
}

fn int_cc(op: BinOp) -> IntCC {
    match op {
        BinOp::Eq => IntCC::Equal,
        BinOp::Ne => IntCC::NotEqual,
        BinOp::Lt => IntCC::SignedLessThan,
        BinOp::Le => IntCC::SignedLessThanOrEqual,
        BinOp::Gt => IntCC::SignedGreaterThan,
        BinOp::Ge => IntCC::SignedGreaterThanOrEqual,
        other => unreachable!("{other:?} is not a comparison"),
    }
}

fn float_cc(op: BinOp) -> FloatCC {
    match op {
        BinOp::Eq => FloatCC::Equal,
        BinOp::Ne => FloatCC::NotEqual,
        BinOp::Lt => FloatCC::LessThan,
        BinOp::Le => FloatCC::LessThanOrEqual,
        BinOp::Gt => FloatCC::GreaterThan,
        BinOp::Ge => FloatCC::GreaterThanOrEqual,
        other => unreachable!("{other:?} is not a comparison"),
    }
}
