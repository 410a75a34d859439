//! The `.loss` front end's first stage: the pest grammar (`loss.pest`), the AST with source
//! spans, the parser, and the [`Diagnostic`] type every stage reports errors with.

pub mod ast;
pub mod diagnostic;
pub mod parser;

pub use diagnostic::{Diagnostic, render};
pub use parser::parse;
