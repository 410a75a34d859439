//! The e-graph language of IR expressions, and its analysis: constant folding and the free
//! index variables of every e-class (so rules can move terms across reductions soundly).

use egg::{Analysis, DidMerge, EGraph, Id, Language, define_language};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A leaf: a constant, an index variable, a hyperparameter or a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    /// A float constant, by its bits (`1.5`, `inf`).
    Float(u64),
    /// An integer constant (`2`).
    Int(i64),
    /// `true` / `false`.
    Bool(bool),
    /// Index variable `$n`.
    Var(u32),
    /// Hyperparameter `%n`.
    Hyper(u32),
    /// Input tensor `@in<n>`.
    Input(u32),
    /// Definition `@def<n>`.
    Def(u32),
}

impl Leaf {
    /// A float constant.
    pub fn float(x: f64) -> Leaf {
        Leaf::Float(x.to_bits())
    }

    /// The numeric value of a constant.
    pub fn value(self) -> Option<f64> {
        match self {
            Leaf::Float(b) => Some(f64::from_bits(b)),
            Leaf::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Float(b) => write!(f, "{:?}", f64::from_bits(*b)),
            Leaf::Int(i) => write!(f, "{i}"),
            Leaf::Bool(b) => write!(f, "{b}"),
            Leaf::Var(v) => write!(f, "${v}"),
            Leaf::Hyper(h) => write!(f, "%{h}"),
            Leaf::Input(i) => write!(f, "@in{i}"),
            Leaf::Def(d) => write!(f, "@def{d}"),
        }
    }
}

impl FromStr for Leaf {
    type Err = String;

    /// Integers without a point parse as floats here: rule patterns write numbers for their
    /// value, and constant folding puts a float node in every constant class.
    fn from_str(s: &str) -> Result<Leaf, String> {
        let err = || format!("not a leaf: {s}");
        Ok(if let Some(v) = s.strip_prefix('$') {
            Leaf::Var(v.parse().map_err(|_| err())?)
        } else if let Some(h) = s.strip_prefix('%') {
            Leaf::Hyper(h.parse().map_err(|_| err())?)
        } else if let Some(i) = s.strip_prefix("@in") {
            Leaf::Input(i.parse().map_err(|_| err())?)
        } else if let Some(d) = s.strip_prefix("@def") {
            Leaf::Def(d.parse().map_err(|_| err())?)
        } else if s == "true" || s == "false" {
            Leaf::Bool(s == "true")
        } else {
            Leaf::float(s.parse::<f64>().map_err(|_| err())?)
        })
    }
}

define_language! {
    /// IR expressions as e-graph nodes. Reductions are `(sum VARS FILTER BODY)` with `VARS` a
    /// `(vars $a $b)` node and `FILTER` `true` when there is none; `count` has no body.
    pub enum Math {
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "^" = Pow([Id; 2]),
        "neg" = Neg(Id),
        "!" = Not(Id),
        "==" = Eq([Id; 2]),
        "!=" = Ne([Id; 2]),
        "<" = Lt([Id; 2]),
        "<=" = Le([Id; 2]),
        ">" = Gt([Id; 2]),
        ">=" = Ge([Id; 2]),
        "&&" = And([Id; 2]),
        "||" = Or([Id; 2]),
        "if" = If([Id; 3]),
        "exp" = Exp(Id),
        "log" = Log(Id),
        "log1p" = Log1p(Id),
        "expm1" = Expm1(Id),
        "log1mexp" = Log1mexp(Id),
        "sqrt" = Sqrt(Id),
        "abs" = Abs(Id),
        "sigmoid" = Sigmoid(Id),
        "log_sigmoid" = LogSigmoid(Id),
        "softplus" = Softplus(Id),
        "tanh" = Tanh(Id),
        "relu" = Relu(Id),
        "cos" = Cos(Id),
        "sin" = Sin(Id),
        "min" = Min([Id; 2]),
        "max" = Max([Id; 2]),
        "clamp" = Clamp([Id; 3]),
        "detach" = Detach(Id),
        "read" = Read(Box<[Id]>),
        "vars" = Vars(Box<[Id]>),
        "sum" = Sum([Id; 3]),
        "mean" = Mean([Id; 3]),
        "rmax" = RMax([Id; 3]),
        "rmin" = RMin([Id; 3]),
        "logsumexp" = LogSumExp([Id; 3]),
        "count" = Count([Id; 2]),
        "argmax" = ArgMax([Id; 3]),
        "argmin" = ArgMin([Id; 3]),
        "d" = D([Id; 2]),
        Leaf(Leaf),
    }
}

/// What is known of an e-class: its constant value, if any, and the index variables it may
/// depend on (the union over its nodes, so "does not mention `$k`" holds for every node).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Data {
    /// The constant value.
    pub constant: Option<f64>,
    /// The constant truth value of a condition.
    pub truth: Option<bool>,
    /// Free index variables.
    pub free: BTreeSet<u32>,
    /// True for an arithmetic combination of constants that is not finite (`inf / -0.125`):
    /// constant folding leaves those unfolded, and rules that regroup products keep away.
    pub infinite: bool,
}

/// Constant folding and free variables.
#[derive(Debug, Default)]
pub struct Facts;

fn fold(egraph: &EGraph<Math, Facts>, enode: &Math) -> Option<f64> {
    let c = |i: &Id| egraph[*i].data.constant;
    let v = match enode {
        Math::Leaf(l) => l.value()?,
        Math::Add([a, b]) => c(a)? + c(b)?,
        Math::Sub([a, b]) => c(a)? - c(b)?,
        Math::Mul([a, b]) => c(a)? * c(b)?,
        Math::Div([a, b]) => c(a)? / c(b)?,
        Math::Neg(a) => -c(a)?,
        _ => return None,
    };
    // Only fold to finite values: an overflow is left for the program to meet at run time.
    v.is_finite().then_some(v)
}

fn fold_truth(egraph: &EGraph<Math, Facts>, enode: &Math) -> Option<bool> {
    let c = |i: &Id| egraph[*i].data.constant;
    let t = |i: &Id| egraph[*i].data.truth;
    Some(match enode {
        Math::Leaf(Leaf::Bool(b)) => *b,
        Math::Eq([a, b]) => c(a)? == c(b)?,
        Math::Ne([a, b]) => c(a)? != c(b)?,
        Math::Lt([a, b]) => c(a)? < c(b)?,
        Math::Le([a, b]) => c(a)? <= c(b)?,
        Math::Gt([a, b]) => c(a)? > c(b)?,
        Math::Ge([a, b]) => c(a)? >= c(b)?,
        Math::Not(a) => !t(a)?,
        Math::And([a, b]) => t(a)? && t(b)?,
        Math::Or([a, b]) => t(a)? || t(b)?,
        _ => return None,
    })
}

impl Analysis<Math> for Facts {
    type Data = Data;

    fn make(egraph: &mut EGraph<Math, Facts>, enode: &Math, _id: Id) -> Data {
        let constant = fold(egraph, enode);
        let infinite = match enode {
            Math::Leaf(l) => l.value().is_some_and(|x| !x.is_finite()),
            Math::Add(_) | Math::Sub(_) | Math::Mul(_) | Math::Div(_) | Math::Neg(_) => {
                let children = enode.children();
                children.iter().any(|c| egraph[*c].data.infinite)
                    || (constant.is_none()
                        && children.iter().all(|c| egraph[*c].data.constant.is_some()))
            }
            _ => false,
        };
        let truth = fold_truth(egraph, enode);
        let free = match enode {
            Math::Leaf(Leaf::Var(v)) => BTreeSet::from([*v]),
            Math::Sum([vars, f, b])
            | Math::Mean([vars, f, b])
            | Math::RMax([vars, f, b])
            | Math::RMin([vars, f, b])
            | Math::LogSumExp([vars, f, b])
            | Math::ArgMax([vars, f, b])
            | Math::ArgMin([vars, f, b]) => {
                let bound = &egraph[*vars].data.free;
                egraph[*f]
                    .data
                    .free
                    .union(&egraph[*b].data.free)
                    .filter(|v| !bound.contains(v))
                    .copied()
                    .collect()
            }
            Math::Count([vars, f]) => {
                let bound = &egraph[*vars].data.free;
                egraph[*f]
                    .data
                    .free
                    .iter()
                    .filter(|v| !bound.contains(v))
                    .copied()
                    .collect()
            }
            other => other
                .children()
                .iter()
                .flat_map(|c| egraph[*c].data.free.iter().copied())
                .collect(),
        };
        Data {
            constant,
            truth,
            free,
            infinite,
        }
    }

    fn merge(&mut self, to: &mut Data, from: Data) -> DidMerge {
        let mut changed_to = false;
        if to.constant.is_none() && from.constant.is_some() {
            to.constant = from.constant;
            changed_to = true;
        }
        if to.truth.is_none() && from.truth.is_some() {
            to.truth = from.truth;
            changed_to = true;
        }
        if !to.infinite && from.infinite {
            to.infinite = true;
            changed_to = true;
        }
        let before = to.free.len();
        to.free.extend(from.free);
        changed_to |= to.free.len() != before;
        // Whether `from` would have changed is not tracked: saying so is always safe.
        DidMerge(changed_to, true)
    }

    fn modify(egraph: &mut EGraph<Math, Facts>, id: Id) {
        if let Some(c) = egraph[id].data.constant {
            let node = egraph.add(Math::Leaf(Leaf::float(c)));
            egraph.union(id, node);
        }
        if let Some(t) = egraph[id].data.truth {
            let node = egraph.add(Math::Leaf(Leaf::Bool(t)));
            egraph.union(id, node);
        }
    }
}
