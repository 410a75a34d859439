//! Matrix products of the CPU backend (`compiler::contraction`): matrixmultiply's `sgemm` on
//! bands of rows, one per thread. A Gram matrix (`compiler::column::symmetric`) runs in
//! panels of [`PANEL`] rows instead, each computing its upper part only, from its diagonal
//! block on (a little over half the work), then filling the rest with its mirror image,
//! tile by tile.
//!
//! `sgemm` sums each element's terms in the same order however the rows are split, so
//! products are bit-identical run to run and across thread counts.

use rayon::prelude::*;

/// Rows per panel of a product.
const PANEL: usize = 128;

/// Side of the square tiles a mirror copies. A tile's source rows lie a row of the product
/// apart, often a multiple of 4 KiB, which maps them to one L1 set: eight fit its ways (32
/// thrashed it, and took 2.5 times as long).
const TILE: usize = 8;

/// A matrix's address and strides: element `(r, c)` is at `ptr + r·rows + c·cols`.
#[derive(Clone, Copy)]
pub(crate) struct Matrix {
    /// The first element.
    pub ptr: *const f32,
    /// The stride between rows, in elements.
    pub rows: isize,
    /// The stride between columns, in elements.
    pub cols: isize,
}

// SAFETY: a `Matrix` is only read, and the products below write disjoint parts of `out`.
unsafe impl Send for Matrix {}
unsafe impl Sync for Matrix {}

impl Matrix {
    /// The address of element `(r, c)` (a method, so closures capture the whole `Sync` value).
    ///
    /// # Safety
    /// The element must lie inside the matrix.
    unsafe fn at(self, r: usize, c: usize) -> *const f32 {
        // SAFETY: the caller's contract.
        unsafe {
            self.ptr
                .offset(r as isize * self.rows + c as isize * self.cols)
        }
    }
}

/// Where a product's `m × n` row-major result goes.
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: each panel (and each mirrored tile) is written by one call only.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The address of element `k` (a method, so closures capture the whole `Sync` value).
    ///
    /// # Safety
    /// The element must lie inside the product.
    unsafe fn at(self, k: usize) -> *mut f32 {
        // SAFETY: the caller's contract.
        unsafe { self.0.add(k) }
    }
}

/// `out = a · b` for an `m × k` matrix `a` and a `k × n` matrix `b`, `out` row-major `m × n`,
/// on `threads` of rayon's threads. With `symmetric` (the caller knows `a · b` is symmetric,
/// so `m == n`), only the panels' upper parts are multiplied.
///
/// # Safety
/// `a`, `b` and `out` must address matrices of these sizes, `out` writable and disjoint from
/// both, and nothing else may touch `out` during the call.
pub(crate) unsafe fn product(
    a: Matrix,
    b: Matrix,
    out: *mut f32,
    [m, k, n]: [usize; 3],
    symmetric: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let symmetric = symmetric && m == n;
    let out = Out(out);
    // Panels of a symmetric product; otherwise one band of rows per thread (each call packs
    // all of `b`).
    let panels = if symmetric {
        m.div_ceil(PANEL)
    } else {
        threads.clamp(1, m)
    };
    let rows = |p: usize| {
        if symmetric {
            (p * PANEL, ((p + 1) * PANEL).min(m))
        } else {
            (m * p / panels, m * (p + 1) / panels)
        }
    };
    let parallel = threads > 1;
    let panel = |p: usize| {
        let (start, end) = rows(p);
        // The columns this panel computes: all, or its diagonal block and those after it.
        let first = if symmetric { start } else { 0 };
        // SAFETY: rows start..end of `a`, columns first..n of `b` and that block of `out`
        // lie inside the matrices (the caller's contract); only this call writes the block.
        unsafe {
            matrixmultiply::sgemm(
                end - start,
                k,
                n - first,
                1.0,
                a.at(start, 0),
                a.rows,
                a.cols,
                b.at(0, first),
                b.rows,
                b.cols,
                0.0,
                out.at(start * n + first),
                n as isize,
                1,
            )
        }
    };
    run(panels, parallel, &panel);
    if symmetric {
        // Below the diagonal blocks: out[r][c] = out[c][r] for c < (r's panel start), read
        // from the upper parts the calls above wrote.
        let mirror = |p: usize| {
            let (start, end) = rows(p);
            for c0 in (0..start).step_by(TILE) {
                for r0 in (start..end).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(end) {
                        for c in c0..(c0 + TILE).min(start) {
                            // SAFETY: r < n and c < start <= r: (c, r) lies in the upper part
                            // of panel c / PANEL, written above and only read now; (r, c) is
                            // this panel's own.
                            unsafe { *out.at(r * n + c) = *out.at(c * n + r) };
                        }
                    }
                }
            }
        };
        run(panels, parallel, &mirror);
    }
}

/// Runs `f` for every panel `0..panels`, on rayon's threads when `parallel` (one task each:
/// the panels of a symmetric product differ in cost).
fn run(panels: usize, parallel: bool, f: &(dyn Fn(usize) + Sync)) {
    if parallel && panels > 1 {
        (0..panels).into_par_iter().with_max_len(1).for_each(f);
    } else {
        (0..panels).for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a · aᵀ` for a row-major `m × k` matrix `a`, on `threads` threads.
    fn gram(a: &[f32], m: usize, k: usize, symmetric: bool, threads: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; m * m];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (x, y) = (
            Matrix {
                ptr: a.as_ptr(),
                rows: k as isize,
                cols: 1,
            },
            Matrix {
                ptr: a.as_ptr(),
                rows: 1,
                cols: k as isize,
            },
        );
        // SAFETY: `a` is m×k (and read as k×m through the strides), `out` m×m.
        pool.install(|| unsafe { product(x, y, out.as_mut_ptr(), [m, k, m], symmetric, threads) });
        out
    }

    #[test]
    fn a_gram_matrix_from_its_upper_panels_is_the_whole_product() {
        // Sizes that are not multiples of a panel or a tile.
        let (m, k) = (PANEL * 2 + 45, 7);
        let a: Vec<f32> = (0..m * k)
            .map(|x| ((x * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let full = gram(&a, m, k, false, 1);
        for threads in [1, 2, 3] {
            let half = gram(&a, m, k, true, threads);
            for r in 0..m {
                for c in 0..m {
                    let exact: f64 = (0..k)
                        .map(|t| f64::from(a[r * k + t]) * f64::from(a[c * k + t]))
                        .sum();
                    let got = half[r * m + c];
                    assert!((f64::from(got) - exact).abs() <= 1e-5 * (1.0 + exact.abs()));
                    // Mirrored exactly, and as `sgemm` computes the element itself.
                    assert_eq!(got.to_bits(), half[c * m + r].to_bits(), "({r}, {c})");
                    assert_eq!(got.to_bits(), full[r * m + c].to_bits(), "({r}, {c})");
                }
            }
        }
    }
}
