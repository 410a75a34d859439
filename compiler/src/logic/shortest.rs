//! The shortest formula of a set of worlds, for printing.
//!
//! Formulas are built from literals (`Mw`, `!Mw`) with `&`, `|`, `^` and `->`, and ranked by
//! the number of atom occurrences, then negations, `^`, and `->`/`^` below the root (which
//! read worse), then depth: so `Ml -> Mw` is preferred to `!Ml | Mw`, `(Ml & Rw) -> (Mw & Rl)`
//! to `Ml -> Rw -> (Mw & Rl)`, and `(Ml & Rw) -> Mw` to `Ml -> Rw -> Mw`. The
//! search enumerates every function of the atoms the set depends on (at most four, so at
//! most 65536 functions) by formula size, and stops at the size where the set first appears;
//! sets that need more than [`MAX_LEAVES`] occurrences (parity-like ones) are written as a
//! disjunction of prime implicants instead.

use super::formula::{Atom, Formula, Op};
use super::worlds::BoolFn;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The largest formula the exhaustive search builds.
pub const MAX_LEAVES: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cost {
    leaves: u8,
    /// Negations, plus 3 for every `^`, plus 2 for every `->` or `^` below the root
    /// (`((Mw | Rw) & Ml) ^ (Mw & (Ml | Rl))` reads worse than `(Mw & !Ml & Rl) | (!Mw & Ml &
    /// Rw)`).
    penalty: u8,
    depth: u8,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Lit(u8, bool),
    Bin(Op, u16, u16),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    cost: Cost,
    node: Node,
}

/// The search state for `k` variables: the best formula of every function found so far,
/// and the functions of each size.
struct Table {
    k: usize,
    best: Vec<Option<Entry>>,
    levels: Vec<Vec<u16>>,
}

const OPS: [Op; 4] = [Op::And, Op::Or, Op::Xor, Op::Implies];

impl Table {
    fn new(k: usize) -> Table {
        let size = 1usize << (1usize << k);
        let mask = (size - 1) as u16;
        let mut t = Table {
            k,
            best: vec![None; size],
            levels: vec![vec![], vec![]],
        };
        for v in 0..k {
            let mut pos = 0u16;
            for w in 0..1usize << k {
                if w >> v & 1 == 1 {
                    pos |= 1 << w;
                }
            }
            for (f, positive) in [(pos, true), (!pos & mask, false)] {
                t.best[f as usize] = Some(Entry {
                    cost: Cost {
                        leaves: 1,
                        penalty: u8::from(!positive),
                        depth: 0,
                    },
                    node: Node::Lit(v as u8, positive),
                });
                t.levels[1].push(f);
            }
        }
        t
    }

    fn mask(&self) -> u16 {
        ((1usize << (1usize << self.k)) - 1) as u16
    }

    /// Builds every function of `leaves` occurrences.
    fn grow(&mut self) {
        let n = self.levels.len() as u8;
        let mask = self.mask();
        let mut fresh: Vec<u16> = vec![];
        for i in 1..n {
            let j = n - i;
            for op in OPS {
                if op.is_commutative() && i > j {
                    continue;
                }
                for (ai, &a) in self.levels[i as usize].iter().enumerate() {
                    let ca = self.best[a as usize].expect("listed").cost;
                    let start = if op.is_commutative() && i == j { ai } else { 0 };
                    for &b in &self.levels[j as usize][start..] {
                        let cb = self.best[b as usize].expect("listed").cost;
                        let h = match op {
                            Op::And => a & b,
                            Op::Or => a | b,
                            Op::Xor => a ^ b,
                            Op::Implies => (!a | b) & mask,
                        };
                        let nested = |f: u16| {
                            let node = self.best[f as usize].expect("listed").node;
                            2 * u8::from(matches!(node, Node::Bin(Op::Implies | Op::Xor, ..)))
                        };
                        let own = if op == Op::Xor { 3 } else { 0 };
                        let cost = Cost {
                            leaves: n,
                            penalty: ca.penalty + cb.penalty + nested(a) + nested(b) + own,
                            depth: 1 + ca.depth.max(cb.depth),
                        };
                        match &mut self.best[h as usize] {
                            Some(e) if e.cost <= cost => {}
                            Some(e) if e.cost.leaves == n => {
                                *e = Entry {
                                    cost,
                                    node: Node::Bin(op, a, b),
                                }
                            }
                            Some(_) => {}
                            slot @ None => {
                                *slot = Some(Entry {
                                    cost,
                                    node: Node::Bin(op, a, b),
                                });
                                fresh.push(h);
                            }
                        }
                    }
                }
            }
        }
        self.levels.push(fresh);
    }

    fn formula(&self, f: u16, vars: &[Atom]) -> Formula {
        match self.best[f as usize].expect("found").node {
            Node::Lit(v, true) => Formula::Atom(vars[v as usize]),
            Node::Lit(v, false) => Formula::negation(Formula::Atom(vars[v as usize])),
            Node::Bin(op, a, b) => Formula::bin(op, self.formula(a, vars), self.formula(b, vars)),
        }
    }
}

fn tables() -> &'static Mutex<HashMap<usize, Table>> {
    static TABLES: OnceLock<Mutex<HashMap<usize, Table>>> = OnceLock::new();
    TABLES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The truth table of `f` over its support (local world `i`: bit `j` = support atom `j`).
fn local(f: BoolFn, vars: &[Atom]) -> u16 {
    let mut t = 0u16;
    for i in 0..1usize << vars.len() {
        let mut w = 0usize;
        for (j, a) in vars.iter().enumerate() {
            if i >> j & 1 == 1 {
                w |= 1 << a.index();
            }
        }
        if f.holds(w) {
            t |= 1 << i;
        }
    }
    t
}

/// The shortest formula for a set of worlds (see the module documentation), with the
/// operands of `&`, `|`, `^` in canonical order.
pub fn shortest(f: BoolFn) -> Formula {
    if f == BoolFn::TRUE {
        return Formula::Const(true);
    }
    if f == BoolFn::FALSE {
        return Formula::Const(false);
    }
    let vars = f.support();
    let target = local(f, &vars);
    let mut tables = tables().lock().unwrap_or_else(|e| e.into_inner());
    let table = tables
        .entry(vars.len())
        .or_insert_with(|| Table::new(vars.len()));
    loop {
        if let Some(e) = table.best[target as usize] {
            // Complete the level it was found at: a later pair may need fewer negations.
            if (table.levels.len() as u8) > e.cost.leaves {
                return table.formula(target, &vars).canonical();
            }
        }
        if table.levels.len() as u8 > MAX_LEAVES {
            return prime_cover(f, &vars).canonical();
        }
        table.grow();
    }
}

/// A disjunction of prime implicants covering `f` (greedy), for sets the search does not
/// reach.
fn prime_cover(f: BoolFn, vars: &[Atom]) -> Formula {
    // A cube assigns each variable true, false or nothing (3^k cubes).
    let k = vars.len();
    let mut cubes: Vec<(BoolFn, Vec<(Atom, bool)>)> = vec![];
    for code in 0..3usize.pow(k as u32) {
        let mut set = BoolFn::TRUE;
        let mut lits = vec![];
        let mut c = code;
        for &a in vars {
            match c % 3 {
                1 => {
                    set = set.and(BoolFn::atom(a));
                    lits.push((a, true));
                }
                2 => {
                    set = set.and(BoolFn::atom(a).complement());
                    lits.push((a, false));
                }
                _ => {}
            }
            c /= 3;
        }
        if set.entails(f) {
            cubes.push((set, lits));
        }
    }
    // Primes: implicants not contained in a larger implicant.
    let primes: Vec<&(BoolFn, Vec<(Atom, bool)>)> = cubes
        .iter()
        .filter(|(s, _)| !cubes.iter().any(|(t, _)| t != s && s.entails(*t)))
        .collect();
    let mut covered = BoolFn::FALSE;
    let mut chosen: Vec<Formula> = vec![];
    while covered != f {
        let (set, lits) = primes
            .iter()
            .max_by_key(|(s, l)| {
                (
                    (s.and(covered.complement())).0.count_ones(),
                    usize::MAX - l.len(),
                )
            })
            .expect("f is covered by its minterms");
        covered = covered.or(*set);
        let conj = lits
            .iter()
            .map(|&(a, v)| {
                if v {
                    Formula::Atom(a)
                } else {
                    Formula::negation(Formula::Atom(a))
                }
            })
            .reduce(|x, y| Formula::bin(Op::And, x, y))
            .unwrap_or(Formula::Const(true));
        chosen.push(conj);
    }
    chosen
        .into_iter()
        .reduce(|x, y| Formula::bin(Op::Or, x, y))
        .expect("f is not empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: &str) {
        let f = Formula::parse(text).unwrap().truth();
        let got = shortest(f);
        assert_eq!(got.truth(), f, "{text}");
        assert_eq!(got.to_string(), want, "{text}");
    }

    #[test]
    fn paper_formulas() {
        check("!(Ml & Rw) | (Mw & Rl)", "(Ml & Rw) -> (Mw & Rl)");
        check("!Ml | Mw", "Ml -> Mw");
        check("Mw & !Ml", "Mw & !Ml");
        check("(Mw & !Ml) | (Ml & !Mw)", "Mw ^ Ml");
        check("(Rl & Mw) | (Rw & Ml)", "(Mw & Rl) | (Ml & Rw)");
        check("!(Ml & !Mw & Rw)", "(Ml & Rw) -> Mw");
        check("Mw & Ml & Rw & Rl", "Mw & Ml & Rw & Rl");
    }

    #[test]
    fn every_set_prints_to_an_equivalent_formula() {
        for bits in (0..=u16::MAX).step_by(251) {
            let f = BoolFn(bits);
            assert_eq!(shortest(f).truth(), f, "{bits:#x}");
        }
        // Parity of four atoms needs xor.
        check("Mw ^ Ml ^ Rw ^ Rl", "Mw ^ Ml ^ Rw ^ Rl");
    }
}
