//! `lossc logic` (issue 8): the table of dpa_logic.md §2 on the stdlib's preference losses,
//! f-invariance, the round trip of all 256 single-model structures through `--compile` and
//! decompilation (and through the interpreter against the closed-form ratio), the lattice of
//! §4.3 confirmed by `--compare`, and precise errors outside the fragment.

use compiler::logic::{
    self, Decompiled, FKind, Relation, Structure, compare, lattice, structure::Space,
    worlds::BoolFn,
};
use runtime::{Data, Tensor};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

fn lossc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run lossc")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = lossc(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn checked(src: &str) -> compiler::ir::Program {
    compiler::check_source(src).unwrap_or_else(|d| panic!("{}", grammar::render("src", src, &d)))
}

fn stdlib_loss(name: &str) -> compiler::ir::Loss {
    let e = lossc::stdlib::get(name).unwrap_or_else(|| panic!("no stdlib loss {name}"));
    checked(e.source).losses.remove(0)
}

fn decompile_stdlib(name: &str) -> Decompiled {
    logic::decompile(&stdlib_loss(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decompile_file(path: &str, loss: &str) -> Decompiled {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    let program = checked(&src);
    let l = program
        .loss(loss)
        .unwrap_or_else(|| panic!("{path}: no loss {loss}"));
    logic::decompile(l).unwrap_or_else(|e| panic!("{path} {loss}: {e}"))
}

/// A row of the table: loss, f, P, P_C, P_A, core ratio.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

/// dpa_logic.md §2 (and §4.3 for cCPO).
const TABLE: [Row; 10] = [
    (
        "dpo",
        "logistic",
        "(Ml & Rw) -> (Mw & Rl)",
        Some("(Mw & Rl) | (Ml & Rw)"),
        Some("Mw & Ml & Rw & Rl"),
        "w*r_l / (l*r_w)",
    ),
    (
        "ipo",
        "squared",
        "(Ml & Rw) -> (Mw & Rl)",
        Some("(Mw & Rl) | (Ml & Rw)"),
        Some("Mw & Ml & Rw & Rl"),
        "w*r_l / (l*r_w)",
    ),
    (
        "hinge",
        "hinge",
        "(Ml & Rw) -> (Mw & Rl)",
        Some("(Mw & Rl) | (Ml & Rw)"),
        Some("Mw & Ml & Rw & Rl"),
        "w*r_l / (l*r_w)",
    ),
    (
        "cpo",
        "logistic",
        "Ml -> Mw",
        Some("Mw | Ml"),
        Some("Mw & Ml"),
        "w / l",
    ),
    (
        "simpo",
        "logistic",
        "Ml -> Mw",
        Some("Mw | Ml"),
        Some("Mw & Ml"),
        "w / l",
    ),
    (
        "orpo",
        "logistic",
        "Ml -> Mw",
        Some("Mw ^ Ml"),
        None,
        "w*(1 - l) / (l*(1 - w))",
    ),
    (
        "ce_unl",
        "logistic",
        "Mw & !Ml",
        None,
        None,
        "w*(1 - l) / (1 - w*(1 - l))",
    ),
    ("unlikelihood", "logistic", "!Ml", None, None, "(1 - l) / l"),
    (
        "uncpo",
        "logistic",
        "Ml -> Mw",
        None,
        None,
        "(1 - l*(1 - w)) / (l*(1 - w))",
    ),
    (
        "ccpo",
        "logistic",
        "Ml -> Mw",
        Some("Mw | Ml"),
        None,
        "w / (l*(1 - w))",
    ),
];

#[test]
fn decompiling_the_stdlib_reproduces_the_table() {
    for (name, f, p, pc, pa, ratio) in TABLE {
        let j = json(&["logic", name, "--json"]);
        let keys: BTreeSet<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["f", "P", "P_C", "P_A", "ratio", "stripped"]),
            "{name}"
        );
        assert_eq!(j["f"], f, "{name}");
        assert_eq!(j["P"], p, "{name}");
        assert_eq!(j["P_C"], pc.map_or(Value::Null, Value::from), "{name}");
        assert_eq!(j["P_A"], pa.map_or(Value::Null, Value::from), "{name}");
        assert_eq!(j["ratio"], ratio, "{name}");
        insta::assert_snapshot!(format!("decompile_{name}"), ok(&["logic", name]));
    }
    insta::assert_snapshot!("decompile_dpo_json", ok(&["logic", "dpo", "--json"]));
}

#[test]
fn decompiling_reports_what_it_stripped() {
    let stripped = |name: &str| decompile_stdlib(name).stripped;
    let dpo = stripped("dpo");
    assert_eq!(dpo[0], "scale: beta");
    assert_eq!(dpo[1], "weight: 1 - label_smoothing");
    assert!(dpo[2].starts_with("zero term: "), "{dpo:?}");
    assert!(dpo[2].ends_with("(its weight is 0 at the defaults label_smoothing = 0)"));
    assert_eq!(
        stripped("cpo"),
        [
            "scale: beta",
            "regulariser: alpha * mean[b](-policy_chosen_logps[b])"
        ]
    );
    assert_eq!(stripped("simpo"), ["scale: beta", "constant: -gamma"]);
    assert_eq!(
        stripped("orpo"),
        [
            "weight: beta",
            "regulariser: mean[b](-policy_chosen_logps[b])"
        ]
    );
    assert_eq!(stripped("ipo"), ["constant: -(1 / (2 * beta))"]);
    assert_eq!(stripped("hinge"), ["scale: beta", "constant: -1"]);
    assert_eq!(stripped("ce_unl"), ["scale: beta"]);
}

#[test]
fn the_structure_does_not_depend_on_f() {
    let dpo = decompile_stdlib("dpo");
    for name in ["ipo", "hinge"] {
        let d = decompile_stdlib(name);
        assert_eq!(d.structure, dpo.structure, "{name} vs dpo");
        assert!(d.ratio.equals(&dpo.ratio));
    }
    assert_ne!(decompile_stdlib("ipo").f, dpo.f);
    let cpo = decompile_stdlib("cpo");
    let forms = "tests/logic/source_forms.loss";
    // SLiC is the hinge on CPO's core; SimPO and -log(w / (w + l)) are CPO too.
    let slic = decompile_file(forms, "slic");
    assert_eq!(slic.f, FKind::Hinge);
    assert_eq!(slic.structure, cpo.structure);
    assert_eq!(decompile_stdlib("simpo").structure, cpo.structure);
    assert_eq!(decompile_file(forms, "cpo_prob").structure, cpo.structure);
    // The table's source forms without σ decompile like the stdlib's σ forms.
    assert_eq!(
        decompile_file(forms, "ce_unl_source").structure,
        decompile_stdlib("ce_unl").structure
    );
    assert_eq!(
        decompile_file(forms, "uncpo_source").structure,
        decompile_stdlib("uncpo").structure
    );
    assert_eq!(
        decompile_file(forms, "orpo_odds").structure,
        decompile_stdlib("orpo").structure
    );
    // CE (SFT), -log w: P = Mw, no conditioning.
    let sft = decompile_file("tests/logic/sft.loss", "sft");
    assert!(sft.semantic);
    assert_eq!(sft.structure, lattice::node("CE").unwrap().structure);
    // Length-normalised log-probabilities (dpa_logic.md §1.2: the weight is p^(1/|y|)).
    let norm = decompile_stdlib("dpo_norm");
    assert_eq!(norm.structure, dpo.structure);
    assert_eq!(
        norm.stripped
            .iter()
            .filter(|s| s.starts_with("length normalisation: "))
            .count(),
        4
    );
    let mixed = decompile_file("tests/logic/length_mixed.loss", "length_mixed");
    assert_eq!(mixed.structure, cpo.structure);
    assert!(
        mixed
            .stripped
            .contains(&"regulariser: mean[b](-policy_chosen_logps[b])".to_string())
    );
    // softplus(x) - x is softplus(-x), not softplus(x) with a regulariser -x.
    let sp = decompile_file(forms, "softplus_minus_x");
    assert_eq!(sp.structure, cpo.structure);
    assert_eq!(sp.stripped, ["scale: beta"]);
    // Atoms named with `@atoms`.
    let named = decompile_file("tests/logic/atoms_named.loss", "cpo_named");
    assert_eq!(named.structure, cpo.structure);
    assert_eq!(named.atoms, "Mw = chosen, Ml = rejected");
    for (name, args) in [
        ("slic", &["logic", forms, "--loss", "slic"][..]),
        ("orpo_odds", &["logic", forms, "--loss", "orpo_odds"]),
        ("atoms_named", &["logic", "tests/logic/atoms_named.loss"]),
        ("sft", &["logic", "tests/logic/sft.loss"]),
        ("dpo_norm", &["logic", "dpo_norm"]),
        ("length_mixed", &["logic", "tests/logic/length_mixed.loss"]),
    ] {
        insta::assert_snapshot!(format!("decompile_{name}"), ok(args));
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `f(log ratio)` at β = 1 for the compiled losses.
fn closed_form(f: FKind, n: f64, d: f64) -> f64 {
    let rho = n.ln() - d.ln();
    match f {
        FKind::Logistic => {
            if n == 0.0 && d == 0.0 {
                f64::NAN
            } else if n == 0.0 {
                f64::INFINITY
            } else {
                (d / n).ln_1p()
            }
        }
        FKind::Squared => (rho - 0.5).powi(2),
        FKind::Hinge if rho.is_nan() => f64::NAN,
        FKind::Hinge => (1.0 - rho).max(0.0),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every single-model structure: 16 winning × 16 losing world sets over (Mw, Ml).
fn all_single_model() -> Vec<Structure> {
    let sets: Vec<BoolFn> = (0..16u16)
        .map(|bits| {
            let names: Vec<&str> = ["TT", "TF", "FT", "FF"]
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, n)| n)
                .collect();
            BoolFn::from_world_names(Space::Single.atoms(), &names).unwrap()
        })
        .collect();
    let mut out = vec![];
    for a in &sets {
        for b in &sets {
            out.push(Structure::new(*a, *b));
        }
    }
    out
}

#[test]
fn all_256_single_model_structures_round_trip() {
    let structures = all_single_model();
    assert_eq!(structures.len(), 256);
    let mut rng = Rng(0x5eed_1234_abcd);
    for (k, s) in structures.iter().enumerate() {
        // The formulas printed for a structure parse back to it.
        let spec = s.spec();
        assert_eq!(Structure::parse(&spec).unwrap(), *s, "{spec}");
        for f in FKind::ALL {
            let loss = logic::compile(s, f, "l").unwrap_or_else(|e| panic!("{spec}: {e}"));
            // It prints to source that checks back to the same loss.
            let printed = compiler::print::loss(&loss);
            let again = checked(&printed).losses.remove(0);
            assert_eq!(again, loss, "{spec}");
            // Decompiling gives the same loss: equal ratios as rational functions.
            let d =
                logic::decompile(&again).unwrap_or_else(|e| panic!("{spec} {f:?}: {e}\n{printed}"));
            assert_eq!(d.f, f, "{spec}");
            assert!(
                d.ratio.equals(&s.ratio()),
                "{spec} {f:?}: {:?}\n{printed}",
                d.ratio
            );
            assert_eq!(compare(&d.structure, s).relation, Relation::Equal, "{spec}");
            assert_eq!(d.structure, s.reduced(), "{spec}");
            // The interpreter computes f(log WMC(✓) - log WMC(✗)) of the closed form.
            let b = 6;
            let (mut pc, mut pr) = (vec![], vec![]);
            let mut want = 0.0;
            for _ in 0..b {
                let (w, l) = (0.03 + 0.94 * rng.next(), 0.03 + 0.94 * rng.next());
                pc.push(w.ln());
                pr.push(l.ln());
                let x = [w, l, 0.5, 0.5];
                want += closed_form(f, s.ratio().n.eval(x), s.ratio().d.eval(x)) / b as f64;
            }
            let inputs: BTreeMap<String, Tensor> =
                [("policy_chosen_logps", pc), ("policy_rejected_logps", pr)]
                    .into_iter()
                    .map(|(n, v)| {
                        (
                            n.to_string(),
                            Tensor {
                                shape: vec![b],
                                data: Data::F64(v),
                            },
                        )
                    })
                    .collect();
            let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
            let got = runtime::eval(&loss, &bound).unwrap().loss;
            assert!(
                same(got, want),
                "{spec} {f:?}: interpreter {got}, closed form {want}\n{printed}"
            );
        }
        // Through the command line, for a sample.
        if k % 15 == 0 {
            let j = json(&["logic", "--compile", &spec, "--json", "--name", "rt"]);
            let path = std::env::temp_dir()
                .join(format!("lossc_logic_rt_{}_{k}.loss", std::process::id()));
            std::fs::write(&path, j["source"].as_str().unwrap()).unwrap();
            let back = json(&["logic", path.to_str().unwrap(), "--json"]);
            std::fs::remove_file(&path).ok();
            let r = s.reduced().formulas();
            assert_eq!(back["P"], r.p.to_string(), "{spec}");
            assert_eq!(
                back["P_C"],
                r.pc.map_or(Value::Null, |x| x.to_string().into()),
                "{spec}"
            );
            assert_eq!(
                back["P_A"],
                r.pa.map_or(Value::Null, |x| x.to_string().into()),
                "{spec}"
            );
            assert_eq!(back["ratio"], s.reduced().ratio_text(), "{spec}");
        }
    }
}

#[test]
fn compiled_losses_check_run_and_differentiate() {
    for (label, spec) in [
        ("cpo", "P = Ml -> Mw; P_C = Mw | Ml; P_A = Mw & Ml"),
        // ORPO with a reference model (dpa_logic.md §2).
        (
            "orpo_ref",
            "P = (Ml & Rw) -> Mw; P_C = (Mw & !Ml & Rl) | (Ml & !Mw & Rw)",
        ),
        // Neither side a product: Shannon expansions, written with softplus.
        ("xor", "P = Mw ^ Ml"),
    ] {
        for f in ["logistic", "squared", "hinge"] {
            let src = ok(&["logic", "--compile", spec, "--f", f, "--name", "compiled"]);
            insta::assert_snapshot!(format!("compile_{label}_{f}"), src);
            let path = std::env::temp_dir().join(format!(
                "lossc_logic_c_{}_{label}_{f}.loss",
                std::process::id()
            ));
            std::fs::write(&path, &src).unwrap();
            let p = path.to_str().unwrap();
            ok(&["check", p]);
            let out = ok(&["eval", p, "--random", "B=5"]);
            let loss: f64 = out
                .lines()
                .next()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            assert!(loss.is_finite(), "{spec} {f}: {out}");
            assert!(out.contains("grad_policy_chosen_logps"), "{out}");
            ok(&["grad", p]);
            std::fs::remove_file(&path).ok();
        }
    }
    let j = json(&["logic", "--compile", "cCPO", "--json"]);
    let keys: BTreeSet<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["name", "f", "P", "P_C", "P_A", "ratio", "source"])
    );
    assert_eq!(j["name"], "logic_loss");
    assert_eq!(j["ratio"], "w / (l*(1 - w))");
}

/// Item 6: the stdlib's logic-derived losses are what `--compile` gives for their lattice
/// structures. The committed files are kept (their documentation is richer), and their code
/// is identical to the compiled code.
#[test]
fn the_stdlib_logic_losses_are_their_compiled_structures() {
    for (name, node) in [
        ("ce_unl", "CEUnl"),
        ("unlikelihood", "fUnl"),
        ("uncpo", "unCPO"),
        ("ccpo", "cCPO"),
    ] {
        let s = lattice::node(node).unwrap().structure;
        let compiled = logic::compile(&s, FKind::Logistic, name).unwrap();
        let committed = stdlib_loss(name);
        assert!(
            logic::decompile(&committed)
                .unwrap()
                .ratio
                .equals(&s.ratio()),
            "{name}: the committed loss's ratio differs from {node}'s"
        );
        assert_eq!(compiled.inputs, committed.inputs, "{name}");
        assert_eq!(compiled.hypers, committed.hypers, "{name}");
        assert_eq!(compiled.defs, committed.defs, "{name}");
        assert_eq!(compiled.result, committed.result, "{name}");
        assert_eq!(compiled.vars, committed.vars, "{name}");
    }
}

/// The transitive closure of a list of arrows.
fn closure(names: &[&str], arrows: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    let mut le: BTreeSet<(String, String)> = arrows
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    loop {
        let mut more = vec![];
        for (a, b) in &le {
            for c in names {
                if le.contains(&(b.clone(), c.to_string()))
                    && !le.contains(&(a.clone(), c.to_string()))
                {
                    more.push((a.clone(), c.to_string()));
                }
            }
        }
        if more.is_empty() {
            return le;
        }
        le.extend(more);
    }
}

#[test]
fn compare_confirms_every_arrow_of_the_single_model_lattice_and_no_other() {
    let lat = lattice::lattice(false);
    let names: Vec<&str> = lat.nodes.iter().map(|n| n.name).collect();
    assert_eq!(names.len(), 12);
    let ordered = closure(&names, &lattice::PAPER_ARROWS);
    let mut rng = Rng(42);
    for a in &lat.nodes {
        for b in &lat.nodes {
            if a.name == b.name {
                continue;
            }
            let c = compare(&a.structure, &b.structure);
            let want = if ordered.contains(&(a.name.into(), b.name.into())) {
                Relation::Le
            } else if ordered.contains(&(b.name.into(), a.name.into())) {
                Relation::Ge
            } else {
                Relation::Incomparable
            };
            assert_eq!(c.relation, want, "{} vs {}", a.name, b.name);
            let (ra, rb) = (a.structure.ratio(), b.structure.ratio());
            match want {
                // Ordered pairs: the losses are ordered at random points.
                Relation::Le => {
                    for _ in 0..50 {
                        let x = [rng.next(), rng.next(), 0.5, 0.5];
                        assert!(
                            ra.loss(x) >= rb.loss(x) - 1e-12,
                            "{} ⊑ {} at {x:?}",
                            a.name,
                            b.name
                        );
                    }
                }
                // Incomparable pairs: a witness each way.
                Relation::Incomparable => {
                    let w = c.witness.expect("incomparable pairs have a witness");
                    assert!(w.a_greater.loss_a > w.a_greater.loss_b);
                    assert!(w.b_greater.loss_a < w.b_greater.loss_b);
                    let at = |p: &logic::compare::Point| {
                        let mut x = [0.5; 4];
                        for (atom, v) in &p.weights {
                            x[atom.index()] = *v;
                        }
                        x
                    };
                    assert!(same(ra.loss(at(&w.a_greater)), w.a_greater.loss_a));
                    assert!(same(rb.loss(at(&w.b_greater)), w.b_greater.loss_b));
                }
                _ => {}
            }
        }
    }
    // The computed arrows are exactly the paper's.
    let computed: BTreeSet<(&str, &str)> = lat
        .edges
        .iter()
        .map(|(a, b)| (lat.nodes[*a].name, lat.nodes[*b].name))
        .collect();
    assert_eq!(computed, lattice::PAPER_ARROWS.into_iter().collect());
    // Through the command line: every arrow is `le`, reversed `ge`.
    for (a, b) in lattice::PAPER_ARROWS {
        let j = json(&["logic", "--compare", a, b, "--json"]);
        assert_eq!(j["relation"], "le", "{a} {b}");
        assert_eq!(j["witness"], Value::Null);
        assert_eq!(
            json(&["logic", "--compare", b, a, "--json"])["relation"],
            "ge"
        );
    }
    let j = json(&["logic", "--compare", "CE", "CPO", "--json"]);
    assert_eq!(j["relation"], "incomparable");
    for side in ["a_greater", "b_greater"] {
        let keys: BTreeSet<&str> = j["witness"][side]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, BTreeSet::from(["Mw", "Ml", "loss_a", "loss_b"]));
    }
    insta::assert_snapshot!("compare_ce_cpo", ok(&["logic", "--compare", "CE", "CPO"]));
    insta::assert_snapshot!(
        "compare_cpo_ccpo",
        ok(&["logic", "--compare", "cpo", "ccpo"])
    );
    // Equal losses with different formulas, and the same loss under two f's.
    assert_eq!(
        json(&["logic", "--compare", "P = Mw; P_C = Ml", "CE", "--json"])["relation"],
        "equal"
    );
    assert_eq!(
        json(&["logic", "--compare", "dpo", "ipo", "--json"])["relation"],
        "equal"
    );
    assert_eq!(
        json(&["logic", "--compare", "orpo", "ORPO", "--json"])["relation"],
        "equal"
    );
    // One loss of a file with several.
    let slic = "tests/logic/source_forms.loss:slic";
    assert_eq!(
        json(&["logic", "--compare", slic, "cpo", "--json"])["relation"],
        "equal"
    );
    let o = lossc(&["logic", "--compare", "tests/logic/source_forms.loss", "cpo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("choose one with tests/logic/source_forms.loss:LOSS"));
}

/// The §4.4 boxes: the core P printed on slide 24 for each lifted loss.
const REFERENCE_BOXES: [(&str, &str); 16] = [
    ("CEUnl", "Rw -> Mw & !Ml"),
    ("l20", "Rw & (Ml | !Rl) -> Mw & !Ml"),
    ("fUnl", "Rw -> !Ml"),
    ("cUNL", "Rw -> !Ml"),
    ("sCE", "Rw & (!Mw | !Rl) -> Mw & !Ml"),
    ("CE", "Rw -> Mw"),
    ("l3", "Rw -> Mw"),
    ("qfUnl", "Rw & (Ml | !Rl) -> Mw"),
    ("bCPO", "Rw & (Ml | !Rl) -> Mw"),
    ("ORPO", "Ml & Rw -> Mw"),
    ("cfUnl", "Ml & Rw -> Mw"),
    ("cCPO", "Ml & Rw -> Mw"),
    ("unCPO", "Ml & Rw -> Mw"),
    ("l5", "Rw & (Ml | !Rl) & (!Mw | !Rl) -> Mw & !Ml"),
    ("CPO", "Rw & Ml -> Mw & Rl"),
    ("l14", "Rw & Ml -> Mw & Rl"),
];

#[test]
fn the_reference_lattice_lifts_the_single_model_one() {
    let lat = lattice::lattice(true);
    assert_eq!(lat.nodes.len(), 16);
    // Each box's formula is the node's P on P_C (P is only determined there).
    for (name, boxed) in REFERENCE_BOXES {
        let n = &lat.nodes[lat.index(name).unwrap()];
        let s = &n.structure;
        let f = logic::Formula::parse(boxed).unwrap().truth();
        assert_eq!(f.and(s.pc()), s.p().and(s.pc()), "{name}: {boxed}");
    }
    // Every arrow of both figures is computed; the computed order has two more covering
    // arrows, which hold (checked at random points) but are not drawn in the figure.
    let computed: BTreeSet<(&str, &str)> = lat
        .edges
        .iter()
        .map(|(a, b)| (lat.nodes[*a].name, lat.nodes[*b].name))
        .collect();
    let drawn: BTreeSet<(&str, &str)> = lattice::PAPER_ARROWS
        .into_iter()
        .chain(lattice::PAPER_REFERENCE_ARROWS)
        .collect();
    assert_eq!(drawn.len(), 30);
    assert!(
        drawn.is_subset(&computed),
        "{:?}",
        drawn.difference(&computed).collect::<Vec<_>>()
    );
    let extra: Vec<&(&str, &str)> = computed.difference(&drawn).collect();
    assert_eq!(extra, [&("CE", "bCPO"), &("fUnl", "l14")]);
    let mut rng = Rng(7);
    for (a, b) in extra {
        let (ra, rb) = (
            lat.nodes[lat.index(a).unwrap()].structure.ratio(),
            lat.nodes[lat.index(b).unwrap()].structure.ratio(),
        );
        for _ in 0..200 {
            let x = [rng.next(), rng.next(), rng.next(), rng.next()];
            assert!(ra.loss(x) >= rb.loss(x) - 1e-12, "{a} ⊑ {b} at {x:?}");
        }
    }
    // Lifting preserves and reflects the order: single-model and reference relations agree.
    let single = lattice::lattice(false);
    for a in &single.nodes {
        for b in &single.nodes {
            assert_eq!(
                compare(&a.structure, &b.structure).relation,
                compare(&a.structure.lift(), &b.structure.lift()).relation,
                "{} {}",
                a.name,
                b.name
            );
        }
    }
    // DPO is CPO lifted.
    assert_eq!(
        decompile_stdlib("dpo").structure,
        lattice::node("CPO").unwrap().structure.lift()
    );
}

#[test]
fn lattice_outputs() {
    insta::assert_snapshot!("lattice_text", ok(&["logic", "--lattice"]));
    insta::assert_snapshot!(
        "lattice_reference_text",
        ok(&["logic", "--lattice", "--reference"])
    );
    insta::assert_snapshot!("lattice_dot", ok(&["logic", "--lattice", "--dot"]));
    let j = json(&["logic", "--lattice", "--json"]);
    assert_eq!(j["nodes"].as_array().unwrap().len(), 12);
    assert_eq!(j["edges"].as_array().unwrap().len(), 18);
    let cpo = j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "CPO")
        .unwrap();
    assert_eq!(cpo["known"], serde_json::json!(["cpo", "simpo"]));
    assert_eq!(cpo["literature"], true);
    let j = json(&["logic", "--lattice", "--reference", "--json"]);
    let cpo = j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "CPO")
        .unwrap();
    assert_eq!(
        cpo["known"],
        serde_json::json!(["dpo", "dpo_norm", "hinge", "ipo"])
    );
}

#[test]
fn outside_the_fragment_is_a_clear_error() {
    let cases: [(&str, &[&str]); 9] = [
        ("no_atoms", &["logic", "cross_entropy"]),
        ("kto", &["logic", "tests/logic/kto.loss"]),
        ("dpop", &["logic", "tests/logic/dpop.loss"]),
        ("dpop_max", &["logic", "tests/logic/dpop_max.loss"]),
        ("mixture", &["logic", "nca_pair"]),
        ("not_wmc", &["logic", "tests/logic/not_wmc.loss"]),
        (
            "atoms_unknown_input",
            &["logic", "tests/logic/atoms_unknown_input.loss"],
        ),
        (
            "length_conflict",
            &["logic", "tests/logic/length_conflict.loss"],
        ),
        ("sigmoid", &["logic", "apo_zero"]),
    ];
    for (name, args) in cases {
        let o = lossc(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(stdout(&o).is_empty(), "{name}");
        insta::assert_snapshot!(format!("error_{name}"), err);
    }
    assert!(
        stderr(&lossc(&["logic", "tests/logic/dpop.loss"])).contains(
            "the core is not multilinear: policy_chosen_logps appears with coefficient 2"
        )
    );
    // Bad structures and operands.
    let bad: [(&str, &[&str]); 5] = [
        ("compile_syntax", &["logic", "--compile", "P = Mw & (Ml |"]),
        ("compile_atom", &["logic", "--compile", "P = Mw -> mL"]),
        ("compile_pa", &["logic", "--compile", "P = Mw; P_A = Ml"]),
        (
            "compile_name",
            &["logic", "--compile", "P = Mw", "--name", "2x"],
        ),
        ("compare_operand", &["logic", "--compare", "CE", "nonsense"]),
    ];
    for (name, args) in bad {
        let o = lossc(args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        insta::assert_snapshot!(format!("error_{name}"), stderr(&o));
    }
    // A bad command line is exit code 2.
    for args in [
        &["logic"][..],
        &["logic", "dpo", "--lattice"],
        &["logic", "--compile", "P = Mw", "--f", "cubic"],
        &["logic", "--compare", "CE"],
        &["logic", "--dot", "dpo"],
        &["logic", "dpo", "--f", "squared"],
        &["logic", "dpo", "--name", "x"],
        &["logic", "--lattice", "--loss", "x"],
        &["logic", "--compile", "CE", "--reference"],
    ] {
        assert_eq!(lossc(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn hostile_formulas_do_not_crash() {
    let deep = format!("P = {}Mw{}", "(".repeat(5000), ")".repeat(5000));
    let nots = format!("P = {}Mw", "!".repeat(100_000));
    let long = format!("P = {}", vec!["Mw"; 5000].join(" & "));
    for spec in [
        deep,
        nots,
        long,
        "P = Mw; P = Ml".into(),
        "P = \u{1}".into(),
        "".into(),
    ] {
        let o = lossc(&["logic", "--compile", &spec]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}

/// `--compare` is exact on every pair of single-model structures: the relation is
/// antisymmetric, every `le` holds at random points, and every incomparable pair with defined
/// losses has a witness each way (so no ordered pair is reported incomparable).
#[test]
fn compare_is_exact_on_all_single_model_pairs() {
    let all = all_single_model();
    let defined = |s: &Structure| s.win != BoolFn::FALSE || s.lose != BoolFn::FALSE;
    let mut rng = Rng(99);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let c = compare(a, b);
            *counts.entry(c.relation.name()).or_insert(0) += 1;
            let back = compare(b, a);
            let mirrored = match c.relation {
                Relation::Le => Relation::Ge,
                Relation::Ge => Relation::Le,
                r => r,
            };
            assert_eq!(back.relation, mirrored, "{} / {}", a.spec(), b.spec());
            let (ra, rb) = (a.ratio(), b.ratio());
            match c.relation {
                Relation::Le | Relation::Ge => {
                    let (hi, lo) = if c.relation == Relation::Le {
                        (&ra, &rb)
                    } else {
                        (&rb, &ra)
                    };
                    for _ in 0..4 {
                        let x = [0.01 + 0.98 * rng.next(), 0.01 + 0.98 * rng.next(), 0.5, 0.5];
                        let (h, l) = (hi.loss(x), lo.loss(x));
                        assert!(
                            h >= l - 1e-9 * l.abs().max(1.0) || h.is_nan(),
                            "{} / {} at {x:?}",
                            a.spec(),
                            b.spec()
                        );
                    }
                }
                Relation::Incomparable if defined(a) && defined(b) => {
                    let w = c
                        .witness
                        .unwrap_or_else(|| panic!("no witness: {} / {}", a.spec(), b.spec()));
                    assert!(w.a_greater.loss_a > w.a_greater.loss_b);
                    assert!(w.b_greater.loss_a < w.b_greater.loss_b);
                }
                _ => {}
            }
        }
    }
    assert_eq!(counts.values().sum::<usize>(), 256 * 255 / 2);
    assert!(counts["incomparable"] > 0 && counts["le"] + counts["ge"] > 0 && counts["equal"] > 0);
}
