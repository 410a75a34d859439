//! lossc's runtime: tensors and their file formats, seeded random inputs, and the f64 reference
//! interpreter that defines what every loss means.

pub mod tensor;

pub use tensor::{Data, Tensor};
