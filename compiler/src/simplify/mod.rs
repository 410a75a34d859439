//! Simplification and stabilisation by e-graph rewriting (egg): every expression of a loss is
//! put in an e-graph, rewritten with [`rules::all`] within node, iteration and time limits,
//! and extracted with [`cost::StableCost`], which counts operations, charges transcendental
//! functions more than arithmetic, and avoids every form a stability rule replaced.

pub mod convert;
pub mod cost;
pub mod lang;
pub mod rules;

use crate::ir::{Expr, Loss};
use egg::{RecExpr, Runner};
use std::time::Duration;

/// Bounds on one expression's e-graph.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most e-nodes.
    pub nodes: usize,
    /// Most rewrite iterations.
    pub iterations: usize,
    /// Most time.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nodes: 10_000,
            iterations: 12,
            // A safety net: every stdlib loss and every program of tests/loss/pass saturates
            // well within it, so that what they simplify to never depends on timing.
            time: Duration::from_millis(250),
        }
    }
}

/// The most e-nodes the e-graphs of one loss hold in all: once its expressions have used
/// them, the rest are kept as they are, without rewriting. This keeps a program of
/// thousands of expensive definitions to seconds; it does not depend on timing, so the
/// result is the same on a fast or a loaded machine.
pub const LOSS_NODES: usize = 400_000;

/// A safety net on the time one loss's simplification takes, past which the remaining
/// expressions are kept as they are (normally [`LOSS_NODES`] is reached first).
pub const LOSS_TIME: Duration = Duration::from_secs(5);

/// Why an e-graph run ended, for tests and benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// No rule applies any more.
    Saturated,
    /// A limit was reached (the best form found so far is used).
    Limit(String),
}

/// Simplifies one expression.
pub fn simplify_expr(e: &Expr, limits: Limits) -> (Expr, Stop) {
    let (e, stop, _) = simplify_counted(e, limits);
    (e, stop)
}

/// [`simplify_expr`], also giving the e-graph's size.
fn simplify_counted(e: &Expr, limits: Limits) -> (Expr, Stop, usize) {
    let mut term = RecExpr::default();
    convert::to_term(e, &mut term);
    let rules = rules::all();
    let rewrites: Vec<_> = rules.iter().map(|r| &r.rewrite).collect();
    let runner = Runner::default()
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iterations)
        .with_time_limit(limits.time)
        .with_expr(&term)
        .run(rewrites);
    let stop = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) | None => Stop::Saturated,
        Some(other) => Stop::Limit(format!("{other:?}")),
    };
    let root = runner.roots[0];
    let cost = cost::StableCost::new(&runner.egraph, &rules);
    let (_, best) = egg::Extractor::new(&runner.egraph, cost).find_best(root);
    let root = egg::Id::from(best.as_ref().len() - 1);
    (
        convert::from_term(&best, root),
        stop,
        runner.egraph.total_size(),
    )
}

/// Simplifies every definition, metric and the result of a loss.
pub fn simplify(loss: &Loss) -> Loss {
    simplify_with(loss, Limits::default()).0
}

/// [`simplify`] with explicit limits; also returns how each expression's run stopped. The loss
/// as a whole stays within [`LOSS_NODES`] and [`LOSS_TIME`].
pub fn simplify_with(loss: &Loss, limits: Limits) -> (Loss, Vec<Stop>) {
    let mut out = loss.clone();
    let mut stops = vec![];
    let start = std::time::Instant::now();
    let mut nodes = 0usize;
    let mut one = |e: &Expr| {
        if nodes >= LOSS_NODES || start.elapsed() >= LOSS_TIME {
            return (
                e.clone(),
                Stop::Limit("the loss's simplification budget is spent".into()),
            );
        }
        // An expression larger than the node limit cannot be rewritten within it (the run would
        // stop before its first iteration): keep it as it is, without building its e-graph.
        let size = e.size();
        if size > limits.nodes {
            nodes += size;
            return (
                e.clone(),
                Stop::Limit(format!(
                    "the expression has {size} nodes, more than the node limit"
                )),
            );
        }
        let (e, stop, n) = simplify_counted(e, limits);
        nodes += n;
        (e, stop)
    };
    for d in &mut out.defs {
        let (e, stop) = one(&d.body);
        d.body = e;
        stops.push(stop);
    }
    let (e, stop) = one(&out.result);
    out.result = e;
    stops.push(stop);
    (out, stops)
}
