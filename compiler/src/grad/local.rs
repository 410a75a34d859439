//! Local derivatives of each operation, worked out by the derivative rules of
//! [`crate::simplify::rules::derivative`]: for an operation applied to placeholder operands,
//! `(d $k (op $0 $1 ..))` is rewritten until no `d` remains, and the result (with the
//! placeholders standing for the operands) is kept as a template, computed once per operation.

use crate::ir::{BinOp, Builtin, Expr, VarId};
use crate::simplify::lang::{Leaf, Math};
use crate::simplify::{convert, cost, rules};
use egg::{Extractor, Id, RecExpr, Runner};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// An operation the chain rule goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    /// A built-in function.
    Call(Builtin),
    /// An arithmetic operator (`+ - * / ^`).
    Bin(BinOp),
}

/// Index variables standing for the operands in a template (never real variables).
const PLACEHOLDER: VarId = (u32::MAX - 8) as VarId;

/// `∂ op(args) / ∂ args[i]` with the operands substituted, or `None` where it is identically 0.
pub(super) fn partial(op: Op, args: &[Expr], i: usize) -> Option<Expr> {
    let template = template(op, args.len(), i)?;
    Some(substitute(&template, args))
}

/// Derivative templates by operation and operand.
type Templates = HashMap<(Op, usize), Option<Expr>>;

/// The derivative template of `op` with respect to operand `i`.
fn template(op: Op, arity: usize, i: usize) -> Option<Expr> {
    static CACHE: OnceLock<Mutex<Templates>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().expect("cache lock").get(&(op, i)) {
        return t.clone();
    }
    let t = derive(op, arity, i);
    cache.lock().expect("cache lock").insert((op, i), t.clone());
    t
}

/// Runs the derivative rules on `(d $i (op $0 ..))`.
fn derive(op: Op, arity: usize, i: usize) -> Option<Expr> {
    let operand = |k: usize| Expr::Index(PLACEHOLDER + k);
    let applied = match op {
        Op::Bin(b) => Expr::Binary(b, Box::new(operand(0)), Box::new(operand(1))),
        Op::Call(f) => Expr::Call(f, (0..arity).map(operand).collect()),
    };
    let mut term = RecExpr::<Math>::default();
    let applied = convert::to_term(&applied, &mut term);
    let var = term.add(Math::Leaf(Leaf::Var((PLACEHOLDER + i) as u32)));
    term.add(Math::D([var, applied]));
    let mut all = rules::derivative();
    // Commutativity only grows the e-graph here: the templates need no reordering.
    all.extend(
        rules::algebra()
            .into_iter()
            .filter(|r| !r.rewrite.name.as_str().ends_with("-comm")),
    );
    let rewrites: Vec<_> = all.iter().map(|r| &r.rewrite).collect();
    // A local derivative saturates in a few iterations; the node and iteration limits only
    // guard against a rule set that does not. No time limit: a template cut short by a busy
    // machine would keep an unresolved `d` (found by the `pipeline` fuzz target under load),
    // and what a template is must not depend on timing.
    let runner = Runner::default()
        .with_expr(&term)
        .with_iter_limit(12)
        .with_node_limit(3_000)
        .with_time_limit(std::time::Duration::from_secs(3600))
        .run(rewrites);
    let cost = cost::StableCost::new(&runner.egraph, &[]);
    let (_, best) = Extractor::new(&runner.egraph, cost).find_best(runner.roots[0]);
    let result = convert::from_term(&best, Id::from(best.as_ref().len() - 1));
    match result {
        Expr::Float(0.0) => None,
        Expr::Int(0) => None,
        e => Some(e),
    }
}

/// The template with each placeholder replaced by its operand.
fn substitute(e: &Expr, args: &[Expr]) -> Expr {
    match e {
        Expr::Index(v) if *v >= PLACEHOLDER => args[*v - PLACEHOLDER].clone(),
        Expr::Reduce { .. } => unreachable!("a local derivative has no reductions"),
        e => e.map_children(|c| substitute(c, args)),
    }
}
