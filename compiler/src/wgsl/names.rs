//! WGSL names: buffers, entry points, `params` fields, and index variables that never clash
//! with WGSL's keywords or the names the generated code uses itself.

use crate::ir::{Loss, VarId};
use std::collections::HashSet;

/// The WGSL names of everything a program refers to.
pub(super) struct Names<'a> {
    pub loss: &'a Loss,
    /// Per input: its storage buffer.
    pub inputs: Vec<String>,
    /// Per definition: its storage buffer.
    pub defs: Vec<String>,
    /// Per definition: its entry point.
    pub entries: Vec<String>,
    /// Per dimension: `params.dim_<name>`.
    pub dims: Vec<String>,
    /// Per hyperparameter: `params.hyper_<name>`.
    pub hypers: Vec<String>,
}

/// WGSL keywords and reserved words an index variable's name must not take, and the names
/// the generated code uses at module scope or for its locals.
#[rustfmt::skip]
const TAKEN: &[&str] = &[
    "alias", "break", "case", "const", "const_assert", "continue", "continuing", "default",
    "diagnostic", "discard", "else", "enable", "false", "fn", "for", "if", "let", "loop",
    "override", "requires", "return", "struct", "switch", "true", "var", "while", "bool", "f16",
    "f32", "i32", "u32", "vec2", "vec3", "vec4", "mat2x2", "mat3x3", "mat4x4", "array",
    "atomic", "ptr", "sampler", "texture_2d", "NULL", "Self", "abstract", "active", "alignas",
    "alignof", "as", "asm", "asm_fragment", "async", "attribute", "auto", "await", "become",
    "binding_array", "cast", "catch", "class", "co_await", "co_return", "co_yield", "coherent",
    "column_major", "common", "compile", "compile_fragment", "concept", "const_cast",
    "consteval", "constexpr", "constinit", "crate", "debugger", "decltype", "delete", "demote",
    "demote_to_helper", "do", "dynamic_cast", "enum", "explicit", "export", "extends", "extern",
    "external", "fallthrough", "filter", "final", "finally", "friend", "from", "fxgroup", "get",
    "goto", "groupshared", "highp", "impl", "implements", "import", "inline", "instanceof",
    "interface", "layout", "lowp", "macro", "macro_rules", "match", "mediump", "meta", "mod",
    "module", "move", "mut", "mutable", "namespace", "new", "nil", "noexcept", "noinline",
    "nointerpolation", "noperspective", "null", "nullptr", "of", "operator", "package",
    "packoffset", "partition", "pass", "patch", "pixelfragment", "precise", "precision",
    "premerge", "priv", "protected", "pub", "public", "readonly", "ref", "regardless",
    "register", "reinterpret_cast", "require", "resource", "restrict", "self", "set", "shared",
    "sizeof", "smooth", "snorm", "static", "static_assert", "static_cast", "std", "subroutine",
    "super", "target", "template", "this", "thread_local", "throw", "trait", "try", "type",
    "typedef", "typeid", "typename", "typeof", "union", "unless", "unorm", "unsafe", "unsized",
    "use", "using", "varying", "virtual", "volatile", "wgsl", "where", "with", "writeonly",
    "yield", "params", "errors", "result", "reduced", "partials", "partial_counts", "scratch",
    "scratch_count", "flat", "rest", "lane", "group", "groups", "gid", "term", "acc", "kept",
    "n", "abs", "exp", "log", "sqrt", "max", "min", "select", "sign", "floor", "round", "ldexp",
    "bitcast", "sin", "cos", "tanh", "pow", "clamp",
];

/// `name` made a valid WGSL identifier fragment.
pub(super) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl<'a> Names<'a> {
    pub fn new(loss: &'a Loss) -> Names<'a> {
        let mut seen = HashSet::new();
        let mut unique = |base: String| {
            let mut name = base.clone();
            let mut k = 1;
            while !seen.insert(name.clone()) {
                k += 1;
                name = format!("{base}_{k}");
            }
            name
        };
        let inputs = loss
            .inputs
            .iter()
            .map(|i| unique(format!("in_{}", sanitize(&i.name))))
            .collect();
        let defs: Vec<String> = loss
            .defs
            .iter()
            .map(|d| unique(format!("def_{}", sanitize(&d.name))))
            .collect();
        let entries = loss
            .defs
            .iter()
            .map(|d| unique(format!("compute_{}", sanitize(&d.name))))
            .collect();
        Names {
            loss,
            inputs,
            defs,
            entries,
            dims: loss
                .dims
                .iter()
                .map(|d| format!("params.dim_{}", sanitize(d)))
                .collect(),
            hypers: loss
                .hypers
                .iter()
                .map(|h| format!("params.hyper_{}", sanitize(&h.name)))
                .collect(),
        }
    }
}

/// WGSL names for the index variables `ids` (one kernel's): the name as written where it is
/// unique among them and takes no reserved or generated name, with the variable's number
/// appended otherwise. Variables not in `ids` get the suffixed form.
pub(super) fn var_names(loss: &Loss, ids: &[VarId]) -> Vec<String> {
    let mut count = std::collections::HashMap::new();
    for &v in ids {
        *count.entry(loss.vars[v].name.as_str()).or_insert(0) += 1;
    }
    loss.vars
        .iter()
        .enumerate()
        .map(|(id, v)| {
            let base = sanitize(&v.name);
            let temp_like = base.len() > 1
                && base.starts_with('t')
                && base[1..].chars().all(|c| c.is_ascii_digit());
            let clash = TAKEN.contains(&base.as_str())
                || temp_like
                || base.starts_with("in_")
                || base.starts_with("def_")
                || base.starts_with("lossc_")
                || base.starts_with("compute_")
                || base.starts_with("reduce")
                || base.starts_with("__");
            if count.get(v.name.as_str()) == Some(&1) && ids.contains(&id) && !clash {
                base
            } else {
                format!("{base}_{id}")
            }
        })
        .collect()
}
