//! The rewrite rules, in small sets named for what they do. Every rule is tagged:
//! [`Tag::FloatSafe`] rules give the same value in floating point (up to rounding of the
//! operations they remove), [`Tag::ExactInReals`] rules are identities of real arithmetic
//! that change floating-point results — the stability rules among them are chosen because
//! the right side does not overflow or cancel where the left side does.

use super::lang::{Facts, Math};
use egg::{Id, Pattern, Rewrite, Subst, Var, rewrite as rw};

/// How a rule relates the two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Equal in floating point too.
    FloatSafe,
    /// Equal in the reals; floating point may differ (for the better, in the stability set).
    ExactInReals,
}

/// A rewrite with its tag and whether its left side is an unstable form that extraction must
/// avoid once the right side is known.
pub struct Rule {
    /// The egg rewrite.
    pub rewrite: Rewrite<Math, Facts>,
    /// Its tag.
    pub tag: Tag,
    /// True for stability rules: the left side is what the cost model avoids.
    pub stabilizes: bool,
}

/// The left side of a rule as a pattern (for finding the unstable forms it replaces).
pub fn lhs(rule: &Rule) -> Option<Pattern<Math>> {
    rule.rewrite
        .searcher
        .get_pattern_ast()
        .map(|ast| Pattern::new(ast.clone()))
}

type EGraph = egg::EGraph<Math, Facts>;

/// `?c` mentions none of the variables bound by `?v`.
fn free_of(c: &str, v: &str) -> impl Fn(&mut EGraph, Id, &Subst) -> bool + use<> {
    let (c, v): (Var, Var) = (c.parse().unwrap(), v.parse().unwrap());
    move |egraph, _, subst| {
        egraph[subst[c]]
            .data
            .free
            .is_disjoint(&egraph[subst[v]].data.free)
    }
}

/// A condition: none of `vars` is an infinite constant or one of extreme magnitude (beyond
/// 2^±64, nonzero). Merging such a constant into a product (`a / b / c` as `a / (b * c)`)
/// overflows or underflows where the original does not, and its derivative meets `inf · 0`.
fn moderate(vars: &[&str]) -> impl Fn(&mut EGraph, Id, &Subst) -> bool + use<> {
    let vars: Vec<Var> = vars.iter().map(|v| v.parse().unwrap()).collect();
    move |egraph, _, subst| {
        vars.iter().all(|v| {
            let data = &egraph[subst[*v]].data;
            !data.infinite
                && match data.constant {
                    Some(x) if x != 0.0 => (5.4e-20..=1.8e19).contains(&x.abs()),
                    _ => true,
                }
        })
    }
}

fn rule(rewrite: Rewrite<Math, Facts>, tag: Tag) -> Rule {
    Rule {
        rewrite,
        tag,
        stabilizes: false,
    }
}

fn stable(rewrite: Rewrite<Math, Facts>) -> Rule {
    Rule {
        rewrite,
        tag: Tag::ExactInReals,
        stabilizes: true,
    }
}

/// Identities that remove operations: units, double negation, signs, trivial selects.
pub fn algebra() -> Vec<Rule> {
    use Tag::*;
    vec![
        rule(rw!("add-0"; "(+ ?a 0)" => "?a"), FloatSafe),
        rule(rw!("add-0-left"; "(+ 0 ?a)" => "?a"), FloatSafe),
        rule(rw!("sub-0"; "(- ?a 0)" => "?a"), FloatSafe),
        rule(rw!("sub-from-0"; "(- 0 ?a)" => "(neg ?a)"), FloatSafe),
        rule(rw!("mul-1"; "(* ?a 1)" => "?a"), FloatSafe),
        rule(rw!("mul-1-left"; "(* 1 ?a)" => "?a"), FloatSafe),
        rule(rw!("mul-minus-1"; "(* ?a -1)" => "(neg ?a)"), FloatSafe),
        rule(
            rw!("mul-minus-1-left"; "(* -1 ?a)" => "(neg ?a)"),
            FloatSafe,
        ),
        rule(rw!("div-1"; "(/ ?a 1)" => "?a"), FloatSafe),
        rule(rw!("pow-1"; "(^ ?a 1)" => "?a"), FloatSafe),
        rule(rw!("neg-neg"; "(neg (neg ?a))" => "?a"), FloatSafe),
        rule(rw!("add-neg"; "(+ ?a (neg ?b))" => "(- ?a ?b)"), FloatSafe),
        rule(rw!("neg-add"; "(+ (neg ?a) ?b)" => "(- ?b ?a)"), FloatSafe),
        rule(rw!("sub-neg"; "(- ?a (neg ?b))" => "(+ ?a ?b)"), FloatSafe),
        rule(rw!("neg-sub"; "(neg (- ?a ?b))" => "(- ?b ?a)"), FloatSafe),
        rule(
            rw!("mul-neg-left"; "(* (neg ?a) ?b)" => "(neg (* ?a ?b))"),
            FloatSafe,
        ),
        rule(
            rw!("mul-neg-right"; "(* ?a (neg ?b))" => "(neg (* ?a ?b))"),
            FloatSafe,
        ),
        rule(
            rw!("div-neg"; "(/ (neg ?a) ?b)" => "(neg (/ ?a ?b))"),
            FloatSafe,
        ),
        rule(
            rw!("mul-recip"; "(* ?a (/ 1 ?b))" => "(/ ?a ?b)"),
            ExactInReals,
        ),
        rule(
            rw!("mul-recip-left"; "(* (/ 1 ?b) ?a)" => "(/ ?a ?b)"),
            ExactInReals,
        ),
        rule(
            rw!("div-div"; "(/ (/ ?a ?b) ?c)" => "(/ ?a (* ?b ?c))" if moderate(&["?b", "?c"])),
            ExactInReals,
        ),
        rule(rw!("add-comm"; "(+ ?a ?b)" => "(+ ?b ?a)"), FloatSafe),
        rule(rw!("mul-comm"; "(* ?a ?b)" => "(* ?b ?a)"), FloatSafe),
        rule(rw!("if-same"; "(if ?c ?a ?a)" => "?a"), FloatSafe),
        rule(rw!("if-true"; "(if true ?a ?b)" => "?a"), FloatSafe),
        rule(rw!("if-false"; "(if false ?a ?b)" => "?b"), FloatSafe),
        rule(rw!("and-true"; "(&& true ?a)" => "?a"), FloatSafe),
        rule(rw!("and-true-right"; "(&& ?a true)" => "?a"), FloatSafe),
        rule(rw!("not-not"; "(! (! ?a))" => "?a"), FloatSafe),
        rule(
            rw!("exp-div"; "(/ (exp ?a) (exp ?b))" => "(exp (- ?a ?b))"),
            ExactInReals,
        ),
        rule(
            rw!("neg-mul-both"; "(* (neg ?a) (neg ?b))" => "(* ?a ?b)"),
            FloatSafe,
        ),
    ]
}

/// Moving factors out of reductions, when they do not mention the reduced indices. Only out
/// of unfiltered reductions: a filtered one may be empty, and then the original never
/// evaluates the factor while the factored form would compute `factor · 0` (NaN when the factor
/// is infinite, e.g. `exp(-lse)` of an empty `logsumexp`).
pub fn reductions() -> Vec<Rule> {
    use Tag::*;
    vec![
        rule(
            rw!("sum-factor-left"; "(sum ?v true (* ?c ?e))" => "(* ?c (sum ?v true ?e))" if free_of("?c", "?v")),
            ExactInReals,
        ),
        rule(
            rw!("sum-factor-right"; "(sum ?v true (* ?e ?c))" => "(* (sum ?v true ?e) ?c)" if free_of("?c", "?v")),
            ExactInReals,
        ),
        rule(
            rw!("sum-divide"; "(sum ?v true (/ ?e ?c))" => "(/ (sum ?v true ?e) ?c)" if free_of("?c", "?v")),
            ExactInReals,
        ),
        rule(
            rw!("sum-neg"; "(sum ?v ?f (neg ?e))" => "(neg (sum ?v ?f ?e))"),
            FloatSafe,
        ),
        rule(
            rw!("mean-factor-left"; "(mean ?v true (* ?c ?e))" => "(* ?c (mean ?v true ?e))" if free_of("?c", "?v")),
            ExactInReals,
        ),
        rule(
            rw!("mean-factor-right"; "(mean ?v true (* ?e ?c))" => "(* (mean ?v true ?e) ?c)" if free_of("?c", "?v")),
            ExactInReals,
        ),
        rule(
            rw!("mean-neg"; "(mean ?v ?f (neg ?e))" => "(neg (mean ?v ?f ?e))"),
            FloatSafe,
        ),
    ]
}

/// The stability catalogue of `shared/research/numerics.md`: each left side overflows,
/// underflows or cancels in floating point where its right side does not.
pub fn stability() -> Vec<Rule> {
    vec![
        stable(rw!("log1p"; "(log (+ 1 ?x))" => "(log1p ?x)")),
        stable(rw!("log1p-right"; "(log (+ ?x 1))" => "(log1p ?x)")),
        stable(rw!("log1p-sub"; "(log (- 1 ?x))" => "(log1p (neg ?x))")),
        stable(rw!("expm1"; "(- (exp ?x) 1)" => "(expm1 ?x)")),
        stable(rw!("softplus"; "(log1p (exp ?x))" => "(softplus ?x)")),
        stable(rw!("log-sigmoid"; "(log (sigmoid ?x))" => "(log_sigmoid ?x)")),
        stable(
            rw!("log-one-minus-sigmoid"; "(log1p (neg (sigmoid ?x)))" => "(log_sigmoid (neg ?x))"),
        ),
        stable(rw!("one-minus-sigmoid"; "(- 1 (sigmoid ?x))" => "(sigmoid (neg ?x))")),
        stable(rw!("sigmoid"; "(/ 1 (+ 1 (exp (neg ?x))))" => "(sigmoid ?x)")),
        stable(rw!("logsumexp"; "(log (sum ?v ?f (exp ?e)))" => "(logsumexp ?v ?f ?e)")),
        stable(
            rw!("log-one-plus-sum-exp"; "(log1p (sum ?v ?f (exp ?e)))" => "(softplus (logsumexp ?v ?f ?e))"),
        ),
        stable(rw!("log1mexp"; "(log1p (neg (exp ?x)))" => "(log1mexp ?x)")),
        stable(rw!("log1mexp-expm1"; "(log (neg (expm1 ?x)))" => "(log1mexp ?x)")),
        stable(rw!("pow-sigmoid"; "(^ (sigmoid ?x) ?g)" => "(exp (* ?g (log_sigmoid ?x)))")),
        stable(rw!("log-exp"; "(log (exp ?x))" => "?x")),
        stable(rw!("log-softmax"; "(log (/ (exp ?a) ?s))" => "(- ?a (log ?s))")),
        stable(rw!("log-times-exp"; "(log (* (exp ?a) ?s))" => "(+ ?a (log ?s))")),
        stable(rw!("softplus-minus-x"; "(- (softplus ?x) ?x)" => "(softplus (neg ?x))")),
        stable(rw!("logaddexp"; "(log (+ (exp ?a) (exp ?b)))" => "(+ ?a (softplus (- ?b ?a)))")),
    ]
}

/// The derivative operator `(d $v e)`: the chain rule for every operation and built-in, in
/// the style of egg's math example, with PyTorch's conventions where a function is not
/// differentiable (`relu'(0) = 0`, `abs'(0) = 0`, ties of `min`/`max` split evenly, `clamp`
/// passes the gradient on `lo <= x <= hi`, `x^c` has zero derivative in `x` where `c == 0` and
/// in `c` where `x == 0 <= c`, `detach` stops it). Used by [`crate::grad`] to find the local
/// derivatives of each operation; not part of [`all`].
pub fn derivative() -> Vec<Rule> {
    let d = |r| rule(r, Tag::ExactInReals);
    vec![
        d(rw!("d-self"; "(d ?v ?v)" => "1")),
        d(rw!("d-const"; "(d ?v ?c)" => "0" if free_of("?c", "?v"))),
        d(rw!("d-add"; "(d ?v (+ ?a ?b))" => "(+ (d ?v ?a) (d ?v ?b))")),
        d(rw!("d-sub"; "(d ?v (- ?a ?b))" => "(- (d ?v ?a) (d ?v ?b))")),
        d(rw!("d-neg"; "(d ?v (neg ?a))" => "(neg (d ?v ?a))")),
        d(rw!("d-mul"; "(d ?v (* ?a ?b))" => "(+ (* ?b (d ?v ?a)) (* ?a (d ?v ?b)))")),
        d(rw!("d-div"; "(d ?v (/ ?a ?b))" => "(- (/ (d ?v ?a) ?b) (* (/ ?a (^ ?b 2)) (d ?v ?b)))")),
        d(rw!("d-pow"; "(d ?v (^ ?a ?c))" =>
            "(+ (* (if (== ?c 0) 0 (* ?c (^ ?a (- ?c 1)))) (d ?v ?a))
                (* (if (&& (== ?a 0) (>= ?c 0)) 0 (* (^ ?a ?c) (log ?a))) (d ?v ?c)))")),
        d(rw!("d-exp"; "(d ?v (exp ?u))" => "(* (exp ?u) (d ?v ?u))")),
        d(rw!("d-expm1"; "(d ?v (expm1 ?u))" => "(* (exp ?u) (d ?v ?u))")),
        d(rw!("d-log"; "(d ?v (log ?u))" => "(/ (d ?v ?u) ?u)")),
        d(rw!("d-log1p"; "(d ?v (log1p ?u))" => "(/ (d ?v ?u) (+ 1 ?u))")),
        d(rw!("d-log1mexp"; "(d ?v (log1mexp ?u))" => "(neg (/ (d ?v ?u) (expm1 (neg ?u))))")),
        d(rw!("d-sqrt"; "(d ?v (sqrt ?u))" => "(* (/ 0.5 (sqrt ?u)) (d ?v ?u))")),
        d(rw!("d-abs"; "(d ?v (abs ?u))" => "(* (if (> ?u 0) 1 (if (< ?u 0) -1 0)) (d ?v ?u))")),
        d(
            rw!("d-sigmoid"; "(d ?v (sigmoid ?u))" => "(* (* (sigmoid ?u) (sigmoid (neg ?u))) (d ?v ?u))"),
        ),
        d(rw!("d-log-sigmoid"; "(d ?v (log_sigmoid ?u))" => "(* (sigmoid (neg ?u)) (d ?v ?u))")),
        d(rw!("d-softplus"; "(d ?v (softplus ?u))" => "(* (sigmoid ?u) (d ?v ?u))")),
        d(rw!("d-tanh"; "(d ?v (tanh ?u))" => "(* (- 1 (^ (tanh ?u) 2)) (d ?v ?u))")),
        d(rw!("d-relu"; "(d ?v (relu ?u))" => "(* (if (> ?u 0) 1 0) (d ?v ?u))")),
        d(rw!("d-cos"; "(d ?v (cos ?u))" => "(* (neg (sin ?u)) (d ?v ?u))")),
        d(rw!("d-sin"; "(d ?v (sin ?u))" => "(* (cos ?u) (d ?v ?u))")),
        d(rw!("d-min"; "(d ?v (min ?a ?b))" =>
            "(+ (* (if (< ?a ?b) 1 (if (== ?a ?b) 0.5 0)) (d ?v ?a))
                (* (if (< ?b ?a) 1 (if (== ?a ?b) 0.5 0)) (d ?v ?b)))")),
        d(rw!("d-max"; "(d ?v (max ?a ?b))" =>
            "(+ (* (if (> ?a ?b) 1 (if (== ?a ?b) 0.5 0)) (d ?v ?a))
                (* (if (> ?b ?a) 1 (if (== ?a ?b) 0.5 0)) (d ?v ?b)))")),
        d(rw!("d-clamp"; "(d ?v (clamp ?x ?lo ?hi))" =>
            "(+ (* (if (&& (<= ?lo ?x) (<= ?x ?hi)) 1 0) (d ?v ?x))
                (+ (* (if (&& (< ?x ?lo) (<= ?lo ?hi)) 1 0) (d ?v ?lo))
                   (* (if (|| (> ?x ?hi) (> ?lo ?hi)) 1 0) (d ?v ?hi))))")),
        d(rw!("d-detach"; "(d ?v (detach ?u))" => "0")),
        // In a derivative a 0 means "does not depend": it annihilates whatever it meets.
        d(rw!("mul-0"; "(* ?a 0)" => "0")),
        d(rw!("div-0"; "(/ 0 ?a)" => "0")),
        d(rw!("neg-0"; "(neg 0)" => "0")),
        d(rw!("mul-0-left"; "(* 0 ?a)" => "0")),
    ]
}

/// Every rule.
pub fn all() -> Vec<Rule> {
    let mut r = algebra();
    r.extend(reductions());
    r.extend(stability());
    r
}
