//! `NAME=VALUE,..` lists, as `--random`, `--set`, `--size` and the REPL's `:set` take them.

/// Parses `NAME=VALUE,NAME=VALUE` with `value` for each value; names are identifiers, each
/// given once.
pub fn pairs<T>(
    s: &str,
    value: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(String, T)>, String> {
    let mut out: Vec<(String, T)> = vec![];
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, found `{item}`"))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{k}` is not a name"));
        }
        if out.iter().any(|(name, _)| name == k) {
            return Err(format!("`{k}` is given twice"));
        }
        out.push((k.to_string(), value(v.trim())?));
    }
    if out.is_empty() {
        return Err("expected NAME=VALUE".into());
    }
    Ok(out)
}

/// Dimension sizes: `B=8,C=10`.
pub fn sizes(s: &str) -> Result<Vec<(String, usize)>, String> {
    pairs(s, |v| {
        v.parse::<usize>()
            .map_err(|_| format!("`{v}` is not a size (a non-negative integer)"))
    })
}

/// Hyperparameter values: `beta=0.2,gamma=1` (finite numbers, or `inf` / `-inf`).
pub fn values(s: &str) -> Result<Vec<(String, f64)>, String> {
    pairs(s, |v| match v {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        _ => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`{v}` is not a number")),
    })
}
