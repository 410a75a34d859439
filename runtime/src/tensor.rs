//! Dense, row-major tensors as the runtime holds them: floats in f64 (or f32, kept as read for
//! the compiled backends), ints in i64, booleans.

/// The element storage of a [`Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Float elements (read from f16/bf16/f32/f64 files; the interpreter computes in f64).
    F64(Vec<f64>),
    /// Float elements kept in f32: read from f16/bf16/f32 files, or drawn at random, for a
    /// compiled backend, which computes in f32 and so needs no f64 copy (`lossc bench`).
    F32(Vec<f32>),
    /// Integer elements (labels, class indices).
    I64(Vec<i64>),
    /// Boolean elements (masks).
    Bool(Vec<bool>),
}

/// A dense row-major tensor: `shape` and `data.len() == shape.iter().product()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Sizes of each dimension; empty for a scalar.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Data,
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F64(v) => v.len(),
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name of the element type, for messages: `float`, `int` or `bool`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::F64(_) | Data::F32(_) => "float",
            Data::I64(_) => "int",
            Data::Bool(_) => "bool",
        }
    }
}

impl Tensor {
    /// A float scalar (shape `[]`).
    pub fn scalar(x: f64) -> Tensor {
        Tensor {
            shape: vec![],
            data: Data::F64(vec![x]),
        }
    }

    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}
