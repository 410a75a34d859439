//! Comparing preference losses: equality of core ratios as rational functions, the paper's
//! order `⊑` on reduced structures (dpa_logic.md §4.1), and numeric witnesses for
//! incomparable pairs.
//!
//! Losses are compared through their core ratios, so the comparison holds for every convex
//! `f` (it is the same for DPO and IPO). Losses are evaluated as `-log σ(log ratio) =
//! log(1 + WMC(✗)/WMC(✓))`, the logistic loss at β = 1.

use super::formula::Atom;
use super::poly::Poly;
use super::structure::{Space, Structure};
use super::worlds::BoolFn;
use std::collections::BTreeMap;

/// A core ratio `n / d` of two polynomials in the atom weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ratio {
    /// The numerator, `WMC(✓)`.
    pub n: Poly,
    /// The denominator, `WMC(✗)`.
    pub d: Poly,
}

/// Why a ratio is not a pair of weighted model counts: the side, a world and the
/// polynomial's value (its world-basis coefficient) there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotWmc {
    /// True for the numerator.
    pub numerator: bool,
    /// The world (bit `k` = atom `k`).
    pub world: usize,
    /// The coefficient there (neither 0 nor 1).
    pub coefficient: i128,
}

impl Ratio {
    /// Equal as rational functions: `n₁·d₂ = n₂·d₁`, where an undefined `0/0` equals only
    /// another `0/0`.
    pub fn equals(&self, o: &Ratio) -> bool {
        let undefined = |r: &Ratio| r.n.is_zero() && r.d.is_zero();
        if undefined(self) || undefined(o) {
            return undefined(self) && undefined(o);
        }
        match (self.n.mul(&o.d), o.n.mul(&self.d)) {
            (Ok(a), Ok(b)) => a == b,
            // Too large to multiply out: compare at generic points instead.
            _ => POINTS.iter().all(|x| {
                let (a, b) = (
                    self.n.eval(*x) * o.d.eval(*x),
                    o.n.eval(*x) * self.d.eval(*x),
                );
                (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
            }),
        }
    }

    /// The logistic loss at β = 1, `log(1 + d/n)`, at a point `(w, l, r_w, r_l)`: `+inf`
    /// where `n = 0`, `NaN` where both vanish.
    pub fn loss(&self, x: [f64; 4]) -> f64 {
        let (n, d) = (self.n.eval(x), self.d.eval(x));
        if n == 0.0 && d == 0.0 {
            f64::NAN
        } else if n == 0.0 {
            f64::INFINITY
        } else {
            (d / n).ln_1p()
        }
    }

    /// Cancels common factors (and the common integer content), so that equal losses have
    /// equal reduced ratios.
    pub fn reduce(&self) -> Ratio {
        if self.n.is_zero() || self.d.is_zero() {
            return self.clone();
        }
        let (fa, fb) = (self.n.factor(), self.d.factor());
        let mut a: BTreeMap<Poly, u32> = fa.factors.into_iter().collect();
        let mut b: BTreeMap<Poly, u32> = fb.factors.into_iter().collect();
        for (p, k) in a.iter_mut() {
            if let Some(kb) = b.get_mut(p) {
                let common = (*k).min(*kb);
                *k -= common;
                *kb -= common;
            }
        }
        let g = gcd(fa.content.abs(), fb.content.abs()).max(1);
        let build = |content: i128, fs: &BTreeMap<Poly, u32>| -> Option<Poly> {
            let mut p = Poly::constant(content / g);
            for (f, k) in fs {
                p = p.mul(&f.pow(*k).ok()?).ok()?;
            }
            Some(p)
        };
        match (build(fa.content, &a), build(fb.content, &b)) {
            (Some(n), Some(d)) => Ratio { n, d },
            _ => self.clone(),
        }
    }

    /// The structure whose weighted model counts are `n` and `d`: the worlds where each side
    /// is 1. Fails where a side is not multilinear or has a world coefficient other than 0
    /// and 1.
    pub fn structure(&self) -> Result<Structure, NotWmc> {
        let side = |p: &Poly, numerator: bool| -> Result<BoolFn, NotWmc> {
            let mut set = BoolFn::FALSE;
            for world in 0..16 {
                match p.at_world(world) {
                    0 => {}
                    1 => set = set.or(BoolFn(1 << world)),
                    coefficient => {
                        return Err(NotWmc {
                            numerator,
                            world,
                            coefficient,
                        });
                    }
                }
            }
            // A multilinear polynomial is determined by its values at the worlds.
            if set.wmc_poly() != *p {
                return Err(NotWmc {
                    numerator,
                    world: 0,
                    coefficient: p.at_world(0),
                });
            }
            Ok(set)
        };
        Ok(Structure::new(side(&self.n, true)?, side(&self.d, false)?))
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Generic points for numeric equality of very large ratios.
const POINTS: [[f64; 4]; 3] = [
    [0.31, 0.57, 0.27, 0.69],
    [0.83, 0.12, 0.45, 0.38],
    [0.55, 0.91, 0.73, 0.16],
];

/// How two losses relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The same loss: equal core ratios.
    Equal,
    /// The first is more constrained (`A ⊑ B`): its loss is at least the second's everywhere.
    Le,
    /// The second is more constrained (`B ⊑ A`).
    Ge,
    /// Neither is more constrained.
    Incomparable,
}

impl Relation {
    /// `equal`, `le`, `ge` or `incomparable`.
    pub fn name(self) -> &'static str {
        match self {
            Relation::Equal => "equal",
            Relation::Le => "le",
            Relation::Ge => "ge",
            Relation::Incomparable => "incomparable",
        }
    }
}

/// A point of the open unit cube where two losses were evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The weight (probability) of each atom.
    pub weights: Vec<(Atom, f64)>,
    /// The first loss there.
    pub loss_a: f64,
    /// The second loss there.
    pub loss_b: f64,
}

/// Evidence that two losses are incomparable: a point where each is the larger.
#[derive(Debug, Clone, PartialEq)]
pub struct Witness {
    /// A point where the first loss is larger.
    pub a_greater: Point,
    /// A point where the second loss is larger.
    pub b_greater: Point,
}

/// The result of [`compare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// How they relate.
    pub relation: Relation,
    /// For incomparable pairs, where each loss is the larger.
    pub witness: Option<Witness>,
}

/// Compares two structures as losses: equal ratios are `Equal`; `a` is below `b` when [`le`]
/// orders them or when [`dominates`] proves `b`'s ratio at least `a`'s on the whole cube (the
/// order of losses can pass through writings of an intermediate loss that no single pair of
/// writings shows, e.g. `l ≤ 1 ≤ 1 + (1-w)·l/(w·(1-l))`); incomparable pairs get a witness. A structure with `✓ = ✗ = ∅` (the undefined `0/0`)
/// equals only another one and is incomparable to the rest, with no witness.
pub fn compare(a: &Structure, b: &Structure) -> Comparison {
    let (ra, rb) = (a.ratio(), b.ratio());
    if ra.equals(&rb) {
        return Comparison {
            relation: Relation::Equal,
            witness: None,
        };
    }
    let undefined = |r: &Ratio| r.n.is_zero() && r.d.is_zero();
    if undefined(&ra) || undefined(&rb) {
        return Comparison {
            relation: Relation::Incomparable,
            witness: None,
        };
    }
    let space = a.space().join(b.space());
    let (ca, cb) = (canonical(a), canonical(b));
    let ordered = |x: &Option<Structure>, y: &Option<Structure>, rx: &Ratio, ry: &Ratio| {
        let structural = match (x, y) {
            (Some(x), Some(y)) => le_canonical(x, y, space),
            _ => false,
        };
        structural || dominates(ry, rx, space)
    };
    let relation = match (ordered(&ca, &cb, &ra, &rb), ordered(&cb, &ca, &rb, &ra)) {
        (true, _) => Relation::Le,
        (_, true) => Relation::Ge,
        _ => Relation::Incomparable,
    };
    let witness = if relation == Relation::Incomparable {
        witness(&ra, &rb, space)
    } else {
        None
    };
    Comparison { relation, witness }
}

/// The structure's canonical form as a loss: the reduced ratio's worlds, with `0/D` as
/// `(∅, ⊤)` and `N/0` as `(⊤, ∅)`; `None` for the undefined `0/0`.
fn canonical(s: &Structure) -> Option<Structure> {
    match (s.win == BoolFn::FALSE, s.lose == BoolFn::FALSE) {
        (true, true) => None,
        (true, false) => Some(Structure::new(BoolFn::FALSE, BoolFn::TRUE)),
        (false, true) => Some(Structure::new(BoolFn::TRUE, BoolFn::FALSE)),
        _ => Some(s.reduced()),
    }
}

/// The non-empty world sets that depend only on `atoms`.
fn sets_over(atoms: &[Atom]) -> Vec<BoolFn> {
    let cubes: Vec<BoolFn> = (0..1usize << atoms.len())
        .map(|m| {
            atoms.iter().enumerate().fold(BoolFn::TRUE, |acc, (i, a)| {
                let lit = BoolFn::atom(*a);
                acc.and(if m >> i & 1 == 1 {
                    lit
                } else {
                    lit.complement()
                })
            })
        })
        .collect();
    (1u32..1 << cubes.len())
        .map(|mask| {
            cubes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .fold(BoolFn::FALSE, |acc, (_, c)| acc.or(*c))
        })
        .collect()
}

/// The paper's order `a ⊑ b` (dpa_logic.md §4.1: `✓_a ⊨ ✓_b` and `✗_b ⊨ ✗_a`, so `a`'s loss
/// is at least `b`'s everywhere), taken up to equality of losses: a loss is written by many
/// structures — its reduced ratio `N/D` times `G/G` for any count `G` over the atoms `N` and
/// `D` do not mention (the ratio 1 is `(X, X)` for every `X`) — and `a ⊑ b` holds when some
/// pair of writings is ordered. For a given writing `G_a` of `a`, the best writing of `b` is
/// the smallest `G_b` that covers `✓_a·G_a`.
pub fn le(a: &Structure, b: &Structure, space: Space) -> bool {
    match (canonical(a), canonical(b)) {
        (Some(sa), Some(sb)) => le_canonical(&sa, &sb, space),
        _ => false,
    }
}

/// [`le`] of canonical forms.
fn le_canonical(sa: &Structure, sb: &Structure, space: Space) -> bool {
    let free = |s: &Structure| -> Vec<Atom> {
        let (win, lose) = (s.win.support(), s.lose.support());
        space
            .atoms()
            .iter()
            .copied()
            .filter(|x| !win.contains(x) && !lose.contains(x))
            .collect()
    };
    let (wa, wb) = (free(sa), free(sb));
    let b_choices = sets_over(&wb);
    sets_over(&wa).into_iter().any(|ga| {
        let (win, lose) = (sa.win.and(ga), sa.lose.and(ga));
        let fits = |gb: BoolFn| win.entails(sb.win.and(gb)) && sb.lose.and(gb).entails(lose);
        if win == BoolFn::FALSE {
            b_choices.iter().any(|gb| fits(*gb))
        } else {
            let gb = win.project(&wb);
            // `project` keeps the atoms of `wb`; it is the smallest set over them covering `win`.
            gb.support().iter().all(|x| wb.contains(x)) && fits(gb)
        }
    })
}

/// True when `hi ≥ lo` everywhere on the unit cube, as ratios (`hi.n·lo.d − lo.n·hi.d ≥ 0`),
/// proven by the Bernstein coefficients of that polynomial on the cube, subdivided where
/// they are not all non-negative. `false` also when no proof is found.
pub fn dominates(hi: &Ratio, lo: &Ratio, space: Space) -> bool {
    let (Ok(x), Ok(y)) = (hi.n.mul(&lo.d), lo.n.mul(&hi.d)) else {
        return false;
    };
    let Ok(q) = x.sub(&y) else { return false };
    let atoms = space.atoms();
    let n = atoms.len();
    if q.terms().any(|(m, _)| {
        m.iter().any(|&e| e > 2)
            || (0..4).any(|k| m[k] > 0 && !atoms.iter().any(|a| a.index() == k))
    }) {
        return false;
    }
    // Bernstein coefficients of degree 2 in each variable: t^0 -> (1, 1, 1), t -> (0, 1/2,
    // 1), t^2 -> (0, 0, 1).
    let basis = [[1.0, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 1.0]];
    let mut coeffs = vec![0.0; 3usize.pow(n as u32)];
    for (m, c) in q.terms() {
        for (idx, slot) in coeffs.iter_mut().enumerate() {
            let mut v = *c as f64;
            let mut rest = idx;
            for a in atoms {
                v *= basis[usize::from(m[a.index()])][rest % 3];
                rest /= 3;
            }
            *slot += v;
        }
    }
    nonnegative(&coeffs, n, 12) == Some(true)
}

/// Bernstein coefficients (degree 2 per axis, axis 0 fastest) all non-negative after at most
/// `depth` subdivisions: `Some(true)` proven, `Some(false)` a corner is negative, `None`
/// undecided.
fn nonnegative(c: &[f64], n: usize, depth: u32) -> Option<bool> {
    const EPS: f64 = 1e-12;
    if c.iter().all(|&x| x >= -EPS) {
        return Some(true);
    }
    let corner = |idx: usize| (0..n).all(|k| (idx / 3usize.pow(k as u32)) % 3 != 1);
    if c.iter().enumerate().any(|(i, &x)| corner(i) && x < -EPS) {
        return Some(false);
    }
    if depth == 0 {
        return None;
    }
    // Split along one axis at its midpoint (de Casteljau).
    let axis = (depth as usize) % n;
    let stride = 3usize.pow(axis as u32);
    let (mut left, mut right) = (c.to_vec(), c.to_vec());
    for i in 0..c.len() {
        if !(i / stride).is_multiple_of(3) {
            continue;
        }
        let (c0, c1, c2) = (c[i], c[i + stride], c[i + 2 * stride]);
        let mid = (c0 + 2.0 * c1 + c2) / 4.0;
        left[i + stride] = (c0 + c1) / 2.0;
        left[i + 2 * stride] = mid;
        right[i] = mid;
        right[i + stride] = (c1 + c2) / 2.0;
    }
    match (
        nonnegative(&left, n, depth - 1),
        nonnegative(&right, n, depth - 1),
    ) {
        (Some(true), Some(true)) => Some(true),
        (Some(false), _) | (_, Some(false)) => Some(false),
        _ => None,
    }
}

/// Searches a grid of the open cube (then a finer one) for a point where each loss is the
/// larger.
fn witness(a: &Ratio, b: &Ratio, space: Space) -> Option<Witness> {
    let coarse = [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95];
    let fine: Vec<f64> = (1..50).map(|k| f64::from(k) / 50.0).collect();
    let finest = [0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999];
    let atoms = space.atoms();
    for values in [&coarse[..], &fine[..], &finest[..]] {
        if atoms.len() == 4 && values.len() > 10 {
            continue; // 49^4 points is too many; the other grids suffice
        }
        let mut best_a: Option<(f64, Point)> = None;
        let mut best_b: Option<(f64, Point)> = None;
        let n = values.len();
        for code in 0..n.pow(atoms.len() as u32) {
            let mut x = [0.5; 4];
            let mut c = code;
            let mut weights = vec![];
            for a in atoms {
                x[a.index()] = values[c % n];
                weights.push((*a, values[c % n]));
                c /= n;
            }
            let (la, lb) = (a.loss(x), b.loss(x));
            let gap = la - lb;
            if !(gap.is_finite() || la.is_finite() || lb.is_finite()) {
                continue;
            }
            // Relative gaps, so that a point with both losses huge does not dominate.
            let rel = if gap.is_finite() {
                gap / la.abs().max(lb.abs()).max(1e-12)
            } else if la > lb {
                1.0
            } else {
                -1.0
            };
            let point = Point {
                weights,
                loss_a: la,
                loss_b: lb,
            };
            if rel > 1e-9 && best_a.as_ref().is_none_or(|(g, _)| rel > *g) {
                best_a = Some((rel, point.clone()));
            }
            if rel < -1e-9 && best_b.as_ref().is_none_or(|(g, _)| rel < *g) {
                best_b = Some((rel, point));
            }
        }
        if let (Some((_, a_greater)), Some((_, b_greater))) = (best_a, best_b) {
            return Some(Witness {
                a_greater,
                b_greater,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(spec: &str) -> Structure {
        Structure::parse(spec).unwrap()
    }

    #[test]
    fn equal_losses_with_different_formulas() {
        // (Mw ∧ Ml, ¬Mw ∧ Ml) has CE's ratio w / (1 - w).
        let a = s("P = Mw; P_C = Ml");
        let ce = s("P = Mw");
        assert_eq!(compare(&a, &ce).relation, Relation::Equal);
        assert_eq!(a.reduced(), ce);
        assert_ne!(a, ce);
    }

    #[test]
    fn ce_and_cpo_are_incomparable() {
        let ce = s("P = Mw");
        let cpo = s("P = Ml -> Mw; P_C = Mw | Ml; P_A = Mw & Ml");
        let c = compare(&ce, &cpo);
        assert_eq!(c.relation, Relation::Incomparable);
        let w = c.witness.unwrap();
        assert!(w.a_greater.loss_a > w.a_greater.loss_b);
        assert!(w.b_greater.loss_a < w.b_greater.loss_b);
        // CE ≥ CPO exactly where w + l ≤ 1.
        let sum = |p: &Point| p.weights.iter().map(|(_, v)| v).sum::<f64>();
        assert!(sum(&w.a_greater) <= 1.0);
        assert!(sum(&w.b_greater) >= 1.0);
    }
}
