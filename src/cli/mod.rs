//! The command line: `lossc check | eval | doc`. Exit codes: 0 success, 1 a user error (bad
//! source, bad data, a shape mismatch), 2 a bad command line.

mod bench;
mod compile;
mod doc;
mod eval;
mod logic;

use crate::source::{self, UserError};
use clap::{Parser, Subcommand};

/// lossc compiles loss functions written in index notation.
#[derive(Debug, Parser)]
#[command(name = "lossc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check a loss; report every error.
    Check {
        /// A `.loss` file, or the name of a stdlib loss.
        file: String,
    },
    /// Compute a loss and its metrics on data or on seeded random inputs.
    Eval(eval::EvalArgs),
    /// Print the loss simplified and made numerically stable, as `.loss` source.
    Simplify {
        /// A `.loss` file, or the name of a stdlib loss.
        file: String,
        /// The loss to simplify, when the file defines several.
        #[arg(long)]
        loss: Option<String>,
    },
    /// Print the gradient program: the loss with adjoint and `grad_<input>` definitions.
    Grad {
        /// A `.loss` file, or the name of a stdlib loss.
        file: String,
        /// The loss to differentiate, when the file defines several.
        #[arg(long)]
        loss: Option<String>,
        /// The float inputs to differentiate with respect to (default: all of them).
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "INPUT,..",
            conflicts_with = "pairs"
        )]
        wrt: Vec<String>,
        /// Print the pair weights ∂L/∂s[i, j] of a loss built on a similarity matrix instead.
        #[arg(long)]
        pairs: bool,
        /// With --pairs: the matrix (default: the two-index `let` named `s`, or the first).
        #[arg(long, value_name = "NAME", requires = "pairs")]
        matrix: Option<String>,
    },
    /// Compile ahead of time: an object file with a C entry point, its header, or Cranelift IR.
    Compile(compile::CompileArgs),
    /// Time forward + backward on seeded random inputs.
    Bench(bench::BenchArgs),
    /// The logical semantics of preference losses: decompile, compile, compare, lattice.
    Logic(logic::LogicArgs),
    /// List the standard library, or show one loss.
    Doc {
        /// A stdlib loss's name.
        name: Option<String>,
    },
    /// Explore losses interactively: define, simplify, differentiate, evaluate and compare.
    Repl,
}

/// Runs lossc with the process's arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            // Names and values from user files may hold control characters: escape them.
            eprintln!("{}", grammar::diagnostic::printable(&e.0));
            1
        }
    }
}

/// Runs a parsed command line, returning what it prints on success.
pub fn run(cli: Cli) -> Result<String, UserError> {
    match cli.command {
        Command::Check { file } => {
            let src = source::load(&file)?;
            let program = source::check(&src)?;
            let names: Vec<&str> = program.losses.iter().map(|l| l.name.as_str()).collect();
            Ok(match names.len() {
                0 => format!("{}: ok (no losses)\n", src.name),
                1 => format!("{}: ok (loss {})\n", src.name, names[0]),
                n => format!("{}: ok ({n} losses: {})\n", src.name, names.join(", ")),
            })
        }
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Simplify { file, loss } => {
            let src = source::load(&file)?;
            let program = source::check(&src)?;
            let loss = source::select(&program, &src, loss.as_deref())?;
            Ok(compiler::print::loss(&compiler::simplify::simplify(loss)))
        }
        Command::Grad {
            file,
            loss,
            pairs: true,
            matrix,
            ..
        } => {
            let matrix = matrix.unwrap_or_default();
            let src = source::load(&file)?;
            let program = source::check(&src)?;
            let loss = source::select(&program, &src, loss.as_deref())?;
            let stable = compiler::simplify::simplify(loss);
            let candidates = compiler::grad::pair_matrices(&stable);
            let names: Vec<&str> = candidates
                .iter()
                .map(|&d| stable.defs[d].name.as_str())
                .collect();
            let chosen = if matrix.is_empty() {
                candidates.first().copied()
            } else {
                candidates
                    .iter()
                    .copied()
                    .find(|&d| stable.defs[d].name == matrix)
            };
            let Some(d) = chosen else {
                return Err(UserError(format!(
                    "error: loss `{}` has no pair matrix{}: --pairs needs a float `let` with two indices over one dimension (candidates: {})",
                    stable.name,
                    if matrix.is_empty() {
                        String::new()
                    } else {
                        format!(" named `{matrix}`")
                    },
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            };
            let weights = compiler::grad::pair_weights(&stable, d).ok_or_else(|| {
                UserError(format!(
                    "error: the loss does not depend on `{}`",
                    stable.defs[d].name
                ))
            })?;
            Ok(compiler::print::loss(&compiler::simplify::simplify(
                &weights,
            )))
        }
        Command::Grad {
            file, loss, wrt, ..
        } => {
            let src = source::load(&file)?;
            let program = source::check(&src)?;
            let loss = source::select(&program, &src, loss.as_deref())?;
            let wrt = compiler::grad::resolve_wrt(loss, &wrt)
                .map_err(|e| UserError(format!("error: {e}")))?;
            // The gradient of the stabilised loss, simplified in turn.
            let stable = compiler::simplify::simplify(loss);
            let grad = compiler::grad::gradient(&stable, &wrt);
            Ok(compiler::print::loss(&compiler::simplify::simplify(&grad)))
        }
        Command::Logic(args) => logic::run(args),
        Command::Doc { name } => doc::run(name.as_deref()),
        Command::Repl => crate::repl::run(),
    }
}
