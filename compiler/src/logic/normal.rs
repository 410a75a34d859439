//! The e-graph pass of decompilation: an expression is rewritten with the simplifier's rules
//! ([`crate::simplify::rules::all`]) and [`super::rules::normal_form`], and extracted with
//! the simplifier's cost ([`crate::simplify::cost::StableCost`]), which prefers the stable
//! forms `log_sigmoid`, `softplus` and `log1mexp` that the reader of `f(ρ)` knows.
//!
//! Runs are bounded by nodes and iterations only (the time limit is a safety net far above
//! them), so the result does not depend on the machine's speed.

use crate::ir::Expr;
use crate::simplify::{convert, cost::StableCost, rules};
use egg::{RecExpr, Runner};
use std::time::Duration;

/// `e` in normal form.
pub fn normalize(e: &Expr) -> Expr {
    let mut term = RecExpr::default();
    convert::to_term(e, &mut term);
    let mut all = rules::all();
    all.extend(super::rules::normal_form());
    let rewrites: Vec<_> = all.iter().map(|r| &r.rewrite).collect();
    let runner = Runner::default()
        .with_node_limit(5_000)
        .with_iter_limit(10)
        .with_time_limit(Duration::from_secs(20))
        .with_expr(&term)
        .run(rewrites);
    let root = runner.roots[0];
    let cost = StableCost::new(&runner.egraph, &all);
    let (_, best) = egg::Extractor::new(&runner.egraph, cost).find_best(root);
    let root = egg::Id::from(best.as_ref().len() - 1);
    convert::from_term(&best, root)
}
