//! Property test: for generated well-typed IR, printing it and checking the printed source gives
//! back the same IR (`check(print(ir)) == ir`).

use proptest::prelude::*;

#[path = "support/generate.rs"]
mod generate;
use generate::generate;

#[test]
fn generated_programs_exercise_the_printer() {
    // The generator must reach the interesting forms, or the property proves little.
    let text: String = (1..200u64)
        .map(|s| compiler::print::loss(&generate(s * 7919)))
        .collect();
    for form in [
        "if ",
        " | ",
        "count[",
        "logsumexp[",
        "y[y[",
        " ^ ",
        "-(",
        "!",
        " && ",
        ": D]",
        "m[",
        "inf",
    ] {
        assert!(
            text.contains(form),
            "no generated program contains `{form}`"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn check_of_print_is_identity(seed in any::<u64>()) {
        let loss = generate(seed);
        let printed = compiler::print::loss(&loss);
        let program = compiler::check_source(&printed).map_err(|d| {
            TestCaseError::fail(format!("{printed}\n{}", grammar::render("generated", &printed, &d)))
        })?;
        prop_assert_eq!(program.losses.len(), 1);
        prop_assert_eq!(&program.losses[0], &loss, "printed:\n{}", printed);
    }

    #[test]
    fn gradient_programs_print_as_valid_source(seed in any::<u64>()) {
        let loss = generate(seed);
        let wrt = compiler::grad::resolve_wrt(&loss, &[]).unwrap();
        let grad = compiler::grad::gradient(&loss, &wrt);
        let printed = compiler::print::loss(&grad);
        let program = compiler::check_source(&printed).map_err(|d| {
            TestCaseError::fail(format!("{printed}\n{}", grammar::render("gradient", &printed, &d)))
        })?;
        let outputs = compiler::grad::gradient_outputs(&program.losses[0]);
        prop_assert_eq!(outputs.len(), wrt.len());
    }
}
