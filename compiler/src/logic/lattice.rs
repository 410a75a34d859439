//! The loss lattice of Richardson et al. (dpa_logic.md §4.3, §4.4): the named single-model
//! structures, their reference-model liftings, and the order between them, computed with
//! [`compare`] (the arrows are its covering relation, not a transcription of the figure).

use super::compare::{Relation, compare};
use super::formula::Atom;
use super::structure::Structure;
use super::worlds::BoolFn;
use std::fmt::Write;

/// A named node: the paper's name, its structure, and whether the loss predates the paper.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The paper's name (`CEUnl`, `cCPO`, ...).
    pub name: &'static str,
    /// Its structure (lifted in the reference lattice).
    pub structure: Structure,
    /// True for the losses already in the literature (CE, CEUnl, CPO, ORPO).
    pub literature: bool,
    /// Other losses with this structure (the CLI fills in the stdlib's), for display.
    pub known: Vec<String>,
}

/// The lattice: nodes and the arrows `a → b` of the covering relation of `⊑` (`a` is more
/// constrained than `b`, and nothing lies strictly between them).
#[derive(Debug, Clone, PartialEq)]
pub struct Lattice {
    /// True for the lattice with a reference model.
    pub reference: bool,
    /// The nodes, in the paper's order.
    pub nodes: Vec<Node>,
    /// Arrows, as indices into `nodes`.
    pub edges: Vec<(usize, usize)>,
}

/// `(name, ✓, ✗, in the literature)` over `(Mw, Ml)`: dpa_logic.md §4.3's table.
const SINGLE: [(&str, &[&str], &[&str], bool); 12] = [
    ("CEUnl", &["TF"], &["TT", "FT", "FF"], true),
    ("sCE", &["TT", "TF"], &["TT", "FT", "FF"], false),
    ("CE", &["TT", "TF"], &["FT", "FF"], true),
    ("l20", &["TF", "FF"], &["TT", "FT", "FF"], false),
    ("cUNL", &["TF"], &["TT", "FT"], false),
    ("fUnl", &["TF", "FF"], &["TT", "FT"], false),
    ("ORPO", &["TF"], &["FT"], true),
    ("CPO", &["TT", "TF"], &["TT", "FT"], true),
    ("cCPO", &["TT", "TF"], &["FT"], false),
    ("qfUnl", &["TF", "FF"], &["FT", "FF"], false),
    ("cfUnl", &["TF", "FF"], &["FT"], false),
    ("unCPO", &["TT", "TF", "FF"], &["FT"], false),
];

/// The extra nodes of the reference lattice (§4.4), before lifting.
const REFERENCE_EXTRA: [(&str, &[&str], &[&str], bool); 4] = [
    ("l3", &["TF"], &["FT", "FF"], false),
    ("l14", &["TT", "TF", "FF"], &["TT", "FT"], false),
    ("bCPO", &["TT", "TF", "FF"], &["FT", "FF"], false),
    ("l5", &["TT", "TF", "FF"], &["TT", "FT", "FF"], false),
];

/// The arrows drawn in the paper's single-model lattice (§4.3).
pub const PAPER_ARROWS: [(&str, &str); 18] = [
    ("CEUnl", "l20"),
    ("CEUnl", "cUNL"),
    ("CEUnl", "sCE"),
    ("l20", "fUnl"),
    ("l20", "qfUnl"),
    ("cUNL", "fUnl"),
    ("cUNL", "ORPO"),
    ("cUNL", "CPO"),
    ("sCE", "CPO"),
    ("sCE", "CE"),
    ("CE", "cCPO"),
    ("ORPO", "cfUnl"),
    ("ORPO", "cCPO"),
    ("CPO", "cCPO"),
    ("fUnl", "cfUnl"),
    ("qfUnl", "cfUnl"),
    ("cfUnl", "unCPO"),
    ("cCPO", "unCPO"),
];

/// The further arrows of the reference lattice (§4.4).
pub const PAPER_REFERENCE_ARROWS: [(&str, &str); 12] = [
    ("CEUnl", "l3"),
    ("l3", "CE"),
    ("l3", "ORPO"),
    ("l3", "qfUnl"),
    ("qfUnl", "bCPO"),
    ("bCPO", "unCPO"),
    ("CPO", "l14"),
    ("l14", "unCPO"),
    ("sCE", "l5"),
    ("l20", "l5"),
    ("l5", "l14"),
    ("l5", "bCPO"),
];

const PAIR: [Atom; 2] = [Atom::Mw, Atom::Ml];

fn make((name, win, lose, literature): (&'static str, &[&str], &[&str], bool)) -> Node {
    let set = |w: &[&str]| BoolFn::from_world_names(&PAIR, w).expect("well-formed table");
    Node {
        name,
        structure: Structure::new(set(win), set(lose)),
        literature,
        known: vec![],
    }
}

/// The single-model node called `name` (case-insensitively), e.g. `cCPO`.
pub fn node(name: &str) -> Option<Node> {
    SINGLE
        .iter()
        .chain(REFERENCE_EXTRA.iter())
        .find(|n| n.0 == name)
        .or_else(|| {
            SINGLE
                .iter()
                .chain(REFERENCE_EXTRA.iter())
                .find(|n| n.0.eq_ignore_ascii_case(name))
        })
        .map(|n| make(*n))
}

/// The names of every node, single-model first.
pub fn node_names() -> Vec<&'static str> {
    SINGLE
        .iter()
        .chain(REFERENCE_EXTRA.iter())
        .map(|n| n.0)
        .collect()
}

/// The single-model lattice of §4.3, or (with `reference`) the lifted lattice of §4.4 with
/// its four extra nodes.
pub fn lattice(reference: bool) -> Lattice {
    let mut nodes: Vec<Node> = SINGLE.iter().map(|n| make(*n)).collect();
    if reference {
        nodes.extend(REFERENCE_EXTRA.iter().map(|n| make(*n)));
        for n in &mut nodes {
            n.structure = n.structure.lift();
        }
    }
    let k = nodes.len();
    let mut le = vec![vec![false; k]; k];
    for i in 0..k {
        for j in 0..k {
            le[i][j] = i != j
                && compare(&nodes[i].structure, &nodes[j].structure).relation == Relation::Le;
        }
    }
    let mut edges = vec![];
    for i in 0..k {
        for j in 0..k {
            if le[i][j] && !(0..k).any(|m| le[i][m] && le[m][j]) {
                edges.push((i, j));
            }
        }
    }
    Lattice {
        reference,
        nodes,
        edges,
    }
}

impl Lattice {
    /// The node called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The lattice as a table of nodes and a list of arrows.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} loss lattice (Richardson et al. 2025, dpa_logic.md {}); a -> b: a is more constrained than b (a ⊑ b, so loss a ≥ loss b everywhere).",
            if self.reference {
                "Reference-model"
            } else {
                "Single-model"
            },
            if self.reference { "§4.4" } else { "§4.3" }
        );
        out.push('\n');
        let rows: Vec<[String; 5]> = self
            .nodes
            .iter()
            .map(|n| {
                let s = &n.structure;
                let mut known = vec![];
                if n.literature {
                    known.push("(literature)".to_string());
                }
                known.extend(n.known.iter().cloned());
                [
                    n.name.to_string(),
                    if self.reference {
                        s.formulas().p.to_string()
                    } else {
                        format!("{} / {}", s.worlds_text(s.win), s.worlds_text(s.lose))
                    },
                    s.ratio_text(),
                    if self.reference {
                        String::new()
                    } else {
                        s.formulas().p.to_string()
                    },
                    known.join(" "),
                ]
            })
            .collect();
        let header = if self.reference {
            ["node", "P", "ratio", "", "known"]
        } else {
            ["node", "✓ / ✗ over (Mw, Ml)", "ratio", "P", "known"]
        };
        let mut width = [0usize; 5];
        for r in rows
            .iter()
            .map(|r| r.each_ref().map(|s| s.as_str()))
            .chain([header])
        {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                if w == 0 {
                    continue;
                }
                s.push_str(c);
                if i < 4 {
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(header));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r.each_ref().map(|s| s.as_str())));
        }
        out.push_str("\narrows:\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let targets: Vec<&str> = self
                .edges
                .iter()
                .filter(|e| e.0 == i)
                .map(|e| self.nodes[e.1].name)
                .collect();
            if !targets.is_empty() {
                let _ = writeln!(out, "  {} -> {}", n.name, targets.join(", "));
            }
        }
        out
    }

    /// The lattice as a Graphviz digraph, most constrained at the top.
    pub fn dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "digraph {} {{",
            if self.reference {
                "reference_lattice"
            } else {
                "single_model_lattice"
            }
        );
        out.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n");
        for n in &self.nodes {
            let mut label = format!("{}\\n{}", n.name, n.structure.ratio_text());
            if !n.known.is_empty() {
                label.push_str(&format!("\\n({})", n.known.join(", ")));
            }
            let style = if n.literature { ", style=bold" } else { "" };
            let _ = writeln!(out, "  \"{}\" [label=\"{label}\"{style}];", n.name);
        }
        for (a, b) in &self.edges {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                self.nodes[*a].name, self.nodes[*b].name
            );
        }
        out.push_str("}\n");
        out
    }
}
