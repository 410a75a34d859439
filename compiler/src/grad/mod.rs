//! Reverse-mode differentiation over comprehensions: the gradient of a loss with respect to
//! its float inputs, as more definitions in the same IR.
//!
//! For every definition `t[I]` that depends on a differentiated input, an adjoint definition
//! `d_t[I]` is added (in reverse order), and for every differentiated input `x` a definition
//! `grad_x[..]`. A read `t[e1..en]` inside `u[J] = f(..)` contributes
//! `d_u[J] · ∂f/∂read`, summed over the indices of `u` and of the reductions around the read,
//! under the filters and `if` conditions that guard it. Where an index `e_p` is a plain index
//! variable it is replaced by the adjoint's own index (the sum over it collapses); a literal
//! or gather index becomes the condition `e_p == o_p` instead. Reductions contribute their
//! local derivative: 1 for `sum`, `1/count` for `mean`, `exp(body - lse)` for `logsumexp`,
//! and for `max`/`min` the indicator of the first extremal term. `detach`, conditions and
//! integer values carry no gradient. Non-differentiable points follow PyTorch (see
//! [`partials`]).
//!
//! The result is a [`Loss`] that prints as valid `.loss` source; [`gradient_outputs`] finds
//! its `grad_<input>` definitions again.

mod local;
mod partials;

use crate::fresh::Fresh;
use crate::ir::{BinOp, DType, Def, DefId, DefKind, Expr, InputId, Loss, Tensor, VarId};
use std::collections::HashMap;

/// A request that cannot be differentiated, e.g. `--wrt` naming an int input.
#[derive(Debug, Clone, PartialEq)]
pub struct GradError {
    /// What is wrong, in words.
    pub message: String,
}

impl std::fmt::Display for GradError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GradError {}

/// The float inputs named in `wrt` (all float inputs when `wrt` is empty).
pub fn resolve_wrt(loss: &Loss, wrt: &[String]) -> Result<Vec<InputId>, GradError> {
    if wrt.is_empty() {
        return Ok((0..loss.inputs.len())
            .filter(|&i| loss.inputs[i].dtype == DType::Float)
            .collect());
    }
    let mut ids = vec![];
    for name in wrt.iter().map(|n| n.trim()) {
        match loss.input(name) {
            _ if name.is_empty() => {
                return Err(GradError {
                    message: "--wrt names an empty input".to_string(),
                });
            }
            Some((i, input)) if input.dtype == DType::Float => {
                if !ids.contains(&i) {
                    ids.push(i);
                }
            }
            Some((_, input)) => {
                return Err(GradError {
                    message: format!(
                        "cannot differentiate with respect to `{name}`: it is {} input",
                        input.dtype.with_article()
                    ),
                });
            }
            None => {
                let floats: Vec<&str> = loss
                    .inputs
                    .iter()
                    .filter(|i| i.dtype == DType::Float)
                    .map(|i| i.name.as_str())
                    .collect();
                return Err(GradError {
                    message: format!(
                        "loss `{}` has no input `{name}` (its float inputs: {})",
                        loss.name,
                        floats.join(", ")
                    ),
                });
            }
        }
    }
    Ok(ids)
}

/// The gradient program: `loss` plus adjoint definitions and a `grad_<x>` definition for
/// every input in `wrt`.
pub fn gradient(loss: &Loss, wrt: &[InputId]) -> Loss {
    let mut g = Grad {
        out: loss.clone(),
        fresh: Fresh::new(loss),
        adjoint: HashMap::new(),
    };
    let active = active_defs(loss, wrt);
    for t in (0..loss.defs.len()).rev().filter(|&t| active[t]) {
        let name = g.fresh.def_name(&format!("d_{}", loss.defs[t].name));
        let id = g.differentiate(Tensor::Def(t), &loss.defs[t].indices, name, &active);
        g.adjoint.insert(t, id);
    }
    for &x in wrt {
        let input = &loss.inputs[x];
        let outs: Vec<VarId> = input
            .shape
            .iter()
            .enumerate()
            .map(|(k, &dim)| g.fresh.var(&index_name(loss, dim, k), dim))
            .collect();
        let name = g.fresh.def_name(&format!("grad_{}", input.name));
        g.differentiate_into(Tensor::Input(x), outs, name, &active);
    }
    g.out.vars = g.fresh.vars;
    g.out
}

/// The pair weights of a loss built on a matrix `pairs[i, j]` (a float `let` with two indices
/// over one dimension): `∂L/∂pairs[i, j]` as a definition `pair_weight[i, j]`, after the
/// forward definitions and the adjoints it needs — the General Pair Weighting view of
/// Wang et al. (2019). Returns `None` when the loss does not depend on `pairs`.
pub fn pair_weights(loss: &Loss, pairs: DefId) -> Option<Loss> {
    let all: Vec<InputId> = (0..loss.inputs.len())
        .filter(|&i| loss.inputs[i].dtype == DType::Float)
        .collect();
    // Every definition that depends on some float input and that the loss uses gets an
    // adjoint; the matrix must be one of them.
    let active = active_defs(loss, &all);
    if !active[pairs] {
        return None;
    }
    let mut g = Grad {
        out: loss.clone(),
        fresh: Fresh::new(loss),
        adjoint: HashMap::new(),
    };
    for t in (pairs..loss.defs.len()).rev().filter(|&t| active[t]) {
        let name = if t == pairs {
            g.fresh.def_name("pair_weight")
        } else {
            g.fresh.def_name(&format!("d_{}", loss.defs[t].name))
        };
        let id = g.differentiate(Tensor::Def(t), &loss.defs[t].indices, name, &active);
        g.adjoint.insert(t, id);
    }
    g.out.vars = g.fresh.vars;
    Some(g.out)
}

/// The candidates for [`pair_weights`]: float `let`s with two indices over one dimension,
/// with a definition named `s`, `sim` or `similarity` first.
pub fn pair_matrices(loss: &Loss) -> Vec<DefId> {
    let mut found: Vec<DefId> = (0..loss.defs.len())
        .filter(|&d| {
            let def = &loss.defs[d];
            def.kind == DefKind::Let
                && def.dtype == DType::Float
                && def.indices.len() == 2
                && loss.vars[def.indices[0]].dim == loss.vars[def.indices[1]].dim
        })
        .collect();
    found.sort_by_key(|&d| !matches!(loss.defs[d].name.as_str(), "s" | "sim" | "similarity"));
    found
}

/// The `grad_<input>` definitions of a gradient program, with the input each belongs to.
pub fn gradient_outputs(grad: &Loss) -> Vec<(InputId, DefId)> {
    grad.inputs
        .iter()
        .enumerate()
        .filter_map(|(i, input)| {
            let want = format!("grad_{}", input.name);
            grad.defs
                .iter()
                .position(|d| d.name == want && d.kind == DefKind::Let)
                .map(|d| (i, d))
        })
        .collect()
}

/// A lower-case index name for dimension `dim` (`B` → `b`), falling back to `i<k>`.
fn index_name(loss: &Loss, dim: usize, k: usize) -> String {
    let d = &loss.dims[dim];
    let lower = d.to_ascii_lowercase();
    if lower.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !lower.is_empty() {
        lower
    } else {
        format!("i{k}")
    }
}

/// Which definitions need an adjoint: float `let`s that depend on a differentiated input (read
/// one, or an earlier such definition) and that the loss depends on (metrics do not count).
fn active_defs(loss: &Loss, wrt: &[InputId]) -> Vec<bool> {
    let reads_defs = |e: &Expr, into: &mut Vec<bool>| {
        e.visit(&mut |x| {
            if let Expr::Read {
                tensor: Tensor::Def(d),
                ..
            } = x
            {
                into[*d] = true;
            }
        })
    };
    let mut useful = vec![false; loss.defs.len()];
    reads_defs(&loss.result, &mut useful);
    for d in (0..loss.defs.len()).rev() {
        if useful[d] {
            let body = loss.defs[d].body.clone();
            reads_defs(&body, &mut useful);
        }
    }
    let mut active = vec![false; loss.defs.len()];
    for (d, def) in loss.defs.iter().enumerate() {
        if def.kind != DefKind::Let || def.dtype != DType::Float {
            continue;
        }
        active[d] = useful[d]
            && def.body.any(&mut |e| match e {
                Expr::Read {
                    tensor: Tensor::Input(i),
                    ..
                } => wrt.contains(i),
                Expr::Read {
                    tensor: Tensor::Def(u),
                    ..
                } => active[*u],
                _ => false,
            });
    }
    active
}

/// One contribution to an adjoint: at the read `target[indices]`, `factor` summed over
/// `vars` where every condition in `conds` holds.
struct Term {
    indices: Vec<Expr>,
    factor: Expr,
    vars: Vec<VarId>,
    conds: Vec<Expr>,
}

/// The gradient program under construction.
struct Grad {
    out: Loss,
    fresh: Fresh,
    /// Forward definition → its adjoint definition in `out`.
    adjoint: HashMap<DefId, DefId>,
}

impl Grad {
    /// Adds the adjoint of `target` (whose indices are like `like`) as a definition.
    fn differentiate(
        &mut self,
        target: Tensor,
        like: &[VarId],
        name: String,
        active: &[bool],
    ) -> DefId {
        let outs: Vec<VarId> = like.iter().map(|&v| self.fresh.copy_var(v)).collect();
        self.differentiate_into(target, outs, name, active)
    }

    fn differentiate_into(
        &mut self,
        target: Tensor,
        outs: Vec<VarId>,
        name: String,
        active: &[bool],
    ) -> DefId {
        let mut terms = vec![];
        // The loss itself: its adjoint is 1.
        let result = self.out.result.clone();
        let result = self.fresh.copy(&result, &mut HashMap::new());
        partials::collect(
            &mut self.fresh,
            &result,
            target,
            Expr::Float(1.0),
            &[],
            &[],
            &mut terms,
        );
        // Every later active definition that may read the target.
        let first = match target {
            Tensor::Def(t) => t + 1,
            Tensor::Input(_) => 0,
        };
        for (u, _) in active.iter().enumerate().skip(first).filter(|(_, a)| **a) {
            let def = self.out.defs[u].clone();
            let mut map = HashMap::new();
            let j: Vec<VarId> = def
                .indices
                .iter()
                .map(|&v| {
                    let n = self.fresh.copy_var(v);
                    map.insert(v, n);
                    n
                })
                .collect();
            let body = self.fresh.copy(&def.body, &mut map);
            let at: Vec<Expr> = j.iter().map(|&v| Expr::Index(v)).collect();
            let adj = Expr::Read {
                tensor: Tensor::Def(self.adjoint[&u]),
                indices: at.clone(),
            };
            let value = Expr::Read {
                tensor: Tensor::Def(u),
                indices: at,
            };
            partials::collect_at(
                &mut self.fresh,
                &body,
                Some(&value),
                target,
                adj,
                &j,
                &[],
                &mut terms,
            );
        }
        let body = terms
            .into_iter()
            .map(|t| finish(t, &outs))
            .reduce(|a, b| Expr::Binary(BinOp::Add, Box::new(a), Box::new(b)));
        let id = self.out.defs.len();
        self.out.defs.push(Def {
            name,
            kind: DefKind::Let,
            indices: outs,
            dtype: DType::Float,
            body: body.unwrap_or(Expr::Float(0.0)),
        });
        id
    }
}

/// Turns a contribution into the expression it adds at the adjoint's indices `outs`.
fn finish(term: Term, outs: &[VarId]) -> Expr {
    let mut map: HashMap<VarId, VarId> = HashMap::new();
    let mut vars = term.vars;
    let mut eqs = vec![];
    for (ix, &o) in term.indices.iter().zip(outs) {
        match ix {
            Expr::Index(v) if vars.contains(v) => {
                map.insert(*v, o);
                vars.retain(|x| x != v);
            }
            _ => eqs.push((ix.clone(), o)),
        }
    }
    let mut conds: Vec<Expr> = term.conds.iter().map(|c| c.rename_vars(&map)).collect();
    for (ix, o) in eqs {
        conds.push(Expr::Binary(
            BinOp::Eq,
            Box::new(ix.rename_vars(&map)),
            Box::new(Expr::Index(o)),
        ));
    }
    let factor = term.factor.rename_vars(&map);
    let filter = conds
        .into_iter()
        .reduce(|a, b| Expr::Binary(BinOp::And, Box::new(a), Box::new(b)));
    match (vars.is_empty(), filter) {
        (true, None) => factor,
        (true, Some(c)) => Expr::Select(Box::new(c), Box::new(factor), Box::new(Expr::Float(0.0))),
        (false, filter) => Expr::Reduce {
            op: crate::ir::Reducer::Sum,
            vars,
            filter: filter.map(Box::new),
            body: Some(Box::new(factor)),
        },
    }
}
