//! The reference fixtures of `stdlib/fixtures/<loss>/<case>.json`, loaded for the tests that
//! compare against them. Included by path from several test files.

#![allow(dead_code)]

use compiler::ir::Loss;
use runtime::Bound;
use runtime::data::{self, Format};
use serde_json::Value;
use std::path::Path;

/// One fixture case, bound to its stdlib loss.
pub struct Case {
    /// `loss/case.json`.
    pub label: String,
    /// The checked stdlib loss.
    pub loss: Loss,
    /// Its inputs and hyperparameters.
    pub bound: Bound,
    /// The reference's `expected` object: `loss`, `metrics`, `grad`.
    pub expected: Value,
}

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .map(|f| f.path())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let name = case["loss"].as_str().unwrap().to_string();
            let entry = lossc::stdlib::get(&name)
                .unwrap_or_else(|| panic!("{}: no stdlib loss `{name}`", path.display()));
            let loss = compiler::check_source(entry.source)
                .unwrap()
                .losses
                .remove(0);
            let inputs = data::parse_tensors(
                Format::Json,
                case["inputs"].to_string().as_bytes(),
                "fixture",
            )
            .unwrap();
            let set: Vec<(String, f64)> = case["hyperparameters"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            let bound = runtime::bind(&loss, &inputs, &set).unwrap();
            let label = format!("{name}/{}", path.file_name().unwrap().to_string_lossy());
            Case {
                label,
                loss,
                bound,
                expected: case["expected"].clone(),
            }
        })
        .collect()
}

/// A nested JSON array flattened row-major (`null` — a non-finite value — as NaN).
pub fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(xs) => xs.iter().flat_map(flatten).collect(),
        x => vec![x.as_f64().unwrap_or(f64::NAN)],
    }
}
