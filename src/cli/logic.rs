//! `lossc logic`: the logical semantics of preference losses (compiler::logic).
//!
//! - `lossc logic FILE [--loss NAME]`: decompile a loss to its preference structure.
//! - `lossc logic --compile "P = ...; P_C = ...; P_A = ..." [--f F] [--name NAME]`: the loss
//!   of a structure, as `.loss` source.
//! - `lossc logic --compare A B [--reference]`: equal, `le` (A ⊑ B), `ge`, or incomparable
//!   with a witness. A and B are files, stdlib losses, lattice nodes (`cCPO`) or structures.
//! - `lossc logic --lattice [--reference] [--dot]`: the paper's loss lattice.
//!
//! Every form takes `--json`.

use crate::source::{self, UserError};
use crate::stdlib;
use clap::{ArgGroup, Args};
use compiler::logic::{
    self, Comparison, FKind, Relation, Structure, compare::Point, lattice, structure::Formulas,
};
use serde_json::{Value, json};
use std::fmt::Write;

/// The arguments of `lossc logic`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("mode")
        .required(true)
        .args(["file", "compile", "compare", "lattice"])
))]
pub struct LogicArgs {
    /// A `.loss` file, or the name of a stdlib loss, to decompile.
    file: Option<String>,
    /// The loss to decompile, when the file defines several.
    #[arg(long, conflicts_with_all = ["compile", "compare", "lattice"])]
    loss: Option<String>,
    /// Compile a structure to a loss: "P = FORMULA; P_C = FORMULA; P_A = FORMULA" (P_C and
    /// P_A optional; formulas over Mw Ml Rw Rl with ! & | -> ^), or a lattice node's name.
    #[arg(long, value_name = "STRUCTURE")]
    compile: Option<String>,
    /// With --compile: the convex function f.
    #[arg(
        long = "f",
        value_name = "F",
        conflicts_with_all = ["file", "compare", "lattice"],
        value_parser = ["logistic", "squared", "hinge"],
        default_value = "logistic"
    )]
    f: String,
    /// With --compile: the compiled loss's name.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["file", "compare", "lattice"],
        default_value = "logic_loss"
    )]
    name: String,
    /// Compare two losses; each a file (FILE:LOSS for one of several), a stdlib loss, a
    /// lattice node or a structure.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<String>>,
    /// Print the loss lattice of Richardson et al.
    #[arg(long)]
    lattice: bool,
    /// The lattice with a reference model (§4.4); with --compare, lattice nodes are lifted.
    #[arg(long, conflicts_with_all = ["file", "compile"])]
    reference: bool,
    /// With --lattice: print Graphviz DOT.
    #[arg(long, conflicts_with_all = ["json", "file", "compile", "compare"])]
    dot: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn err(e: impl std::fmt::Display) -> UserError {
    UserError(format!("error: {e}"))
}

fn json_out(v: Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(&v).expect("JSON values serialise")
    )
}

/// Runs `lossc logic`.
pub fn run(args: LogicArgs) -> Result<String, UserError> {
    if let Some(file) = &args.file {
        decompile(file, args.loss.as_deref(), args.json)
    } else if let Some(spec) = &args.compile {
        let f = FKind::from_name(&args.f).expect("clap checked it");
        compile(spec, f, &args.name, args.json)
    } else if let Some(pair) = &args.compare {
        compare(&pair[0], &pair[1], args.reference, args.json)
    } else {
        lattice(args.reference, args.dot, args.json)
    }
}

fn formula_json(f: &Formulas) -> [Value; 3] {
    [
        json!(f.p.to_string()),
        f.pc.as_ref().map_or(Value::Null, |x| json!(x.to_string())),
        f.pa.as_ref().map_or(Value::Null, |x| json!(x.to_string())),
    ]
}

/// `  P_C       ...` lines for a structure.
fn structure_lines(out: &mut String, s: &Structure) {
    let f = s.formulas();
    let _ = writeln!(out, "  P         {}", f.p);
    let _ = writeln!(
        out,
        "  P_C       {}",
        f.pc.map_or("none (true: no conditioning)".to_string(), |x| x
            .to_string())
    );
    let _ = writeln!(
        out,
        "  P_A       {}",
        f.pa.map_or("none (false)".to_string(), |x| x.to_string())
    );
    let _ = writeln!(out, "  ✓         {}", s.worlds_text(s.win));
    let _ = writeln!(out, "  ✗         {}", s.worlds_text(s.lose));
}

/// `w = exp(policy_chosen_logps), ...` for the atoms in the ratio.
fn weights_legend(d: &logic::Decompiled) -> String {
    let used = d.structure.space().atoms();
    d.inputs
        .iter()
        .filter(|(a, _)| used.contains(a))
        .map(|(a, input)| format!("{} = exp({input})", a.weight()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_decompiled(
    file: &str,
    loss: Option<&str>,
) -> Result<(String, logic::Decompiled), UserError> {
    let src = source::load(file)?;
    let program = source::check(&src)?;
    let l = source::select(&program, &src, loss)?;
    let d = logic::decompile(l).map_err(|e| {
        err(format!(
            "loss `{}` ({}) has no DPA logical semantics: {e}",
            l.name, src.name
        ))
    })?;
    Ok((src.name, d))
}

fn decompile(file: &str, loss: Option<&str>, as_json: bool) -> Result<String, UserError> {
    let (name, d) = load_decompiled(file, loss)?;
    let s = &d.structure;
    if as_json {
        let [p, pc, pa] = formula_json(&s.formulas());
        return Ok(json_out(json!({
            "f": d.f.name(),
            "P": p,
            "P_C": pc,
            "P_A": pa,
            "ratio": s.ratio_text(),
            "stripped": d.stripped,
        })));
    }
    let mut out = String::new();
    let _ = writeln!(out, "loss {} ({name})", d.loss);
    let _ = writeln!(out, "  atoms     {}", d.atoms);
    let f = if d.semantic {
        format!(
            "{} ({}), z = ρ: the loss is written -log(P / Q), which is -log σ(log P - log(Q - P)) (the semantic loss -log WMC(✓) when Q = 1)",
            d.f.name(),
            d.f.definition()
        )
    } else {
        format!("{} ({}), z = {}", d.f.name(), d.f.definition(), d.z)
    };
    let _ = writeln!(out, "  f         {f}");
    let _ = writeln!(
        out,
        "  ratio     {}   (ρ = log ratio; {})",
        s.ratio_text(),
        weights_legend(&d)
    );
    structure_lines(&mut out, s);
    match d.stripped.split_first() {
        None => {
            let _ = writeln!(out, "  stripped  nothing");
        }
        Some((first, rest)) => {
            let _ = writeln!(out, "  stripped  {first}");
            for r in rest {
                let _ = writeln!(out, "            {r}");
            }
        }
    }
    Ok(out)
}

/// A structure given on the command line: a lattice node's name (returned as its label)
/// or `P = ...` (no label).
fn parse_structure(text: &str, reference: bool) -> Result<(Option<String>, Structure), UserError> {
    if let Some(n) = lattice::node(text) {
        let s = if reference {
            n.structure.lift()
        } else {
            n.structure
        };
        return Ok((Some(n.name.to_string()), s));
    }
    if text.contains('=') {
        let s = Structure::parse(text).map_err(err)?;
        return Ok((None, s));
    }
    Err(err(format!(
        "`{text}` is neither a file, a stdlib loss, a lattice node ({}) nor a structure `P = FORMULA; P_C = FORMULA; P_A = FORMULA`",
        lattice::node_names().join(", ")
    )))
}

fn compile(spec: &str, f: FKind, name: &str, as_json: bool) -> Result<String, UserError> {
    let (_, s) = parse_structure(spec, false)?;
    let loss = logic::compile(&s, f, name).map_err(err)?;
    let text = compiler::print::loss(&loss);
    if as_json {
        let [p, pc, pa] = formula_json(&s.formulas());
        return Ok(json_out(json!({
            "name": name,
            "f": f.name(),
            "P": p,
            "P_C": pc,
            "P_A": pa,
            "ratio": s.ratio_text(),
            "source": text,
        })));
    }
    Ok(text)
}

/// A compare operand: a file or stdlib loss (decompiled; `FILE:LOSS` picks one loss of a
/// file), else a lattice node or a structure.
fn operand(text: &str, reference: bool) -> Result<(Option<String>, Structure), UserError> {
    let is_file = |t: &str| std::path::Path::new(t).is_file() || stdlib::get(t).is_some();
    let (file, loss) = match text.rsplit_once(':') {
        Some((f, l)) if !is_file(text) && is_file(f) => (f, Some(l)),
        _ => (text, None),
    };
    if is_file(file) {
        let (_, d) = load_decompiled(file, loss).map_err(|e| {
            UserError(e.0.replace("with --loss NAME", &format!("with {file}:LOSS")))
        })?;
        return Ok((Some(d.loss), d.structure));
    }
    parse_structure(text, reference)
}

fn point_json(p: &Point) -> Value {
    let mut m = serde_json::Map::new();
    for (a, v) in &p.weights {
        m.insert(a.name().to_string(), json!(v));
    }
    m.insert("loss_a".into(), json!(p.loss_a));
    m.insert("loss_b".into(), json!(p.loss_b));
    Value::Object(m)
}

fn point_text(p: &Point) -> String {
    let at: Vec<String> = p
        .weights
        .iter()
        .map(|(a, v)| format!("{} = {v}", a.weight()))
        .collect();
    format!(
        "at {}: loss A = {:.6}, loss B = {:.6}",
        at.join(", "),
        p.loss_a,
        p.loss_b
    )
}

fn compare(a: &str, b: &str, reference: bool, as_json: bool) -> Result<String, UserError> {
    let (na, sa) = operand(a, reference)?;
    let (nb, sb) = operand(b, reference)?;
    let Comparison { relation, witness } = logic::compare(&sa, &sb);
    if as_json {
        let w = witness.as_ref().map_or(Value::Null, |w| {
            json!({"a_greater": point_json(&w.a_greater), "b_greater": point_json(&w.b_greater)})
        });
        return Ok(json_out(json!({"relation": relation.name(), "witness": w})));
    }
    let mut out = String::new();
    for (side, name, s) in [("A", na, sa), ("B", nb, sb)] {
        let label = name.map(|n| format!("{n}: ")).unwrap_or_default();
        let _ = writeln!(out, "{side}  {label}{}; ratio {}", s.spec(), s.ratio_text());
    }
    let _ = writeln!(
        out,
        "relation: {}",
        match relation {
            Relation::Equal => {
                "equal: the same core ratio (as rational functions), so the same loss for every f"
                    .to_string()
            }
            Relation::Le => "le: A ⊑ B, A is more constrained (loss A ≥ loss B everywhere)".into(),
            Relation::Ge => "ge: B ⊑ A, B is more constrained (loss B ≥ loss A everywhere)".into(),
            Relation::Incomparable => "incomparable: neither is more constrained".into(),
        }
    );
    if let Some(w) = witness {
        let _ = writeln!(out, "  A > B {}", point_text(&w.a_greater));
        let _ = writeln!(out, "  A < B {}", point_text(&w.b_greater));
        out.push_str("  (losses as -log σ(log ratio), the logistic loss at β = 1)\n");
    }
    Ok(out)
}

/// The lattice, with each node's stdlib preference losses named.
fn lattice(reference: bool, dot: bool, as_json: bool) -> Result<String, UserError> {
    let mut lat = lattice::lattice(reference);
    for e in stdlib::ENTRIES.iter().filter(|e| e.family == "preference") {
        let Ok(program) = compiler::check_source(e.source) else {
            continue;
        };
        let Some(l) = program.losses.first() else {
            continue;
        };
        let Ok(d) = logic::decompile(l) else {
            continue;
        };
        for n in &mut lat.nodes {
            if logic::compare(&n.structure, &d.structure).relation == Relation::Equal {
                n.known.push(e.name.to_string());
            }
        }
    }
    if dot {
        return Ok(lat.dot());
    }
    if as_json {
        let nodes: Vec<Value> = lat
            .nodes
            .iter()
            .map(|n| {
                let [p, pc, pa] = formula_json(&n.structure.formulas());
                json!({
                    "name": n.name,
                    "P": p,
                    "P_C": pc,
                    "P_A": pa,
                    "ratio": n.structure.ratio_text(),
                    "literature": n.literature,
                    "known": n.known,
                })
            })
            .collect();
        let edges: Vec<Value> = lat
            .edges
            .iter()
            .map(|(a, b)| json!([lat.nodes[*a].name, lat.nodes[*b].name]))
            .collect();
        return Ok(json_out(json!({
            "reference": reference,
            "nodes": nodes,
            "edges": edges,
        })));
    }
    Ok(lat.text())
}
