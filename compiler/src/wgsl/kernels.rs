//! The module: header, bindings, one kernel per definition, the two-level reductions, the
//! loss.

use super::expr::{Body, Reduced, Ty};
use super::names::Names;
use super::{Binding, Kernel, MAX_PARTIALS, REDUCE_GROUP, Shader, Work};
use crate::ir::{BinOp, DType, DefKind, Expr, Loss, Reducer, VarId};
use std::fmt::Write;

/// A `.loss`-source rendering of `e`, cut to about `width` characters, for comments.
pub(super) fn describe(loss: &Loss, e: &Expr, width: usize) -> String {
    one_line(&crate::print::expr(loss, e), width)
}

fn one_line(s: &str, width: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= width {
        s
    } else {
        let cut: String = s.chars().take(width).collect();
        format!("{cut} ...")
    }
}

/// The reductions of a scalar expression that can run as two-level reductions: `sum`,
/// `mean`, `count`, `max` and `min` reached without entering another reduction or a lazily
/// evaluated operand (the branches of an `if`, the right side of `&&` and `||`).
fn top_reductions<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Reduce { op, .. } => {
            if matches!(
                op,
                Reducer::Sum | Reducer::Mean | Reducer::Count | Reducer::Max | Reducer::Min
            ) {
                out.push(e);
            }
        }
        Expr::Select(c, _, _) => top_reductions(c, out),
        Expr::Binary(BinOp::And | BinOp::Or, a, _) => top_reductions(a, out),
        Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {}
        Expr::Read { indices, .. } => indices.iter().for_each(|i| top_reductions(i, out)),
        Expr::Unary(_, a) => top_reductions(a, out),
        Expr::Binary(_, a, b) => {
            top_reductions(a, out);
            top_reductions(b, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| top_reductions(a, out)),
    }
}

/// [`top_reductions`], and `logsumexp` too: what a row kernel's workgroup computes together.
fn row_reductions<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Reduce {
            op: Reducer::LogSumExp,
            ..
        } => out.push(e),
        Expr::Reduce { .. } => top_reductions(e, out),
        Expr::Select(c, _, _) => row_reductions(c, out),
        Expr::Binary(BinOp::And | BinOp::Or, a, _) => row_reductions(a, out),
        Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {}
        Expr::Read { indices, .. } => indices.iter().for_each(|i| row_reductions(i, out)),
        Expr::Unary(_, a) => row_reductions(a, out),
        Expr::Binary(_, a, b) => {
            row_reductions(a, out);
            row_reductions(b, out);
        }
        Expr::Call(_, args) => args.iter().for_each(|a| row_reductions(a, out)),
    }
}

/// Builds the module of one program.
pub(super) struct Module<'a> {
    loss: &'a Loss,
    bindings: Vec<Binding>,
    names: Names<'a>,
    text: String,
    kernels: Vec<Kernel>,
    reductions: usize,
}

impl<'a> Module<'a> {
    pub fn new(loss: &'a Loss) -> Module<'a> {
        Module {
            loss,
            names: Names::new(loss),
            bindings: vec![],
            text: String::new(),
            kernels: vec![],
            reductions: 0,
        }
    }

    pub fn emit(mut self) -> Shader {
        self.bindings = self.header();
        self.text.push_str(&library());
        let loss = self.loss;
        for (d, def) in loss.defs.iter().enumerate() {
            let role = if def.name.starts_with("grad_") {
                "gradient "
            } else if def.kind == DefKind::Metric {
                "metric "
            } else {
                ""
            };
            let head = format!(
                "{} {}{} = {}",
                if def.kind == DefKind::Metric {
                    "metric"
                } else {
                    "let"
                },
                def.name,
                if def.indices.is_empty() {
                    String::new()
                } else {
                    let ix: Vec<&str> = def
                        .indices
                        .iter()
                        .map(|&v| loss.vars[v].name.as_str())
                        .collect();
                    format!("[{}]", ix.join(", "))
                },
                crate::print::expr(loss, &def.body)
            );
            let head = one_line(&head, 200);
            let entry = self.names.entries[d].clone();
            let target = format!("{}[{{at}}]", self.names.defs[d]);
            if def.indices.is_empty() {
                self.scalar(
                    &entry,
                    &format!("the {role}definition `{}` (scalar)", def.name),
                    &head,
                    &def.body,
                    Some(d),
                    &target.replace("{at}", "0"),
                );
            } else {
                self.elementwise(&entry, role, d, &head, &def.indices, &def.body);
                self.rows(
                    &format!("{entry}_rows"),
                    role,
                    d,
                    &head,
                    &def.indices,
                    &def.body,
                );
            }
        }
        let result = &loss.result;
        let head = one_line(&crate::print::expr(loss, result), 200);
        self.scalar(
            "compute_loss",
            &format!("the loss `{}`", loss.name),
            &head,
            result,
            None,
            "result[0]",
        );
        Shader {
            source: self.text,
            bindings: self.bindings,
            kernels: self.kernels,
            reductions: self.reductions,
        }
    }

    /// The opening comment, `Params` and the bindings.
    fn header(&mut self) -> Vec<Binding> {
        let loss = self.loss;
        let t = &mut self.text;
        let _ = writeln!(
            t,
            "// Generated by lossc: the loss `{}`{}, as WGSL compute shaders.",
            loss.name,
            if loss.defs.iter().any(|d| d.name.starts_with("grad_")) {
                " and its gradient"
            } else {
                ""
            }
        );
        let _ = writeln!(
            t,
            "// Run the entry points in the order they appear; each `compute_<name>` fills the\n\
             // buffer `def_<name>`, and `compute_loss` writes the loss to `result`.\n"
        );
        let _ = writeln!(
            t,
            "// Dimension sizes and hyperparameters: one module serves every size."
        );
        let _ = writeln!(t, "struct Params {{");
        let mut fields = 0;
        for d in &loss.dims {
            let _ = writeln!(t, "    dim_{}: i32,", super::names::sanitize(d));
            fields += 1;
        }
        for h in &loss.hypers {
            let _ = writeln!(
                t,
                "    hyper_{}: f32, // default {}",
                super::names::sanitize(&h.name),
                crate::print::hyper_value(h.default)
            );
            fields += 1;
        }
        if fields == 0 {
            let _ = writeln!(t, "    unused: u32,");
        }
        let _ = writeln!(t, "}}\n");
        let mut bindings = vec![];
        let mut bind = |t: &mut String, b: Binding, decl: String, comment: &str| {
            let _ = writeln!(t, "@group(0) @binding({}) {decl}{comment}", bindings.len());
            bindings.push(b);
        };
        bind(
            t,
            Binding::Params,
            "var<uniform> params: Params;".into(),
            "",
        );
        bind(
            t,
            Binding::Errors,
            "var<storage, read_write> errors: array<atomic<u32>, 5>;".into(),
            " // first bad index: flag, tensor, position, value, is definition",
        );
        bind(
            t,
            Binding::Result,
            "var<storage, read_write> result: array<f32>;".into(),
            " // the loss",
        );
        bind(
            t,
            Binding::Reduced,
            "var<storage, read_write> reduced: array<f32>;".into(),
            " // one value per two-level reduction",
        );
        bind(
            t,
            Binding::Partials,
            "var<storage, read_write> partials: array<f32>;".into(),
            " // per workgroup of a reduction",
        );
        bind(
            t,
            Binding::PartialCounts,
            "var<storage, read_write> partial_counts: array<u32>;".into(),
            " // terms kept per workgroup (for mean)",
        );
        for (i, input) in loss.inputs.iter().enumerate() {
            let dims: Vec<&str> = input.shape.iter().map(|&d| loss.dims[d].as_str()).collect();
            bind(
                t,
                Binding::Input(i),
                format!(
                    "var<storage, read> {}: array<{}>;",
                    self.names.inputs[i],
                    super::storage_type(input.dtype, true)
                ),
                &format!(
                    " // input {}: {}[{}]",
                    input.name,
                    input.dtype.name(),
                    dims.join(", ")
                ),
            );
        }
        for (d, def) in loss.defs.iter().enumerate() {
            let dims: Vec<&str> = def
                .indices
                .iter()
                .map(|&v| loss.dims[loss.vars[v].dim].as_str())
                .collect();
            bind(
                t,
                Binding::Def(d),
                format!(
                    "var<storage, read_write> {}: array<f32>;",
                    self.names.defs[d]
                ),
                &format!(
                    " // {} {}[{}]{}",
                    if def.kind == DefKind::Metric {
                        "metric"
                    } else {
                        "let"
                    },
                    def.name,
                    dims.join(", "),
                    match def.dtype {
                        DType::Float => "",
                        DType::Int => " (ints, stored as f32)",
                        DType::Bool => " (booleans, stored as 0.0 / 1.0)",
                    }
                ),
            );
        }
        let _ = writeln!(
            t,
            "\nvar<workgroup> scratch: array<f32, {REDUCE_GROUP}>;\nvar<workgroup> scratch_count: array<u32, {REDUCE_GROUP}>;\n"
        );
        bindings
    }

    /// The element count of `vars` (u32) and the statements that set each variable from a
    /// flat row-major position held in `flat`.
    fn unflatten(&self, body: &mut Body, vars: &[VarId], flat: &str) -> String {
        let sizes: Vec<String> = vars
            .iter()
            .map(|&v| format!("u32({})", self.names.dims[self.loss.vars[v].dim]))
            .collect();
        if let [v] = vars {
            body.line(&format!("let {} = i32({flat});", body.vars[*v]));
        } else {
            body.line(&format!("var rest = {flat};"));
            for (k, &v) in vars.iter().enumerate().rev() {
                if k == 0 {
                    body.line(&format!("let {} = i32(rest);", body.vars[v]));
                } else {
                    body.line(&format!("let {} = i32(rest % {});", body.vars[v], sizes[k]));
                    body.line(&format!("rest = rest / {};", sizes[k]));
                }
            }
        }
        sizes.join(" * ")
    }

    /// One invocation per element of definition `d`.
    fn elementwise(
        &mut self,
        entry: &str,
        role: &str,
        d: usize,
        head: &str,
        indices: &[VarId],
        value: &Expr,
    ) {
        let loss = self.loss;
        let def = &loss.defs[d];
        let mut body = Body::new(&self.names, 1, indices, &[value]);
        let sizes: Vec<String> = indices
            .iter()
            .map(|&v| format!("u32({})", self.names.dims[loss.vars[v].dim]))
            .collect();
        body.line("let flat = gid.x + gid.y * groups.x * 64u;");
        body.line(&format!("if (flat >= {}) {{ return; }}", sizes.join(" * ")));
        self.unflatten(&mut body, indices, "flat");
        let v = body.float(value);
        body.line(&format!("{}[flat] = {v};", self.names.defs[d]));
        let text = std::mem::take(&mut body.text);
        let t = &mut self.text;
        let _ = writeln!(
            t,
            "// The {role}definition `{}`, one invocation per element:\n//   {head}",
            def.name
        );
        let _ = writeln!(
            t,
            "@compute @workgroup_size({})\nfn {entry}(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {{",
            super::ELEMENT_GROUP
        );
        t.push_str(&text);
        let _ = writeln!(t, "}}\n");
        let mut used = body.used;
        used.insert(Binding::Def(d));
        self.kernels.push(Kernel {
            entry: entry.to_string(),
            work: Work::Elements(indices.iter().map(|&v| loss.vars[v].dim).collect()),
            bindings: self.binding_indices(&used),
        });
    }

    /// The alternative to [`Self::elementwise`] for a definition whose value needs reductions:
    /// one workgroup of [`REDUCE_GROUP`] per element, which computes each top-level reduction
    /// together (strided terms, a tree across the workgroup) before one invocation finishes
    /// the element. Emitted only when the definition has such reductions.
    fn rows(
        &mut self,
        entry: &str,
        role: &str,
        d: usize,
        head: &str,
        indices: &[VarId],
        value: &'a Expr,
    ) {
        let mut tops = vec![];
        row_reductions(value, &mut tops);
        if tops.is_empty() {
            return;
        }
        let loss = self.loss;
        let def = &loss.defs[d];
        let mut body = Body::new(&self.names, 1, indices, &[value]);
        let sizes: Vec<String> = indices
            .iter()
            .map(|&v| format!("u32({})", self.names.dims[loss.vars[v].dim]))
            .collect();
        body.line("let flat = group.x + group.y * groups.x;");
        body.line(&format!("if (flat >= {}) {{ return; }}", sizes.join(" * ")));
        self.unflatten(&mut body, indices, "flat");
        let mut reduced = vec![];
        let mut terms = vec![];
        for (k, e) in tops.into_iter().enumerate() {
            let Expr::Reduce {
                op,
                vars,
                filter,
                body: term,
            } = e
            else {
                unreachable!("row_reductions returns reductions")
            };
            terms.push(vars.iter().map(|&v| loss.vars[v].dim).collect::<Vec<_>>());
            let n: Vec<String> = vars
                .iter()
                .map(|&v| format!("u32({})", self.names.dims[loss.vars[v].dim]))
                .collect();
            body.line(&format!("// {}", describe(loss, e, 100)));
            let passes: &[(&str, &str, &str)] = match op {
                Reducer::Max => &[("-lossc_inf()", "max", "lossc_max(acc, {v})")],
                Reducer::Min => &[("lossc_inf()", "min", "lossc_min(acc, {v})")],
                Reducer::LogSumExp => &[
                    ("-lossc_inf()", "max", "lossc_max(acc, {v})"),
                    ("0.0", "sum", "acc + lossc_exp({v} - m{k})"),
                ],
                _ => &[("0.0", "sum", "acc + {v}")],
            };
            for (pass, &(start, combine, update)) in passes.iter().enumerate() {
                body.line("{");
                body.indent += 1;
                body.line(&format!("var acc = {start};"));
                body.line("var kept = 0u;");
                body.line(&format!(
                    "for (var term = lane; term < {}; term = term + {REDUCE_GROUP}u) {{",
                    n.join(" * ")
                ));
                body.indent += 1;
                self.unflatten(&mut body, vars, "term");
                body.filter(filter.as_deref());
                if let Some(t) = term {
                    let v = body.float(t);
                    let update = update.replace("{v}", &v).replace("{k}", &k.to_string());
                    body.line(&format!("acc = {update};"));
                }
                body.line("kept = kept + 1u;");
                body.indent -= 1;
                body.line("}");
                body.line("scratch[lane] = acc;");
                body.line("scratch_count[lane] = kept;");
                body.line(&format!("workgroup_{combine}(lane);"));
                body.indent -= 1;
                body.line("}");
                // Every invocation reads the result before the scratch is reused.
                let lhs_decl = match (op, pass) {
                    (Reducer::LogSumExp, 0) => format!("let m{k} = scratch[0];"),
                    (Reducer::LogSumExp, _) => {
                        format!("let r{k} = lossc_logsumexp_finish(m{k}, scratch[0]);")
                    }
                    (Reducer::Mean, _) => {
                        format!("let r{k} = scratch[0] / f32(max(scratch_count[0], 1u));")
                    }
                    (Reducer::Count, _) => format!("let r{k} = i32(scratch_count[0]);"),
                    _ => format!("let r{k} = scratch[0];"),
                };
                body.line(&lhs_decl);
                body.line("workgroupBarrier();");
            }
            let ty = if *op == Reducer::Count { Ty::I } else { Ty::F };
            reduced.push(Reduced {
                expr: e,
                value: format!("r{k}"),
                ty,
            });
        }
        body.reduced = reduced;
        body.line("if (lane == 0u) {");
        body.indent += 1;
        let v = body.float(value);
        body.line(&format!("{}[flat] = {v};", self.names.defs[d]));
        body.indent -= 1;
        body.line("}");
        let text = std::mem::take(&mut body.text);
        let t = &mut self.text;
        let _ = writeln!(
            t,
            "// The {role}definition `{}`, one workgroup per element (its reductions shared):\n//   {head}",
            def.name
        );
        let _ = writeln!(
            t,
            "@compute @workgroup_size({REDUCE_GROUP})\nfn {entry}(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {{"
        );
        t.push_str(&text);
        let _ = writeln!(t, "}}\n");
        let mut used = std::mem::take(&mut body.used);
        used.insert(Binding::Def(d));
        self.kernels.push(Kernel {
            entry: entry.to_string(),
            work: Work::Rows {
                dims: indices.iter().map(|&v| loss.vars[v].dim).collect(),
                terms,
            },
            bindings: self.binding_indices(&used),
        });
    }

    /// A scalar: its top-level reductions as two-level reductions, then one invocation.
    fn scalar(
        &mut self,
        entry: &str,
        what: &str,
        head: &str,
        value: &'a Expr,
        written: Option<usize>,
        target: &str,
    ) {
        let mut tops = vec![];
        top_reductions(value, &mut tops);
        let mut reduced = vec![];
        for e in tops {
            let slot = self.reductions;
            self.reductions += 1;
            self.two_level(e, slot, what);
            let (value, ty) = match self.loss.type_of(e) {
                DType::Int => (format!("bitcast<i32>(reduced[{slot}])"), Ty::I),
                _ => (format!("reduced[{slot}]"), Ty::F),
            };
            reduced.push(Reduced { expr: e, value, ty });
        }
        let mut body = Body::new(&self.names, 1, &[], &[value]);
        body.reduced = reduced;
        let (v, ty) = body.expr(value);
        let v = super::expr::as_float(v, ty);
        body.line(&format!("{target} = {v};"));
        let mut used = std::mem::take(&mut body.used);
        if let Some(d) = written {
            used.insert(Binding::Def(d));
        }
        let text = body.text;
        let t = &mut self.text;
        let _ = writeln!(t, "// {}:\n//   {head}", capitalise(what));
        let _ = writeln!(t, "@compute @workgroup_size(1)\nfn {entry}() {{");
        t.push_str(&text);
        let _ = writeln!(t, "}}\n");
        self.kernels.push(Kernel {
            entry: entry.to_string(),
            work: Work::Single,
            bindings: self.binding_indices(&used),
        });
    }

    /// `reduceN_partial` and `reduceN_fold` for the reduction `e`, into `reduced[slot]`.
    fn two_level(&mut self, e: &'a Expr, slot: usize, what: &str) {
        let Expr::Reduce {
            op,
            vars,
            filter,
            body: term,
        } = e
        else {
            unreachable!("top_reductions returns reductions")
        };
        let loss = self.loss;
        let (start, combine) = match op {
            Reducer::Max => ("-lossc_inf()", "max"),
            Reducer::Min => ("lossc_inf()", "min"),
            _ => ("0.0", "sum"),
        };
        let mut body = Body::new(&self.names, 1, &[], &[e]);
        body.line(&format!("var acc = {start};"));
        body.line("var kept = 0u;");
        let sizes: Vec<String> = vars
            .iter()
            .map(|&v| format!("u32({})", self.names.dims[loss.vars[v].dim]))
            .collect();
        body.line(&format!("let n = {};", sizes.join(" * ")));
        body.line(&format!(
            "for (var term = group.x * {REDUCE_GROUP}u + lane; term < n; term = term + groups.x * {REDUCE_GROUP}u) {{"
        ));
        body.indent += 1;
        self.unflatten(&mut body, vars, "term");
        body.filter(filter.as_deref());
        if let Some(term) = term {
            let v = body.float(term);
            let update = match op {
                Reducer::Max => format!("acc = lossc_max(acc, {v});"),
                Reducer::Min => format!("acc = lossc_min(acc, {v});"),
                _ => format!("acc = acc + {v};"),
            };
            body.line(&update);
        }
        body.line("kept = kept + 1u;");
        body.indent -= 1;
        body.line("}");
        body.line("scratch[lane] = acc;");
        body.line("scratch_count[lane] = kept;");
        body.line(&format!("workgroup_{combine}(lane);"));
        body.line("if (lane == 0u) {");
        body.line(&format!(
            "    partials[{} + group.x] = scratch[0];",
            slot * MAX_PARTIALS as usize
        ));
        body.line(&format!(
            "    partial_counts[{} + group.x] = scratch_count[0];",
            slot * MAX_PARTIALS as usize
        ));
        body.line("}");
        let partial = std::mem::take(&mut body.text);
        let used = std::mem::take(&mut body.used);
        let shown = describe(loss, e, 160);
        let t = &mut self.text;
        let _ = writeln!(
            t,
            "// Reduction {slot}, for {what}, level 1 of 2: each workgroup reduces its strided share\n\
             // of the terms of\n//   {shown}"
        );
        let _ = writeln!(
            t,
            "@compute @workgroup_size({REDUCE_GROUP})\nfn reduce{slot}_partial(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {{"
        );
        t.push_str(&partial);
        let _ = writeln!(t, "}}\n");
        let base = slot * MAX_PARTIALS as usize;
        let finish = match op {
            Reducer::Mean => "scratch[0] / f32(max(scratch_count[0], 1u))",
            Reducer::Count => "bitcast<f32>(scratch_count[0])",
            _ => "scratch[0]",
        };
        let fold_update = match op {
            Reducer::Max => format!("acc = lossc_max(acc, partials[{base} + g]);"),
            Reducer::Min => format!("acc = lossc_min(acc, partials[{base} + g]);"),
            _ => format!("acc = acc + partials[{base} + g];"),
        };
        let _ = writeln!(
            t,
            "// Reduction {slot}, level 2 of 2: one workgroup folds the partials in a fixed order.\n\
             @compute @workgroup_size({REDUCE_GROUP})\n\
             fn reduce{slot}_fold(@builtin(local_invocation_index) lane: u32) {{\n    \
             let n = {};\n    \
             var acc = {start};\n    \
             var kept = 0u;\n    \
             for (var g = lane; g < reduction_groups(n); g = g + {REDUCE_GROUP}u) {{\n        \
             {fold_update}\n        \
             kept = kept + partial_counts[{base} + g];\n    \
             }}\n    \
             scratch[lane] = acc;\n    \
             scratch_count[lane] = kept;\n    \
             workgroup_{combine}(lane);\n    \
             if (lane == 0u) {{\n        \
             reduced[{slot}] = {finish};\n    \
             }}\n\
             }}\n",
            sizes.join(" * ")
        );
        self.kernels.push(Kernel {
            entry: format!("reduce{slot}_partial"),
            work: Work::Partial {
                slot,
                dims: vars.iter().map(|&v| loss.vars[v].dim).collect(),
            },
            bindings: self.binding_indices(&used),
        });
        self.kernels.push(Kernel {
            entry: format!("reduce{slot}_fold"),
            work: Work::Fold,
            bindings: self.binding_indices(&Default::default()),
        });
    }
}

impl Module<'_> {
    /// The fixed bindings and `used`, as binding indices.
    fn binding_indices(&self, used: &std::collections::BTreeSet<Binding>) -> Vec<u32> {
        self.bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| !matches!(b, Binding::Input(_) | Binding::Def(_)) || used.contains(b))
            .map(|(k, _)| k as u32)
            .collect()
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The text every module carries between its bindings and its kernels: the math library and
/// [`RUNTIME`].
pub(super) fn library() -> String {
    format!("{}{RUNTIME}", super::math::SOURCE)
}

/// Helpers every module carries: index checks, the end of `logsumexp`, and the workgroup
/// tree reductions.
const RUNTIME: &str = r#"
// ---- indices and reductions -----------------------------------------------------------------

// An index checked against its dimension. Out of range, the first such index is recorded in
// `errors` (the host turns it into the CPU backend's message) and 0 is used instead, so no
// read leaves its buffer.
fn lossc_check(i: i32, size: i32, tensor: u32, position: u32, is_def: bool) -> i32 {
    if (i >= 0 && i < size) { return i; }
    if (atomicMax(&errors[0], 1u) == 0u) {
        atomicStore(&errors[1], tensor);
        atomicStore(&errors[2], position);
        atomicStore(&errors[3], bitcast<u32>(i));
        atomicStore(&errors[4], select(0u, 1u, is_def));
    }
    return 0;
}

// max + log(sum of exp(x - max)), or the max itself when it is not finite (an empty
// reduction gives -inf).
fn lossc_logsumexp_finish(m: f32, sum: f32) -> f32 {
    if (lossc_is_nan(m) || lossc_is_inf(m)) { return m; }
    return m + lossc_log(sum);
}

// Workgroups used by the first level of a reduction over n terms (the host computes the same).
fn reduction_groups(n: u32) -> u32 {
    return clamp((n + 255u) / 256u, 1u, 256u);
}

// Tree reductions of `scratch` (and `scratch_count`) across one workgroup of 256; the result
// lands in element 0. Called from uniform control flow.
fn workgroup_sum(lane: u32) {
    workgroupBarrier();
    for (var width = 128u; width > 0u; width = width / 2u) {
        if (lane < width) {
            scratch[lane] = scratch[lane] + scratch[lane + width];
            scratch_count[lane] = scratch_count[lane] + scratch_count[lane + width];
        }
        workgroupBarrier();
    }
}

fn workgroup_max(lane: u32) {
    workgroupBarrier();
    for (var width = 128u; width > 0u; width = width / 2u) {
        if (lane < width) {
            scratch[lane] = lossc_max(scratch[lane], scratch[lane + width]);
            scratch_count[lane] = scratch_count[lane] + scratch_count[lane + width];
        }
        workgroupBarrier();
    }
}

fn workgroup_min(lane: u32) {
    workgroupBarrier();
    for (var width = 128u; width > 0u; width = width / 2u) {
        if (lane < width) {
            scratch[lane] = lossc_min(scratch[lane], scratch[lane + width]);
            scratch_count[lane] = scratch_count[lane] + scratch_count[lane + width];
        }
        workgroupBarrier();
    }
}

"#;
