//! lossc: a compiler for machine-learning loss functions. This crate is the command-line
//! program (and REPL); the stages live in the `grammar`, `compiler` and `runtime` crates.

pub mod assign;
pub mod cli;
pub mod repl;
pub mod show;
pub mod source;
pub mod stdlib;
