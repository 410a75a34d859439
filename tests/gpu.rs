//! The GPU backend (WGSL through wgpu, f32): every emitted module validated by naga with no
//! device at all; then, on whatever adapter exists (a real GPU, or Mesa's software Vulkan
//! driver lavapipe), every stdlib fixture and every pass-corpus program against the f64
//! interpreter. Without an adapter the device tests skip with a message, unless
//! `LOSSC_REQUIRE_GPU=1` (CI) makes them fail.

use compiler::ir::Loss;
use std::path::Path;

/// Every program lossc compiles in the tests: each stdlib loss and each pass-corpus loss, with
/// the `--random` sizes the corpus file names (None for the stdlib).
fn programs() -> Vec<(String, Loss, Option<String>)> {
    let mut out = vec![];
    for e in lossc::stdlib::ENTRIES {
        for loss in compiler::check_source(e.source).unwrap().losses {
            out.push((format!("stdlib {}", e.name), loss, None));
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loss/pass");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let spec = source
            .lines()
            .find_map(|l| l.split("--random ").nth(1))
            .map(|s| s.split_whitespace().next().unwrap().to_string());
        for loss in compiler::check_source(&source).unwrap().losses {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), loss, spec.clone()));
        }
    }
    out
}

#[test]
fn every_emitted_module_is_valid_wgsl() {
    let mut n = 0;
    let mut failures = vec![];
    for (label, loss, _) in programs() {
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        for w in [vec![], wrt] {
            let program = runtime::cpu::gradient_program(&loss, &w);
            let shader = compiler::wgsl::emit(&program);
            if let Err(e) = runtime::gpu::validate(&shader.source) {
                failures.push(format!("{label} ({}): {e}", loss.name));
            }
            n += 1;
        }
    }
    assert!(n >= 2 * 60, "only {n} modules");
    assert!(failures.is_empty(), "{} invalid:\n{}", failures.len(), failures.join("\n"));
}
