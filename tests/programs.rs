//! The language test corpus: every `tests/loss/pass/*.loss` checks, prints back to source that
//! checks to the same IR, and has its printed IR snapshot-tested; every `tests/loss/fail/*.loss`
//! fails with diagnostics that are snapshot-tested.

use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The path relative to the package root, with forward slashes, as diagnostics show it.
fn display_name(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[test]
fn pass_programs_check_and_round_trip() {
    insta::glob!("loss/pass/*.loss", |path| {
        let source = read(path);
        let program = compiler::check_source(&source).unwrap_or_else(|d| {
            panic!(
                "{} should check:\n{}",
                path.display(),
                grammar::render(&display_name(path), &source, &d)
            )
        });
        let printed = compiler::print::program(&program);
        let again = compiler::check_source(&printed).unwrap_or_else(|d| {
            panic!(
                "printed IR of {} does not check:\n{}\n{printed}",
                path.display(),
                grammar::render("printed", &printed, &d)
            )
        });
        assert_eq!(
            again,
            program,
            "parse(print(ir)) != ir for {}",
            path.display()
        );
        insta::assert_snapshot!(printed);
    });
}

#[test]
fn fail_programs_report_diagnostics() {
    insta::glob!("loss/fail/*.loss", |path| {
        let source = read(path);
        let diags = match compiler::check_source(&source) {
            Ok(_) => panic!("{} should fail to check", path.display()),
            Err(d) => d,
        };
        assert!(!diags.is_empty());
        insta::assert_snapshot!(grammar::render(&display_name(path), &source, &diags));
    });
}

#[test]
fn corpora_are_large_enough() {
    let count = |dir: &str| {
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "loss"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(count("tests/loss/pass") >= 25, "at least 25 pass programs");
    assert!(count("tests/loss/fail") >= 40, "at least 40 fail programs");
}
