//! Hoisting for the compiled backends: a reduction that does not depend on some of the indices
//! around it is computed once per value of the indices it does use, as its own definition,
//! instead of once per point of the enclosing loops (`max(count[b: B](), 1)` inside a
//! per-element gradient becomes one scalar). Only reductions whose reads are all indexed by
//! plain index variables move: those cannot go out of range, so evaluating them where the
//! original would not (outside a filter) is harmless. Contractions (`sum[k](a[i, k] * b[k, j])`
//! up to elementwise factors on each side, see `crate::contraction`) become definitions too,
//! with each side a matrix of its own, so a backend can hand them to a GEMM routine and the
//! same product is computed once however often the gradient repeats it. Gathers that ignore
//! some enclosing index (`logits[b, target[b]]` in a loop over classes) move out the same way,
//! when the conditions they sit under allow it. Column sums (`sum[k](x[k, i] ...)` inside a
//! definition over `i`, see `crate::column`) become definitions, which backends run with their
//! loops interchanged. The result is equivalent IR.

use crate::alpha::alpha_eq;
use crate::column::is_column_sum;
use crate::contraction::{free_vars, merge_products, operands, split_product};
use crate::ir::{BinOp, Def, DefKind, Expr, IndexVar, Loss, Reducer, Tensor, VarId};
use std::collections::HashMap;

/// `loss` with invariant reductions hoisted into definitions of their own.
pub fn hoist(loss: &Loss) -> Loss {
    let mut h = Hoister {
        out: loss.clone(),
        defs: vec![],
        map: HashMap::new(),
        count: 0,
        hoisted: vec![],
        gathers: vec![],
        top: std::ptr::null(),
    };
    h.out.defs.clear();
    let outputs: Vec<usize> = crate::grad::gradient_outputs(loss)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    for (old, def) in loss.defs.iter().enumerate() {
        let scope: Vec<VarId> = def.indices.clone();
        h.top = &def.body;
        let body = h.rewrite(&def.body, &scope, &[]);
        // A definition that hoisting left a plain copy of another (`s[i, j] = hoisted1[i, j]`
        // once its product moved out) is read as that one instead: no pass copies it.
        if body != def.body
            && def.kind == DefKind::Let
            && !outputs.contains(&old)
            && let Some(target) = copy_of(&body, &def.indices)
        {
            h.map.insert(old, target);
            continue;
        }
        h.map.insert(old, h.defs.len());
        h.defs.push(Def {
            body,
            ..def.clone()
        });
    }
    let result = h.rewrite(&loss.result, &[], &[]);
    h.out.result = result;
    h.out.defs = h.defs;
    crate::column::read_symmetric_along_rows(&h.out)
}

/// The definition `body` reads when it is exactly that definition at `indices`, in order.
fn copy_of(body: &Expr, indices: &[VarId]) -> Option<usize> {
    match body {
        Expr::Read {
            tensor: Tensor::Def(d),
            indices: read,
        } if read.len() == indices.len()
            && read
                .iter()
                .zip(indices)
                .all(|(r, v)| matches!(r, Expr::Index(u) if u == v)) =>
        {
            Some(*d)
        }
        _ => None,
    }
}

struct Hoister {
    out: Loss,
    defs: Vec<Def>,
    /// Old definition id → id in `defs`.
    map: HashMap<usize, usize>,
    count: usize,
    /// The hoisted definitions so far, with their index variables.
    hoisted: Vec<(usize, Vec<VarId>)>,
    /// Gathers hoisted so far: the read, the conditions it was computed under, its replacement.
    gathers: Vec<(Expr, Vec<Expr>, Expr)>,
    /// The body of the definition being rewritten (a column sum that is a whole body already
    /// is a definition of its own).
    top: *const Expr,
}

/// `guards` followed by `more`.
fn with<const N: usize>(guards: &[Expr], more: [Expr; N]) -> Vec<Expr> {
    guards.iter().cloned().chain(more).collect()
}

/// Appends the conjuncts of `e` (split at `&&`) to `out`.
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Binary(BinOp::And, a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other.clone()),
    }
}

/// The conjunction of `conditions`, `None` for none.
fn all_of(conditions: Vec<Expr>) -> Option<Expr> {
    conditions
        .into_iter()
        .reduce(|a, b| Expr::Binary(BinOp::And, Box::new(a), Box::new(b)))
}

/// True when every read in `e` is indexed by index variables only (it cannot go out of range).
pub(crate) fn reads_in_range(e: &Expr) -> bool {
    !e.any(&mut |x| matches!(x, Expr::Read { indices, .. } if indices.iter().any(|i| !matches!(i, Expr::Index(_)))))
}

impl Hoister {
    /// Rewrites `e` (whose enclosing indices are `scope`, evaluated only where every condition
    /// in `guards` holds), remapping definition reads and hoisting reductions that ignore some
    /// of `scope`.
    fn rewrite(&mut self, e: &Expr, scope: &[VarId], guards: &[Expr]) -> Expr {
        match e {
            Expr::Read { tensor, indices } => {
                let tensor = match tensor {
                    Tensor::Def(d) => Tensor::Def(self.map[d]),
                    input => *input,
                };
                let read = Expr::Read {
                    tensor,
                    indices: indices
                        .iter()
                        .map(|i| self.rewrite(i, scope, guards))
                        .collect(),
                };
                self.hoist_gather(&read, scope, guards).unwrap_or(read)
            }
            Expr::Select(c, a, b) => {
                let c = self.rewrite(c, scope, guards);
                let not_c = Expr::Unary(crate::ir::UnaryOp::Not, Box::new(c.clone()));
                let a = self.rewrite(a, scope, &with(guards, [c.clone()]));
                let b = self.rewrite(b, scope, &with(guards, [not_c]));
                Expr::Select(Box::new(c), Box::new(a), Box::new(b))
            }
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let a = self.rewrite(a, scope, guards);
                let known = if *op == BinOp::And {
                    a.clone()
                } else {
                    Expr::Unary(crate::ir::UnaryOp::Not, Box::new(a.clone()))
                };
                let b = self.rewrite(b, scope, &with(guards, [known]));
                Expr::Binary(*op, Box::new(a), Box::new(b))
            }
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => {
                let mut inner: Vec<VarId> = scope.to_vec();
                inner.extend(vars);
                let filter = filter.as_ref().map(|f| self.rewrite(f, &inner, guards));
                let mut kept = guards.to_vec();
                if let Some(f) = &filter {
                    conjuncts(f, &mut kept);
                }
                // Conditions of the filter that do not depend on the reduction's variables
                // (and cannot go out of range) move out of it as a choice, `op[v | A && B](x)`
                // = `if B then op[v | A](x) else 0`, so that `op[v | A](x)` may be invariant:
                // multi-margin's gradient sums `[c2 | c2 != t[b] && t[b] == c]` for every `c`.
                let (outer, filter) = match filter {
                    Some(f) if matches!(op, Reducer::Sum | Reducer::Count | Reducer::Mean) => {
                        let mut all = vec![];
                        conjuncts(&f, &mut all);
                        let (out, within): (Vec<Expr>, Vec<Expr>) =
                            all.into_iter().partition(|c| {
                                !c.any(&mut |x| matches!(x, Expr::Index(v) if vars.contains(v)))
                                    && reads_in_range(c)
                            });
                        (all_of(out), all_of(within))
                    }
                    f => (None, f),
                };
                let reduced = Expr::Reduce {
                    op: *op,
                    vars: vars.clone(),
                    body: body
                        .as_ref()
                        .map(|b| Box::new(self.rewrite(b, &inner, &kept))),
                    filter: filter.map(Box::new),
                };
                let placed = self.place_reduction(e, reduced, scope, guards);
                match outer {
                    Some(c) => {
                        Expr::Select(Box::new(c), Box::new(placed), Box::new(Expr::Float(0.0)))
                    }
                    None => placed,
                }
            }
            Expr::Binary(BinOp::Add, ..) => self.rewrite_sum(e, scope, guards, false),
            e => e.map_children(|c| self.rewrite(c, scope, guards)),
        }
    }

    /// The rewritten reduction `reduced` (of `e`, in `scope`, under `guards`) hoisted, lifted
    /// as a column sum or a contraction, or read from an earlier definition when it can be
    /// (see [`Self::rewrite`]); itself otherwise.
    fn place_reduction(
        &mut self,
        e: &Expr,
        reduced: Expr,
        scope: &[VarId],
        guards: &[Expr],
    ) -> Expr {
        let free = free_vars(&reduced);
        let movable = free.iter().all(|v| scope.contains(v)) && reads_in_range(&reduced);
        let free: Vec<VarId> = free.into_iter().collect();
        if movable && free.len() < scope.len() {
            self.lift(reduced, free, guards)
        } else if movable
            && scope.len() == 1
            && !std::ptr::eq(e, self.top)
            && is_column_sum(&reduced, scope[0])
        {
            // A column sum, run with its loops interchanged when it is a definition.
            self.lift(reduced, free, guards)
        } else if let Some(p) = split_product(&reduced).filter(|_| movable) {
            self.lift_contraction(p, guards)
        } else if let Some(read) = movable
            .then(|| self.reuse(&reduced, &free, guards))
            .flatten()
        {
            // Not invariant here, but computed already (the loss's own logsumexp,
            // hoisted out of its gradient): read it instead of computing it again.
            read
        } else {
            reduced
        }
    }

    /// [`Self::rewrite`] of a `+` node: unless `inner` (a node inside a chain of `+` already
    /// looked at), two terms of the chain that are contractions with the same right side are
    /// merged into one first (`contraction::merge_products`).
    fn rewrite_sum(&mut self, e: &Expr, scope: &[VarId], guards: &[Expr], inner: bool) -> Expr {
        if !inner && let Some(merged) = self.merged_products(e) {
            return self.rewrite(&merged, scope, guards);
        }
        let Expr::Binary(BinOp::Add, a, b) = e else {
            return self.rewrite(e, scope, guards);
        };
        let mut side = |x: &Expr| match x {
            Expr::Binary(BinOp::Add, ..) => self.rewrite_sum(x, scope, guards, true),
            x => self.rewrite(x, scope, guards),
        };
        let (a, b) = (side(a), side(b));
        Expr::Binary(BinOp::Add, Box::new(a), Box::new(b))
    }

    /// The sum `e` (a tree of `+`) with two of its terms that are contractions with the same
    /// right side merged into one (`contraction::merge_products`), if it has two such.
    fn merged_products(&self, e: &Expr) -> Option<Expr> {
        let mut terms = vec![];
        operands(e, BinOp::Add, &mut terms);
        let sums: Vec<usize> = (0..terms.len())
            .filter(|&t| {
                matches!(
                    terms[t],
                    Expr::Reduce {
                        op: Reducer::Sum,
                        ..
                    }
                )
            })
            .collect();
        let dim_of = |v: VarId| self.out.vars[v].dim;
        for (n, &x) in sums.iter().enumerate() {
            for &y in &sums[n + 1..] {
                if let Some(m) = merge_products(terms[x], terms[y], &dim_of) {
                    let mut rest: Vec<Expr> = vec![m];
                    rest.extend(
                        (0..terms.len())
                            .filter(|&t| t != x && t != y)
                            .map(|t| terms[t].clone()),
                    );
                    return rest
                        .into_iter()
                        .reduce(|a, b| Expr::Binary(BinOp::Add, Box::new(a), Box::new(b)));
                }
            }
        }
        None
    }

    /// The type of `e`, whose definition reads are numbered as in `self.defs`.
    fn type_of(&mut self, e: &Expr) -> crate::ir::DType {
        std::mem::swap(&mut self.out.defs, &mut self.defs);
        let t = self.out.type_of(e);
        std::mem::swap(&mut self.out.defs, &mut self.defs);
        t
    }

    /// True when some index of `read` is not a loop variable of its own dimension: a gather
    /// (or a literal index), checked when evaluated.
    fn is_checked(&self, read: &Expr) -> bool {
        let Expr::Read { tensor, indices } = read else {
            return false;
        };
        let dims: Vec<usize> = match tensor {
            Tensor::Input(i) => self.out.inputs[*i].shape.clone(),
            Tensor::Def(d) => self.defs[*d]
                .indices
                .iter()
                .map(|&v| self.out.vars[v].dim)
                .collect(),
        };
        indices
            .iter()
            .zip(&dims)
            .any(|(i, &dim)| !matches!(i, Expr::Index(v) if self.out.vars[*v].dim == dim))
    }

    /// A gather that ignores some of `scope` (`logits[b, target[b]]` inside a loop over
    /// classes) as the read of a definition over the indices it uses, so the inner loop reads
    /// a plain element instead of checking an index on every term. It moves only when every
    /// condition it sits under is over those indices too (the definition evaluates it under
    /// exactly those conditions, so it can fail only where the original would), or when the
    /// same gather already moved under conditions that hold here.
    fn hoist_gather(&mut self, read: &Expr, scope: &[VarId], guards: &[Expr]) -> Option<Expr> {
        if !self.is_checked(read) || read.any(&mut |x| matches!(x, Expr::Reduce { .. })) {
            return None;
        }
        let free = free_vars(read);
        if free.len() >= scope.len() || !free.iter().all(|v| scope.contains(v)) {
            return None;
        }
        for (earlier, under, replacement) in &self.gathers {
            if earlier == read && under.iter().all(|g| guards.contains(g)) {
                return Some(replacement.clone());
            }
        }
        let capturable = guards.iter().all(|g| {
            reads_in_range(g)
                && !g.any(&mut |x| matches!(x, Expr::Reduce { .. }))
                && free_vars(g).iter().all(|v| free.contains(v))
        });
        if !capturable {
            return None;
        }
        let replacement = self.lift(read.clone(), free.into_iter().collect(), guards);
        self.gathers
            .push((read.clone(), guards.to_vec(), replacement.clone()));
        Some(replacement)
    }

    /// A contraction `sum[k](left * right)` as the read of a definition `c[i, j]` whose body
    /// is a plain product of two matrices, each side made a definition of its own unless it
    /// already is a matrix read by `(i, k)` / `(k, j)`: the form `contraction::contraction`
    /// recognises, so a backend can use a GEMM routine.
    fn lift_contraction(&mut self, p: crate::contraction::Product, guards: &[Expr]) -> Expr {
        let mut side = |e: Expr, vars: [VarId; 2]| -> Expr {
            let plain = matches!(&e, Expr::Read { indices, .. }
                if indices.len() == 2
                    && indices.iter().all(|x| matches!(x, Expr::Index(v) if vars.contains(v)))
                    && indices[0] != indices[1]);
            if plain {
                e
            } else {
                // Stored in the order its reads run in (a transposed side, `d[j, i]` read
                // for row i, is computed contiguously and handed to GEMM transposed).
                let order = if reads_swapped(&e, vars) {
                    [vars[1], vars[0]]
                } else {
                    vars
                };
                self.lift(e, order.to_vec(), guards)
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
        self.lift(product, vec![p.i, p.j], guards)
    }

    /// The read of an earlier hoisted definition computing `e` (free in `free`) under the
    /// same `guards`, if there is one.
    fn reuse(&mut self, e: &Expr, free: &[VarId], guards: &[Expr]) -> Option<Expr> {
        let vars = self.out.vars.len();
        let (body, indices) = self.guarded(e.clone(), free, guards);
        let found = self.earlier(&body, &indices, free);
        // The fresh variables `guarded` made are not used.
        self.out.vars.truncate(vars);
        found
    }

    /// `e` as the body of a definition over `free`: computed only where the `guards` over
    /// `free` alone hold (0 elsewhere), its free variables renamed to fresh index variables,
    /// returned with it.
    fn guarded(&mut self, e: Expr, free: &[VarId], guards: &[Expr]) -> (Expr, Vec<VarId>) {
        let relevant: Vec<Expr> = guards
            .iter()
            .filter(|g| {
                reads_in_range(g)
                    && !g.any(&mut |x| matches!(x, Expr::Reduce { .. }))
                    && free_vars(g).iter().all(|v| free.contains(v))
            })
            .cloned()
            .collect();
        let e = match relevant
            .into_iter()
            .reduce(|a, b| Expr::Binary(BinOp::And, Box::new(a), Box::new(b)))
        {
            Some(guard) => {
                let zero = match self.type_of(&e) {
                    crate::ir::DType::Int => Expr::Int(0),
                    crate::ir::DType::Bool => Expr::Bool(false),
                    crate::ir::DType::Float => Expr::Float(0.0),
                };
                Expr::Select(Box::new(guard), Box::new(e), Box::new(zero))
            }
            None => e,
        };
        let mut rename = HashMap::new();
        let mut indices = vec![];
        for &v in free {
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
        (body, indices)
    }

    /// The read (by `free`) of an earlier hoisted definition whose body is `body` up to the
    /// names of its variables (`indices` being `body`'s free variables).
    fn earlier(&self, body: &Expr, indices: &[VarId], free: &[VarId]) -> Option<Expr> {
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
            if same_dims && alpha_eq(body, &earlier.body, &mut pairs, &self.out.vars, false) {
                return Some(Expr::Read {
                    tensor: Tensor::Def(id),
                    indices: free.iter().map(|&v| Expr::Index(v)).collect(),
                });
            }
        }
        None
    }

    /// Makes `e` (free in `free`) a definition over `free`, in that order, and returns its read.
    /// The definition computes `e` only where the `guards` over `free` alone hold (the only
    /// places it is read), 0 elsewhere: a reduction under `labels[p] == labels[a]` is computed
    /// for the positive pairs, not for every pair.
    fn lift(&mut self, e: Expr, free: Vec<VarId>, guards: &[Expr]) -> Expr {
        let (body, indices) = self.guarded(e, &free, guards);
        // The same reduction hoisted before (up to the names of its variables) is reused.
        if let Some(read) = self.earlier(&body, &indices, &free) {
            return read;
        }
        self.count += 1;
        let mut name = format!("hoisted{}", self.count);
        while self.out.inputs.iter().any(|i| i.name == name)
            || self.defs.iter().any(|d| d.name == name)
        {
            name.push('_');
        }
        let dtype = self.type_of(&body);
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

/// True when `e` reads more matrices by `[vars[1], vars[0]]` than by `vars`.
fn reads_swapped(e: &Expr, vars: [VarId; 2]) -> bool {
    let (mut straight, mut swapped) = (0, 0);
    e.visit(&mut |x| {
        if let Expr::Read { indices, .. } = x {
            match indices[..] {
                [Expr::Index(p), Expr::Index(q)] if [p, q] == vars => straight += 1,
                [Expr::Index(p), Expr::Index(q)] if [q, p] == vars => swapped += 1,
                _ => {}
            }
        }
    });
    swapped > straight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted_names(source: &str) -> Vec<String> {
        let loss = crate::test_loss(source);
        hoist(&loss)
            .defs
            .iter()
            .map(|d| d.name.clone())
            .filter(|n| n.starts_with("hoisted"))
            .collect()
    }

    #[test]
    fn filter_conditions_free_of_the_reduced_variables_move_out_and_the_rest_is_hoisted() {
        // t[b] == c does not depend on c2: the sum becomes a choice around a sum over b only,
        // which is hoisted. A gather in a condition (x[b, t[b]]) moves out once it is hoisted
        // itself (a read at b); a condition on c2 stays.
        let loss = crate::test_loss(
            "loss l(x: [B, C], t: int[B]) {
                let g[b, c: C] = sum[c2 | c2 != t[b] && t[b] == c](x[b, c2])
                let k[b, c: C] = sum[c2 | x[b, t[b]] > 0.0 && c2 == c](x[b, c2])
                sum[b, c](g[b, c] + k[b, c])
            }",
        );
        let out = hoist(&loss);
        let body = |name: &str| {
            let d = out.defs.iter().find(|d| d.name == name).unwrap();
            crate::print::expr(&out, &d.body)
        };
        assert_eq!(body("g"), "if t[b] == c then hoisted1[b] else 0.0");
        assert_eq!(body("hoisted1"), "sum[c2 | c2 != t[b_h0]](x[b_h0, c2])");
        assert_eq!(
            body("k"),
            "if hoisted2[b] > 0.0 then sum[c2 | c2 == c](x[b, c2]) else 0.0"
        );
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

    #[test]
    fn a_definition_hoisting_leaves_a_copy_of_another_is_read_as_that_one() {
        // s[i, j] becomes hoisted1[i, j] once the product moves out; a copy the source wrote
        // (t) stays, and so does a gradient, which the backends return by name.
        let loss = crate::test_loss(
            "loss l(x: [B, D]) {
                let s[i, j] = sum[d](x[i, d] * x[j, d])
                let t[i, j] = s[i, j]
                sum[i, j](t[i, j] * s[i, j])
            }",
        );
        let out = hoist(&loss);
        let names: Vec<&str> = out.defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["hoisted1", "t"]);
        assert_eq!(
            crate::print::expr(&out, &out.defs[1].body),
            "hoisted1[i, j]"
        );
        assert_eq!(
            crate::print::expr(&out, &out.result),
            "sum[i, j](t[i, j] * hoisted1[i, j])"
        );
        // grad_x[i, d] = sum[c](w[i, c] * y[d, c]) becomes a copy of its product, and stays.
        let loss = crate::test_loss(
            "loss l(x: [B, D], y: [D, C], w: [B, C]) {
                sum[i, c](w[i, c] * sum[d](x[i, d] * y[d, c]))
            }",
        );
        let out = hoist(&crate::grad::gradient(&loss, &[0]));
        let grad = out.defs.iter().find(|d| d.name == "grad_x").unwrap();
        assert!(matches!(
            grad.body,
            Expr::Read {
                tensor: Tensor::Def(_),
                ..
            }
        ));
    }

    #[test]
    fn a_reduction_hoisted_from_under_a_filter_is_computed_only_where_the_filter_holds() {
        let loss = crate::check_source(
            "loss l(x: [B, B], lab: int[B]) {
                let d[i, j] = sum[p | lab[p] == lab[i] && p != i && x[i, j] > 0](logsumexp[n](x[i, n] - x[i, p]))
                sum[i, j](d[i, j])
            }",
        )
        .unwrap()
        .losses
        .remove(0);
        let out = hoist(&loss);
        let lifted = out.defs.iter().find(|d| d.name == "hoisted1").unwrap();
        // Guarded by the conjuncts over (i, p) only; x[i, j] > 0 involves j, which it lacks.
        let text = crate::print::expr(&out, &lifted.body);
        assert!(
            text.starts_with("if lab[p_h0] == lab[i_h0] && p_h0 != i_h0 then logsumexp["),
            "{text}"
        );
        assert!(text.ends_with("else 0.0"), "{text}");
    }

    #[test]
    fn gathers_move_out_of_inner_loops_only_under_conditions_they_can_carry() {
        let loss = crate::check_source(
            "loss l(x: [B, C], t: int[B], m: bool[B]) {
                metric hits = mean[b | m[b]](count[c | x[b, c] > x[b, t[b]] || x[b, c] == x[b, t[b]] && c < t[b]]())
                metric risky = sum[b, c | x[b, c] > 0](x[b, t[b]])
                sum[b | m[b]](x[b, t[b]])
            }",
        )
        .unwrap()
        .losses
        .remove(0);
        let out = hoist(&loss);
        let text = crate::print::loss(&out);
        // Under m[b] (over b alone): computed once per row, under that condition, and reused on
        // the right of || (whose extra condition it does not need).
        assert!(
            text.contains("let hoisted1[b_h0] = if m[b_h0] then x[b_h0, t[b_h0]] else 0.0"),
            "{text}"
        );
        assert!(
            text.contains(
                "count[c | x[b, c] > hoisted1[b] || x[b, c] == hoisted1[b] && c < t[b]]()"
            ),
            "{text}"
        );
        // Under x[b, c] > 0 (which involves c) it stays: moving it could index out of range
        // where the program never does. Nor does a gather over every enclosing index move.
        assert!(
            text.contains("sum[b, c | x[b, c] > 0](x[b, t[b]])"),
            "{text}"
        );
        assert!(text.contains("sum[b | m[b]](x[b, t[b]])"), "{text}");
    }
}
