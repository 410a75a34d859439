//! Name helpers for the checker: reserved words and "did you mean" suggestions.

use crate::ir::{Builtin, Reducer};

/// Names that cannot name an input, hyperparameter, definition, metric, index or `fn`.
pub fn reserved_kind(name: &str) -> Option<&'static str> {
    if Builtin::from_name(name).is_some() {
        Some("a built-in function")
    } else if Reducer::ALL.iter().any(|r| r.keyword() == name) {
        Some("a reduction")
    } else if matches!(name, "int" | "bool" | "float") {
        Some("a type name")
    } else {
        None
    }
}

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    // Short names are "close" to every other; very long ones are not typos (and the edit
    // distance is quadratic in their length).
    if !(3..=64).contains(&len) {
        return None;
    }
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name && c.chars().count().abs_diff(len) <= limit)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the nearest candidate.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}
