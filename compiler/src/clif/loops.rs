//! Counted loops, and what makes Cranelift move their invariant code out of them.
//!
//! Cranelift 0.135 hoists a loop's invariants only when two things hold, both found by
//! tracing its elaborator: the loop's blocks reach it in an order that keeps the loop on its
//! stack ([`hoist_out_of`]), and the variables the loop only reads are not block parameters
//! of its header, which the SSA builder ensures when every block is sealed as soon as its
//! predecessors are in place ([`Lowering::enter`]).

use super::ClifError;
use super::expr::Lowering;
use crate::ir::VarId;
use cranelift_codegen::ir::condcodes::{CondCode, IntCC};
use cranelift_codegen::ir::{Block, Inst, InstBuilder, InstructionData, Opcode, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_module::Module;

impl<M: Module> Lowering<'_, M> {
    /// Runs `body` for every point of `vars` (row-major nested loops), the first variable
    /// running over `range` (a sub-range of its dimension) when given.
    pub(super) fn for_each_from(
        &mut self,
        vars: &[VarId],
        range: Option<(Value, Value)>,
        body: &mut dyn FnMut(&mut Self) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let Some((&v, rest)) = vars.split_first() else {
            return body(self);
        };
        let x = self.var(v);
        let (start, size) = match range {
            Some(r) => r,
            None => (
                self.b.ins().iconst(types::I64, 0),
                self.dims[self.loss.vars[v].dim],
            ),
        };
        self.counted_loop(x, start, size, 1, &mut |s| {
            s.for_each_from(rest, None, body)
        })
    }

    /// The loop `for x in (start..end).step_by(step)` over whole steps only (`x + step <=
    /// end`), running `body` with `x` at each step; `x` holds the first point not run after it.
    /// Product accumulators the body registers in [`Self::bounds`] are bounded as the step
    /// ends.
    pub(super) fn counted_loop(
        &mut self,
        x: Variable,
        start: Value,
        end: Value,
        step: i64,
        body: &mut dyn FnMut(&mut Self) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let open = self.open_loop(x, start, &mut |s, i| {
            if step == 1 {
                (IntCC::SignedLessThan, i, end)
            } else {
                let last = s.b.ins().iadd_imm_s(i, step);
                (IntCC::SignedLessThanOrEqual, last, end)
            }
        });
        let outer_bounds = std::mem::take(&mut self.bounds);
        body(self)?;
        self.end_body(&open);
        let bounds = std::mem::replace(&mut self.bounds, outer_bounds);
        let i = self.b.use_var(x);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(x, next);
        if bounds.is_empty() {
            self.b.ins().jump(open.header, &[]);
        } else {
            // The step's last branch, so that the step stays one block.
            self.bound_log_products(&bounds, open.header);
        }
        self.close_loop(open);
        Ok(())
    }

    /// Starts a loop over `x` from `start`: its header tests `test(x)` (a comparison, true to
    /// run the body) and the code emitted next is the body's, with `x` at the header's value
    /// ([`OpenLoop::at`]). The body ends with [`Self::end_body`], then jumps back to the
    /// header, then [`Self::close_loop`].
    pub(super) fn open_loop(
        &mut self,
        x: Variable,
        start: Value,
        test: &mut dyn FnMut(&mut Self, Value) -> (IntCC, Value, Value),
    ) -> OpenLoop {
        self.b.def_var(x, start);
        let (header, body, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let at = self.b.use_var(x);
        let more = test(self, at);
        let branch = loop_branch(&mut self.b, more, body, exit);
        self.nests = false;
        self.depth += 1;
        self.b.switch_to_block(body);
        OpenLoop {
            header,
            exit,
            branch,
            first: self.b.func.dfg.num_insts(),
            at,
        }
    }

    /// Ends the body of loop `open`: turns its branch around ([`hoist_out_of`]) unless it
    /// nests in no loop, holds none and used more than [`LONE_LOOP_CONSTANTS`] constants.
    pub(super) fn end_body(&mut self, open: &OpenLoop) {
        self.depth -= 1;
        if self.next_loop_is_hoisted_out_of()
            || self.nests
            || vconsts_since(&self.b, open.first) <= LONE_LOOP_CONSTANTS
        {
            hoist_out_of(&mut self.b, open.branch);
        }
        self.nests = true;
    }

    /// True when a loop opened here is sure to be one Cranelift hoists out of
    /// ([`Self::end_body`]): one inside another loop. Whether an outermost loop is depends on
    /// what its body turns out to hold.
    pub(super) fn next_loop_is_hoisted_out_of(&self) -> bool {
        self.depth > 0
    }

    /// Ends loop `open` once the body has jumped back to its header: every edge into the
    /// header is known, and sealing it now lets the SSA builder drop the block parameters of
    /// the variables the loop does not change (see [`hoist_out_of`]). The code emitted next
    /// runs after the loop.
    pub(super) fn close_loop(&mut self, open: OpenLoop) {
        self.b.seal_block(open.header);
        self.b.switch_to_block(open.exit);
    }

    /// Switches to `block`, whose predecessors are all in place, and seals it: the SSA
    /// builder then resolves its variables at once, so that the loop around it sees the
    /// values of the variables it only reads, not block parameters (see [`hoist_out_of`]).
    pub(super) fn enter(&mut self, block: Block) {
        self.b.switch_to_block(block);
        self.b.seal_block(block);
    }
}

/// A loop being emitted ([`Lowering::open_loop`]).
pub(super) struct OpenLoop {
    /// The block the body jumps back to.
    pub header: Block,
    exit: Block,
    branch: Inst,
    /// How many instructions the function had when the body started.
    first: usize,
    /// The loop variable's value in the body.
    pub at: Value,
}

/// A loop header's last instructions: into the loop at `body` while `x more y`, else to
/// `exit`; both are sealed (the header is their only predecessor). Returns the branch, for
/// [`hoist_out_of`].
fn loop_branch(
    b: &mut FunctionBuilder,
    (more, x, y): (IntCC, Value, Value),
    body: Block,
    exit: Block,
) -> Inst {
    let more = b.ins().icmp(more, x, y);
    let branch = b.ins().brif(more, body, &[], exit, &[]);
    b.seal_block(body);
    b.seal_block(exit);
    branch
}

/// The most vector constants a loop that neither nests in nor holds another loop may use for
/// [`Lowering::counted_loop`] to still have Cranelift hoist its invariants (see
/// [`hoist_out_of`]): Multi-Similarity's lone loops use 14 and 33 and gain from it, DPO's
/// fused loop uses 42 (the constants of an `exp`, a `log1p` and a division) and loses.
const LONE_LOOP_CONSTANTS: usize = 40;

/// How many `vconst` instructions were created since the function had `first` instructions.
fn vconsts_since(b: &FunctionBuilder, first: usize) -> usize {
    (first..b.func.dfg.num_insts())
        .filter(|&k| b.func.dfg.insts[Inst::from_u32(k as u32)].opcode() == Opcode::Vconst)
        .count()
}

/// Turns the loop branch `branch` of [`loop_branch`] around, exit first, so that Cranelift
/// moves the loop's invariant code out of the loop.
///
/// Cranelift 0.135's elaborator walks the dominator tree's children in decreasing CFG
/// post-order and pops a loop off its stack at the first block outside the loop, never to
/// push it again for the loop's remaining blocks. With the exit as the branch's first target
/// it comes after the body, and the loop's invariants (`b * C` of a row address, the splat of
/// a row's maximum) leave it; otherwise nothing does. Cranelift then also hoists the loop's
/// `vconst`s, which keeps them in registers across the loop: that pays in cross-entropy's
/// passes (-12% instructions) and Multi-Similarity's (-8%), but DPO's fused loop, with 42
/// constants for sixteen registers, spills its own values (+12%). [`Lowering::counted_loop`]
/// turns around every loop but one that nests in no loop, holds none and uses more than
/// [`LONE_LOOP_CONSTANTS`] constants.
///
/// A variable the loop only reads must also not reach the body as a block parameter of the
/// header, or its uses vary with the loop: the SSA builder removes such trivial parameters
/// when the header is sealed as soon as its back edges exist, not when every block is sealed
/// at the end.
fn hoist_out_of(b: &mut FunctionBuilder, branch: Inst) {
    let dfg = &mut b.func.dfg;
    let InstructionData::Brif { arg, blocks, .. } = &mut dfg.insts[branch] else {
        unreachable!("a loop branch")
    };
    blocks.swap(0, 1);
    let arg = *arg;
    let compare = dfg.value_def(arg).unwrap_inst();
    let InstructionData::IntCompare { cond, .. } = &mut dfg.insts[compare] else {
        unreachable!("a loop condition")
    };
    *cond = cond.complement();
}

#[cfg(test)]
mod tests {
    use crate::fuse::{Step, locals, schedule};
    use cranelift_codegen::ir::{Opcode, types};
    use cranelift_codegen::settings::Configurable;
    use cranelift_module::default_libcall_names;
    use cranelift_object::{ObjectBuilder, ObjectModule};

    /// Guards what this module exists for: if a Cranelift upgrade (or a change of ours) stopped
    /// it hoisting, every result would stay right and only the benchmarks would show it.
    #[test]
    fn cranelift_moves_invariants_out_of_inner_loops() {
        let Ok(mut isa) = cranelift_codegen::isa::lookup_by_name("x86_64-unknown-linux-gnu") else {
            return; // built without the x86-64 backend
        };
        for feature in ["has_sse41", "has_avx", "has_fma"] {
            isa.enable(feature).expect("an x86-64 feature");
        }
        let isa = isa.finish(super::super::flags(true)).expect("an ISA");
        let builder = ObjectBuilder::new(isa, "test", default_libcall_names()).expect("a module");
        let mut module = ObjectModule::new(builder);
        // A row logsumexp (two passes over each row) and a row of exps: each row's inner loops
        // evaluate exp, whose constants, and the row's offset b·C, do not change in them.
        let loss = crate::check_source(
            "loss l(x: [B, C]) {
                let r[b] = logsumexp[c](x[b, c])
                let g[b, c] = exp(x[b, c] - r[b]) * 2
                sum[b, c](g[b, c])
            }",
        )
        .expect("a valid loss")
        .losses
        .remove(0);
        let loss = crate::split::split(&loss);
        let steps = schedule(&loss, &|_| false);
        let Some(Step::Group(members)) = steps.iter().find(|s| matches!(s, Step::Group(_))) else {
            panic!("a group: {steps:?}")
        };
        let local = locals(&loss, &steps, &|_| false);
        let group_locals: Vec<usize> = members.iter().copied().filter(|&d| local[d]).collect();
        let hosts = crate::fuse::hosts(&loss, members, &local);
        let (_, mut ctx) =
            super::super::lower_group(&loss, &mut module, "g", members, &group_locals, &hosts, &[])
                .expect("lowered");
        ctx.compute_cfg();
        ctx.compute_domtree();
        ctx.compute_loop_analysis();
        let (func, loops) = (&ctx.func, &ctx.loop_analysis);
        let (mut vector_work, mut left_in) = (0, vec![]);
        for block in func.layout.blocks() {
            // Inner loops only: the row loop itself computes b·C.
            let Some(lp) = loops.innermost_loop(block) else {
                continue;
            };
            if loops.loop_parent(lp).is_none() {
                continue;
            }
            for inst in func.layout.block_insts(block) {
                let op = func.dfg.insts[inst].opcode();
                let ty = func.dfg.ctrl_typevar(inst);
                if op == Opcode::Fmul && ty == types::F32X4 {
                    vector_work += 1;
                }
                if matches!(op, Opcode::Vconst | Opcode::Imul) {
                    left_in.push(func.dfg.display_inst(inst).to_string());
                }
            }
        }
        assert!(vector_work > 0, "no vector loop nested in the row loop");
        assert!(left_in.is_empty(), "left in inner loops: {left_in:#?}");
    }
}
