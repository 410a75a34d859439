//! The IR: the one contract between lossc's stages.
//!
//! A [`Loss`] is its inputs (typed tensors over named dimensions), its hyperparameters (runtime
//! scalars with defaults), and an ordered list of [`Def`]initions, each a comprehension
//! `t[i, j] = scalar expression` (or a metric), followed by the scalar loss expression. Inside an
//! [`Expr`] every read of a tensor, every reduction (with its bound indices and filter) and every
//! select is explicit; `fn` items are already inlined and names already resolved to ids.
//!
//! Index variables are numbered per loss ([`VarId`] into [`Loss::vars`]); each is bound exactly
//! once, by a definition's left side or by a reduction, and knows the dimension it ranges over.
//! [`crate::print`] turns a loss back into `.loss` source, and checking that source gives back
//! the same IR.

pub use grammar::ast::{BinOp, Reducer, UnaryOp};

/// Index of a dimension in [`Loss::dims`].
pub type DimId = usize;
/// Index of an input in [`Loss::inputs`].
pub type InputId = usize;
/// Index of a hyperparameter in [`Loss::hypers`].
pub type HyperId = usize;
/// Index of an index variable in [`Loss::vars`].
pub type VarId = usize;
/// Index of a definition in [`Loss::defs`].
pub type DefId = usize;

/// The type of a value: what a tensor holds, or what an expression computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// A real number (f64 in the interpreter, f32 in compiled code).
    Float,
    /// An integer: labels, class indices, index variables, integer literals.
    Int,
    /// A truth value: comparisons, masks, filters.
    Bool,
}

impl DType {
    /// `float`, `int` or `bool`.
    pub fn name(self) -> &'static str {
        match self {
            DType::Float => "float",
            DType::Int => "int",
            DType::Bool => "bool",
        }
    }

    /// `a float`, `an int` or `a boolean`, for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            DType::Float => "a float",
            DType::Int => "an int",
            DType::Bool => "a boolean",
        }
    }

    /// True for `Float` and `Int`, the types arithmetic accepts.
    pub fn is_numeric(self) -> bool {
        self != DType::Bool
    }
}

/// All the losses of one checked file.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The losses, in source order.
    pub losses: Vec<Loss>,
}

impl Program {
    /// The loss called `name`.
    pub fn loss(&self, name: &str) -> Option<&Loss> {
        self.losses.iter().find(|l| l.name == name)
    }
}

/// One checked loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    /// The loss's name.
    pub name: String,
    /// Its doc comment (without `///`).
    pub doc: String,
    /// Dimension names, in order of first appearance among the inputs.
    pub dims: Vec<String>,
    /// Tensor inputs, in declaration order.
    pub inputs: Vec<Input>,
    /// Hyperparameters, in declaration order.
    pub hypers: Vec<Hyper>,
    /// Every index variable, in the order they are bound.
    pub vars: Vec<IndexVar>,
    /// `let` definitions and metrics, in source order.
    pub defs: Vec<Def>,
    /// The scalar loss.
    pub result: Expr,
}

/// A tensor input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The input's name.
    pub name: String,
    /// Its element type.
    pub dtype: DType,
    /// Its dimensions (empty for a scalar).
    pub shape: Vec<DimId>,
}

/// A hyperparameter: a runtime scalar that is never differentiated.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// The hyperparameter's name.
    pub name: String,
    /// Its default value.
    pub default: f64,
}

/// An index variable and the dimension it ranges over.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexVar {
    /// The name as written.
    pub name: String,
    /// The dimension it ranges over.
    pub dim: DimId,
}

/// Whether a definition is an intermediate tensor or a reported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefKind {
    /// `let`: readable by later expressions.
    Let,
    /// `metric`: a scalar reported beside the loss, never read, never differentiated.
    Metric,
}

/// A definition `name[indices] = body`: a tensor built by comprehension (a scalar when
/// `indices` is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Def {
    /// The defined name.
    pub name: String,
    /// `let` or `metric`.
    pub kind: DefKind,
    /// The free indices of the left side, outermost first.
    pub indices: Vec<VarId>,
    /// The element type.
    pub dtype: DType,
    /// The value at each index.
    pub body: Expr,
}

/// The tensor an [`Expr::Read`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tensor {
    /// An input.
    Input(InputId),
    /// An earlier `let`.
    Def(DefId),
}

/// A built-in scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `exp(x)`
    Exp,
    /// `log(x)` (natural)
    Log,
    /// `log1p(x) = log(1 + x)`
    Log1p,
    /// `expm1(x) = exp(x) - 1`
    Expm1,
    /// `log1mexp(x) = log(1 - exp(x))`, for `x <= 0`
    Log1mexp,
    /// `sqrt(x)`
    Sqrt,
    /// `abs(x)`
    Abs,
    /// `sigmoid(x) = 1 / (1 + exp(-x))`
    Sigmoid,
    /// `log_sigmoid(x) = -softplus(-x)`
    LogSigmoid,
    /// `softplus(x) = log(1 + exp(x))`
    Softplus,
    /// `tanh(x)`
    Tanh,
    /// `relu(x) = max(x, 0)`
    Relu,
    /// `cos(x)`
    Cos,
    /// `sin(x)`
    Sin,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
    /// `clamp(x, lo, hi)`
    Clamp,
    /// `pow(a, b)`, the same as `a ^ b`
    Pow,
    /// `detach(x)`: the value of `x`, with no gradient
    Detach,
}

impl Builtin {
    /// Every built-in.
    pub const ALL: [Builtin; 19] = [
        Builtin::Exp,
        Builtin::Log,
        Builtin::Log1p,
        Builtin::Expm1,
        Builtin::Log1mexp,
        Builtin::Sqrt,
        Builtin::Abs,
        Builtin::Sigmoid,
        Builtin::LogSigmoid,
        Builtin::Softplus,
        Builtin::Tanh,
        Builtin::Relu,
        Builtin::Cos,
        Builtin::Sin,
        Builtin::Min,
        Builtin::Max,
        Builtin::Clamp,
        Builtin::Pow,
        Builtin::Detach,
    ];

    /// The name as written in source.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Exp => "exp",
            Builtin::Log => "log",
            Builtin::Log1p => "log1p",
            Builtin::Expm1 => "expm1",
            Builtin::Log1mexp => "log1mexp",
            Builtin::Sqrt => "sqrt",
            Builtin::Abs => "abs",
            Builtin::Sigmoid => "sigmoid",
            Builtin::LogSigmoid => "log_sigmoid",
            Builtin::Softplus => "softplus",
            Builtin::Tanh => "tanh",
            Builtin::Relu => "relu",
            Builtin::Cos => "cos",
            Builtin::Sin => "sin",
            Builtin::Min => "min",
            Builtin::Max => "max",
            Builtin::Clamp => "clamp",
            Builtin::Pow => "pow",
            Builtin::Detach => "detach",
        }
    }

    /// The built-in called `name`.
    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// How many arguments it takes.
    pub fn arity(self) -> usize {
        match self {
            Builtin::Min | Builtin::Max | Builtin::Pow => 2,
            Builtin::Clamp => 3,
            _ => 1,
        }
    }

    /// The parameter names, for messages.
    pub fn signature(self) -> &'static str {
        match self {
            Builtin::Min | Builtin::Max | Builtin::Pow => "(a, b)",
            Builtin::Clamp => "(x, lo, hi)",
            _ => "(x)",
        }
    }
}

/// A scalar expression, evaluated at one point of its enclosing comprehension.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A float constant.
    Float(f64),
    /// An integer constant.
    Int(i64),
    /// A boolean constant.
    Bool(bool),
    /// The current value of an index variable (an int).
    Index(VarId),
    /// A hyperparameter's value.
    Hyper(HyperId),
    /// An element of a tensor; one index expression per dimension, each an [`Expr::Index`], an
    /// [`Expr::Int`] or an int-typed [`Expr::Read`] (a gather, checked in range at run time).
    Read {
        /// The tensor read.
        tensor: Tensor,
        /// One index per dimension.
        indices: Vec<Expr>,
    },
    /// `-a` or `!a`.
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`; `&&` and `||` do not evaluate `b` when `a` decides.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A built-in applied to its arguments.
    Call(Builtin, Vec<Expr>),
    /// `if c then a else b`; only the taken branch is evaluated.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `op[vars | filter](body)`: terms where the filter fails are not evaluated. `body` is
    /// `None` exactly for `count`.
    Reduce {
        /// The reducer.
        op: Reducer,
        /// The bound index variables, outermost first.
        vars: Vec<VarId>,
        /// The condition a term must meet.
        filter: Option<Box<Expr>>,
        /// The reduced expression.
        body: Option<Box<Expr>>,
    },
}

impl Loss {
    /// Replaces every definition's body and the result by `f` of it (the passes that rewrite
    /// expressions one by one, and the renumberings after a definition is inserted).
    pub fn rewrite_bodies(&mut self, mut f: impl FnMut(&Expr) -> Expr) {
        for def in &mut self.defs {
            def.body = f(&def.body);
        }
        self.result = f(&self.result);
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<(InputId, &Input)> {
        self.inputs.iter().enumerate().find(|(_, i)| i.name == name)
    }

    /// The metrics, in order: their names and definitions.
    pub fn metrics(&self) -> impl Iterator<Item = &Def> {
        self.defs.iter().filter(|d| d.kind == DefKind::Metric)
    }

    /// The shape (dimension ids) of a tensor.
    pub fn shape_of(&self, t: Tensor) -> Vec<DimId> {
        match t {
            Tensor::Input(i) => self.inputs[i].shape.clone(),
            Tensor::Def(d) => self.defs[d]
                .indices
                .iter()
                .map(|&v| self.vars[v].dim)
                .collect(),
        }
    }

    /// The name of a tensor.
    pub fn tensor_name(&self, t: Tensor) -> &str {
        match t {
            Tensor::Input(i) => &self.inputs[i].name,
            Tensor::Def(d) => &self.defs[d].name,
        }
    }

    /// The element type of a tensor.
    pub fn dtype_of(&self, t: Tensor) -> DType {
        match t {
            Tensor::Input(i) => self.inputs[i].dtype,
            Tensor::Def(d) => self.defs[d].dtype,
        }
    }

    /// The type an expression computes.
    pub fn type_of(&self, e: &Expr) -> DType {
        match e {
            Expr::Float(_) | Expr::Hyper(_) | Expr::Call(..) => DType::Float,
            Expr::Int(_) | Expr::Index(_) => DType::Int,
            Expr::Bool(_) => DType::Bool,
            Expr::Read { tensor, .. } => self.dtype_of(*tensor),
            Expr::Unary(UnaryOp::Not, _) => DType::Bool,
            Expr::Unary(UnaryOp::Neg, a) => self.type_of(a),
            Expr::Binary(op, a, b) => match op {
                _ if op.is_comparison() || op.is_logical() => DType::Bool,
                BinOp::Add | BinOp::Sub | BinOp::Mul
                    if self.type_of(a) == DType::Int && self.type_of(b) == DType::Int =>
                {
                    DType::Int
                }
                _ => DType::Float,
            },
            Expr::Select(_, a, b) => match (self.type_of(a), self.type_of(b)) {
                (DType::Bool, _) => DType::Bool,
                (DType::Int, DType::Int) => DType::Int,
                _ => DType::Float,
            },
            Expr::Reduce {
                op: Reducer::Count | Reducer::ArgMax | Reducer::ArgMin,
                ..
            } => DType::Int,
            Expr::Reduce { .. } => DType::Float,
        }
    }
}

impl Expr {
    /// Calls `f` on each direct child of this expression (a reduction's filter, then body).
    pub fn for_each_child<'e>(&'e self, mut f: impl FnMut(&'e Expr)) {
        match self {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {}
            Expr::Read { indices, .. } => indices.iter().for_each(f),
            Expr::Unary(_, a) => f(a),
            Expr::Binary(_, a, b) => {
                f(a);
                f(b);
            }
            Expr::Call(_, args) => args.iter().for_each(f),
            Expr::Select(c, a, b) => {
                f(c);
                f(a);
                f(b);
            }
            Expr::Reduce { filter, body, .. } => {
                filter.iter().chain(body.iter()).for_each(|x| f(x))
            }
        }
    }

    /// Calls `f` on this expression and every subexpression, parents first.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        self.for_each_child(|c| c.visit(f));
    }

    /// True when `pred` holds for this expression or a subexpression.
    pub fn any(&self, pred: &mut impl FnMut(&Expr) -> bool) -> bool {
        let mut found = false;
        self.visit(&mut |e| found = found || pred(e));
        found
    }

    /// The same node with `f` applied to each direct child (a reduction keeps its bound
    /// variables): the one structural recursion that rewriting passes build on.
    pub fn map_children(&self, mut f: impl FnMut(&Expr) -> Expr) -> Expr {
        let mut b = |e: &Expr| Box::new(f(e));
        match self {
            Expr::Float(_) | Expr::Int(_) | Expr::Bool(_) | Expr::Index(_) | Expr::Hyper(_) => {
                self.clone()
            }
            Expr::Read { tensor, indices } => Expr::Read {
                tensor: *tensor,
                indices: indices.iter().map(|i| *b(i)).collect(),
            },
            Expr::Unary(op, a) => Expr::Unary(*op, b(a)),
            Expr::Binary(op, x, y) => Expr::Binary(*op, b(x), b(y)),
            Expr::Call(g, args) => Expr::Call(*g, args.iter().map(|a| *b(a)).collect()),
            Expr::Select(c, x, y) => Expr::Select(b(c), b(x), b(y)),
            Expr::Reduce {
                op,
                vars,
                filter,
                body,
            } => Expr::Reduce {
                op: *op,
                vars: vars.clone(),
                filter: filter.as_deref().map(&mut b),
                body: body.as_deref().map(&mut b),
            },
        }
    }

    /// A copy with free index variables renamed by `map` (binders and the variables they bind
    /// are left alone: callers never map a variable that a reduction inside binds).
    pub fn rename_vars(&self, map: &std::collections::HashMap<VarId, VarId>) -> Expr {
        match self {
            Expr::Index(v) => Expr::Index(*map.get(v).unwrap_or(v)),
            e => e.map_children(|c| c.rename_vars(map)),
        }
    }

    /// A copy with every read of a definition `d` reading definition `map[d]` instead.
    pub fn renumber_defs(&self, map: &[usize]) -> Expr {
        match self {
            Expr::Read {
                tensor: Tensor::Def(d),
                indices,
            } => Expr::Read {
                tensor: Tensor::Def(map[*d]),
                indices: indices.iter().map(|i| i.renumber_defs(map)).collect(),
            },
            e => e.map_children(|c| c.renumber_defs(map)),
        }
    }

    /// `self` as `(y, negated)` with `self = -y` when `negated`, else `self = y`: negations
    /// (of subexpressions, factors and constants) taken out of products, factors in a fixed
    /// order. Exact: negation and the order of two factors never change a float product. The
    /// sigmoid family of `±y` shares `exp(-|y|)` through it.
    pub fn strip_sign(&self) -> (Expr, bool) {
        match self {
            Expr::Unary(UnaryOp::Neg, a) => {
                let (y, n) = a.strip_sign();
                (y, !n)
            }
            Expr::Float(c) if *c < 0.0 => (Expr::Float(-c), true),
            Expr::Binary(BinOp::Mul, p, q) => {
                let ((p, m), (q, n)) = (p.strip_sign(), q.strip_sign());
                let (p, q) = if format!("{p:?}") <= format!("{q:?}") {
                    (p, q)
                } else {
                    (q, p)
                };
                (Expr::Binary(BinOp::Mul, Box::new(p), Box::new(q)), m != n)
            }
            _ => (self.clone(), false),
        }
    }

    /// The number of nodes.
    pub fn size(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_| n += 1);
        n
    }
}
