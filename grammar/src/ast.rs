//! The abstract syntax tree of a `.loss` file. Every node carries the byte span it was parsed from.

/// A byte range `start..end` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A name as written, with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A whole `.loss` file: its items in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// Loss and `fn` items, in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `loss NAME(INPUTS; HYPERPARAMETERS) { ... }`
    Loss(LossItem),
    /// `fn NAME(a, b) = EXPR`
    Fn(FnItem),
}

impl Item {
    /// The item's name.
    pub fn name(&self) -> &Ident {
        match self {
            Item::Loss(l) => &l.name,
            Item::Fn(f) => &f.name,
        }
    }
}

/// A `loss` item.
#[derive(Debug, Clone, PartialEq)]
pub struct LossItem {
    /// The `///` doc comment above the item, without the slashes (lines joined by `\n`).
    pub doc: String,
    /// The loss's name.
    pub name: Ident,
    /// Tensor inputs, in order.
    pub inputs: Vec<InputDecl>,
    /// Hyperparameters with their defaults, in order.
    pub hypers: Vec<HyperDecl>,
    /// `let` and `metric` statements, in order.
    pub statements: Vec<Statement>,
    /// The final expression: the scalar loss.
    pub result: Expr,
    /// The whole item.
    pub span: Span,
}

/// The element type of an input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// `[B]` or `float[B]`.
    Float,
    /// `int[B]`.
    Int,
    /// `bool[B]`.
    Bool,
}

/// An input declaration `x: int[B, C]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    /// The input's name.
    pub name: Ident,
    /// Its element type.
    pub elem: ElemType,
    /// Its dimension names; empty for a scalar.
    pub dims: Vec<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// A hyperparameter with its default, `beta = 0.1`.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperDecl {
    /// The hyperparameter's name.
    pub name: Ident,
    /// Its default value.
    pub default: f64,
    /// The whole declaration.
    pub span: Span,
}

/// A statement of a loss body.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `let t[i, j] = EXPR` or `let c = EXPR`.
    Let(LetStmt),
    /// `metric NAME = EXPR`.
    Metric(MetricStmt),
}

/// `let NAME[i, j: D] = EXPR`.
#[derive(Debug, Clone, PartialEq)]
pub struct LetStmt {
    /// The defined tensor's name.
    pub name: Ident,
    /// Its free indices (empty for a scalar).
    pub indices: Vec<IndexParam>,
    /// The defining expression.
    pub value: Expr,
    /// The whole statement.
    pub span: Span,
}

/// An index variable where it is bound, with an optional range annotation: `j` or `j: D`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexParam {
    /// The index variable.
    pub name: Ident,
    /// The dimension it ranges over, when annotated.
    pub range: Option<Ident>,
}

/// `metric NAME = EXPR`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStmt {
    /// The metric's name.
    pub name: Ident,
    /// Its scalar expression.
    pub value: Expr,
    /// The whole statement.
    pub span: Span,
}

/// `fn NAME(a, b) = EXPR`.
#[derive(Debug, Clone, PartialEq)]
pub struct FnItem {
    /// The `///` doc comment above the item.
    pub doc: String,
    /// The function's name.
    pub name: Ident,
    /// Its scalar parameters.
    pub params: Vec<Ident>,
    /// Its body.
    pub body: Expr,
    /// The whole item.
    pub span: Span,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// A reduction operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reducer {
    /// `sum` (empty: 0)
    Sum,
    /// `mean` (empty: 0)
    Mean,
    /// `max` (empty: -inf)
    Max,
    /// `min` (empty: +inf)
    Min,
    /// `logsumexp` (empty: -inf)
    LogSumExp,
    /// `count` (empty: 0); takes no body.
    Count,
    /// `argmax` over one index: the first index of the largest term (NaN counts as largest;
    /// empty: -1).
    ArgMax,
    /// `argmin` over one index: the first index of the smallest term (NaN counts as smallest;
    /// empty: -1).
    ArgMin,
}

impl Reducer {
    /// The keyword as written in source.
    pub fn keyword(self) -> &'static str {
        match self {
            Reducer::Sum => "sum",
            Reducer::Mean => "mean",
            Reducer::Max => "max",
            Reducer::Min => "min",
            Reducer::LogSumExp => "logsumexp",
            Reducer::Count => "count",
            Reducer::ArgMax => "argmax",
            Reducer::ArgMin => "argmin",
        }
    }

    /// Every reducer.
    pub const ALL: [Reducer; 8] = [
        Reducer::Sum,
        Reducer::Mean,
        Reducer::Max,
        Reducer::Min,
        Reducer::LogSumExp,
        Reducer::Count,
        Reducer::ArgMax,
        Reducer::ArgMin,
    ];
}

/// A prefix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-a`
    Neg,
    /// `!a`
    Not,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `^` (power, right-associative)
    Pow,
}

impl BinOp {
    /// The operator as written in source.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
        }
    }

    /// Binding strength: larger binds tighter. Comparisons share one level and do not chain.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div => 6,
            BinOp::Pow => 8,
        }
    }

    /// True for `== != < <= > >=`.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 4
    }

    /// True for `&&` and `||`.
    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }
}

impl UnaryOp {
    /// The operator as written in source.
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Not => "!",
        }
    }

    /// Binding strength on the scale of [`BinOp::precedence`]: `!` binds looser than
    /// comparisons (`!a == b` is `!(a == b)`), `-` tighter than `*` and looser than `^`.
    pub fn precedence(self) -> u8 {
        match self {
            UnaryOp::Not => 3,
            UnaryOp::Neg => 7,
        }
    }
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// An integer literal (`0`, `2`): usable as an index, and as a number.
    Int(i64),
    /// A float literal (`0.5`, `1e-4`, `1.0`, `inf`).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A bare name: an index variable, scalar input, scalar `let`, hyperparameter or `fn` parameter.
    Name(String),
    /// An indexed read `x[i, y[i], 0]`.
    Read {
        /// The tensor read.
        tensor: Ident,
        /// One index expression per dimension.
        indices: Vec<Expr>,
    },
    /// A call of a built-in or a `fn`.
    Call {
        /// The function's name.
        func: Ident,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `R[i, j: D | COND](BODY)`.
    Reduce {
        /// The reducer.
        op: Reducer,
        /// The span of the reducer's keyword.
        op_span: Span,
        /// The bound index variables.
        vars: Vec<IndexParam>,
        /// The filter after `|`.
        filter: Option<Box<Expr>>,
        /// The reduced expression (`None` for `count[..]()`).
        body: Option<Box<Expr>>,
    },
    /// `if c then a else b`.
    If {
        /// The condition.
        cond: Box<Expr>,
        /// Taken when the condition holds.
        then: Box<Expr>,
        /// Taken otherwise.
        otherwise: Box<Expr>,
    },
    /// A prefix operator.
    Unary {
        /// `-` or `!`.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinOp,
        /// The operator's own span.
        op_span: Span,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `( e )`, kept so diagnostics can tell written parentheses apart.
    Paren(Box<Expr>),
}
