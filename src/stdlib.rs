//! The standard library: `.loss` files under `stdlib/<family>/`, embedded at build time.

/// One embedded stdlib file.
#[derive(Debug, Clone, Copy)]
pub struct StdlibEntry {
    /// The family folder it lives in (`preference`, `classification`, ...).
    pub family: &'static str,
    /// The loss's name, which is also the file's stem.
    pub name: &'static str,
    /// The file's text.
    pub source: &'static str,
}

impl StdlibEntry {
    /// The entry's loss, checked (every stdlib file checks: `tests/stdlib.rs`).
    pub fn loss(&self) -> compiler::ir::Loss {
        compiler::check_source(self.source)
            .expect("stdlib losses check")
            .losses
            .into_iter()
            .find(|l| l.name == self.name)
            .expect("a stdlib file defines the loss it is named after")
    }
}

/// Every stdlib loss, sorted by family then name.
pub const ENTRIES: &[StdlibEntry] = include!(concat!(env!("OUT_DIR"), "/stdlib_table.rs"));

/// The stdlib loss called `name`.
pub fn get(name: &str) -> Option<&'static StdlibEntry> {
    ENTRIES.iter().find(|e| e.name == name)
}

/// The families in the order `lossc doc` lists them.
pub const FAMILIES: &[&str] = &[
    "preference",
    "classification",
    "regression",
    "distillation",
    "metric_learning",
    "seed",
];

/// A family folder's name as a heading.
pub fn family_title(family: &str) -> &str {
    match family {
        "preference" => "Preference optimisation",
        "classification" => "Classification",
        "regression" => "Regression",
        "distillation" => "Distillation",
        "metric_learning" => "Metric learning",
        "seed" => "Seed papers",
        other => other,
    }
}
