//! Rewrites toward the normal form `f(ρ)` that decompilation reads (dpa_logic.md §3.1 step 1),
//! added to [`crate::simplify::rules::all`] (whose stability rules already turn
//! `log(sigmoid(z))` into `log_sigmoid(z)`, `log(1 + exp(z))` into `softplus(z)` and
//! `log(1 - exp(x))` into `log1mexp(x)`).

use crate::simplify::lang::{Facts, Math};
use crate::simplify::rules::{Rule, Tag};
use egg::{Rewrite, rewrite as rw};

fn rule(rewrite: Rewrite<Math, Facts>, tag: Tag) -> Rule {
    Rule {
        rewrite,
        tag,
        stabilizes: false,
    }
}

/// The logistic, hinge and log-of-product forms.
pub fn normal_form() -> Vec<Rule> {
    use Tag::*;
    vec![
        // softplus(-z) = -log σ(z): the logistic loss either way.
        rule(
            rw!("softplus-neg"; "(softplus (neg ?z))" => "(neg (log_sigmoid ?z))"),
            ExactInReals,
        ),
        rule(
            rw!("neg-log-sigmoid"; "(neg (log_sigmoid ?z))" => "(softplus (neg ?z))"),
            ExactInReals,
        ),
        // The hinge: max(z, 0) = relu(z).
        rule(rw!("max-0"; "(max ?z 0)" => "(relu ?z)"), FloatSafe),
        rule(rw!("max-0-left"; "(max 0 ?z)" => "(relu ?z)"), FloatSafe),
        // log of products and quotients (so that log(exp(a) / exp(b)) becomes a - b).
        rule(
            rw!("log-mul"; "(log (* ?a ?b))" => "(+ (log ?a) (log ?b))"),
            ExactInReals,
        ),
        rule(
            rw!("log-div"; "(log (/ ?a ?b))" => "(- (log ?a) (log ?b))"),
            ExactInReals,
        ),
        // log(1 - e^x) is log(1 - p) for the probability p = e^x.
        rule(
            rw!("log-one-minus-exp"; "(log (- 1 (exp ?x)))" => "(log1mexp ?x)"),
            ExactInReals,
        ),
        // log odds: log(p / (1 - p)).
        rule(
            rw!("log-odds"; "(log (/ (exp ?x) (- 1 (exp ?x))))" => "(- ?x (log1mexp ?x))"),
            ExactInReals,
        ),
    ]
}
