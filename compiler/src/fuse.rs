//! Fusing definitions into passes: definitions that run over the same outermost dimension —
//! row definitions (`let d[b, ...]`) and scalar reductions over it (`mean[b](...)`, computed in
//! blocks, see `clif::Part::Partial`) — are computed together, one block of rows at a time,
//! when each reads the others only at its own row. A block's rows of every member are then
//! still in cache when the next member reads them: cross-entropy's logsumexp, accuracy and loss
//! read each row of the logits from memory once instead of three times; DPO's margins,
//! rewards, metrics, loss and gradient become one pass.
//!
//! The schedule is a list of [`Step`]s in an order that respects every dependency. Scalar
//! definitions that read no tensor data (`count[b: B]()`) are scheduled as early as possible,
//! so they do not split a pass.

use crate::ir::{Expr, Loss, Tensor};

/// One step of a fused schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One definition alone.
    One(usize),
    /// Definitions computed together block of rows by block of rows, in this order (each a
    /// row definition or a scalar reduction over the shared outermost dimension).
    Group(Vec<usize>),
}

/// The outermost dimension of definition `d` when it can be a member of a group: the first
/// index of a row definition, or the first variable of a scalar reduction.
fn row_dim(loss: &Loss, d: usize) -> Option<usize> {
    let def = &loss.defs[d];
    if let Some(&v) = def.indices.first() {
        return Some(loss.vars[v].dim);
    }
    match &def.body {
        Expr::Reduce { vars, .. } if !vars.is_empty() => Some(loss.vars[vars[0]].dim),
        _ => None,
    }
}

/// The variable that runs over the rows of member `d`.
fn row_var(loss: &Loss, d: usize) -> Option<usize> {
    let def = &loss.defs[d];
    if let Some(&v) = def.indices.first() {
        return Some(v);
    }
    match &def.body {
        Expr::Reduce { vars, .. } => vars.first().copied(),
        _ => None,
    }
}

/// Every definition read in `e`, with the indices of each read.
fn def_reads(e: &Expr) -> Vec<(usize, Vec<Expr>)> {
    let mut out = vec![];
    e.visit(&mut |x| {
        if let Expr::Read {
            tensor: Tensor::Def(d),
            indices,
        } = x
        {
            out.push((*d, indices.clone()));
        }
    });
    out
}

/// True when `d` is a scalar that reads no tensor data (only scalar definitions): cheap, and
/// best computed before any pass.
fn free_scalar(loss: &Loss, d: usize) -> bool {
    let def = &loss.defs[d];
    def.indices.is_empty()
        && !def.body.any(&mut |x| match x {
            Expr::Read {
                tensor: Tensor::Input(_),
                ..
            } => true,
            Expr::Read {
                tensor: Tensor::Def(e),
                ..
            } => !loss.defs[*e].indices.is_empty(),
            _ => false,
        })
}

/// For each definition: true when it is light, reading only inputs of at most one index
/// and light definitions, with at most one index itself: a row of it costs a few operations,
/// wherever its rows run.
fn light(loss: &Loss) -> Vec<bool> {
    let mut out: Vec<bool> = Vec::with_capacity(loss.defs.len());
    for def in &loss.defs {
        let reads_light = !def.body.any(&mut |x| match x {
            Expr::Read {
                tensor: Tensor::Input(i),
                ..
            } => loss.inputs[*i].shape.len() > 1,
            Expr::Read {
                tensor: Tensor::Def(e),
                ..
            } => !out[*e],
            _ => false,
        });
        out.push(reads_light && def.indices.len() <= 1);
    }
    out
}

/// The definitions to compute before any pass: each light scalar reduction over a row
/// dimension that some heavy (not light) definition reads, with the light definitions it
/// reads. Such a scalar is a barrier: everything that reads it waits for all its rows.
/// Cross-entropy's count of kept rows (`count[b | target[b] != ignore_index]()`) in the pass
/// of the logits would put the gradient, which divides by it, in a second pass that reads the
/// logits from memory again; computed first (one pass over the targets), it lets the
/// gradient share the logits' pass.
fn prelude(loss: &Loss, reads: &[Vec<(usize, Vec<Expr>)>]) -> Vec<bool> {
    let light = light(loss);
    let n = loss.defs.len();
    let mut wanted = vec![false; n];
    for (d, def) in loss.defs.iter().enumerate() {
        let barrier = light[d]
            && row_dim(loss, d).is_some()
            && def.indices.is_empty()
            && !free_scalar(loss, d);
        if barrier && (0..n).any(|e| !light[e] && reads[e].iter().any(|(r, _)| *r == d)) {
            wanted[d] = true;
        }
    }
    // With what they read (definitions only read earlier ones).
    for d in (0..n).rev() {
        if wanted[d] {
            for (r, _) in &reads[d] {
                wanted[*r] = true;
            }
        }
    }
    wanted
}

/// The fused schedule of `loss`'s definitions. `alone(d)` marks definitions that must be a step
/// of their own (for the CPU backend, matrix products run by GEMM). The [`prelude`] runs
/// first, in passes of its own.
pub fn schedule(loss: &Loss, alone: &dyn Fn(usize) -> bool) -> Vec<Step> {
    let n = loss.defs.len();
    let reads: Vec<Vec<(usize, Vec<Expr>)>> =
        loss.defs.iter().map(|d| def_reads(&d.body)).collect();
    let first = prelude(loss, &reads);
    let mut done = vec![false; n];
    let mut steps = vec![];
    for part in [true, false] {
        let pending: Vec<usize> = (0..n).filter(|&d| first[d] == part).collect();
        fuse_in_order(loss, alone, &reads, pending, &mut done, &mut steps);
    }
    steps
}

/// Appends the steps that compute `pending` (in an order every dependency allows, each
/// reading only earlier definitions or `done` ones), fusing what can share a pass.
fn fuse_in_order(
    loss: &Loss,
    alone: &dyn Fn(usize) -> bool,
    reads: &[Vec<(usize, Vec<Expr>)>],
    mut pending: Vec<usize>,
    done: &mut [bool],
    steps: &mut Vec<Step>,
) {
    let n = loss.defs.len();
    let ready = |d: usize, done: &[bool]| reads[d].iter().all(|(e, _)| done[*e]);
    while !pending.is_empty() {
        // Definitions only ever read earlier ones, so the first pending one is ready.
        let first = pending.remove(0);
        debug_assert!(ready(first, done));
        let dim = row_dim(loss, first).filter(|_| !alone(first) && !free_scalar(loss, first));
        let Some(dim) = dim else {
            done[first] = true;
            steps.push(Step::One(first));
            continue;
        };
        let mut members = vec![first];
        let mut member = vec![false; n];
        member[first] = true;
        loop {
            let mut grew = false;
            let mut k = 0;
            while k < pending.len() {
                let e = pending[k];
                if ready(e, done) && free_scalar(loss, e) {
                    // Independent of the group: before it.
                    done[e] = true;
                    steps.push(Step::One(e));
                    pending.remove(k);
                    grew = true;
                    continue;
                }
                let fits = !alone(e)
                    && row_dim(loss, e) == Some(dim)
                    && reads[e].iter().all(|(r, indices)| {
                        done[*r]
                            || (member[*r]
                                && !loss.defs[*r].indices.is_empty()
                                && matches!(indices.first(),
                                    Some(Expr::Index(u)) if Some(*u) == row_var(loss, e)))
                    });
                if fits {
                    member[e] = true;
                    members.push(e);
                    pending.remove(k);
                    grew = true;
                    continue;
                }
                k += 1;
            }
            if !grew {
                break;
            }
        }
        for &m in &members {
            done[m] = true;
        }
        steps.push(if members.len() == 1 {
            Step::One(first)
        } else {
            Step::Group(members)
        });
    }
}

/// For each definition: true when it is a row definition of a group that only members of
/// that group read (not the loss, no later step) and `keep(d)` is false (for outputs such as
/// gradients). Such a definition need only live for one block of rows: a backend can keep
/// it in a small scratch buffer instead of writing every row to memory.
pub fn locals(loss: &Loss, steps: &[Step], keep: &dyn Fn(usize) -> bool) -> Vec<bool> {
    let n = loss.defs.len();
    let mut group_of = vec![None; n];
    for (k, step) in steps.iter().enumerate() {
        if let Step::Group(members) = step {
            for &m in members {
                group_of[m] = Some(k);
            }
        }
    }
    let mut local: Vec<bool> = (0..n)
        .map(|d| group_of[d].is_some() && !loss.defs[d].indices.is_empty() && !keep(d))
        .collect();
    for (reader, def) in loss.defs.iter().enumerate() {
        for (d, _) in def_reads(&def.body) {
            if group_of[d] != group_of[reader] {
                local[d] = false;
            }
        }
    }
    for (d, _) in def_reads(&loss.result) {
        local[d] = false;
    }
    local
}

/// For each definition: the group member whose storage it borrows, when it is a local
/// (`local`, from [`locals`]) of `members` that one later member `g` outside `local` reads,
/// and reads only at its own element (`g[i, j] = f(d[i, j], ...)`, as cross-entropy's gradient
/// reads its softmax), and no earlier local borrows `g`'s. Then `d` can be written where `g`
/// will be: `g` reads each element of `d` before writing the same element. The pass that
/// computes `d` then writes the output's rows (while it also computes, so the wait for memory
/// is hidden) and `g`'s pass rewrites them in cache, instead of `d` taking a scratch buffer and
/// `g`'s pass writing the output to memory alone.
pub fn hosts(loss: &Loss, members: &[usize], local: &[bool]) -> Vec<Option<usize>> {
    let mut out = vec![None; loss.defs.len()];
    let dims = |d: usize| -> Vec<usize> {
        loss.defs[d]
            .indices
            .iter()
            .map(|&v| loss.vars[v].dim)
            .collect()
    };
    for (i, &d) in members.iter().enumerate() {
        if !local[d] || loss.defs[d].indices.is_empty() {
            continue;
        }
        let readers: Vec<usize> = (0..loss.defs.len())
            .filter(|&r| def_reads(&loss.defs[r].body).iter().any(|(x, _)| *x == d))
            .collect();
        let [g] = readers[..] else { continue };
        let own: Vec<Expr> = loss.defs[g]
            .indices
            .iter()
            .map(|&v| Expr::Index(v))
            .collect();
        let at_own_element = def_reads(&loss.defs[g].body)
            .iter()
            .all(|(x, indices)| *x != d || *indices == own);
        // One guest per host: two would overwrite each other.
        let taken = out.contains(&Some(g));
        if members[i + 1..].contains(&g)
            && !local[g]
            && !taken
            && dims(g) == dims(d)
            && at_own_element
        {
            out[d] = Some(g);
        }
    }
    out
}

/// About how many operations one row of definition `d` costs (one value of its first
/// index, or of a scalar reduction's first variable) when dimension `k` has size
/// `sizes[k]`: every node counts 1, a reduction its body times the points it runs over.
/// Backends size their blocks of rows by it (a row of `logsumexp[c](x[b, c])` is as much
/// work as thousands of rows of `x[b] * 2`).
pub fn row_work(loss: &Loss, d: usize, sizes: &[usize]) -> usize {
    let def = &loss.defs[d];
    match &def.body {
        Expr::Reduce {
            vars, filter, body, ..
        } if def.indices.is_empty() && !vars.is_empty() => {
            reduce_work(loss, &vars[1..], filter.as_deref(), body.as_deref(), sizes)
        }
        body => {
            let points: usize = def
                .indices
                .iter()
                .skip(1)
                .map(|&v| sizes[loss.vars[v].dim])
                .product();
            points.saturating_mul(work(loss, body, sizes))
        }
    }
}

/// The operations of evaluating `e` once (see [`row_work`]).
fn work(loss: &Loss, e: &Expr, sizes: &[usize]) -> usize {
    match e {
        Expr::Reduce {
            vars, filter, body, ..
        } => reduce_work(loss, vars, filter.as_deref(), body.as_deref(), sizes),
        _ => {
            let mut total = 1usize;
            let _ = e.map_children(|c| {
                total = total.saturating_add(work(loss, c, sizes));
                c.clone()
            });
            total
        }
    }
}

/// The operations of a reduction over `vars`.
fn reduce_work(
    loss: &Loss,
    vars: &[usize],
    filter: Option<&Expr>,
    body: Option<&Expr>,
    sizes: &[usize],
) -> usize {
    let points: usize = vars.iter().map(|&v| sizes[loss.vars[v].dim]).product();
    let each = filter
        .into_iter()
        .chain(body)
        .map(|x| work(loss, x, sizes))
        .sum::<usize>()
        .max(1);
    points.saturating_mul(each)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(src: &str) -> Loss {
        let loss = crate::check_source(src)
            .expect("a valid loss")
            .losses
            .remove(0);
        crate::split::split(&loss)
    }

    fn names(loss: &Loss, steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::One(d) => loss.defs[*d].name.clone(),
                Step::Group(m) => format!(
                    "[{}]",
                    m.iter()
                        .map(|&d| loss.defs[d].name.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            })
            .collect()
    }

    #[test]
    fn rows_read_at_their_own_row_share_a_pass() {
        let loss = program(
            "loss l(x: [B, C]) {
                let m[b] = max[c](x[b, c])
                let y[b, c] = x[b, c] - m[b]
                metric top = mean[b](m[b])
                sum[b, c](y[b, c])
            }",
        );
        let steps = schedule(&loss, &|_| false);
        assert_eq!(names(&loss, &steps), ["[m y top loss_part3]"]);
        // m and y are read inside the pass only; y is kept when asked.
        assert_eq!(
            locals(&loss, &steps, &|_| false),
            [true, true, false, false]
        );
        assert_eq!(
            locals(&loss, &steps, &|d| d == 1),
            [true, false, false, false]
        );
        // Work of one row (b) when B = 10, C = 1000: a read of x[b, c] is 3 nodes; m's row a
        // max over C of it, y's row C subtractions of two reads, top's row one read of m, the
        // loss's row a sum over C.
        let sizes = [10, 1000];
        let work: Vec<usize> = (0..4).map(|d| row_work(&loss, d, &sizes)).collect();
        assert_eq!(work, [3000, 6000, 2, 3000]);
    }

    #[test]
    fn a_local_read_only_at_an_outputs_own_element_lives_in_its_storage() {
        let loss = program(
            "loss l(x: [B, C]) {
                let m[b] = max[c](x[b, c])
                let e[b, c] = exp(x[b, c] - m[b])
                let g[b, c] = e[b, c] * 2
                let h[b, c] = x[b, c] * 3
                let k[b, c] = h[b, 0] + x[b, c]
                sum[b, c](g[b, c] + k[b, c])
            }",
        );
        let steps = schedule(&loss, &|_| false);
        let Step::Group(members) = &steps[0] else {
            panic!("one group: {:?}", names(&loss, &steps))
        };
        // g and k are kept (outputs); e is read by g at g's own element, h by k elsewhere.
        let local = locals(&loss, &steps, &|d| d == 2 || d == 4);
        assert_eq!(local, [true, true, false, true, false, false]);
        assert_eq!(
            hosts(&loss, members, &local),
            [None, Some(2), None, None, None, None]
        );
        // A local output borrows nothing.
        let local = locals(&loss, &steps, &|d| d == 4);
        assert_eq!(hosts(&loss, members, &local), [None; 6]);
    }

    #[test]
    fn an_output_hosts_one_local() {
        // Two softmaxes of one gradient: only the first can be written where g goes.
        let loss = program(
            "loss l(x: [B, C], y: [B, C]) {
                let p[b, c] = exp(x[b, c])
                let q[b, c] = exp(y[b, c])
                let g[b, c] = p[b, c] - q[b, c]
                sum[b, c](g[b, c])
            }",
        );
        let steps = schedule(&loss, &|_| false);
        let Step::Group(members) = &steps[0] else {
            panic!("one group: {:?}", names(&loss, &steps))
        };
        let local = locals(&loss, &steps, &|d| d == 2);
        assert_eq!(local, [true, true, false, false]);
        assert_eq!(hosts(&loss, members, &local), [Some(2), None, None, None]);
    }

    #[test]
    fn a_scalar_of_the_pass_splits_it_and_free_scalars_go_first() {
        let loss = program(
            "loss l(x: [B]) {
                let n = count[b: B]()
                let s = sum[b](x[b])
                let y[b] = x[b] / s / n
                sum[b](y[b])
            }",
        );
        let steps = schedule(&loss, &|_| false);
        // y needs all of s: a second pass; n reads nothing and runs first.
        assert_eq!(names(&loss, &steps), ["n", "s", "[y loss_part3]"]);
        assert_eq!(
            locals(&loss, &steps, &|_| false),
            [false, false, true, false]
        );
    }

    #[test]
    fn a_light_scalar_that_heavy_rows_wait_for_runs_first() {
        // The count of kept rows reads only the targets; computed before the pass over x, it
        // lets g (which divides by it) share that pass. A light scalar only light
        // definitions read (m) stays where it was.
        let loss = program(
            "loss l(x: [B, C], t: int[B]) {
                let kept[b] = t[b] != 0
                let n = count[b | kept[b]]()
                let m = sum[b | kept[b]](t[b])
                let r[b] = logsumexp[c](x[b, c])
                let g[b, c] = if kept[b] then exp(x[b, c] - r[b]) / n else 0.0
                sum[b, c](g[b, c]) + m
            }",
        );
        let steps = schedule(&loss, &|_| false);
        assert_eq!(names(&loss, &steps), ["[kept n]", "[m r g loss_part5]"]);
    }

    #[test]
    fn a_read_at_another_row_is_not_fused() {
        let loss = program(
            "loss l(x: [B]) {
                let y[b] = x[b] * 2
                let z[b] = y[0] + x[b]
                sum[b](z[b])
            }",
        );
        let steps = schedule(&loss, &|_| false);
        assert_eq!(names(&loss, &steps), ["y", "[z loss_part2]"]);
    }
}
