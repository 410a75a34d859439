//! Compile-time benchmarks: checking, simplifying and differentiating every stdlib loss.
//! Run with `cargo bench --bench compile`.

use lossc::stdlib;

fn main() {
    divan::main();
}

fn names() -> Vec<&'static str> {
    stdlib::ENTRIES.iter().map(|e| e.name).collect()
}

fn checked(name: &str) -> compiler::ir::Loss {
    compiler::check_source(stdlib::get(name).unwrap().source)
        .unwrap()
        .losses
        .remove(0)
}

/// Parse and check.
#[divan::bench(args = names())]
fn check(name: &str) -> compiler::ir::Program {
    compiler::check_source(stdlib::get(name).unwrap().source).unwrap()
}

/// `lossc simplify`: the e-graph run and extraction for every expression.
#[divan::bench(args = names())]
fn simplify(bencher: divan::Bencher, name: &str) {
    let loss = checked(name);
    bencher.bench(|| compiler::simplify::simplify(&loss));
}

/// `lossc grad`: simplify, differentiate, simplify the gradient program.
#[divan::bench(args = names())]
fn grad(bencher: divan::Bencher, name: &str) {
    let loss = checked(name);
    bencher.bench(|| {
        let stable = compiler::simplify::simplify(&loss);
        let wrt = compiler::grad::resolve_wrt(&stable, &[]).unwrap();
        compiler::simplify::simplify(&compiler::grad::gradient(&stable, &wrt))
    });
}
