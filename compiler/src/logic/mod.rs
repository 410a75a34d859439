//! The logic of preference losses (Richardson, Srikumar & Sabharwal, "Understanding the Logic
//! of Direct Preference Alignment through Logic", 2025; `shared/research/dpa_logic.md`).
//!
//! A DPA loss is `E[f(ρ)]` with `f` convex and the core `ρ = log WMC(✓) − log WMC(✗)`, the
//! log-ratio of the weighted model counts of two sets of worlds over the propositions
//! `Mw, Ml` (the tuned model deems the chosen / rejected response valid) and `Rw, Rl` (the
//! reference model does). The pair of sets is a preference structure `(P, P_C, P_A)`.
//!
//! - [`decompile()`]: loss → normal form `f(ρ)` → reduced ratio → structure, or a precise
//!   reason why the loss is outside the fragment.
//! - [`compile()`]: structure → `.loss` (an [`crate::ir::Loss`]).
//! - [`compare()`]: equal losses (rational functions), the order `⊑`, witnesses.
//! - [`lattice`]: the paper's loss lattice, computed.
//!
//! The pieces: [`formula`] (the `! & | -> ^` syntax), [`worlds`] (world sets and weighted
//! model counts), [`poly`] (polynomials in the weights), [`shortest`] (printing a world set
//! as its shortest formula), [`structure`], [`atoms`] (which inputs are the atoms, `@atoms`),
//! [`rules`] and [`normal`] (the e-graph normal form used by decompilation).

pub mod atoms;
pub mod compare;
pub mod compile;
pub mod decompile;
pub mod formula;
pub mod lattice;
pub mod normal;
pub mod poly;
pub mod rules;
pub mod shortest;
pub mod structure;
pub mod worlds;

pub use compare::{Comparison, Ratio, Relation, compare};
pub use compile::compile;
pub use decompile::{Decompiled, decompile};
pub use formula::{Atom, Formula};
pub use structure::{Space, Structure};

use std::fmt;

/// Why a logic operation failed: a message for the user (without the `error: ` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicError(pub String);

impl fmt::Display for LogicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogicError {}

/// The convex function `f` of a DPA loss `f(z)`, with `z = s·ρ + c` increasing in the
/// preference for the chosen response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FKind {
    /// `f(z) = -log σ(z)` (DPO, CPO, ORPO, SimPO, the semantic loss).
    Logistic,
    /// `f(z) = z²` (IPO).
    Squared,
    /// `f(z) = max(0, -z)` (SLiC, hinge).
    Hinge,
}

impl FKind {
    /// Every `f`.
    pub const ALL: [FKind; 3] = [FKind::Logistic, FKind::Squared, FKind::Hinge];

    /// `logistic`, `squared` or `hinge`.
    pub fn name(self) -> &'static str {
        match self {
            FKind::Logistic => "logistic",
            FKind::Squared => "squared",
            FKind::Hinge => "hinge",
        }
    }

    /// The `f` called `name`.
    pub fn from_name(name: &str) -> Option<FKind> {
        FKind::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Its definition, e.g. `f(z) = -log σ(z)`.
    pub fn definition(self) -> &'static str {
        match self {
            FKind::Logistic => "f(z) = -log σ(z)",
            FKind::Squared => "f(z) = z²",
            FKind::Hinge => "f(z) = max(0, -z)",
        }
    }
}
