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
            time: Duration::from_millis(50),
        }
    }
}

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
    (convert::from_term(&best, root), stop)
}

/// Simplifies every definition, metric and the result of a loss.
pub fn simplify(loss: &Loss) -> Loss {
    simplify_with(loss, Limits::default()).0
}

/// [`simplify`] with explicit limits; also returns how each expression's run stopped.
pub fn simplify_with(loss: &Loss, limits: Limits) -> (Loss, Vec<Stop>) {
    let mut out = loss.clone();
    let mut stops = vec![];
    for d in &mut out.defs {
        let (e, stop) = simplify_expr(&d.body, limits);
        d.body = e;
        stops.push(stop);
    }
    let (e, stop) = simplify_expr(&out.result, limits);
    out.result = e;
    stops.push(stop);
    (out, stops)
}
