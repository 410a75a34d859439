//! Worlds and weighted model counting (dpa_logic.md §1.2–1.3).
//!
//! A world is a truth assignment of the four atoms, numbered by its bits (`Mw` = bit 0, `Ml`
//! = bit 1, `Rw` = bit 2, `Rl` = bit 3). A set of worlds — a Boolean function — is a 16-bit
//! truth table, [`BoolFn`]. Its weighted model count `WMC(F) = Σ_{i ⊨ F} S(i)` is a
//! multilinear polynomial in the weights; [`wmc`] writes it in a simplified form, found on
//! the world set itself: variables the set does not depend on are marginalised away
//! (`w·l + w·(1-l) = w`), independent parts multiply (`WMC(F ∧ G) = WMC(F)·WMC(G)` over
//! disjoint atoms), complements subtract from one, and what is left is a Shannon expansion
//! `p·WMC(F|v) + (1-p)·WMC(F|¬v)`. Conversely, a multilinear polynomial is the WMC of a set
//! exactly when its value at every world (its coefficient in the world basis) is 0 or 1.

use super::formula::Atom;
use super::poly::Poly;
use std::collections::HashMap;
use std::fmt;

/// A set of worlds over the four atoms: bit `i` is set when world `i` belongs to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoolFn(pub u16);

impl BoolFn {
    /// No world (`false`).
    pub const FALSE: BoolFn = BoolFn(0);
    /// Every world (`true`).
    pub const TRUE: BoolFn = BoolFn(u16::MAX);

    /// The worlds where `a` holds.
    pub fn atom(a: Atom) -> BoolFn {
        let mut bits = 0u16;
        for w in 0..16 {
            if w >> a.index() & 1 == 1 {
                bits |= 1 << w;
            }
        }
        BoolFn(bits)
    }

    /// Complement.
    pub fn complement(self) -> BoolFn {
        BoolFn(!self.0)
    }

    /// Intersection.
    pub fn and(self, o: BoolFn) -> BoolFn {
        BoolFn(self.0 & o.0)
    }

    /// Union.
    pub fn or(self, o: BoolFn) -> BoolFn {
        BoolFn(self.0 | o.0)
    }

    /// Symmetric difference.
    pub fn xor(self, o: BoolFn) -> BoolFn {
        BoolFn(self.0 ^ o.0)
    }

    /// `self -> o`.
    pub fn implies(self, o: BoolFn) -> BoolFn {
        self.complement().or(o)
    }

    /// True when every world of `self` is in `o` (`self ⊨ o`).
    pub fn entails(self, o: BoolFn) -> bool {
        self.0 & !o.0 == 0
    }

    /// True when world `w` belongs to the set.
    pub fn holds(self, w: usize) -> bool {
        self.0 >> w & 1 == 1
    }

    /// The cofactor with `a` fixed to `value` (a set that no longer depends on `a`).
    pub fn restrict(self, a: Atom, value: bool) -> BoolFn {
        let bit = 1usize << a.index();
        let mut out = 0u16;
        for w in 0..16 {
            let w2 = if value { w | bit } else { w & !bit };
            if self.holds(w2) {
                out |= 1 << w;
            }
        }
        BoolFn(out)
    }

    /// `∃a. self`.
    pub fn exists(self, a: Atom) -> BoolFn {
        self.restrict(a, true).or(self.restrict(a, false))
    }

    /// True when membership depends on `a`.
    pub fn depends_on(self, a: Atom) -> bool {
        self.restrict(a, true) != self.restrict(a, false)
    }

    /// The atoms membership depends on.
    pub fn support(self) -> Vec<Atom> {
        Atom::ALL
            .into_iter()
            .filter(|a| self.depends_on(*a))
            .collect()
    }

    /// Keeps only the dependence on `keep`: existentially quantifies every other atom.
    pub fn project(self, keep: &[Atom]) -> BoolFn {
        Atom::ALL
            .into_iter()
            .filter(|a| !keep.contains(a))
            .fold(self, |f, a| f.exists(a))
    }

    /// The worlds of the set over `atoms` (the set must not depend on other atoms), named
    /// `TF`... in the paper's order (`TT, TF, FT, FF` for `(Mw, Ml)`).
    pub fn world_names(self, atoms: &[Atom]) -> Vec<String> {
        let n = atoms.len();
        let mut out = vec![];
        for k in 0..1usize << n {
            // k = 0 is all-true: T sorts before F, the first atom most significant.
            let mut w = 0usize;
            let mut name = String::new();
            for (i, a) in atoms.iter().enumerate() {
                let value = k >> (n - 1 - i) & 1 == 0;
                if value {
                    w |= 1 << a.index();
                }
                name.push(if value { 'T' } else { 'F' });
            }
            if self.holds(w) {
                out.push(name);
            }
        }
        out
    }

    /// The set of worlds over `atoms` named as [`BoolFn::world_names`] names them
    /// (`["TT", "TF"]`); `None` for a malformed name.
    pub fn from_world_names(atoms: &[Atom], names: &[&str]) -> Option<BoolFn> {
        let mut f = BoolFn::FALSE;
        for name in names {
            if name.len() != atoms.len() {
                return None;
            }
            let mut cube = BoolFn::TRUE;
            for (a, c) in atoms.iter().zip(name.chars()) {
                let lit = BoolFn::atom(*a);
                cube = cube.and(match c {
                    'T' => lit,
                    'F' => lit.complement(),
                    _ => return None,
                });
            }
            f = f.or(cube);
        }
        Some(f)
    }

    /// The weighted model count as an expanded polynomial (by world enumeration over the
    /// support).
    pub fn wmc_poly(self) -> Poly {
        wmc(self).poly()
    }
}

/// The weighted model count of a set of worlds, written as a product / complement / Shannon
/// expression over the atom weights.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Wmc {
    /// `0`: the empty set.
    Zero,
    /// `1`: every world.
    One,
    /// `p` (true) or `1 - p` (false) for an atom's weight `p`.
    Lit(Atom, bool),
    /// A product of counts over disjoint atoms.
    Prod(Vec<Wmc>),
    /// `1 - x`.
    Compl(Box<Wmc>),
    /// `p·x + (1 - p)·y`: a Shannon expansion on an atom.
    Mix(Atom, Box<Wmc>, Box<Wmc>),
}

/// The simplified weighted model count of `f` (see the module documentation); among the
/// equivalent forms, the one with the fewest operations in log space.
pub fn wmc(f: BoolFn) -> Wmc {
    let mut memo = HashMap::new();
    best(f, &mut memo)
}

fn best(f: BoolFn, memo: &mut HashMap<BoolFn, Wmc>) -> Wmc {
    if let Some(w) = memo.get(&f) {
        return w.clone();
    }
    let out = if f == BoolFn::FALSE {
        Wmc::Zero
    } else if f == BoolFn::TRUE {
        Wmc::One
    } else {
        let direct = positive(f, memo);
        let compl = Wmc::Compl(Box::new(positive(f.complement(), memo)));
        if compl.cost() < direct.cost() {
            compl
        } else {
            direct
        }
    };
    memo.insert(f, out.clone());
    out
}

/// A form of `f` that is not a complement at the top.
fn positive(f: BoolFn, memo: &mut HashMap<BoolFn, Wmc>) -> Wmc {
    if f == BoolFn::FALSE {
        return Wmc::Zero;
    }
    if f == BoolFn::TRUE {
        return Wmc::One;
    }
    let support = f.support();
    if let [a] = support[..] {
        return Wmc::Lit(a, f == BoolFn::atom(a));
    }
    let blocks = conjunctive_blocks(f, &support);
    if blocks.len() > 1 {
        let mut factors = vec![];
        for b in blocks {
            match best(f.project(&b), memo) {
                Wmc::Prod(inner) => factors.extend(inner),
                other => factors.push(other),
            }
        }
        factors.sort_by_key(factor_key);
        return Wmc::Prod(factors);
    }
    support
        .iter()
        .map(|&v| {
            Wmc::Mix(
                v,
                Box::new(best(f.restrict(v, true), memo)),
                Box::new(best(f.restrict(v, false), memo)),
            )
        })
        .min_by_key(Wmc::cost)
        .expect("a non-constant set depends on some atom")
}

/// The finest partition of `support` into blocks such that `f` is the conjunction of its
/// projections onto the blocks (independent factors).
fn conjunctive_blocks(f: BoolFn, support: &[Atom]) -> Vec<Vec<Atom>> {
    let mut rest: Vec<Atom> = support.to_vec();
    let mut blocks = vec![];
    while !rest.is_empty() {
        let first = rest[0];
        let others = &rest[1..];
        let mut chosen: Option<Vec<Atom>> = None;
        // Smallest blocks first.
        let mut masks: Vec<u32> = (0..1u32 << others.len()).collect();
        masks.sort_by_key(|m| m.count_ones());
        for mask in masks {
            let mut s = vec![first];
            s.extend(
                others
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask >> i & 1 == 1)
                    .map(|(_, a)| *a),
            );
            let t: Vec<Atom> = rest.iter().copied().filter(|a| !s.contains(a)).collect();
            let g = f.project(&rest);
            if t.is_empty() || g == g.project(&s).and(g.project(&t)) {
                chosen = Some(s);
                break;
            }
        }
        let s = chosen.expect("the whole support is always a block");
        rest.retain(|a| !s.contains(a));
        blocks.push(s);
    }
    blocks
}

/// Plain weights first, then `1 - p`, then compound factors; by atom within each.
fn factor_key(w: &Wmc) -> (u8, usize) {
    match w {
        Wmc::Lit(a, true) => (0, a.index()),
        Wmc::Lit(a, false) => (1, a.index()),
        other => (2, other.first_atom()),
    }
}

impl Wmc {
    /// The number of operations of its log-space form (what [`wmc`] minimises).
    pub fn cost(&self) -> usize {
        match self {
            Wmc::Zero | Wmc::One | Wmc::Lit(_, true) => 1,
            Wmc::Lit(_, false) => 2,
            Wmc::Prod(fs) => fs.iter().map(Wmc::cost).sum::<usize>() + fs.len() - 1,
            Wmc::Compl(x) => 1 + x.cost(),
            // log(p·x + (1-p)·y) = a + softplus(b - a), a = log p + log x, b = log(1-p) + log y.
            Wmc::Mix(_, x, y) => 2 * (2 + x.cost()) + (3 + y.cost()) + 3,
        }
    }

    fn first_atom(&self) -> usize {
        match self {
            Wmc::Zero | Wmc::One => usize::MAX,
            Wmc::Lit(a, _) | Wmc::Mix(a, ..) => a.index(),
            Wmc::Prod(fs) => fs.iter().map(Wmc::first_atom).min().unwrap_or(usize::MAX),
            Wmc::Compl(x) => x.first_atom(),
        }
    }

    /// The polynomial it denotes.
    pub fn poly(&self) -> Poly {
        let small = "a weighted model count over four atoms is small";
        match self {
            Wmc::Zero => Poly::zero(),
            Wmc::One => Poly::one(),
            Wmc::Lit(a, true) => Poly::var(*a),
            Wmc::Lit(a, false) => Poly::one_minus(*a),
            Wmc::Prod(fs) => fs
                .iter()
                .fold(Poly::one(), |acc, f| acc.mul(&f.poly()).expect(small)),
            Wmc::Compl(x) => Poly::one().sub(&x.poly()).expect(small),
            Wmc::Mix(a, x, y) => {
                let hi = Poly::var(*a).mul(&x.poly()).expect(small);
                let lo = Poly::one_minus(*a).mul(&y.poly()).expect(small);
                hi.add(&lo).expect(small)
            }
        }
    }

    /// True when printing it inside a product needs parentheses.
    fn is_sum(&self) -> bool {
        matches!(self, Wmc::Lit(_, false) | Wmc::Compl(_) | Wmc::Mix(..))
    }

    /// Prints it as a factor of a product: sums in parentheses.
    pub fn factor_text(&self) -> String {
        if self.is_sum() {
            format!("({self})")
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Wmc {
    /// In the weights: `w*(1 - l)`, `1 - l*(1 - w)`, `w*r_l + (1 - w)*l`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wmc::Zero => f.write_str("0"),
            Wmc::One => f.write_str("1"),
            Wmc::Lit(a, true) => f.write_str(a.weight()),
            Wmc::Lit(a, false) => write!(f, "1 - {}", a.weight()),
            Wmc::Prod(fs) => {
                let parts: Vec<String> = fs.iter().map(Wmc::factor_text).collect();
                f.write_str(&parts.join("*"))
            }
            Wmc::Compl(x) => write!(f, "1 - {}", x.factor_text()),
            Wmc::Mix(a, x, y) => {
                let hi = match **x {
                    Wmc::One => a.weight().to_string(),
                    _ => format!("{}*{}", a.weight(), x.factor_text()),
                };
                let lo = match **y {
                    Wmc::One => format!("(1 - {})", a.weight()),
                    _ => format!("(1 - {})*{}", a.weight(), y.factor_text()),
                };
                write!(f, "{hi} + {lo}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: [Atom; 2] = [Atom::Mw, Atom::Ml];

    fn set(names: &[&str]) -> BoolFn {
        BoolFn::from_world_names(&SINGLE, names).unwrap()
    }

    /// The polynomial by brute-force world enumeration.
    fn enumerate(f: BoolFn) -> Poly {
        let mut total = Poly::zero();
        for w in 0..16usize {
            if !f.holds(w) {
                continue;
            }
            let mut term = Poly::one();
            for a in Atom::ALL {
                let lit = if w >> a.index() & 1 == 1 {
                    Poly::var(a)
                } else {
                    Poly::one_minus(a)
                };
                term = term.mul(&lit).unwrap();
            }
            total = total.add(&term).unwrap();
        }
        total
    }

    #[test]
    fn every_set_counts_as_world_enumeration_says() {
        for bits in 0..=u16::MAX {
            let f = BoolFn(bits);
            if bits % 97 != 0 && f.support().len() > 2 {
                continue; // every set over two atoms, a sample of the rest
            }
            let w = wmc(f);
            assert_eq!(w.poly(), enumerate(f), "{bits:#x}: {w}");
            for world in 0..16 {
                assert_eq!(w.poly().at_world(world), i128::from(f.holds(world)));
            }
        }
    }

    #[test]
    fn paper_ratios_print_as_in_the_table() {
        assert_eq!(wmc(set(&["TT", "TF"])).to_string(), "w");
        assert_eq!(wmc(set(&["TF"])).to_string(), "w*(1 - l)");
        assert_eq!(wmc(set(&["FT"])).to_string(), "l*(1 - w)");
        assert_eq!(wmc(set(&["TT", "FT", "FF"])).to_string(), "1 - w*(1 - l)");
        assert_eq!(wmc(set(&["TT", "TF", "FF"])).to_string(), "1 - l*(1 - w)");
        assert_eq!(wmc(set(&["TF", "FF"])).to_string(), "1 - l");
        assert_eq!(wmc(set(&["TF", "FT"])).to_string(), "w*(1 - l) + (1 - w)*l");
        assert_eq!(set(&["TT", "FF"]).world_names(&SINGLE), vec!["TT", "FF"]);
    }
}
