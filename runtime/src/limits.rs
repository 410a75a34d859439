//! Resource limits of a run: the memory budget (`lossc eval --max-memory`) and its parsing.
//!
//! Every backend checks, before it allocates anything for a run, that the inputs it copies and
//! the definitions it materialises fit in [`Bound::max_memory`](crate::Bound) bytes, and
//! refuses with an error naming the definition that would exceed the budget.

use crate::RunError;
use crate::bind::Bound;
use compiler::ir::Loss;

/// The default memory budget of one run: 4 GiB (cross-entropy's gradient on the CPU backend
/// at `[8192, 32000]` logits takes 2 GiB: the f32 logits and their gradient).
pub const DEFAULT_MAX_MEMORY: u64 = 4 << 30;

/// Parses a byte count: a whole number with an optional binary suffix `K`, `M`, `G` or `T`
/// (powers of 1024; `KiB`, `MB` and lowercase spellings are accepted too), e.g. `512M`, `2G`,
/// `1048576`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "`{s}` is not a size: expected a whole number of bytes with an optional suffix K, M, G or T (e.g. 512M, 2G)"
            ));
        }
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("`{s}` is not a size: expected a whole number of bytes with an optional suffix K, M, G or T (e.g. 512M, 2G)")
    })?;
    n.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(|| {
        format!("`{s}` is not a usable size: it must be above 0 and below 2^64 bytes")
    })
}

/// `bytes` for messages: `512 MiB`, `1.5 GiB`, `100 bytes`.
pub fn show_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut x = bytes;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{x:.0} bytes")
    } else if x.fract() == 0.0 {
        format!("{x:.0} {}", UNITS[unit])
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// Checks that running `loss` on `bound` fits the memory budget `bound.max_memory`, counting
/// `input_bytes` for each input element the backend holds and `def_bytes` for each element of
/// every definition it materialises (the interpreter: 8 and 8). See [`check_memory`].
pub fn check_memory_for(
    loss: &Loss,
    bound: &Bound,
    input_bytes: u64,
    def_bytes: u64,
) -> Result<(), RunError> {
    check_memory(
        loss,
        &bound.dims,
        bound.max_memory,
        |_| input_bytes,
        |_| def_bytes,
    )
    .map(|_| ())
}

/// The memory a run of `loss` at dimension sizes `dims` takes, estimated from the sizes alone
/// (before anything is allocated): `input_bytes(i)` bytes for each element of input `i` and
/// `def_bytes(d)` for each element of definition `d`, summed in order. Returns the total in
/// bytes, or, when it would pass `budget`, the error naming the inputs or the definition at
/// which it does, with its shape.
pub fn check_memory(
    loss: &Loss,
    dims: &[usize],
    budget: u64,
    input_bytes: impl Fn(usize) -> u64,
    def_bytes: impl Fn(usize) -> u64,
) -> Result<f64, RunError> {
    let budget = budget as f64;
    let mut total: f64 = loss
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let n: f64 = input.shape.iter().map(|&d| dims[d] as f64).product();
            n * input_bytes(i) as f64
        })
        .sum();
    if total > budget {
        return Err(RunError::new(format!(
            "the inputs of `{}` take {}, more than the memory budget of {} (raise it with --max-memory)",
            loss.name,
            show_bytes(total),
            show_bytes(budget)
        )));
    }
    for (d, def) in loss.defs.iter().enumerate() {
        let values: f64 = def
            .indices
            .iter()
            .map(|&v| dims[loss.vars[v].dim] as f64)
            .product();
        let bytes = values * def_bytes(d) as f64;
        total += bytes;
        if total > budget {
            let shape: Vec<String> = def
                .indices
                .iter()
                .map(|&v| {
                    let dim = loss.vars[v].dim;
                    format!("{}={}", loss.dims[dim], dims[dim])
                })
                .collect();
            return Err(RunError::new(format!(
                "definition `{}`{} holds {values:.0} values ({}), which brings the memory of `{}` to {}, more than the memory budget of {} (raise it with --max-memory, or use smaller sizes)",
                def.name,
                if shape.is_empty() {
                    String::new()
                } else {
                    format!(" over [{}]", shape.join(", "))
                },
                show_bytes(bytes),
                loss.name,
                show_bytes(total),
                show_bytes(budget)
            )));
        }
    }
    Ok(total)
}

/// Checks, before they are drawn, that random inputs of `loss` at `sizes` (as for
/// [`crate::random::random_inputs`]) fit in `budget` bytes as f64 values. Sizes of unknown
/// dimensions are left for `random_inputs` to report.
pub fn check_random_inputs(
    loss: &Loss,
    sizes: &[(String, usize)],
    budget: u64,
) -> Result<(), RunError> {
    check_random_inputs_as(loss, sizes, budget, 8)
}

/// [`check_random_inputs`] for inputs drawn with `value_bytes` bytes per value (4 for
/// [`crate::random::random_inputs_f32`]).
pub fn check_random_inputs_as(
    loss: &Loss,
    sizes: &[(String, usize)],
    budget: u64,
    value_bytes: u64,
) -> Result<(), RunError> {
    let size_of = |d: usize| {
        sizes
            .iter()
            .find(|(n, _)| *n == loss.dims[d])
            .map_or(0.0, |(_, s)| *s as f64)
    };
    let total: f64 = loss
        .inputs
        .iter()
        .map(|i| i.shape.iter().map(|&d| size_of(d)).product::<f64>() * value_bytes as f64)
        .sum();
    if total > budget as f64 {
        return Err(RunError::new(format!(
            "random inputs of `{}` at these sizes would take {}, more than the memory budget of {} (raise it with --max-memory, or use smaller sizes)",
            loss.name,
            show_bytes(total),
            show_bytes(budget as f64)
        )));
    }
    Ok(())
}

/// The most nodes one expression of a program may have to be compiled to native code: code
/// generation time grows faster than the code, and the largest stdlib gradient program's
/// largest expression has under 200.
pub const MAX_COMPILED_EXPR_NODES: usize = 20_000;

/// The most nodes a whole program may have to be compiled to native code.
pub const MAX_COMPILED_NODES: usize = 500_000;

/// Refuses, before code generation starts, a program too large to compile within seconds:
/// one expression over [`MAX_COMPILED_EXPR_NODES`] nodes (the error names its definition) or
/// all of them over [`MAX_COMPILED_NODES`]. Every compiling backend calls it.
pub fn check_code_size(program: &Loss) -> Result<(), RunError> {
    let parts = program
        .defs
        .iter()
        .map(|d| (d.name.as_str(), d.body.size()))
        .chain(std::iter::once((
            "the loss's result",
            program.result.size(),
        )));
    let mut total = 0;
    for (name, n) in parts {
        if n > MAX_COMPILED_EXPR_NODES {
            let what = if name == "the loss's result" {
                name.to_string()
            } else {
                format!("definition `{name}`")
            };
            return Err(RunError::new(format!(
                "{what} of the program compiled for `{}` has {n} operations, more than the {MAX_COMPILED_EXPR_NODES} a compiled backend takes in one expression: split the loss into smaller `let` definitions, or use --backend interp",
                program.name
            )));
        }
        total += n;
    }
    if total > MAX_COMPILED_NODES {
        return Err(RunError::new(format!(
            "the program compiled for `{}` has {total} operations, more than the {MAX_COMPILED_NODES} a compiled backend takes: use --backend interp",
            program.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("2gib"), Ok(2 << 30));
        assert_eq!(parse_bytes("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("1T"), Ok(1 << 40));
        for bad in [
            "",
            "M",
            "1.5G",
            "-1",
            "0",
            "12Q",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytes_show_in_binary_units() {
        assert_eq!(show_bytes(100.0), "100 bytes");
        assert_eq!(show_bytes(1024.0), "1 KiB");
        assert_eq!(show_bytes(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
    }
}
