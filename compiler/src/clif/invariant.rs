//! Loop-invariant code motion by hand: the subexpressions of a function's bodies that depend on
//! no loop variable (hyperparameters, scalar definitions this function does not write, and
//! arithmetic on them, as DPO's `(label_smoothing - 1) / max(count, 1)`) are computed once at
//! the function's entry, scalar and splat to four lanes, and every loop reuses them.
//! Cranelift's own hoisting leaves loads (and everything computed from them) in the loop.

use super::ClifError;
use super::expr::{Lowering, Val};
use crate::ir::{Expr, Tensor};
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind};
use cranelift_module::Module;

/// A hoisted subexpression: its scalar value and its value splat to four lanes.
#[derive(Clone)]
pub(super) struct Hoisted {
    expr: Expr,
    scalar: Val,
    lanes: Val,
}

impl<M: Module> Lowering<'_, M> {
    /// Computes the maximal invariant subexpressions of `bodies` at the current position (the
    /// function's entry, before any loop), for [`Self::hoisted`] to return.
    pub(super) fn hoist_invariants(&mut self, bodies: &[&Expr]) -> Result<(), ClifError> {
        let mut found: Vec<Expr> = vec![];
        for body in bodies {
            self.collect_invariants(body, &mut found);
        }
        for expr in found {
            let scalar = self.expr(&expr)?;
            let lanes = self.splat(scalar);
            let (scalar, lanes) = (self.pin(scalar), self.pin(lanes));
            self.hoisted.push(Hoisted {
                expr,
                scalar,
                lanes,
            });
        }
        Ok(())
    }

    /// `v` passed through a stack slot, so that it stays computed here: Cranelift's
    /// elaboration places pure instructions at their uses and, in these loops, does not hoist
    /// loads back out of them (seen on `cranelift-codegen` 0.135); a stack load is not pure.
    fn pin(&mut self, v: Val) -> Val {
        let (Val::F(x) | Val::I(x) | Val::B(x)) = v;
        let ty = self.b.func.dfg.value_type(x);
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            ty.bytes(),
            ty.bytes().trailing_zeros() as u8,
        ));
        self.b.ins().stack_store(self.ptr, x, slot, 0);
        let y = self.b.ins().stack_load(self.ptr, ty, slot, 0);
        match v {
            Val::F(_) => Val::F(y),
            Val::I(_) => Val::I(y),
            Val::B(_) => Val::B(y),
        }
    }

    /// The hoisted value of `e` (four lanes when `vector`), when it was hoisted.
    pub(super) fn hoisted(&self, e: &Expr, vector: bool) -> Option<Val> {
        let h = self.hoisted.iter().find(|h| h.expr == *e)?;
        Some(if vector { h.lanes } else { h.scalar })
    }

    /// Pushes onto `found` the maximal invariant subexpressions of `e` worth hoisting (not bare
    /// constants), each once.
    fn collect_invariants(&self, e: &Expr, found: &mut Vec<Expr>) {
        if self.invariant(e) {
            if !matches!(e, Expr::Float(_) | Expr::Int(_) | Expr::Bool(_)) && !found.contains(e) {
                found.push(e.clone());
            }
            return;
        }
        match e {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {}
            Expr::Read { indices, .. } => {
                for i in indices {
                    self.collect_invariants(i, found);
                }
            }
            Expr::Unary(_, a) => self.collect_invariants(a, found),
            Expr::Binary(_, a, c) => {
                self.collect_invariants(a, found);
                self.collect_invariants(c, found);
            }
            Expr::Call(_, args) => {
                for a in args {
                    self.collect_invariants(a, found);
                }
            }
            Expr::Select(c, a, d) => {
                for x in [c, a, d] {
                    self.collect_invariants(x, found);
                }
            }
            Expr::Reduce { filter, body, .. } => {
                for x in [filter, body].into_iter().flatten() {
                    self.collect_invariants(x, found);
                }
            }
        }
    }

    /// True when `e` has the same value everywhere in this function and is safe to compute
    /// where it would not be (no gathers, so no range checks; no reductions).
    fn invariant(&self, e: &Expr) -> bool {
        match e {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Hyper(_) => true,
            Expr::Index(_) | Expr::Reduce { .. } => false,
            Expr::Read { tensor, indices } => {
                indices.is_empty()
                    && match tensor {
                        Tensor::Input(_) => true,
                        Tensor::Def(d) => !self.written[*d],
                    }
            }
            Expr::Unary(_, a) => self.invariant(a),
            Expr::Binary(_, a, c) => self.invariant(a) && self.invariant(c),
            Expr::Call(_, args) => args.iter().all(|a| self.invariant(a)),
            Expr::Select(c, a, d) => self.invariant(c) && self.invariant(a) && self.invariant(d),
        }
    }
}
