//! Determinism: the same inputs give bit-identical outputs run after run — the interpreter,
//! and the CPU backend for a fixed thread count (and, by its design, for any thread count:
//! `tests/cpu.rs` checks that). Compiling twice gives the same program.

use compiler::ir::Loss;
use runtime::interp::Gradients;
use runtime::{Bound, Outputs};

/// `batch` for the batch dimension, 7 for the others.
fn sizes(loss: &Loss, batch: usize) -> Vec<(String, usize)> {
    loss.dims
        .iter()
        .map(|d| (d.clone(), if d == "B" || d == "N" { batch } else { 7 }))
        .collect()
}

/// Every bit of a run's results.
fn bits(run: &(Outputs, Gradients)) -> Vec<u64> {
    let (o, g) = run;
    std::iter::once(o.loss.to_bits())
        .chain(o.metrics.iter().map(|(_, v)| v.to_bits()))
        .chain(g.iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())))
        .collect()
}

/// Every stdlib loss with inputs of batch size `batch`.
fn stdlib(batch: usize) -> Vec<(Loss, Bound)> {
    lossc::stdlib::ENTRIES
        .iter()
        .map(|e| {
            let loss = e.loss();
            let inputs = runtime::random::random_inputs(&loss, &sizes(&loss, batch), 11).unwrap();
            let bound = runtime::bind(&loss, &inputs, &[]).unwrap();
            (loss, bound)
        })
        .collect()
}

#[test]
fn the_backends_program_is_the_same_every_time() {
    for (loss, _) in stdlib(4) {
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        let a = compiler::print::loss(&runtime::cpu::gradient_program(&loss, &wrt));
        let b = compiler::print::loss(&runtime::cpu::gradient_program(&loss, &wrt));
        assert_eq!(
            a, b,
            "{}: the gradient program differs between runs",
            loss.name
        );
    }
}

#[test]
fn every_stdlib_loss_is_bit_identical_run_after_run() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (loss, bound) in stdlib(12) {
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        let interp = |_| bits(&runtime::eval_with_grad(&loss, &bound, &wrt).unwrap());
        assert_eq!(interp(0), interp(1), "{}: interpreter", loss.name);
    }
    // Large enough for the CPU executor to split some definitions over threads.
    for (loss, bound) in stdlib(160) {
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        // Compiled and run three times on the same thread count (compiling happens inside the
        // pool: a compiled loss is not shared between threads).
        let runs: Vec<Vec<u64>> = (0..3)
            .map(|_| {
                bits(
                    &pool
                        .install(|| runtime::cpu::eval_with_grad(&loss, &bound, &wrt))
                        .unwrap(),
                )
            })
            .collect();
        for (k, r) in runs.iter().enumerate().skip(1) {
            assert!(
                *r == runs[0],
                "{}: CPU run {k} differs from run 0 (NaN payloads included)",
                loss.name
            );
        }
    }
}

/// Every e-graph of every stdlib loss and of every program in `tests/loss/pass`, and of their
/// gradient programs, saturates: no limit, and so no timing, shapes what they compile to.
#[test]
fn simplification_of_every_known_program_saturates() {
    let mut sources: Vec<String> = lossc::stdlib::ENTRIES
        .iter()
        .map(|e| e.source.to_string())
        .collect();
    let pass = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    for entry in std::fs::read_dir(pass).unwrap().flatten() {
        sources.push(std::fs::read_to_string(entry.path()).unwrap());
    }
    let mut n = 0;
    for source in sources {
        for loss in compiler::check_source(&source).unwrap().losses {
            let limits = compiler::simplify::Limits::default();
            let (stable, stops) = compiler::simplify::simplify_with(&loss, limits);
            let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
            let grad = compiler::grad::gradient(&stable, &wrt);
            let (_, grad_stops) = compiler::simplify::simplify_with(&grad, limits);
            for stop in stops.iter().chain(&grad_stops) {
                assert_eq!(
                    *stop,
                    compiler::simplify::Stop::Saturated,
                    "{}: an e-graph stopped at a limit",
                    loss.name
                );
            }
            n += 1;
        }
    }
    assert!(n >= 100, "{n}");
}
