//! The IR printer: emits `.loss` source that checks back to the same IR.
//!
//! Parentheses are written only where precedence needs them (and around `if` and `!`'s
//! operand, for readability). A range annotation `j: D` is written only where the index reads
//! no tensor, exactly where the checker could not infer it.

use crate::ir::{BinOp, DType, DefKind, Expr, Loss, Program, Reducer, UnaryOp, VarId};
use std::fmt::Write;

/// Prints every loss of a program, separated by blank lines.
pub fn program(p: &Program) -> String {
    p.losses.iter().map(loss).collect::<Vec<_>>().join("\n")
}

/// Prints one loss as a `.loss` item.
pub fn loss(l: &Loss) -> String {
    let mut out = String::new();
    for line in l.doc.lines() {
        if line.is_empty() {
            out.push_str("///\n");
        } else {
            let _ = writeln!(out, "/// {line}");
        }
    }
    let inputs: Vec<String> = l
        .inputs
        .iter()
        .map(|i| {
            let dims: Vec<&str> = i.shape.iter().map(|&d| l.dims[d].as_str()).collect();
            let ty = match i.dtype {
                DType::Float => "",
                DType::Int => "int",
                DType::Bool => "bool",
            };
            format!("{}: {ty}[{}]", i.name, dims.join(", "))
        })
        .collect();
    let hypers: Vec<String> = l
        .hypers
        .iter()
        .map(|h| format!("{} = {}", h.name, hyper_value(h.default)))
        .collect();
    let _ = write!(out, "loss {}({}", l.name, inputs.join(", "));
    if !hypers.is_empty() {
        let _ = write!(out, "; {}", hypers.join(", "));
    }
    out.push_str(") {\n");
    for d in &l.defs {
        let kw = match d.kind {
            DefKind::Let => "let",
            DefKind::Metric => "metric",
        };
        let _ = write!(out, "    {kw} {}", d.name);
        if !d.indices.is_empty() {
            let params: Vec<String> = d
                .indices
                .iter()
                .map(|&v| binder(l, v, &[&d.body]))
                .collect();
            let _ = write!(out, "[{}]", params.join(", "));
        }
        let _ = writeln!(out, " = {}", expr(l, &d.body));
    }
    let result = expr(l, &l.result);
    // A final expression starting with `-` would continue the statement above it.
    if result.starts_with('-') && !l.defs.is_empty() {
        let _ = writeln!(out, "    ({result})");
    } else {
        let _ = writeln!(out, "    {result}");
    }
    out.push_str("}\n");
    out
}

/// A hyperparameter's default: integral values without a `.0` (`ignore_index = -100`).
pub fn hyper_value(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        float(x)
    }
}

/// A float literal that reads back as a float (`1.0`, not `1`), or `inf`.
pub fn float(x: f64) -> String {
    if x == f64::INFINITY {
        "inf".into()
    } else if x == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        // `{:?}` is the shortest representation that round-trips, and keeps a `.0` or exponent.
        format!("{x:?}")
    }
}

/// A variable where it is bound, with its range when no read in `scope` implies it.
fn binder(l: &Loss, v: VarId, scope: &[&Expr]) -> String {
    let var = &l.vars[v];
    if scope.iter().any(|e| indexes_directly(e, v)) {
        var.name.clone()
    } else {
        format!("{}: {}", var.name, l.dims[var.dim])
    }
}

/// True when some read in `e` uses `v` itself as one of its indices.
fn indexes_directly(e: &Expr, v: VarId) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        if let Expr::Read { indices, .. } = x
            && indices.contains(&Expr::Index(v))
        {
            found = true;
        }
    });
    found
}

/// Precedence of an expression as printed: larger binds tighter (see `BinOp::precedence`).
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Select(..) => 0,
        Expr::Binary(op, ..) => op.precedence(),
        Expr::Unary(op, _) => op.precedence(),
        Expr::Float(x) if x.is_sign_negative() => UnaryOp::Neg.precedence(),
        Expr::Int(x) if *x < 0 => UnaryOp::Neg.precedence(),
        _ => 10,
    }
}

/// Prints `e`, in parentheses when its precedence is below `min`.
fn operand(l: &Loss, e: &Expr, min: u8) -> String {
    let s = expr(l, e);
    if prec(e) < min || matches!(e, Expr::Select(..)) {
        format!("({s})")
    } else {
        s
    }
}

/// Prints an expression.
pub fn expr(l: &Loss, e: &Expr) -> String {
    match e {
        Expr::Float(x) => float(*x),
        Expr::Int(x) => x.to_string(),
        Expr::Bool(b) => b.to_string(),
        Expr::Index(v) => l.vars[*v].name.clone(),
        Expr::Hyper(h) => l.hypers[*h].name.clone(),
        Expr::Read { tensor, indices } => {
            let name = l.tensor_name(*tensor);
            if indices.is_empty() {
                name.to_string()
            } else {
                let ix: Vec<String> = indices.iter().map(|i| expr(l, i)).collect();
                format!("{name}[{}]", ix.join(", "))
            }
        }
        Expr::Unary(UnaryOp::Neg, a) => {
            let s = operand(l, a, UnaryOp::Neg.precedence() + 1);
            // `-(1.5)`: a minus written before a literal would fold into the constant.
            let literal = matches!(**a, Expr::Float(_) | Expr::Int(_));
            if literal || s.starts_with('-') {
                format!("-({s})")
            } else {
                format!("-{s}")
            }
        }
        Expr::Unary(UnaryOp::Not, a) => {
            let s = expr(l, a);
            if prec(a) < 10 {
                format!("!({s})")
            } else {
                format!("!{s}")
            }
        }
        Expr::Binary(op, a, b) => {
            let p = op.precedence();
            let (lmin, rmin) = if op.is_comparison() {
                (p + 1, p + 1)
            } else if *op == BinOp::Pow {
                (p + 1, p)
            } else {
                (p, p + 1)
            };
            format!(
                "{} {} {}",
                operand(l, a, lmin),
                op.symbol(),
                operand(l, b, rmin)
            )
        }
        Expr::Call(f, args) => {
            let a: Vec<String> = args.iter().map(|x| expr(l, x)).collect();
            format!("{}({})", f.name(), a.join(", "))
        }
        Expr::Select(c, a, b) => {
            format!("if {} then {} else {}", expr(l, c), expr(l, a), expr(l, b))
        }
        Expr::Reduce {
            op,
            vars,
            filter,
            body,
        } => {
            let scope: Vec<&Expr> = filter.iter().chain(body.iter()).map(|b| &**b).collect();
            let vs: Vec<String> = vars.iter().map(|&v| binder(l, v, &scope)).collect();
            let mut s = format!("{}[{}", op.keyword(), vs.join(", "));
            if let Some(f) = filter {
                let _ = write!(s, " | {}", expr(l, f));
            }
            s.push_str("](");
            if let Some(b) = body {
                s.push_str(&expr(l, b));
            }
            debug_assert!(body.is_some() != (*op == Reducer::Count));
            s.push(')');
            s
        }
    }
}
