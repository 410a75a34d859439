//! Which inputs of a loss hold the preference atoms' log-weights.
//!
//! By default the inputs named `policy_chosen_logps` (`Mw`), `policy_rejected_logps` (`Ml`),
//! `reference_chosen_logps` (`Rw`) and `reference_rejected_logps` (`Rl`). A loss with other
//! names says which is which in a line of its doc comment:
//!
//! ```text
//! /// @atoms Mw = chosen, Ml = rejected, Rw = ref_chosen, Rl = ref_rejected
//! ```
//!
//! Each atom named there is read from that input, and only those (the default names are then
//! not used). An atom's input is a float log-probability, one per example (`[B]`) or a
//! scalar (`[]`).

use super::LogicError;
use super::formula::Atom;
use crate::ir::{DType, InputId, Loss};

/// The input holding each atom, indexed by [`Atom::index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atoms {
    /// The input of each atom, if the loss has one.
    pub inputs: [Option<InputId>; 4],
    /// True when the loss named them with `@atoms`.
    pub explicit: bool,
}

impl Atoms {
    /// The atom an input holds.
    pub fn atom_of(&self, input: InputId) -> Option<Atom> {
        Atom::ALL
            .into_iter()
            .find(|a| self.inputs[a.index()] == Some(input))
    }

    /// The name of an atom's input.
    pub fn input_name<'l>(&self, loss: &'l Loss, a: Atom) -> Option<&'l str> {
        self.inputs[a.index()].map(|i| loss.inputs[i].name.as_str())
    }

    /// `Mw = policy_chosen_logps, Ml = policy_rejected_logps`.
    pub fn describe(&self, loss: &Loss) -> String {
        Atom::ALL
            .into_iter()
            .filter_map(|a| {
                self.input_name(loss, a)
                    .map(|n| format!("{} = {n}", a.name()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `@atoms` line of a doc comment, if any (the text after `@atoms`).
fn attribute(doc: &str) -> Result<Option<&str>, LogicError> {
    let mut found = None;
    for line in doc.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("@atoms") {
            if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                continue;
            }
            if found.is_some() {
                return Err(LogicError(
                    "the doc comment has two `@atoms` lines: name every atom in one".into(),
                ));
            }
            found = Some(rest.trim());
        }
    }
    Ok(found)
}

/// Finds the atoms of a loss: from its `@atoms` line, else by the default input names.
pub fn atoms(loss: &Loss) -> Result<Atoms, LogicError> {
    let mut inputs = [None; 4];
    let explicit = match attribute(&loss.doc)? {
        Some(list) => {
            if list.is_empty() {
                return Err(LogicError(
                    "`@atoms` names no atom: write `/// @atoms Mw = INPUT, Ml = INPUT` (and Rw, Rl for a reference model)".into(),
                ));
            }
            for item in list.split(',') {
                let Some((atom, input)) = item.split_once('=') else {
                    return Err(LogicError(format!(
                        "`@atoms`: expected `ATOM = INPUT`, found `{}`",
                        item.trim()
                    )));
                };
                let (atom, input) = (atom.trim(), input.trim());
                let Some(a) = Atom::from_name(atom) else {
                    return Err(LogicError(format!(
                        "`@atoms`: unknown atom `{atom}` (the atoms are Mw, Ml, Rw, Rl)"
                    )));
                };
                let Some((id, _)) = loss.input(input) else {
                    let names: Vec<&str> = loss.inputs.iter().map(|i| i.name.as_str()).collect();
                    return Err(LogicError(format!(
                        "`@atoms`: loss `{}` has no input `{input}` (its inputs: {})",
                        loss.name,
                        names.join(", ")
                    )));
                };
                if inputs[a.index()].is_some() {
                    return Err(LogicError(format!("`@atoms`: {atom} is named twice")));
                }
                if let Some(other) = Atom::ALL
                    .into_iter()
                    .find(|b| inputs[b.index()] == Some(id))
                {
                    return Err(LogicError(format!(
                        "`@atoms`: input `{input}` is named for both {} and {atom}",
                        other.name()
                    )));
                }
                inputs[a.index()] = Some(id);
            }
            true
        }
        None => {
            for a in Atom::ALL {
                inputs[a.index()] = loss.input(a.default_input()).map(|(id, _)| id);
            }
            false
        }
    };
    if inputs.iter().all(Option::is_none) {
        return Err(LogicError(format!(
            "loss `{}` has no preference atoms: none of its inputs is named policy_chosen_logps, policy_rejected_logps, reference_chosen_logps or reference_rejected_logps, and its doc comment has no `@atoms` line (e.g. `/// @atoms Mw = chosen, Ml = rejected`)",
            loss.name
        )));
    }
    for a in Atom::ALL {
        let Some(id) = inputs[a.index()] else {
            continue;
        };
        let input = &loss.inputs[id];
        if input.dtype != DType::Float || input.shape.len() > 1 {
            let dims: Vec<&str> = input.shape.iter().map(|&d| loss.dims[d].as_str()).collect();
            let ty = if input.dtype == DType::Float {
                ""
            } else {
                input.dtype.name()
            };
            return Err(LogicError(format!(
                "input `{}` ({}) has type {ty}[{}]: an atom's input holds one float log-probability per example ([B]) or is a float scalar ([])",
                input.name,
                a.name(),
                dims.join(", ")
            )));
        }
    }
    Ok(Atoms { inputs, explicit })
}
