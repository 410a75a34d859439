//! Polynomials with integer coefficients in the four atom weights `w, l, r_w, r_l`: the
//! numerators and denominators of core ratios. Exact arithmetic (bounded, so that no source
//! can make it run away), evaluation, and factoring into the factors that matter here:
//! integer content, monomials, and products of polynomials over disjoint variables.

use super::formula::Atom;
use std::collections::BTreeMap;
use std::fmt;

/// Exponents of `w, l, r_w, r_l`.
pub type Mono = [u8; 4];

/// The most terms a polynomial may have.
const MAX_TERMS: usize = 4096;
/// The highest power of one variable.
const MAX_DEGREE: u8 = 32;

/// A polynomial with integer coefficients (no zero coefficients stored).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Poly {
    terms: BTreeMap<Mono, i128>,
}

/// A polynomial grew past the bounds lossc analyses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// A generic point of the open unit cube, used to fix the sign of factors.
const GENERIC: [f64; 4] = [0.313_7, 0.579_1, 0.265_9, 0.617_3];

/// A polynomial split into an integer content and primitive factors (each positive inside
/// the unit cube's generic point) with multiplicities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factored {
    /// The signed integer content.
    pub content: i128,
    /// Primitive factors and their multiplicities, sorted.
    pub factors: Vec<(Poly, u32)>,
}

impl Poly {
    /// The zero polynomial.
    pub fn zero() -> Poly {
        Poly::default()
    }

    /// A constant.
    pub fn constant(c: i128) -> Poly {
        let mut p = Poly::zero();
        if c != 0 {
            p.terms.insert([0; 4], c);
        }
        p
    }

    /// The constant 1.
    pub fn one() -> Poly {
        Poly::constant(1)
    }

    /// An atom's weight.
    pub fn var(a: Atom) -> Poly {
        let mut m = [0; 4];
        m[a.index()] = 1;
        let mut p = Poly::zero();
        p.terms.insert(m, 1);
        p
    }

    /// `1 - weight`.
    pub fn one_minus(a: Atom) -> Poly {
        Poly::one().sub(&Poly::var(a)).expect("small")
    }

    /// True for the zero polynomial.
    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value of a constant polynomial.
    pub fn constant_value(&self) -> Option<i128> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&[0; 4]).copied(),
            _ => None,
        }
    }

    /// The terms, by monomial.
    pub fn terms(&self) -> impl Iterator<Item = (&Mono, &i128)> {
        self.terms.iter()
    }

    fn from_terms(terms: BTreeMap<Mono, i128>) -> Result<Poly, TooLarge> {
        if terms.len() > MAX_TERMS {
            return Err(TooLarge);
        }
        Ok(Poly { terms })
    }

    /// `self + other`.
    pub fn add(&self, other: &Poly) -> Result<Poly, TooLarge> {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            let e = terms.entry(*m).or_insert(0);
            *e = e.checked_add(*c).ok_or(TooLarge)?;
            if *e == 0 {
                terms.remove(m);
            }
        }
        Poly::from_terms(terms)
    }

    /// `-self`.
    pub fn neg(&self) -> Poly {
        Poly {
            terms: self.terms.iter().map(|(m, c)| (*m, -c)).collect(),
        }
    }

    /// `self - other`.
    pub fn sub(&self, other: &Poly) -> Result<Poly, TooLarge> {
        self.add(&other.neg())
    }

    /// `self * other`.
    pub fn mul(&self, other: &Poly) -> Result<Poly, TooLarge> {
        if self.terms.len().saturating_mul(other.terms.len()) > MAX_TERMS * 16 {
            return Err(TooLarge);
        }
        let mut terms: BTreeMap<Mono, i128> = BTreeMap::new();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let mut m = [0u8; 4];
                for k in 0..4 {
                    m[k] = ma[k].checked_add(mb[k]).ok_or(TooLarge)?;
                    if m[k] > MAX_DEGREE {
                        return Err(TooLarge);
                    }
                }
                let c = ca.checked_mul(*cb).ok_or(TooLarge)?;
                let e = terms.entry(m).or_insert(0);
                *e = e.checked_add(c).ok_or(TooLarge)?;
            }
        }
        terms.retain(|_, c| *c != 0);
        Poly::from_terms(terms)
    }

    /// `self ^ k`.
    pub fn pow(&self, k: u32) -> Result<Poly, TooLarge> {
        let mut out = Poly::one();
        for _ in 0..k {
            out = out.mul(self)?;
        }
        Ok(out)
    }

    /// The value at a point `(w, l, r_w, r_l)`.
    pub fn eval(&self, x: [f64; 4]) -> f64 {
        self.terms
            .iter()
            .map(|(m, c)| (0..4).fold(*c as f64, |acc, k| acc * x[k].powi(i32::from(m[k]))))
            .sum()
    }

    /// The exact value at a world (a vertex of the cube): atom `k` is 1 when bit `k` of
    /// `world` is set, else 0.
    pub fn at_world(&self, world: usize) -> i128 {
        self.terms
            .iter()
            .filter(|(m, _)| (0..4).all(|k| m[k] == 0 || world >> k & 1 == 1))
            .fold(0i128, |acc, (_, c)| acc.saturating_add(*c))
    }

    /// The atoms whose weights appear.
    pub fn atoms(&self) -> Vec<Atom> {
        Atom::ALL
            .into_iter()
            .filter(|a| self.degree_in(*a) > 0)
            .collect()
    }

    /// The highest power of an atom's weight.
    pub fn degree_in(&self, a: Atom) -> u8 {
        self.terms.keys().map(|m| m[a.index()]).max().unwrap_or(0)
    }

    /// True when no variable appears squared.
    pub fn is_multilinear(&self) -> bool {
        Atom::ALL.into_iter().all(|a| self.degree_in(a) <= 1)
    }

    /// The gcd of the coefficients (0 for the zero polynomial).
    pub fn content(&self) -> i128 {
        self.terms.values().fold(0, |g, c| gcd(g, c.abs()))
    }

    fn div_exact(&self, c: i128) -> Poly {
        Poly {
            terms: self.terms.iter().map(|(m, k)| (*m, k / c)).collect(),
        }
    }

    /// The sign at the generic point (+1 or -1), falling back to the first coefficient.
    fn sign(&self) -> i128 {
        let v = self.eval(GENERIC);
        if v.abs() > 1e-12 {
            if v > 0.0 { 1 } else { -1 }
        } else {
            self.terms.values().next().map_or(1, |c| c.signum())
        }
    }

    /// Splits a non-zero polynomial into content and factors: the content, each variable
    /// that divides every term, then products over disjoint sets of variables (found as
    /// rank-one coefficient matrices), recursively. Factors are primitive and positive at a
    /// generic point of the cube; equal factors are merged.
    pub fn factor(&self) -> Factored {
        assert!(!self.is_zero(), "factor of zero");
        let mut content = self.content();
        let mut prim = self.div_exact(content);
        if prim.sign() < 0 {
            prim = prim.neg();
            content = -content;
        }
        let mut factors: Vec<(Poly, u32)> = vec![];
        // Monomial factors.
        let mut low = [u8::MAX; 4];
        for m in prim.terms.keys() {
            for k in 0..4 {
                low[k] = low[k].min(m[k]);
            }
        }
        if low.iter().any(|&e| e > 0) {
            prim = Poly {
                terms: prim
                    .terms
                    .iter()
                    .map(|(m, c)| {
                        let mut m2 = *m;
                        for k in 0..4 {
                            m2[k] -= low[k];
                        }
                        (m2, *c)
                    })
                    .collect(),
            };
            for a in Atom::ALL {
                if low[a.index()] > 0 {
                    factors.push((Poly::var(a), u32::from(low[a.index()])));
                }
            }
        }
        split_rec(prim, &mut factors);
        let mut merged: BTreeMap<Poly, u32> = BTreeMap::new();
        for (p, k) in factors {
            *merged.entry(p).or_insert(0) += k;
        }
        Factored {
            content,
            factors: merged.into_iter().collect(),
        }
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Normalises `p` (primitive, positive at the generic point).
fn normalised(p: Poly) -> Poly {
    let c = p.content();
    let p = if c > 1 { p.div_exact(c) } else { p };
    if p.sign() < 0 { p.neg() } else { p }
}

fn split_rec(p: Poly, out: &mut Vec<(Poly, u32)>) {
    if p.constant_value() == Some(1) {
        return;
    }
    let vars: Vec<usize> = p.atoms().iter().map(|a| a.index()).collect();
    if vars.len() >= 2 {
        let first = vars[0];
        let rest = &vars[1..];
        // Subsets S of the variables containing the first, excluding all of them.
        for mask in 0..(1u32 << rest.len()) - 1 {
            let mut s = vec![first];
            s.extend(
                rest.iter()
                    .enumerate()
                    .filter(|(i, _)| mask >> i & 1 == 1)
                    .map(|(_, v)| *v),
            );
            if let Some((q, r)) = try_split(&p, &s) {
                split_rec(normalised(q), out);
                split_rec(normalised(r), out);
                return;
            }
        }
    }
    out.push((p, 1));
}

/// `p = q(S) · r(T)` with `T` the other variables, when the coefficient matrix indexed by
/// (monomial in S, monomial in T) has rank one.
fn try_split(p: &Poly, s: &[usize]) -> Option<(Poly, Poly)> {
    let part = |m: &Mono, inside: bool| {
        let mut out = [0u8; 4];
        for k in 0..4 {
            if s.contains(&k) == inside {
                out[k] = m[k];
            }
        }
        out
    };
    let mut rows: BTreeMap<Mono, BTreeMap<Mono, i128>> = BTreeMap::new();
    for (m, c) in &p.terms {
        rows.entry(part(m, true))
            .or_default()
            .insert(part(m, false), *c);
    }
    if rows.len() < 2 {
        return None;
    }
    let (_, row0) = rows.iter().next()?;
    let (&col0, &c00) = row0.iter().next()?;
    for row in rows.values() {
        if row.len() != row0.len() || !row.keys().all(|k| row0.contains_key(k)) {
            return None;
        }
        let r0 = row[&col0];
        for (k, c) in row {
            if c.checked_mul(c00)? != row0[k].checked_mul(r0)? {
                return None;
            }
        }
    }
    if row0.len() < 2 {
        return None;
    }
    let q = Poly {
        terms: rows.iter().map(|(m, row)| (*m, row[&col0])).collect(),
    };
    let r = Poly {
        terms: row0.clone(),
    };
    Some((q, r))
}

impl fmt::Display for Poly {
    /// `1 - w + w*l`: constant first, then by degree, `w` before `l` before `r_w` before `r_l`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let mut terms: Vec<(&Mono, &i128)> = self.terms.iter().collect();
        terms.sort_by(|(a, _), (b, _)| {
            let da: u32 = a.iter().map(|&e| u32::from(e)).sum();
            let db: u32 = b.iter().map(|&e| u32::from(e)).sum();
            da.cmp(&db).then(b.cmp(a))
        });
        for (i, (m, c)) in terms.into_iter().enumerate() {
            let mut vars: Vec<String> = vec![];
            for a in Atom::ALL {
                match m[a.index()] {
                    0 => {}
                    1 => vars.push(a.weight().to_string()),
                    e => vars.push(format!("{}^{e}", a.weight())),
                }
            }
            let mag = c.unsigned_abs();
            let body = match (vars.is_empty(), mag) {
                (true, _) => mag.to_string(),
                (false, 1) => vars.join("*"),
                (false, _) => format!("{mag}*{}", vars.join("*")),
            };
            match (i, *c < 0) {
                (0, false) => f.write_str(&body)?,
                (0, true) => write!(f, "-{body}")?,
                (_, false) => write!(f, " + {body}")?,
                (_, true) => write!(f, " - {body}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Poly {
        Poly::var(Atom::Mw)
    }
    fn l() -> Poly {
        Poly::var(Atom::Ml)
    }

    #[test]
    fn arithmetic_and_printing() {
        let one_minus_l = Poly::one_minus(Atom::Ml);
        let wl = w().mul(&l()).unwrap();
        // Marginalisation: w·l + w·(1 - l) = w.
        let m = wl.add(&w().mul(&one_minus_l).unwrap()).unwrap();
        assert_eq!(m, w());
        let p = Poly::one().sub(&w().mul(&one_minus_l).unwrap()).unwrap();
        assert_eq!(p.to_string(), "1 - w + w*l");
        assert_eq!(p.at_world(0b01), 0);
        assert_eq!(p.at_world(0b11), 1);
    }

    #[test]
    fn factoring_finds_disjoint_products() {
        let a = Poly::one_minus(Atom::Mw);
        let b = Poly::one()
            .sub(&l().mul(&Poly::var(Atom::Rw)).unwrap())
            .unwrap();
        let p = a.mul(&b).unwrap().mul(&l()).unwrap();
        let f = p.mul(&Poly::constant(-6)).unwrap().factor();
        assert_eq!(f.content, -6);
        let mut want = vec![(a, 1), (b, 1), (l(), 1)];
        want.sort();
        assert_eq!(f.factors, want);
        // Irreducible: 1 - w + w*l.
        let p = Poly::one()
            .sub(&w().mul(&Poly::one_minus(Atom::Ml)).unwrap())
            .unwrap();
        assert_eq!(p.factor().factors, vec![(p.clone(), 1)]);
        // Squares of variables.
        let p = w().mul(&w()).unwrap();
        assert_eq!(p.factor().factors, vec![(w(), 2)]);
    }
}
