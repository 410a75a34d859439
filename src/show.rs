//! Printing for people, shared by the CLI and the REPL: a loss's signature, numbers for
//! tables, and tensors summarised the way numpy prints them (every element when there are at most [`THRESHOLD`], else the first
//! and last [`EDGE`] along each long axis with `...` between).

use std::fmt::Write;

/// Tensors with more elements than this are summarised.
pub const THRESHOLD: usize = 100;
/// How many elements are kept at each end of a summarised axis.
pub const EDGE: usize = 3;

/// A number for a table: plain when that is short, scientific notation otherwise (as
/// `lossc eval` prints it).
pub fn number(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-4..1e6).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A number in a truncated listing: six decimals, or four significant digits in scientific
/// notation when it is very large or small.
fn short(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-4..1e6).contains(&a) {
        format!("{x:.6}")
    } else {
        format!("{x:.4e}")
    }
}

/// The values of a flat tensor as `[a, b, c, ..., y, z]` (the gradient rows of `lossc eval`).
pub fn summary(values: &[f64]) -> String {
    let show = |v: &[f64]| v.iter().map(|x| short(*x)).collect::<Vec<_>>().join(", ");
    if values.len() <= 6 {
        format!("[{}]", show(values))
    } else {
        format!(
            "[{}, ..., {}]",
            show(&values[..3]),
            show(&values[values.len() - 3..])
        )
    }
}

/// [`summary`] for a tensor of any element type: integers and booleans as they are.
pub fn summary_of(values: &[f64], elem: Elem) -> String {
    if elem == Elem::Float {
        return summary(values);
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| element(*x, elem, false))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if values.len() <= 6 {
        format!("[{}]", show(values))
    } else {
        format!(
            "[{}, ..., {}]",
            show(&values[..3]),
            show(&values[values.len() - 3..])
        )
    }
}

/// What a tensor's elements are, for printing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// Floats: a shared number of decimals.
    Float,
    /// Integers.
    Int,
    /// Booleans (stored as 0 and 1).
    Bool,
}

/// Formats one element.
fn element(x: f64, elem: Elem, scientific: bool) -> String {
    match elem {
        Elem::Bool => (if x != 0.0 { "true" } else { "false" }).to_string(),
        Elem::Int if x.is_finite() => format!("{}", x as i64),
        _ if !x.is_finite() => format!("{x}"),
        _ if scientific => format!("{x:.4e}"),
        _ => format!("{x:.4}"),
    }
}

/// The positions shown along an axis of length `n`: all, or the first and last [`EDGE`]
/// with `None` standing for the elided middle.
fn shown(n: usize, summarise: bool) -> Vec<Option<usize>> {
    if summarise && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    }
}

/// A tensor as numpy prints it: nested brackets, one row per line, aligned columns, and
/// `...` where a summarised axis was cut. A scalar is its value alone.
pub fn tensor(shape: &[usize], values: &[f64], elem: Elem) -> String {
    let n: usize = shape.iter().product();
    if values.len() != n {
        return format!("<{} values for shape {shape:?}>", values.len());
    }
    let summarise = n > THRESHOLD;
    // Which flat elements are printed, to choose one width and style for all of them.
    let mut printed = vec![];
    collect(shape, 0, summarise, &mut printed);
    let finite = printed
        .iter()
        .map(|&i| values[i].abs())
        .filter(|a| a.is_finite() && *a != 0.0);
    let (lo, hi) = finite.fold((f64::INFINITY, 0.0f64), |(lo, hi), a| {
        (lo.min(a), hi.max(a))
    });
    let scientific = elem == Elem::Float && (hi >= 1e6 || (lo < 1e-4 && lo.is_finite()));
    let width = printed
        .iter()
        .map(|&i| element(values[i], elem, scientific).len())
        .max()
        .unwrap_or(1);
    let cell = |i: usize| format!("{:>width$}", element(values[i], elem, scientific));
    if shape.is_empty() {
        return element(values[0], elem, scientific);
    }
    let mut out = String::new();
    write_axis(&mut out, shape, 0, 0, summarise, &cell, width);
    out
}

/// The flat offsets of the printed elements.
fn collect(shape: &[usize], base: usize, summarise: bool, out: &mut Vec<usize>) {
    let Some((&len, rest)) = shape.split_first() else {
        out.push(base);
        return;
    };
    let stride: usize = rest.iter().product();
    for i in shown(len, summarise).into_iter().flatten() {
        collect(rest, base + i * stride, summarise, out);
    }
}

/// Writes the sub-tensor at `base` over `shape[axis..]`.
fn write_axis(
    out: &mut String,
    shape: &[usize],
    axis: usize,
    base: usize,
    summarise: bool,
    cell: &dyn Fn(usize) -> String,
    width: usize,
) {
    let len = shape[axis];
    let stride: usize = shape[axis + 1..].iter().product();
    out.push('[');
    let positions = shown(len, summarise);
    let last_axis = axis + 1 == shape.len();
    for (k, p) in positions.iter().enumerate() {
        if k > 0 {
            if last_axis {
                out.push_str(", ");
            } else {
                // One more newline per enclosing axis: a blank line between the blocks
                // of a 3-d tensor, as numpy prints them.
                out.push(',');
                for _ in axis + 1..shape.len() {
                    out.push('\n');
                }
                for _ in 0..=axis {
                    out.push(' ');
                }
            }
        }
        match p {
            Some(i) if last_axis => out.push_str(&cell(base + i * stride)),
            Some(i) => write_axis(
                out,
                shape,
                axis + 1,
                base + i * stride,
                summarise,
                cell,
                width,
            ),
            None if last_axis => {
                let _ = write!(out, "{:>width$}", "...");
            }
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

/// `loss dpo(x: [B], ...; beta = 0.1)` and, on a second line, its metrics.
pub fn signature(loss: &compiler::ir::Loss) -> String {
    let inputs: Vec<String> = loss
        .inputs
        .iter()
        .map(|i| runtime::bind::signature(loss, i))
        .collect();
    let hypers: Vec<String> = loss
        .hypers
        .iter()
        .map(|h| format!("{} = {}", h.name, compiler::print::hyper_value(h.default)))
        .collect();
    let mut s = format!("loss {}({}", loss.name, inputs.join(", "));
    if !hypers.is_empty() {
        let _ = write!(s, "; {}", hypers.join(", "));
    }
    s.push(')');
    let metrics: Vec<&str> = loss.metrics().map(|m| m.name.as_str()).collect();
    if !metrics.is_empty() {
        let _ = write!(s, "\n  metrics: {}", metrics.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_vectors_matrices() {
        assert_eq!(tensor(&[], &[0.5], Elem::Float), "0.5000");
        assert_eq!(
            tensor(&[3], &[1.0, -2.5, 0.25], Elem::Float),
            "[ 1.0000, -2.5000,  0.2500]"
        );
        assert_eq!(
            tensor(&[2, 2], &[1.0, 0.0, 0.0, 1.0], Elem::Int),
            "[[1, 0],\n [0, 1]]"
        );
        assert_eq!(tensor(&[2], &[1.0, 0.0], Elem::Bool), "[ true, false]");
        assert_eq!(tensor(&[0], &[], Elem::Float), "[]");
    }

    #[test]
    fn summarised_like_numpy() {
        let v: Vec<f64> = (0..200).map(f64::from).collect();
        assert_eq!(
            tensor(&[200], &v, Elem::Int),
            "[  0,   1,   2, ..., 197, 198, 199]"
        );
        let m = tensor(&[20, 10], &v, Elem::Int);
        assert_eq!(
            m,
            "[[  0,   1,   2, ...,   7,   8,   9],\n [ 10,  11,  12, ...,  17,  18,  19],\n [ 20,  21,  22, ...,  27,  28,  29],\n ...,\n [170, 171, 172, ..., 177, 178, 179],\n [180, 181, 182, ..., 187, 188, 189],\n [190, 191, 192, ..., 197, 198, 199]]"
        );
        let t = tensor(&[2, 2, 2], &v[..8], Elem::Int);
        assert_eq!(t, "[[[0, 1],\n  [2, 3]],\n\n [[4, 5],\n  [6, 7]]]");
    }
}
