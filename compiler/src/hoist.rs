//! Hoisting for the compiled backends: a reduction that does not depend on some of the indices
//! around it is computed once per value of the indices it does use, as its own definition,
//! instead of once per point of the enclosing loops (`max(count[b: B](), 1)` inside a
//! per-element gradient becomes one scalar). Only reductions whose reads are all indexed by
//! plain index variables move: those cannot go out of range, so evaluating them where the
//! original would not (outside a filter) is harmless. Contractions (`sum[k](a[i, k] * b[k, j])`
//! up to elementwise factors on each side, see `crate::contraction`) become definitions too,
//! with each side a matrix of its own, so a backend can hand them to a GEMM routine and the
//! same product is computed once however often the gradient repeats it. The result is
//! equivalent IR.

use crate::contraction::{free_vars, split_product};
use crate::ir::{BinOp, Def, DefKind, Expr, IndexVar, Loss, Tensor, VarId};
use std::collections::HashMap;

/// `loss` with invariant reductions hoisted into definitions of their own.
pub fn hoist(loss: &Loss) -> Loss {
    let mut h = Hoister {
        out: loss.clone(),
        defs: vec![],
        map: HashMap::new(),
        count: 0,
        hoisted: vec![],
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
    /// The hoisted definitions so far, with their index variables.
    hoisted: Vec<(usize, Vec<VarId>)>,
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
            Expr::Read {
                tensor: Tensor::Def(d),
                indices,
            } => Expr::Read {
                tensor: Tensor::Def(self.map[d]),
                indices: indices.iter().map(|i| self.rewrite(i, scope)).collect(),
            },
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
                let movable = free.iter().all(|v| scope.contains(v)) && reads_in_range(&reduced);
                if movable && free.len() < scope.len() {
                    self.lift(reduced, free.into_iter().collect())
                } else if let Some(p) = split_product(&reduced).filter(|_| movable) {
                    self.lift_contraction(p)
                } else {
                    reduced
                }
            }
            e => e.map_children(|c| self.rewrite(c, scope)),
        }
    }

    /// A contraction `sum[k](left * right)` as the read of a definition `c[i, j]` whose body
    /// is a plain product of two matrices, each side made a definition of its own unless it
    /// already is a matrix read by `(i, k)` / `(k, j)`: the form `contraction::contraction`
    /// recognises, so a backend can use a GEMM routine.
    fn lift_contraction(&mut self, p: crate::contraction::Product) -> Expr {
        let mut side = |e: Expr, vars: [VarId; 2]| -> Expr {
            let plain = matches!(&e, Expr::Read { indices, .. }
                if indices.len() == 2
                    && indices.iter().all(|x| matches!(x, Expr::Index(v) if vars.contains(v)))
                    && indices[0] != indices[1]);
            if plain {
                e
            } else {
                self.lift(e, vars.to_vec())
            }
        };
        let left = side(p.left, [p.i, p.k]);
        let right = side(p.right, [p.k, p.j]);
        let product = Expr::Reduce {
            op: crate::ir::Reducer::Sum,
            vars: vec![p.k],
            filter: None,
            body: Some(Box::new(Expr::Binary(
                BinOp::Mul,
                Box::new(left),
                Box::new(right),
            ))),
        };
        self.lift(product, vec![p.i, p.j])
    }

    /// Makes `e` (free in `free`) a definition over `free`, in that order, and returns its read.
    fn lift(&mut self, e: Expr, free: Vec<VarId>) -> Expr {
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
        // The same reduction hoisted before (up to the names of its variables) is reused.
        let dims: Vec<usize> = indices.iter().map(|&v| self.out.vars[v].dim).collect();
        for &(id, ref earlier_indices) in &self.hoisted {
            let earlier = &self.defs[id];
            let same_dims = earlier_indices
                .iter()
                .map(|&v| self.out.vars[v].dim)
                .eq(dims.iter().copied());
            let mut pairs: HashMap<VarId, VarId> = indices
                .iter()
                .copied()
                .zip(earlier_indices.iter().copied())
                .collect();
            if same_dims && alpha_eq(&body, &earlier.body, &mut pairs, &self.out.vars) {
                return Expr::Read {
                    tensor: Tensor::Def(id),
                    indices: free.iter().map(|&v| Expr::Index(v)).collect(),
                };
            }
        }
        self.count += 1;
        let mut name = format!("hoisted{}", self.count);
        while self.out.inputs.iter().any(|i| i.name == name)
            || self.defs.iter().any(|d| d.name == name)
        {
            name.push('_');
        }
        let dtype = self.out.type_of(&body);
        let id = self.defs.len();
        self.hoisted.push((id, indices.clone()));
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

/// True when `a` and `b` are the same expression up to the names of their variables: `pairs`
/// maps variables of `a` to those of `b` (the free ones on entry; binders are added as met).
fn alpha_eq(a: &Expr, b: &Expr, pairs: &mut HashMap<VarId, VarId>, vars: &[IndexVar]) -> bool {
    match (a, b) {
        (Expr::Index(x), Expr::Index(y)) => pairs.get(x).map_or(x == y, |m| m == y),
        (Expr::Float(x), Expr::Float(y)) => x.to_bits() == y.to_bits(),
        (Expr::Int(x), Expr::Int(y)) => x == y,
        (Expr::Bool(x), Expr::Bool(y)) => x == y,
        (Expr::Hyper(x), Expr::Hyper(y)) => x == y,
        (
            Expr::Read {
                tensor: t,
                indices: i,
            },
            Expr::Read {
                tensor: u,
                indices: j,
            },
        ) => {
            t == u
                && i.len() == j.len()
                && i.iter().zip(j).all(|(x, y)| alpha_eq(x, y, pairs, vars))
        }
        (Expr::Unary(o, x), Expr::Unary(p, y)) => o == p && alpha_eq(x, y, pairs, vars),
        (Expr::Binary(o, x1, x2), Expr::Binary(p, y1, y2)) => {
            o == p && alpha_eq(x1, y1, pairs, vars) && alpha_eq(x2, y2, pairs, vars)
        }
        (Expr::Call(f, xs), Expr::Call(g, ys)) => {
            f == g
                && xs.len() == ys.len()
                && xs.iter().zip(ys).all(|(x, y)| alpha_eq(x, y, pairs, vars))
        }
        (Expr::Select(c, x1, x2), Expr::Select(d, y1, y2)) => {
            alpha_eq(c, d, pairs, vars)
                && alpha_eq(x1, y1, pairs, vars)
                && alpha_eq(x2, y2, pairs, vars)
        }
        (
            Expr::Reduce {
                op: o,
                vars: v,
                filter: f,
                body: b,
            },
            Expr::Reduce {
                op: p,
                vars: w,
                filter: g,
                body: c,
            },
        ) => {
            // Binders pair up in order, and must range over the same dimensions.
            if o != p
                || v.len() != w.len()
                || v.iter().zip(w).any(|(x, y)| vars[*x].dim != vars[*y].dim)
            {
                return false;
            }
            pairs.extend(v.iter().copied().zip(w.iter().copied()));
            let same_filter = match (f, g) {
                (Some(f), Some(g)) => alpha_eq(f, g, pairs, vars),
                (None, None) => true,
                _ => false,
            };
            let same_body = match (b, c) {
                (Some(b), Some(c)) => alpha_eq(b, c, pairs, vars),
                (None, None) => true,
                _ => false,
            };
            same_filter && same_body
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted_names(source: &str) -> Vec<String> {
        let loss = crate::check_source(source).unwrap().losses.remove(0);
        hoist(&loss)
            .defs
            .iter()
            .map(|d| d.name.clone())
            .filter(|n| n.starts_with("hoisted"))
            .collect()
    }

    #[test]
    fn equal_reductions_are_hoisted_once_and_different_ranges_are_not_merged() {
        // count[j: B]() twice: one hoisted definition; count over C is another.
        let names = hoisted_names(
            "loss l(x: [B], y: [C]) {
                let a[i] = x[i] / count[j: B]()
                let b[i] = x[i] * count[k: B]() + count[c: C]()
                sum[i](a[i] + b[i])
            }",
        );
        assert_eq!(names, ["hoisted1", "hoisted2"]);
    }
}
