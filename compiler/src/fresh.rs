//! Fresh names for a program being built (the gradient program, `crate::softmax`'s shared
//! softmaxes): index variables copied with new ids and unique names, expressions copied with
//! their reduction binders renamed, definition names that do not collide.

use crate::ir::{Expr, IndexVar, Loss, VarId};
use std::collections::{HashMap, HashSet};

/// Allocates variables and names for the program being built.
pub(crate) struct Fresh {
    /// Every variable of the program (the forward ones first).
    pub(crate) vars: Vec<IndexVar>,
    taken: HashSet<String>,
}

impl Fresh {
    pub(crate) fn new(loss: &Loss) -> Fresh {
        let mut taken: HashSet<String> = loss.inputs.iter().map(|i| i.name.clone()).collect();
        taken.extend(loss.hypers.iter().map(|h| h.name.clone()));
        taken.extend(loss.defs.iter().map(|d| d.name.clone()));
        taken.extend(loss.vars.iter().map(|v| v.name.clone()));
        Fresh {
            vars: loss.vars.clone(),
            taken,
        }
    }

    /// A name starting with `base` that is not taken yet; it becomes taken.
    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.taken.contains(&name) || crate::check::is_reserved(&name) {
            name = format!("{base}{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// A definition name like `base`.
    pub(crate) fn def_name(&mut self, base: &str) -> String {
        self.unique(base)
    }

    /// A new variable over `dim`, named like `base`.
    pub(crate) fn var(&mut self, base: &str, dim: usize) -> VarId {
        let name = self.unique(base);
        self.vars.push(IndexVar { name, dim });
        self.vars.len() - 1
    }

    /// A new variable like `v` (same dimension, a name derived from its).
    pub(crate) fn copy_var(&mut self, v: VarId) -> VarId {
        let IndexVar { name, dim } = self.vars[v].clone();
        let base = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string();
        self.var(if base.is_empty() { "i" } else { &base }, dim)
    }

    /// A copy of `e` whose reductions bind new variables; free variables are renamed by `map`
    /// (which also receives the new binders).
    pub(crate) fn copy(&mut self, e: &Expr, map: &mut HashMap<VarId, VarId>) -> Expr {
        match e {
            Expr::Index(v) => Expr::Index(*map.get(v).unwrap_or(v)),
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => {
                let vars = self.copy_vars(vars, map);
                Expr::Reduce {
                    op: *op,
                    vars,
                    filter: filter.as_ref().map(|f| Box::new(self.copy(f, map))),
                    body: body.as_ref().map(|b| Box::new(self.copy(b, map))),
                }
            }
            e => e.map_children(|c| self.copy(c, map)),
        }
    }

    /// New variables like `vars`, recorded in `map`.
    pub(crate) fn copy_vars(
        &mut self,
        vars: &[VarId],
        map: &mut HashMap<VarId, VarId>,
    ) -> Vec<VarId> {
        vars.iter()
            .map(|&v| {
                let n = self.copy_var(v);
                map.insert(v, n);
                n
            })
            .collect()
    }
}
