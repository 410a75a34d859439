//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz targets'
//! logic, so CI checks every input the fuzzers kept, and every crash they once found, in
//! seconds and without libFuzzer. The targets themselves live in `fuzz/` (see its README).

#[path = "../fuzz/src/lib.rs"]
#[allow(clippy::all)]
mod fuzz;

use std::path::Path;

/// Runs `target` on every file of `fuzz/corpus/<name>` on a thread with the stack `lossc`
/// gives its stages (`src/main.rs`: the parser accepts nesting that the later stages, in a
/// debug build, recurse over deeper than a test thread's 2 MiB); returns how many files.
fn replay(name: &'static str, target: fn(&[u8])) -> usize {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || replay_here(name, target))
        .unwrap()
        .join()
        .unwrap()
}

fn replay_here(name: &str, target: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&bytes));
        assert!(
            outcome.is_ok(),
            "fuzz target `{name}` fails on {} (replay: cargo fuzz run --sanitizer none {name} {})",
            file.display(),
            file.display()
        );
    }
    files.len()
}

#[test]
fn parse_corpus() {
    assert!(replay("parse", fuzz::parse) > 0);
}

#[test]
fn check_corpus() {
    assert!(replay("check", fuzz::check) > 0);
}

#[test]
fn pipeline_corpus() {
    assert!(replay("pipeline", fuzz::pipeline) > 0);
}

#[test]
fn data_corpus() {
    assert!(replay("data", fuzz::data) > 0);
}
