//! The extraction cost: operations counted, transcendental functions charged more than
//! arithmetic, reductions charged per term, and every form that a stability rule replaced
//! charged so much that its stable equivalent always wins.

use super::lang::{Facts, Leaf, Math};
use super::rules::{Rule, lhs};
use egg::{CostFunction, EGraph, Id, Language, Searcher};
use std::collections::HashSet;
use std::mem::{Discriminant, discriminant};

/// How many terms a reduction is assumed to have.
const TERMS: usize = 8;
/// The charge for an unstable form.
const UNSTABLE: usize = 1_000_000;

/// The cost model; see the module documentation.
pub struct StableCost<'a> {
    egraph: &'a EGraph<Math, Facts>,
    /// (e-class, operator) pairs that are the left side of a stability rule.
    unstable: HashSet<(Id, Discriminant<Math>)>,
}

impl<'a> StableCost<'a> {
    /// Finds the unstable forms present in `egraph`.
    pub fn new(egraph: &'a EGraph<Math, Facts>, rules: &[Rule]) -> StableCost<'a> {
        let mut unstable = HashSet::new();
        for rule in rules.iter().filter(|r| r.stabilizes) {
            let Some(pattern) = lhs(rule) else { continue };
            let root = pattern.ast.as_ref().last().expect("a pattern has a root");
            let op = match root {
                egg::ENodeOrVar::ENode(n) => discriminant(n),
                egg::ENodeOrVar::Var(_) => continue,
            };
            for m in pattern.search(egraph) {
                unstable.insert((egraph.find(m.eclass), op));
            }
        }
        StableCost { egraph, unstable }
    }
}

/// The cost of a reduction: [`TERMS`] times (its own work per term + filter + body),
/// saturating so that deeply nested reductions cannot overflow.
fn per_term(own: usize, filter: usize, body: usize) -> usize {
    own.saturating_add(filter)
        .saturating_add(body)
        .saturating_mul(TERMS)
        .saturating_add(2)
}

impl CostFunction<Math> for StableCost<'_> {
    type Cost = usize;

    fn cost<C: FnMut(Id) -> usize>(&mut self, enode: &Math, mut costs: C) -> usize {
        let op = match enode {
            Math::Leaf(Leaf::Float(_)) => 2,
            Math::Leaf(_) | Math::Vars(_) => 1,
            Math::Add(_)
            | Math::Sub(_)
            | Math::Mul(_)
            | Math::Neg(_)
            | Math::Abs(_)
            | Math::Relu(_) => 1,
            Math::Min(_) | Math::Max(_) | Math::If(_) | Math::Not(_) | Math::Detach(_) => 1,
            Math::Eq(_) | Math::Ne(_) | Math::Lt(_) | Math::Le(_) | Math::Gt(_) | Math::Ge(_) => 1,
            Math::And(_) | Math::Or(_) | Math::Read(_) => 1,
            Math::Div(_) | Math::Clamp(_) => 2,
            Math::Sqrt(_) => 4,
            Math::Pow(_) => 12,
            Math::Exp(_) | Math::Log(_) | Math::Log1p(_) | Math::Expm1(_) | Math::Tanh(_) => 10,
            Math::Sigmoid(_) | Math::Cos(_) | Math::Sin(_) => 10,
            Math::Softplus(_) | Math::LogSigmoid(_) | Math::Log1mexp(_) => 11,
            Math::Sum([_, f, b])
            | Math::Mean([_, f, b])
            | Math::RMax([_, f, b])
            | Math::RMin([_, f, b]) => {
                return per_term(1, costs(*f), costs(*b));
            }
            Math::LogSumExp([_, f, b]) => return per_term(11, costs(*f), costs(*b)),
            Math::ArgMax([_, f, b]) | Math::ArgMin([_, f, b]) => {
                return per_term(2, costs(*f), costs(*b));
            }
            Math::Count([_, f]) => return per_term(1, costs(*f), 0),
            // A derivative not yet worked out is never the answer.
            Math::D(_) => return UNSTABLE.saturating_mul(1000),
        };
        let penalty = match self.egraph.lookup(enode.clone()) {
            Some(id)
                if self
                    .unstable
                    .contains(&(self.egraph.find(id), discriminant(enode))) =>
            {
                UNSTABLE
            }
            _ => 0,
        };
        enode.fold(op + penalty, |sum, id| sum.saturating_add(costs(id)))
    }
}
