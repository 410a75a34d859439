//! lossc's runtime: tensors and their file formats, binding data to a loss's signature, seeded
//! random inputs, and the f64 reference interpreter that defines what every loss means.

pub mod bind;
pub mod cpu;
pub mod data;
pub mod error;
mod gemm;
pub mod gpu;
pub mod interp;
pub mod limits;
pub mod pages;
pub mod random;
pub mod tensor;

pub use bind::{Bound, bind, bind_owned};
pub use error::RunError;
pub use interp::{
    Outputs, Precision, eval, eval_all, eval_all_in, eval_with_grad, eval_with_grad_in,
};
pub use tensor::{Data, Tensor};
