//! Column sums (`crate::column`), `c[i] = sum[k](body)` with `body` reading a matrix by
//! `[k, i]`, lowered with their loops interchanged and tiled: for each tile of [`TILE`]
//! values of `i`, the tile's `c[i]` start at 0, then for every `k` in order, `c[i] += body`
//! for the tile's `i`, four at a time where the body allows. The tile's partial sums stay in
//! cache, every matrix read by `[k, i]` is read along its rows, and one read by `[i, k]` is
//! read as [`TILE`] streams. Each `c[i]` adds its terms in the order of `k`, as the scalar
//! reduction does. Transposed definitions (`crate::column::transposed`) run in tiles of
//! [`ROWS`] × [`COLUMNS`].

use super::ClifError;
use super::expr::Lowering;
use crate::ir::{Expr, VarId};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Value, types};
use cranelift_module::Module;

/// Values of `i` per tile: a tile's sums (1 KiB) and one cache line of each of its rows of a
/// matrix read by `[i, k]` (16 KiB) fit in the L1 cache.
const TILE: i64 = 256;

/// Rows of `i` per tile of a transposed definition `m[i, j]`.
const ROWS: i64 = 512;

/// Values of `j` per tile of a transposed definition: the rows `j` of a matrix read by
/// `[j, i]` that a tile keeps in use. Rows a power of two apart in memory (4096 floats in
/// InfoNCE) fall in the same L1 set, which holds 12 lines: 64 rows thrashed it (InfoNCE
/// 111 ms), 16 do not (97 ms); 32 measured in between.
const COLUMNS: i64 = 16;

impl<M: Module> Lowering<'_, M> {
    /// Fills column-sum definition `d` (`c[i] = sum[k](body)`) for the range of `i` of this
    /// function (all of it, or the rows `start..end` of a split definition).
    pub(super) fn column_sum(
        &mut self,
        d: usize,
        i: VarId,
        k: VarId,
        body: &Expr,
    ) -> Result<(), ClifError> {
        let (start, end) = self.rows_of(i);
        let vector = self.vectorizable(body, i);
        self.tiles(start, end, TILE, &mut |s, lo, hi| {
            // The tile's sums start at 0.
            s.for_each_from(&[i], Some((lo, hi)), &mut |s| {
                let zero = s.f32(0.0);
                s.add_to(d, i, zero, false)
            })?;
            s.for_each_from(&[k], None, &mut |s| {
                s.inner_loop(i, (lo, hi), vector, body, &|s| {
                    let x = s.expr(body)?;
                    let x = s.float(x);
                    s.add_to(d, i, x, true)
                })
            })
        })
    }

    /// Fills definition `d` (`m[i, j] = body`, [`crate::column::transposed`]) for this
    /// function's rows of `i` in tiles of [`ROWS`] × [`COLUMNS`]: a tile's reads of a matrix
    /// by `[j, i]` then stay within [`COLUMNS`] rows of it.
    pub(super) fn transposed_definition(
        &mut self,
        d: usize,
        i: VarId,
        j: VarId,
        body: &Expr,
    ) -> Result<(), ClifError> {
        let (start, end) = self.rows_of(i);
        let columns = self.dims[self.loss.vars[j].dim];
        let zero = self.b.ins().iconst(types::I64, 0);
        let vector = self.vectorizable(body, j);
        self.tiles(start, end, ROWS, &mut |s, i_lo, i_hi| {
            s.tiles(zero, columns, COLUMNS, &mut |s, j_lo, j_hi| {
                s.for_each_from(&[i], Some((i_lo, i_hi)), &mut |s| {
                    s.inner_loop(j, (j_lo, j_hi), vector, body, &|s| {
                        let x = s.expr(body)?;
                        let x = s.float(x);
                        s.store_element(d, x);
                        Ok(())
                    })
                })
            })
        })
    }

    /// The innermost loop of a tile: `step` for `v` in `lo..hi`, four at a time when `vector`
    /// (then the rest one by one), with what of `body` does not depend on `v` computed first.
    fn inner_loop(
        &mut self,
        v: VarId,
        (lo, hi): (Value, Value),
        vector: bool,
        body: &Expr,
        step: &dyn Fn(&mut Self) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        self.with_loop_invariants(&[body], v, &mut |s| {
            if vector {
                s.vector_loop(v, lo, hi, &mut |s| step(s), &mut |s, rest| {
                    s.for_each_from(&[v], Some((rest, hi)), &mut |s| step(s))
                })
            } else {
                s.for_each_from(&[v], Some((lo, hi)), &mut |s| step(s))
            }
        })
    }

    /// The range of `i` this function computes: the rows `start..end` of a split definition,
    /// else all of `i`'s dimension.
    fn rows_of(&mut self, i: VarId) -> (Value, Value) {
        match self.outer_range {
            Some(r) => r,
            None => (
                self.b.ins().iconst(types::I64, 0),
                self.dims[self.loss.vars[i].dim],
            ),
        }
    }

    /// Runs `tile(lo, hi)` for `lo` in `(start..end).step_by(size)`, `hi = min(lo + size, end)`.
    fn tiles(
        &mut self,
        start: Value,
        end: Value,
        size: i64,
        tile: &mut dyn FnMut(&mut Self, Value, Value) -> Result<(), ClifError>,
    ) -> Result<(), ClifError> {
        let t = self.b.declare_var(types::I64);
        let open = self.open_loop(t, start, &mut |_, lo| (IntCC::SignedLessThan, lo, end));
        let lo = open.at;
        let next = self.b.ins().iadd_imm_s(lo, size);
        let past = self.b.ins().icmp(IntCC::SignedGreaterThan, next, end);
        let hi = self.b.ins().select(past, end, next);
        tile(self, lo, hi)?;
        self.end_body(&open);
        self.b.def_var(t, next);
        self.b.ins().jump(open.header, &[]);
        self.close_loop(open);
        Ok(())
    }

    /// Stores `x` (four lanes or one value) at `c[i]` of definition `d`, added to what is
    /// there when `add`.
    fn add_to(&mut self, d: usize, i: VarId, x: Value, add: bool) -> Result<(), ClifError> {
        let var = self.var(i);
        let at = self.b.use_var(var);
        let addr = self.def_element(d, at);
        let flags = MemFlagsData::new().with_notrap();
        let ty = self.b.func.dfg.value_type(x);
        let x = if add {
            let old = self.b.ins().load(ty, flags, addr, 0);
            self.b.ins().fadd(old, x)
        } else {
            x
        };
        self.b.ins().store(flags, x, addr, 0);
        Ok(())
    }
}
