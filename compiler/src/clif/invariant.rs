//! Loop-invariant code motion by hand. The subexpressions of a function's bodies that depend on
//! no loop variable (hyperparameters, scalar definitions this function does not write, and
//! arithmetic on them, as DPO's `(label_smoothing - 1) / max(count, 1)`) are computed once at
//! the function's entry; those of an innermost loop's body that do not depend on its variable
//! (a row's `sigmoid(lse[i]) / n` in a loop over `j`) are computed before that loop. Each is
//! kept scalar and splat to four lanes, and the loops reuse them. Cranelift's own hoisting
//! leaves loads (and everything computed from them) and calls in the loop.

use super::ClifError;
use super::expr::{Lowering, Val};
use crate::ir::{Expr, Tensor, VarId};
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind};
use cranelift_module::Module;

/// A hoisted subexpression: its scalar value and its value splat to four lanes.
#[derive(Clone)]
pub(super) struct Hoisted {
    expr: Expr,
    scalar: Val,
    lanes: Val,
}

/// Where a hoisted value is computed.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// At the function's entry: no index variable may be used.
    Function,
    /// Before the loop over `v`: neither `v` nor the variables in `inner` (bound inside the
    /// bodies) may be used.
    Loop { v: VarId, inner: &'a [VarId] },
}

impl<M: Module> Lowering<'_, M> {
    /// Computes the maximal invariant subexpressions of `bodies` at the current position (the
    /// function's entry, before any loop), for [`Self::hoisted`] to return.
    pub(super) fn hoist_invariants(&mut self, bodies: &[&Expr]) -> Result<(), ClifError> {
        self.hoist(bodies, Scope::Function)
    }

    /// Runs `inner_loop`, the lowering of a loop over `v`, after computing here the maximal
    /// subexpressions of `bodies` (the loop's) that depend neither on `v` nor on variables
    /// bound inside them; the loop reuses them, and they are forgotten after it.
    pub(super) fn with_loop_invariants(
        &mut self,
        bodies: &[&Expr],
        v: VarId,
        inner_loop: &mut dyn FnMut(&mut Self) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let mark = self.hoisted.len();
        let mut inner = vec![];
        for body in bodies {
            body.visit(&mut |x| {
                if let Expr::Reduce { vars, .. } = x {
                    inner.extend(vars.iter().copied());
                }
            });
        }
        self.hoist(bodies, Scope::Loop { v, inner: &inner })?;
        inner_loop(self)?;
        self.hoisted.truncate(mark);
        Ok(())
    }

    fn hoist(&mut self, bodies: &[&Expr], scope: Scope<'_>) -> Result<(), ClifError> {
        let mut found: Vec<Expr> = vec![];
        for body in bodies {
            self.collect_invariants(body, scope, &mut found);
        }
        let lanes = self.lanes.take();
        for expr in found {
            let scalar = self.expr(&expr)?;
            let splat = self.splat(scalar);
            // Out of a loop Cranelift hoists from, the values may stay in registers; the
            // others' invariants are pinned.
            let (scalar, splat) = if self.next_loop_is_hoisted_out_of() {
                (scalar, splat)
            } else {
                (self.pin(scalar), self.pin(splat))
            };
            self.hoisted.push(Hoisted {
                expr,
                scalar,
                lanes: splat,
            });
        }
        self.lanes = lanes;
        Ok(())
    }

    /// The hoisted value of `e` (four lanes when `vector`), when it was hoisted.
    pub(super) fn hoisted(&self, e: &Expr, vector: bool) -> Option<Val> {
        let h = self.hoisted.iter().find(|h| h.expr == *e)?;
        Some(if vector { h.lanes } else { h.scalar })
    }

    /// `v` passed through a stack slot, so that it stays computed here: Cranelift's
    /// elaboration places pure instructions at their uses, and out of a loop it does not
    /// hoist from (`loops::hoist_out_of`) nothing moves them back; a stack load is not pure.
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

    /// Pushes onto `found` the maximal invariant subexpressions of `e` worth hoisting (not bare
    /// constants, nor what is hoisted already), each once.
    fn collect_invariants(&self, e: &Expr, scope: Scope<'_>, found: &mut Vec<Expr>) {
        if self.invariant(e, scope) {
            if !matches!(
                e,
                Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_)
            ) && !found.contains(e)
                && self.hoisted(e, false).is_none()
            {
                found.push(e.clone());
            }
            return;
        }
        e.for_each_child(|x| self.collect_invariants(x, scope, found));
    }

    /// True when `e` has the same value everywhere in `scope` and is safe to compute where it
    /// would not be (no gathers, so no range checks; no reductions).
    fn invariant(&self, e: &Expr, scope: Scope<'_>) -> bool {
        match e {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Hyper(_) => true,
            Expr::Reduce { .. } => false,
            Expr::Index(u) => match scope {
                Scope::Function => false,
                Scope::Loop { v, inner } => *u != v && !inner.contains(u),
            },
            Expr::Read { tensor, indices } => {
                let fixed = match scope {
                    Scope::Function => {
                        indices.is_empty()
                            && match tensor {
                                Tensor::Input(_) => true,
                                Tensor::Def(d) => !self.written[*d],
                            }
                    }
                    // A definition read here was computed before this loop (or is the one it
                    // fills, which its body never reads).
                    Scope::Loop { .. } => true,
                };
                fixed
                    && indices
                        .iter()
                        .all(|i| matches!(i, Expr::Index(_)) && self.invariant(i, scope))
            }
            Expr::Unary(_, a) => self.invariant(a, scope),
            Expr::Binary(_, a, c) => self.invariant(a, scope) && self.invariant(c, scope),
            Expr::Call(_, args) => args.iter().all(|a| self.invariant(a, scope)),
            Expr::Select(c, a, d) => {
                self.invariant(c, scope) && self.invariant(a, scope) && self.invariant(d, scope)
            }
        }
    }
}
