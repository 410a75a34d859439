//! Compilation (dpa_logic.md §3.2): a preference structure → a `.loss` loss
//! `mean[b](f(ρ))` with `ρ = log WMC(✓) − log WMC(✗)` written in the inputs' log-probabilities.
//!
//! Each side's count comes from [`super::worlds::wmc`], already marginalised (`w·l + w·(1-l)`
//! is `w`), factored and complemented, and is written in log space: an atom is its input,
//! `1 - p` is `log1mexp`, products are sums, `1 - x` is `log1mexp(log x)`, and a Shannon
//! expansion `p·x + (1-p)·y` is the stable log-add-exp `a + softplus(b - a)`; the log of an
//! empty set is `-inf`. A subexpression used twice becomes a `let` (`t` for `log WMC(✓)`,
//! `u` for `log WMC(✗)`). The source is then checked like any other, so the result is an
//! ordinary loss: it checks, runs and differentiates.
//!
//! `f`: logistic `-log_sigmoid(beta * ρ)`, squared `(ρ - 1 / (2 * beta))^2` (IPO's form),
//! hinge `relu(1 - beta * ρ)`; `beta = 1` by default, where the logistic loss is
//! `-log(WMC(✓) / (WMC(✓) + WMC(✗)))`.

use super::formula::Atom;
use super::structure::{Structure, atom_list};
use super::worlds::{BoolFn, Wmc, wmc};
use super::{FKind, LogicError};
use crate::ir::Loss;
use std::fmt::Write;

/// A log-space expression over the atoms' inputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum L {
    Read(Atom),
    Log1mexp(Box<L>),
    Softplus(Box<L>),
    /// Signed terms (`true` = added).
    Sum(Vec<(bool, L)>),
    /// `log 1`.
    Zero,
    /// `log 0`.
    NegInf,
    /// A `let`, by index.
    Let(usize),
}

impl L {
    fn size(&self) -> usize {
        match self {
            L::Read(_) | L::Zero | L::NegInf | L::Let(_) => 1,
            L::Log1mexp(x) | L::Softplus(x) => 1 + x.size(),
            L::Sum(items) => 1 + items.iter().map(|(_, x)| x.size()).sum::<usize>(),
        }
    }

    fn children(&self) -> Vec<&L> {
        match self {
            L::Log1mexp(x) | L::Softplus(x) => vec![x],
            L::Sum(items) => items.iter().map(|(_, x)| x).collect(),
            _ => vec![],
        }
    }

    fn replace(&mut self, target: &L, with: &L) {
        if self == target {
            *self = with.clone();
            return;
        }
        match self {
            L::Log1mexp(x) | L::Softplus(x) => x.replace(target, with),
            L::Sum(items) => items.iter_mut().for_each(|(_, x)| x.replace(target, with)),
            _ => {}
        }
    }

    fn uses(&self, i: usize) -> bool {
        *self == L::Let(i) || self.children().iter().any(|c| c.uses(i))
    }
}

/// The log-space form of a weighted model count.
fn log_of(w: &Wmc) -> L {
    match w {
        Wmc::Zero => L::NegInf,
        Wmc::One => L::Zero,
        Wmc::Lit(a, true) => L::Read(*a),
        Wmc::Lit(a, false) => L::Log1mexp(Box::new(L::Read(*a))),
        Wmc::Prod(fs) => L::Sum(fs.iter().map(|f| (true, log_of(f))).collect()),
        Wmc::Compl(x) => L::Log1mexp(Box::new(log_of(x))),
        Wmc::Mix(v, x, y) => {
            let hi = match **x {
                Wmc::One => L::Read(*v),
                _ => L::Sum(vec![(true, L::Read(*v)), (true, log_of(x))]),
            };
            let not_v = L::Log1mexp(Box::new(L::Read(*v)));
            let lo = match **y {
                Wmc::One => not_v,
                _ => L::Sum(vec![(true, not_v), (true, log_of(y))]),
            };
            // log(e^hi + e^lo) = hi + softplus(lo - hi).
            L::Sum(vec![
                (true, hi.clone()),
                (
                    true,
                    L::Softplus(Box::new(L::Sum(vec![(true, lo), (false, hi)]))),
                ),
            ])
        }
    }
}

fn count<'a>(l: &'a L, out: &mut Vec<(&'a L, usize)>) {
    if l.size() >= 3 {
        match out.iter_mut().find(|(x, _)| *x == l) {
            Some((_, n)) => *n += 1,
            None => out.push((l, 1)),
        }
    }
    for c in l.children() {
        count(c, out);
    }
}

/// Binds every subexpression used twice (largest first) to a `let`; returns the bodies in
/// an order where each uses only earlier ones.
fn share(roots: &mut [L]) -> Vec<L> {
    let mut lets: Vec<L> = vec![];
    loop {
        let mut counts = vec![];
        for r in roots.iter() {
            count(r, &mut counts);
        }
        for b in &lets {
            for c in b.children() {
                count(c, &mut counts);
            }
        }
        let Some(best) = counts
            .iter()
            .filter(|(_, n)| *n >= 2)
            .max_by_key(|(l, _)| l.size())
            .map(|(l, _)| (*l).clone())
        else {
            break;
        };
        let var = L::Let(lets.len());
        for r in roots.iter_mut() {
            r.replace(&best, &var);
        }
        for b in lets.iter_mut() {
            for c in match b {
                L::Log1mexp(x) | L::Softplus(x) => vec![&mut **x],
                L::Sum(items) => items.iter_mut().map(|(_, x)| x).collect(),
                _ => vec![],
            } {
                c.replace(&best, &var);
            }
        }
        lets.push(best);
    }
    lets
}

/// The order in which to define the lets: each after the lets it uses.
fn let_order(lets: &[L]) -> Vec<usize> {
    let mut order = vec![];
    let mut done = vec![false; lets.len()];
    while order.len() < lets.len() {
        for i in 0..lets.len() {
            if !done[i] && (0..lets.len()).all(|j| done[j] || j == i || !lets[i].uses(j)) {
                done[i] = true;
                order.push(i);
            }
        }
    }
    order
}

struct Emitter<'a> {
    names: &'a [String],
}

impl Emitter<'_> {
    fn term(&self, l: &L) -> String {
        match l {
            L::Read(a) => format!("{}[b]", a.default_input()),
            L::Log1mexp(x) => format!("log1mexp({})", self.sum(x)),
            L::Softplus(x) => format!("softplus({})", self.sum(x)),
            L::Let(i) => format!("{}[b]", self.names[*i]),
            L::Zero => "0".into(),
            L::NegInf => "(-inf)".into(),
            L::Sum(_) => format!("({})", self.sum(l)),
        }
    }

    fn flatten<'l>(l: &'l L, sign: bool, out: &mut Vec<(bool, &'l L)>) {
        match l {
            L::Sum(items) => {
                for (s, x) in items {
                    Emitter::flatten(x, sign == *s, out);
                }
            }
            L::Zero => {}
            other => out.push((sign, other)),
        }
    }

    /// A sum, flattened: `a + b - c`.
    fn sum(&self, l: &L) -> String {
        let mut items = vec![];
        Emitter::flatten(l, true, &mut items);
        let mut s = String::new();
        for (i, (sign, x)) in items.iter().enumerate() {
            // -(-inf) is written + inf.
            let (sign, text) = match x {
                L::NegInf => (!sign, "inf".to_string()),
                other => (*sign, self.term(other)),
            };
            match (i, sign) {
                (0, true) => s.push_str(&text),
                (0, false) => s.push_str(&format!("-{text}")),
                (_, true) => s.push_str(&format!(" + {text}")),
                (_, false) => s.push_str(&format!(" - {text}")),
            }
        }
        if s.is_empty() { "0".into() } else { s }
    }
}

fn doc(s: &Structure, f: FKind) -> String {
    let space = s.space();
    let mut d = String::new();
    let _ = writeln!(
        d,
        "The loss of the preference structure {}, compiled by `lossc logic --compile`.",
        s.spec()
    );
    d.push('\n');
    let _ = writeln!(
        d,
        "Winning worlds ✓ = P ∧ P_C = {}, losing worlds ✗ = (¬P ∧ P_C) ∨ P_A = {} over {};",
        s.worlds_text(s.win),
        s.worlds_text(s.lose),
        atom_list(space)
    );
    let weights: Vec<String> = space
        .atoms()
        .iter()
        .map(|a| format!("{} = exp({})", a.weight(), a.default_input()))
        .collect();
    let _ = writeln!(
        d,
        "the core ratio is WMC(✓)/WMC(✗) = {}, with {}.",
        s.ratio_text(),
        weights.join(", ")
    );
    let form = match f {
        FKind::Logistic => "-log σ(β·(log WMC(✓) - log WMC(✗)))",
        FKind::Squared => "(log WMC(✓) - log WMC(✗) - 1/(2β))²",
        FKind::Hinge => "max(0, 1 - β·(log WMC(✓) - log WMC(✗)))",
    };
    let _ = writeln!(d, "  loss_b = {form}  ({} f).", f.name());
    if f == FKind::Logistic {
        d.push_str("At β = 1 this is -log(WMC(✓) / (WMC(✓) + WMC(✗))).\n");
    }
    if s.win == BoolFn::FALSE {
        d.push_str("✓ is empty, so WMC(✓) = 0: the core is -inf for every input.\n");
    }
    if s.lose == BoolFn::FALSE {
        d.push_str("✗ is empty, so WMC(✗) = 0: the core is +inf for every input.\n");
    }
    d.push_str(
        "Inputs are log-probabilities, each [B]; they must be < 0 where log(1 - p) is taken. Reduction: mean over B.",
    );
    d
}

/// True for a name a loss may have.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !crate::check::is_reserved(name)
}

/// The `.loss` source of a structure's loss (before checking; see [`compile`]).
pub fn source(s: &Structure, f: FKind, name: &str) -> Result<String, LogicError> {
    if !valid_name(name) {
        return Err(LogicError(format!(
            "`{name}` cannot name a loss: use letters, digits and `_`, not starting with a digit, and not a keyword"
        )));
    }
    let a = log_of(&wmc(s.win));
    let b = log_of(&wmc(s.lose));
    let mut roots = vec![a.clone(), b.clone()];
    let lets = share(&mut roots);
    let mut names = vec![];
    let mut spare = ["v", "x", "y", "z"].iter();
    for (i, body) in lets.iter().enumerate() {
        let name = if *body == a && !names.contains(&"t".to_string()) {
            "t".to_string()
        } else if *body == b && !names.contains(&"u".to_string()) {
            "u".to_string()
        } else {
            spare
                .next()
                .map_or_else(|| format!("v{i}"), |s| s.to_string())
        };
        names.push(name);
    }
    let em = Emitter { names: &names };
    let rho = em.sum(&L::Sum(vec![
        (true, roots[0].clone()),
        (false, roots[1].clone()),
    ]));
    let body = match f {
        FKind::Logistic => format!("-log_sigmoid(beta * ({rho}))"),
        FKind::Squared => format!("({rho} - 1 / (2 * beta)) ^ 2"),
        FKind::Hinge => format!("relu(1 - beta * ({rho}))"),
    };
    let mut src = String::new();
    for line in doc(s, f).lines() {
        if line.is_empty() {
            src.push_str("///\n");
        } else {
            let _ = writeln!(src, "/// {line}");
        }
    }
    let inputs: Vec<String> = s
        .space()
        .atoms()
        .iter()
        .map(|a| format!("{}: [B]", a.default_input()))
        .collect();
    let _ = writeln!(src, "loss {name}({}; beta = 1) {{", inputs.join(", "));
    for i in let_order(&lets) {
        let _ = writeln!(src, "    let {}[b] = {}", names[i], em.sum(&lets[i]));
    }
    // A constant core reads no input: the batch index then needs its range written.
    let binder = if rho.contains("[b]") { "b" } else { "b: B" };
    let _ = writeln!(src, "    mean[{binder}]({body})");
    src.push_str("}\n");
    Ok(src)
}

/// Compiles a structure to a checked loss named `name` (see the module documentation).
pub fn compile(s: &Structure, f: FKind, name: &str) -> Result<Loss, LogicError> {
    let src = source(s, f, name)?;
    let mut program = crate::check_source(&src).map_err(|d| {
        LogicError(format!(
            "internal error: the compiled loss does not check:\n{}",
            grammar::render("<compiled>", &src, &d)
        ))
    })?;
    Ok(program.losses.remove(0))
}
