//! lossc's compiler: the checker that turns the AST into the typed IR, the IR itself, and its
//! printer. Later stages (simplification, differentiation, code generation) work on the IR.

mod alpha;
pub mod check;
pub mod clif;
pub mod column;
pub mod contraction;
pub mod factors;
mod fresh;
pub mod fuse;
pub mod grad;
pub mod hoist;
pub mod ir;
pub mod log_product;
pub mod logic;
pub mod print;
pub mod rows;
pub mod simplify;
pub mod softmax;
pub mod split;
pub mod wgsl;

pub use check::{check, check_source};

/// The first loss of `source`, which must check (for unit tests).
#[cfg(test)]
pub(crate) fn test_loss(source: &str) -> ir::Loss {
    check_source(source).unwrap().losses.remove(0)
}

/// Each definition of `loss` printed as `name = body` (for unit tests of rewriting passes).
#[cfg(test)]
pub(crate) fn printed_defs(loss: &ir::Loss) -> Vec<String> {
    loss.defs
        .iter()
        .map(|d| format!("{} = {}", d.name, print::expr(loss, &d.body)))
        .collect()
}
