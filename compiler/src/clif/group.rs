//! Fused groups (`crate::fuse`): the members of a group computed for one block of rows.
//!
//! When every member is a one-index row definition of floats or a reduction over the row
//! variable alone, and every body runs four rows at a time (`vector.rs`), the members share
//! loops: each row's value of a member is kept in a register for the members after it (stored
//! only when something else reads it), reductions accumulate in lanes, and Cranelift's value
//! numbering computes shared subexpressions once — DPO's four sigmoid-family terms of ±β·margin
//! need one `exp` and one `log1p`. Members without calls that no member with calls reads
//! (DPO's rewards and metrics) take a loop of their own over the block (`parts`). Otherwise
//! members run one after the other over the block, each with its own loops; a row logsumexp
//! and its softmax (`crate::softmax`) together, with the row reductions that share its first
//! pass (`softmax.rs`).

use super::ClifError;
use super::expr::{Lowering, ReduceState, Val};
use crate::ir::{Builtin, DType, Expr, Reducer, Tensor, VarId};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, types};
use cranelift_frontend::Variable;
use cranelift_module::Module;

/// What a member of a one-loop group does with each row.
#[derive(Clone)]
pub(super) enum Member {
    /// A row definition: its body at the row variable.
    Row { d: usize, v: VarId, body: Expr },
    /// A reduction over the row variable.
    Reduce {
        op: Reducer,
        v: VarId,
        filter: Option<Expr>,
        body: Option<Expr>,
    },
}

impl<M: Module> Lowering<'_, M> {
    /// Emits the group's members for rows `start..end`, reductions' accumulators stored at
    /// `result` (16 bytes each, in member order); `one_loop` is [`Self::one_loop_members`].
    pub(super) fn group(&mut self, one_loop: Option<Vec<Member>>) -> Result<(), ClifError> {
        match one_loop {
            Some(members) => self.one_loop_group(&members),
            None => {
                let members = self.members.clone();
                let mut k = 0;
                let mut done = vec![];
                for (i, &d) in members.iter().enumerate() {
                    if done.contains(&d) {
                        continue;
                    }
                    if super::partial_reducer(self.loss, d).is_some() {
                        self.partial(d, k * 16)?;
                        k += 1;
                    } else if let Some(&p) = members.get(i + 1)
                        && self.softmax_pairs(d, p)
                    {
                        // A logsumexp and its softmax: one pass (`softmax.rs`), with the row
                        // reductions that can share its first pass, after what they read.
                        let (companions, earlier) = self.companions(&members, i);
                        for &e in &earlier {
                            self.definition(e)?;
                        }
                        // Its scale, when `crate::softmax::share` gave it one.
                        let scale = members
                            .get(i + 2)
                            .copied()
                            .filter(|&s| s == p + 1 && self.scales.contains(&s));
                        self.softmax_pair(d, p, scale, &companions)?;
                        done.push(p);
                        done.extend(scale);
                        done.extend(companions);
                        done.extend(earlier);
                    } else {
                        self.definition(d)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The members as one-loop members, when the group qualifies (see the module doc). There
    /// local row members are never stored: readers take their values from registers.
    pub(super) fn one_loop_members(&self) -> Option<Vec<Member>> {
        let mut out = vec![];
        for &d in &self.members {
            let def = &self.loss.defs[d];
            let member = match (&def.indices[..], &def.body) {
                ([v], body) if def.dtype == DType::Float && self.vectorizable(body, *v) => {
                    Member::Row {
                        d,
                        v: *v,
                        body: body.clone(),
                    }
                }
                (
                    [],
                    Expr::Reduce {
                        op,
                        vars,
                        filter,
                        body,
                    },
                ) if vars.len() == 1
                    && self.vector_reduction(*op, vars, filter.as_deref(), body.as_deref()) =>
                {
                    Member::Reduce {
                        op: *op,
                        v: vars[0],
                        filter: filter.as_deref().cloned(),
                        body: body.as_deref().cloned(),
                    }
                }
                _ => return None,
            };
            out.push(member);
        }
        Some(out)
    }

    /// One loop over the block's rows computing every member (four rows at a time, then the
    /// rest one by one).
    fn one_loop_group(&mut self, members: &[Member]) -> Result<(), ClifError> {
        let (start, end) = self.outer_range.expect("a group has a row range");
        // Every member's row variable is the same loop counter.
        let row = self.b.declare_var(types::I64);
        for m in members {
            let (Member::Row { v, .. } | Member::Reduce { v, .. }) = m;
            self.vars.insert(*v, row);
        }
        // Four rows at a time, then the rest one by one: one loop per part (see `parts`).
        let (Member::Row { v, .. } | Member::Reduce { v, .. }) = &members[0];
        let v = *v;
        let mut ordinal = vec![None; members.len()];
        let mut k = 0;
        for (i, m) in members.iter().enumerate() {
            if let Member::Reduce { .. } = m {
                ordinal[i] = Some(k);
                k += 1;
            }
        }
        // Per part: the accumulators (lanes and the scalar rest, per reduction) set up before
        // its loop and stored after it, so that they are live in that loop only.
        for part in parts(members) {
            let sub: Vec<Member> = part.iter().map(|&i| members[i].clone()).collect();
            let reductions: Vec<usize> = part
                .iter()
                .filter(|&&i| ordinal[i].is_some())
                .copied()
                .collect();
            let (mut lanes, mut rests) = (vec![], vec![]);
            for &i in &reductions {
                if let Member::Reduce { op, .. } = &members[i] {
                    lanes.push(self.lane_state(*op));
                    rests.push(self.scalar_state(*op));
                }
            }
            self.vector_loop(
                v,
                start,
                end,
                &mut |s| s.one_row(&sub, true, &lanes),
                &mut |s, rest| {
                    s.for_each_from(&[v], Some((rest, end)), &mut |s| {
                        s.one_row(&sub, false, &rests)
                    })
                },
            )?;
            // Lanes 0..4, then the rest, for each reduction.
            for (j, &i) in reductions.iter().enumerate() {
                let Member::Reduce {
                    op,
                    v,
                    filter,
                    body,
                } = &members[i]
                else {
                    unreachable!("a reduction")
                };
                let total = self.combine_lanes(*op, body.as_ref(), lanes[j]);
                let (f, g, n) = rests[j];
                let rest = self.use_state([Some(f), Some(g), Some(n)]).like(*op);
                let mut state = self.merge(*op, total, rest);
                if filter.is_none() && state.n.is_some() {
                    state.n = Some(self.term_count(&[*v], Some((start, end))));
                }
                let k = ordinal[i].expect("a reduction");
                self.store_state(state, k as i32 * 16);
            }
        }
        self.row_values.clear();
        Ok(())
    }

    /// Every member at the current row (four rows when `vector`), accumulating reductions into
    /// `acc` (lane or scalar accumulators, one triple per reduction).
    fn one_row(
        &mut self,
        members: &[Member],
        vector: bool,
        acc: &[(Variable, Variable, Variable)],
    ) -> Result<(), ClifError> {
        self.row_values.clear();
        let mut k = 0;
        for m in members {
            match m {
                Member::Row { d, v, body } => {
                    self.lanes = vector.then_some(*v);
                    let value = self.expr(body)?;
                    let value = self.float(value);
                    self.lanes = None;
                    self.row_values.insert(*d, Val::F(value));
                    if !self.locals.contains(d) {
                        let x = self.var(*v);
                        let i = self.b.use_var(x);
                        let addr = self.def_element(*d, i);
                        let flags = MemFlagsData::new().with_notrap();
                        self.b.ins().store(flags, value, addr, 0);
                    }
                }
                Member::Reduce {
                    op,
                    v,
                    filter,
                    body,
                } => {
                    self.lanes = vector.then_some(*v);
                    let counted = filter.is_some();
                    self.accumulate(*op, filter.as_ref(), body.as_ref(), acc[k], counted, None)?;
                    self.lanes = None;
                    k += 1;
                }
            }
        }
        self.row_values.clear();
        Ok(())
    }

    /// Stores reduction accumulators at byte `at` of `result`.
    pub(super) fn store_state(&mut self, state: ReduceState, at: i32) {
        for (v, field) in [(state.f, 0), (state.g, 4), (state.n, 8)] {
            if let Some(v) = v {
                self.b
                    .ins()
                    .store(MemFlagsData::trusted(), v, self.result, at + field);
            }
        }
    }
}

/// The members' indices in the loops that compute them, in order. Members whose values no
/// member with a function call reads, that call none themselves and read none that does
/// (DPO's rewards and metrics beside its loss and gradient), run in a loop of their own when
/// there are others:
/// fewer values live at once in each loop, so fewer spills; calls stay in one loop, where
/// value numbering shares them. The heavy loop runs first: it reads the block's rows from
/// memory while its arithmetic hides the wait, and the light loop finds them in cache (run
/// first, the light loop only waits on memory). Only a call of some cost counts
/// ([`costly`]): a pass as cheap as IPO's squares is faster reading its rows once.
fn parts(members: &[Member]) -> Vec<Vec<usize>> {
    let n = members.len();
    let defines = |i: usize| match &members[i] {
        Member::Row { d, .. } => Some(*d),
        Member::Reduce { .. } => None,
    };
    let exprs = |i: usize| -> Vec<&Expr> {
        match &members[i] {
            Member::Row { body, .. } => vec![body],
            Member::Reduce { filter, body, .. } => filter.iter().chain(body.iter()).collect(),
        }
    };
    let reads = |i: usize, d: usize| {
        exprs(i).iter().any(|e| {
            e.any(&mut |x| matches!(x, Expr::Read { tensor: Tensor::Def(r), .. } if *r == d))
        })
    };
    let calls = |i: usize| exprs(i).iter().any(|e| e.any(&mut costly));
    // Heavy: calls, or read (directly or not) by a heavy member, or reads a heavy member (the
    // light loop runs second, so a heavy member cannot read a light one). Members only read
    // earlier members: each backward sweep finds what the heavy ones read, each forward one
    // what reads them, until nothing changes.
    let mut heavy: Vec<bool> = (0..n).map(calls).collect();
    loop {
        let before = heavy.clone();
        for j in (0..n).rev() {
            if heavy[j] {
                for (i, h) in heavy.iter_mut().enumerate().take(j) {
                    if defines(i).is_some_and(|d| reads(j, d)) {
                        *h = true;
                    }
                }
            }
        }
        for j in 0..n {
            if (0..j).any(|i| heavy[i] && defines(i).is_some_and(|d| reads(j, d))) {
                heavy[j] = true;
            }
        }
        if heavy == before {
            break;
        }
    }
    let (light, heavy): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| !heavy[i]);
    if light.is_empty() || heavy.is_empty() {
        vec![(0..n).collect()]
    } else {
        vec![heavy, light]
    }
}

/// True for a call of a function lossc computes by a polynomial or a library call (the
/// exponentials and logarithms, the sigmoid family, `tanh`, `sin`, `cos`, a power other than
/// a small integer) and for a reduction: what makes a one-loop member heavy ([`parts`]).
fn costly(e: &Expr) -> bool {
    match e {
        Expr::Reduce { .. } => true,
        Expr::Call(Builtin::Pow, args) => super::math::small_power(&args[1]).is_none(),
        Expr::Call(f, _) => !matches!(
            f,
            Builtin::Sqrt
                | Builtin::Abs
                | Builtin::Min
                | Builtin::Max
                | Builtin::Clamp
                | Builtin::Detach
                | Builtin::Relu
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, parts};
    use crate::ir::{BinOp, Builtin, Expr, Tensor};

    fn def(d: usize) -> Expr {
        Expr::Read {
            tensor: Tensor::Def(d),
            indices: vec![Expr::Index(0)],
        }
    }

    fn input() -> Expr {
        Expr::Read {
            tensor: Tensor::Input(0),
            indices: vec![Expr::Index(0)],
        }
    }

    fn row(d: usize, body: Expr) -> Member {
        Member::Row { d, v: 0, body }
    }

    fn add(a: Expr, b: Expr) -> Expr {
        Expr::Binary(BinOp::Add, Box::new(a), Box::new(b))
    }

    #[test]
    fn members_without_calls_run_second() {
        // d0 = x + x (light), d1 = exp(x) (heavy), d2 = x + x (light).
        let members = [
            row(0, add(input(), input())),
            row(1, Expr::Call(Builtin::Exp, vec![input()])),
            row(2, add(input(), input())),
        ];
        assert_eq!(parts(&members), vec![vec![1], vec![0, 2]]);
    }

    #[test]
    fn what_a_heavy_member_reads_is_heavy() {
        // d0 light, d1 heavy, d2 = d0 + d1 reads a heavy member so is heavy: d0, which it
        // reads, must then be heavy too (the heavy loop runs first); d3 = x + x stays light.
        let members = [
            row(0, add(input(), input())),
            row(1, Expr::Call(Builtin::Exp, vec![input()])),
            row(2, add(def(0), def(1))),
            row(3, add(input(), input())),
        ];
        assert_eq!(parts(&members), vec![vec![0, 1, 2], vec![3]]);
    }
}
