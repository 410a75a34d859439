//! Hoisting for the compiled backends: a reduction that does not depend on some of the indices
//! around it is computed once per value of the indices it does use, as its own definition,
//! instead of once per point of the enclosing loops (`max(count[b: B](), 1)` inside a
//! per-element gradient becomes one scalar). Only reductions whose reads are all indexed by
//! plain index variables move: those cannot go out of range, so evaluating them where the
//! original would not (outside a filter) is harmless. The result is equivalent IR.

use crate::ir::{Def, DefKind, Expr, IndexVar, Loss, Tensor, VarId};
use std::collections::{BTreeSet, HashMap};

/// `loss` with invariant reductions hoisted into definitions of their own.
pub fn hoist(loss: &Loss) -> Loss {
    let mut h = Hoister {
        out: loss.clone(),
        defs: vec![],
        map: HashMap::new(),
        count: 0,
    };
    h.out.defs.clear();
    for (old, def) in loss.defs.iter().enumerate() {
        let scope: Vec<VarId> = def.indices.clone();
        let body = h.rewrite(&def.body, &scope);
        h.map.insert(old, h.defs.len());
        h.defs.push(Def {
            body,
            ..def.clone()
        });
    }
    let result = h.rewrite(&loss.result, &[]);
    h.out.result = result;
    h.out.defs = h.defs;
    h.out
}

struct Hoister {
    out: Loss,
    defs: Vec<Def>,
    /// Old definition id → id in `defs`.
    map: HashMap<usize, usize>,
    count: usize,
}

/// The index variables `e` uses without binding them.
fn free_vars(e: &Expr) -> BTreeSet<VarId> {
    let mut free = BTreeSet::new();
    let mut bound = BTreeSet::new();
    e.visit(&mut |x| match x {
        Expr::Index(v) => {
            free.insert(*v);
        }
        Expr::Reduce { vars, .. } => bound.extend(vars.iter().copied()),
        _ => {}
    });
    free.difference(&bound).copied().collect()
}

/// True when every read in `e` is indexed by index variables only (it cannot go out of range).
fn reads_in_range(e: &Expr) -> bool {
    !e.any(&mut |x| matches!(x, Expr::Read { indices, .. } if indices.iter().any(|i| !matches!(i, Expr::Index(_)))))
}

impl Hoister {
    /// Rewrites `e` (whose enclosing indices are `scope`), remapping definition reads and
    /// hoisting reductions that ignore some of `scope`.
    fn rewrite(&mut self, e: &Expr, scope: &[VarId]) -> Expr {
        match e {
            Expr::Read { tensor, indices } => Expr::Read {
                tensor: match tensor {
                    Tensor::Def(d) => Tensor::Def(self.map[d]),
                    t => *t,
                },
                indices: indices.iter().map(|i| self.rewrite(i, scope)).collect(),
            },
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {
                e.clone()
            }
            Expr::Unary(op, a) => Expr::Unary(*op, Box::new(self.rewrite(a, scope))),
            Expr::Binary(op, a, b) => Expr::Binary(
                *op,
                Box::new(self.rewrite(a, scope)),
                Box::new(self.rewrite(b, scope)),
            ),
            Expr::Call(f, args) => {
                Expr::Call(*f, args.iter().map(|a| self.rewrite(a, scope)).collect())
            }
            Expr::Select(c, a, b) => Expr::Select(
                Box::new(self.rewrite(c, scope)),
                Box::new(self.rewrite(a, scope)),
                Box::new(self.rewrite(b, scope)),
            ),
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => {
                let mut inner: Vec<VarId> = scope.to_vec();
                inner.extend(vars);
                let reduced = Expr::Reduce {
                    op: *op,
                    vars: vars.clone(),
                    filter: filter.as_ref().map(|f| Box::new(self.rewrite(f, &inner))),
                    body: body.as_ref().map(|b| Box::new(self.rewrite(b, &inner))),
                };
                let free = free_vars(&reduced);
                if free.len() < scope.len()
                    && free.iter().all(|v| scope.contains(v))
                    && reads_in_range(&reduced)
                {
                    self.lift(reduced, free)
                } else {
                    reduced
                }
            }
        }
    }

    /// Makes `e` (free in `free`) a definition over `free` and returns its read.
    fn lift(&mut self, e: Expr, free: BTreeSet<VarId>) -> Expr {
        let mut rename = HashMap::new();
        let mut indices = vec![];
        for &v in &free {
            let var = self.out.vars[v].clone();
            let n = self.out.vars.len();
            self.out.vars.push(IndexVar {
                name: format!("{}_h{}", var.name, self.count),
                dim: var.dim,
            });
            rename.insert(v, n);
            indices.push(n);
        }
        let body = e.rename_vars(&rename);
        self.count += 1;
        let mut name = format!("hoisted{}", self.count);
        while self.out.inputs.iter().any(|i| i.name == name)
            || self.defs.iter().any(|d| d.name == name)
        {
            name.push('_');
        }
        let dtype = self.out.type_of(&body);
        let id = self.defs.len();
        self.defs.push(Def {
            name,
            kind: DefKind::Let,
            indices,
            dtype,
            body,
        });
        Expr::Read {
            tensor: Tensor::Def(id),
            indices: free.iter().map(|&v| Expr::Index(v)).collect(),
        }
    }
}
