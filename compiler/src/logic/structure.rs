//! Preference structures `(P, P_C, P_A)` (dpa_logic.md §1.4) and their canonical form, the
//! pair of world sets `(✓, ✗)`:
//!
//! ```text
//! ✓ = P ∧ P_C        ✗ = (¬P ∧ P_C) ∨ P_A
//! P = ✗ → ✓          P_C = ✓ ∨ ✗          P_A = ✓ ∧ ✗
//! ```
//!
//! `P` is determined only on `P_C`; the `P` printed is the representative that holds outside
//! `P_C` (`✗ → ✓`), which is what the paper calls a loss's semantic region. A missing `P_C`
//! means `true` (no conditioning), a missing `P_A` means `false`.

use super::LogicError;
use super::compare::Ratio;
use super::formula::{Atom, Formula};
use super::shortest::shortest;
use super::worlds::{BoolFn, wmc};
use std::fmt;

/// The atoms a structure is over: the tuned model only, or with the reference model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// `Mw, Ml`: 4 worlds, 256 structures.
    Single,
    /// `Mw, Ml, Rw, Rl`: 16 worlds.
    Reference,
}

impl Space {
    /// Its atoms, in world-bit order.
    pub fn atoms(self) -> &'static [Atom] {
        match self {
            Space::Single => &Atom::ALL[..2],
            Space::Reference => &Atom::ALL,
        }
    }

    /// The larger of two spaces.
    pub fn join(self, o: Space) -> Space {
        self.max(o)
    }
}

/// A preference structure in canonical form: the winning and losing worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Structure {
    /// `✓ = P ∧ P_C`: the worlds counted in the numerator of the core ratio.
    pub win: BoolFn,
    /// `✗ = (¬P ∧ P_C) ∨ P_A`: the worlds counted in the denominator.
    pub lose: BoolFn,
}

/// A structure's three formulas, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formulas {
    /// The core formula `P` (the representative that holds outside `P_C`).
    pub p: Formula,
    /// The conditioning constraint; `None` when it is `true` (no conditioning).
    pub pc: Option<Formula>,
    /// The additional constraint; `None` when it is `false`.
    pub pa: Option<Formula>,
}

impl Structure {
    /// The structure with these winning and losing worlds.
    pub fn new(win: BoolFn, lose: BoolFn) -> Structure {
        Structure { win, lose }
    }

    /// The structure of `(P, P_C, P_A)`. `P_A` must entail `P ∧ P_C`: its worlds are the ones
    /// counted on both sides.
    pub fn from_formulas(
        p: &Formula,
        pc: Option<&Formula>,
        pa: Option<&Formula>,
    ) -> Result<Structure, LogicError> {
        let p = p.truth();
        let pc = pc.map_or(BoolFn::TRUE, Formula::truth);
        let pa = pa.map_or(BoolFn::FALSE, Formula::truth);
        let win = p.and(pc);
        if !pa.entails(win) {
            let space = Structure::new(win, pa).space();
            let outside: Vec<String> = pa.and(win.complement()).world_names(space.atoms());
            return Err(LogicError(format!(
                "P_A must entail P & P_C (P_A lists the worlds counted as both winning and losing), but P_A holds in {} where P & P_C does not (worlds over {})",
                outside.join(", "),
                atom_list(space)
            )));
        }
        Ok(Structure::new(win, p.complement().and(pc).or(pa)))
    }

    /// Parses `P = ...; P_C = ...; P_A = ...` (`P_C` and `P_A` optional, in any order).
    pub fn parse(spec: &str) -> Result<Structure, LogicError> {
        let mut p = None;
        let mut pc = None;
        let mut pa = None;
        for part in spec.split(';') {
            if part.trim().is_empty() {
                continue;
            }
            let Some((name, text)) = part.split_once('=') else {
                return Err(LogicError(format!(
                    "expected `NAME = FORMULA` with NAME one of P, P_C, P_A, found `{}`",
                    part.trim()
                )));
            };
            let slot = match name.trim() {
                "P" => &mut p,
                "P_C" => &mut pc,
                "P_A" => &mut pa,
                other => {
                    return Err(LogicError(format!(
                        "unknown component `{other}`: a structure has P, P_C and P_A"
                    )));
                }
            };
            if slot.is_some() {
                return Err(LogicError(format!("{} is given twice", name.trim())));
            }
            let text = text.trim();
            let f = Formula::parse(text).map_err(|e| {
                LogicError(format!(
                    "in {}: {} (column {} of `{text}`)",
                    name.trim(),
                    e.message,
                    e.offset + 1
                ))
            })?;
            *slot = Some(f);
        }
        let Some(p) = p else {
            return Err(LogicError(
                "the structure has no P: write `P = FORMULA; P_C = FORMULA; P_A = FORMULA` (P_C and P_A may be left out)"
                    .into(),
            ));
        };
        Structure::from_formulas(&p, pc.as_ref(), pa.as_ref())
    }

    /// The core formula's canonical representative `✗ → ✓`.
    pub fn p(&self) -> BoolFn {
        self.lose.implies(self.win)
    }

    /// The conditioning constraint `✓ ∨ ✗`.
    pub fn pc(&self) -> BoolFn {
        self.win.or(self.lose)
    }

    /// The additional constraint `✓ ∧ ✗`.
    pub fn pa(&self) -> BoolFn {
        self.win.and(self.lose)
    }

    /// `Reference` when either side depends on `Rw` or `Rl`.
    pub fn space(&self) -> Space {
        let refs = [Atom::Rw, Atom::Rl];
        if refs
            .iter()
            .any(|&a| self.win.depends_on(a) || self.lose.depends_on(a))
        {
            Space::Reference
        } else {
            Space::Single
        }
    }

    /// The three formulas, each the shortest for its worlds.
    pub fn formulas(&self) -> Formulas {
        let pc = self.pc();
        let pa = self.pa();
        Formulas {
            p: shortest(self.p()),
            pc: (pc != BoolFn::TRUE).then(|| shortest(pc)),
            pa: (pa != BoolFn::FALSE).then(|| shortest(pa)),
        }
    }

    /// `P = ...; P_C = ...; P_A = ...`, which [`Structure::parse`] reads back.
    pub fn spec(&self) -> String {
        let f = self.formulas();
        let mut s = format!("P = {}", f.p);
        if let Some(pc) = f.pc {
            s.push_str(&format!("; P_C = {pc}"));
        }
        if let Some(pa) = f.pa {
            s.push_str(&format!("; P_A = {pa}"));
        }
        s
    }

    /// Reference lifting (dpa_logic.md §1.5): dividing the ratio by `r_w / r_l` gives
    /// `(✓ ∧ Rl, ✗ ∧ Rw)`.
    pub fn lift(&self) -> Structure {
        Structure::new(
            self.win.and(BoolFn::atom(Atom::Rl)),
            self.lose.and(BoolFn::atom(Atom::Rw)),
        )
    }

    /// The core ratio `WMC(✓) / WMC(✗)`.
    pub fn ratio(&self) -> Ratio {
        Ratio {
            n: self.win.wmc_poly(),
            d: self.lose.wmc_poly(),
        }
    }

    /// The core ratio as text: `w*(1 - l) / (l*(1 - w))`.
    pub fn ratio_text(&self) -> String {
        let n = wmc(self.win);
        let d = wmc(self.lose);
        let num = match n {
            super::worlds::Wmc::Lit(_, false)
            | super::worlds::Wmc::Compl(_)
            | super::worlds::Wmc::Mix(..) => format!("({n})"),
            _ => n.to_string(),
        };
        let den = match d {
            super::worlds::Wmc::One
            | super::worlds::Wmc::Zero
            | super::worlds::Wmc::Lit(_, true) => d.to_string(),
            _ => format!("({d})"),
        };
        format!("{num} / {den}")
    }

    /// The same loss with common factors of the ratio cancelled (dpa_logic.md §3.4): for
    /// example `(Mw ∧ Ml, ¬Mw ∧ Ml)`, whose ratio `w·l / ((1-w)·l)` is CE's `w / (1-w)`,
    /// reduces to CE's `(Mw, ¬Mw)`.
    pub fn reduced(&self) -> Structure {
        self.ratio().reduce().structure().unwrap_or(*self)
    }

    /// The paper's order (dpa_logic.md §4.1): `self ⊑ o` when `✓_self ⊨ ✓_o` and
    /// `✗_o ⊨ ✗_self` — `self` is more constrained, so its loss is at least `o`'s everywhere.
    pub fn le(&self, o: &Structure) -> bool {
        self.win.entails(o.win) && o.lose.entails(self.lose)
    }

    /// The winning or losing worlds as text: a world list over `(Mw, Ml)` for single-model
    /// structures, the shortest formula otherwise.
    pub fn worlds_text(&self, set: BoolFn) -> String {
        match self.space() {
            Space::Single => format!("{{{}}}", set.world_names(Space::Single.atoms()).join(", ")),
            Space::Reference => shortest(set).to_string(),
        }
    }
}

/// `(Mw, Ml)` or `(Mw, Ml, Rw, Rl)`.
pub fn atom_list(space: Space) -> String {
    let names: Vec<&str> = space.atoms().iter().map(|a| a.name()).collect();
    format!("({})", names.join(", "))
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip() {
        let s = Structure::parse("P = Ml -> Mw; P_C = Mw | Ml; P_A = Mw & Ml").unwrap();
        assert_eq!(s.worlds_text(s.win), "{TT, TF}");
        assert_eq!(s.worlds_text(s.lose), "{TT, FT}");
        assert_eq!(s.ratio_text(), "w / l");
        assert_eq!(Structure::parse(&s.spec()).unwrap(), s);
        let dpo = s.lift();
        assert_eq!(
            dpo.spec(),
            "P = (Ml & Rw) -> (Mw & Rl); P_C = (Mw & Rl) | (Ml & Rw); P_A = Mw & Ml & Rw & Rl"
        );
        assert_eq!(dpo.ratio_text(), "w*r_l / (l*r_w)");
    }

    #[test]
    fn malformed_structures_are_refused() {
        let e = Structure::parse("P = Mw; P_A = Ml").unwrap_err();
        assert!(e.0.contains("P_A must entail"), "{e}");
        let e = Structure::parse("P_C = Mw").unwrap_err();
        assert!(e.0.contains("no P"), "{e}");
        let e = Structure::parse("P = Mw; Q = Ml").unwrap_err();
        assert!(e.0.contains("unknown component `Q`"), "{e}");
        let e = Structure::parse("P = Mw &").unwrap_err();
        assert!(e.0.starts_with("in P:"), "{e}");
    }
}
