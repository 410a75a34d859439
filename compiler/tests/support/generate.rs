//! A generator of random well-typed losses over `x: [B, D]`, `y: int[B]` (indices into B),
//! `m: bool[B, B]` and `s: []`, for property tests and the fuzz targets. Included by path from
//! several test files and from `fuzz/src/lib.rs`.

#![allow(dead_code)]

use compiler::ir::*;

/// A small deterministic generator driven by one seed (proptest supplies the seeds), or by
/// bytes (a fuzzer supplies them): each choice reads the next byte while there are bytes, so
/// a mutation of the bytes is a local change of the program.
struct Gen {
    state: u64,
    bytes: Vec<u8>,
    at: usize,
    loss: Loss,
    /// Index variables in scope: (var, dim).
    scope: Vec<VarId>,
}

const B: DimId = 0;
const D: DimId = 1;

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            return u64::from(b) % n;
        }
        self.next() % n
    }

    fn new_var(&mut self, dim: DimId) -> VarId {
        let v = self.loss.vars.len();
        self.loss.vars.push(IndexVar {
            name: format!("i{v}"),
            dim,
        });
        v
    }

    fn var_of(&mut self, dim: DimId) -> Option<VarId> {
        let vs: Vec<VarId> = self
            .scope
            .iter()
            .copied()
            .filter(|&v| self.loss.vars[v].dim == dim)
            .collect();
        if vs.is_empty() {
            None
        } else {
            Some(vs[self.below(vs.len() as u64) as usize])
        }
    }

    /// An index into `dim`: a variable of that dimension when one is in scope, else 0 or a gather.
    fn index(&mut self, dim: DimId, depth: u32) -> Expr {
        if let Some(v) = self.var_of(dim).filter(|_| self.below(4) != 0) {
            return Expr::Index(v);
        }
        if dim == B && depth > 0 && self.below(2) == 0 {
            // y: int[B] holds indices into B.
            let i = self.index(B, depth - 1);
            return Expr::Read {
                tensor: Tensor::Input(1),
                indices: vec![i],
            };
        }
        Expr::Int(0)
    }

    fn constant(&mut self) -> Expr {
        match self.below(6) {
            0 => Expr::Int(self.below(5) as i64 - 2),
            1 => Expr::Float(f64::INFINITY),
            2 => Expr::Float(-(self.below(1000) as f64) / 8.0),
            3 => Expr::Float(1e-4 * self.below(100) as f64),
            _ => Expr::Float(self.below(1000) as f64 / 16.0),
        }
    }

    fn float(&mut self, depth: u32) -> Expr {
        let choice = if depth == 0 {
            self.below(4)
        } else {
            self.below(14)
        };
        match choice {
            0 => self.constant(),
            1 => Expr::Hyper(self.below(2) as usize),
            2 => {
                let (b, d) = (self.index(B, depth), self.index(D, depth));
                Expr::Read {
                    tensor: Tensor::Input(0),
                    indices: vec![b, d],
                }
            }
            3 => Expr::Read {
                tensor: Tensor::Input(3),
                indices: vec![],
            },
            4 => self.def_read(depth),
            5 => Expr::Unary(UnaryOp::Neg, Box::new(self.float(depth - 1))),
            6 | 7 => {
                let ops = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::Pow];
                let op = ops[self.below(5) as usize];
                Expr::Binary(
                    op,
                    Box::new(self.float(depth - 1)),
                    Box::new(self.float(depth - 1)),
                )
            }
            8 => {
                let f = Builtin::ALL[self.below(Builtin::ALL.len() as u64) as usize];
                let args = (0..f.arity()).map(|_| self.float(depth - 1)).collect();
                Expr::Call(f, args)
            }
            9 => Expr::Select(
                Box::new(self.boolean(depth - 1)),
                Box::new(self.float(depth - 1)),
                Box::new(self.float(depth - 1)),
            ),
            10 | 11 => self.reduce(depth),
            12 => match self.scope.last() {
                Some(&v) => Expr::Index(v),
                None => Expr::Int(1),
            },
            _ => {
                let b = self.index(B, depth);
                Expr::Read {
                    tensor: Tensor::Input(1),
                    indices: vec![b],
                }
            }
        }
    }

    /// A read of an earlier float `let`, when one exists.
    fn def_read(&mut self, depth: u32) -> Expr {
        let defs: Vec<DefId> = (0..self.loss.defs.len())
            .filter(|&d| {
                self.loss.defs[d].kind == DefKind::Let && self.loss.defs[d].dtype == DType::Float
            })
            .collect();
        if defs.is_empty() {
            return self.constant();
        }
        let d = defs[self.below(defs.len() as u64) as usize];
        let dims: Vec<DimId> = self.loss.defs[d]
            .indices
            .iter()
            .map(|&v| self.loss.vars[v].dim)
            .collect();
        let indices = dims.into_iter().map(|dim| self.index(dim, depth)).collect();
        Expr::Read {
            tensor: Tensor::Def(d),
            indices,
        }
    }

    fn reduce(&mut self, depth: u32) -> Expr {
        let ops = [
            Reducer::Sum,
            Reducer::Mean,
            Reducer::Max,
            Reducer::Min,
            Reducer::LogSumExp,
            Reducer::Count,
        ];
        let op = ops[self.below(6) as usize];
        let n = 1 + self.below(2) as usize;
        let vars: Vec<VarId> = (0..n)
            .map(|_| {
                let dim = if self.below(2) == 0 { B } else { D };
                self.new_var(dim)
            })
            .collect();
        self.scope.extend(&vars);
        let filter = (self.below(2) == 0).then(|| Box::new(self.boolean(depth - 1)));
        let body = (op != Reducer::Count).then(|| Box::new(self.float(depth - 1)));
        self.scope.truncate(self.scope.len() - vars.len());
        Expr::Reduce {
            op,
            vars,
            filter,
            body,
        }
    }

    fn boolean(&mut self, depth: u32) -> Expr {
        let choice = if depth == 0 {
            self.below(2)
        } else {
            self.below(6)
        };
        match choice {
            0 => Expr::Bool(self.below(2) == 0),
            1 => {
                let (a, b) = (self.index(B, depth), self.index(B, depth));
                Expr::Read {
                    tensor: Tensor::Input(2),
                    indices: vec![a, b],
                }
            }
            2 | 3 => {
                let ops = [
                    BinOp::Eq,
                    BinOp::Ne,
                    BinOp::Lt,
                    BinOp::Le,
                    BinOp::Gt,
                    BinOp::Ge,
                ];
                let op = ops[self.below(6) as usize];
                Expr::Binary(
                    op,
                    Box::new(self.float(depth - 1)),
                    Box::new(self.float(depth - 1)),
                )
            }
            4 => {
                let op = if self.below(2) == 0 {
                    BinOp::And
                } else {
                    BinOp::Or
                };
                Expr::Binary(
                    op,
                    Box::new(self.boolean(depth - 1)),
                    Box::new(self.boolean(depth - 1)),
                )
            }
            _ => Expr::Unary(UnaryOp::Not, Box::new(self.boolean(depth - 1))),
        }
    }
}

/// The loss generated from `seed`.
pub fn generate(seed: u64) -> Loss {
    generate_with(seed, &[])
}

/// The loss whose choices are read from `bytes` (then from a generator seeded by their length
/// when they run out): the fuzz targets' entry point.
pub fn generate_from_bytes(bytes: &[u8]) -> Loss {
    generate_with(bytes.len() as u64, bytes)
}

fn generate_with(seed: u64, bytes: &[u8]) -> Loss {
    let loss = Loss {
        name: "generated".into(),
        doc: "A generated loss.".into(),
        dims: vec!["B".into(), "D".into()],
        inputs: vec![
            Input {
                name: "x".into(),
                dtype: DType::Float,
                shape: vec![B, D],
            },
            Input {
                name: "y".into(),
                dtype: DType::Int,
                shape: vec![B],
            },
            Input {
                name: "m".into(),
                dtype: DType::Bool,
                shape: vec![B, B],
            },
            Input {
                name: "s".into(),
                dtype: DType::Float,
                shape: vec![],
            },
        ],
        hypers: vec![
            Hyper {
                name: "alpha".into(),
                default: 0.5,
            },
            Hyper {
                name: "beta".into(),
                default: -100.0,
            },
        ],
        vars: vec![],
        defs: vec![],
        result: Expr::Float(0.0),
    };
    let mut g = Gen {
        state: seed | 1,
        bytes: bytes.to_vec(),
        at: 0,
        loss,
        scope: vec![],
    };
    for k in 0..1 + g.below(4) {
        let n = g.below(3) as usize;
        let indices: Vec<VarId> = (0..n)
            .map(|_| {
                let dim = if g.below(2) == 0 { B } else { D };
                g.new_var(dim)
            })
            .collect();
        g.scope = indices.clone();
        let (body, dtype) = if g.below(5) == 0 {
            (g.boolean(3), DType::Bool)
        } else {
            (g.float(3), DType::Float)
        };
        g.scope.clear();
        g.loss.defs.push(Def {
            name: format!("t{k}"),
            kind: DefKind::Let,
            indices,
            dtype,
            body,
        });
    }
    if g.below(2) == 0 {
        let body = g.float(2);
        g.loss.defs.push(Def {
            name: "m0".into(),
            kind: DefKind::Metric,
            indices: vec![],
            dtype: DType::Float,
            body,
        });
    }
    g.loss.result = g.float(3);
    // A definition's type is what its body computes (an int body gives an int tensor).
    for d in 0..g.loss.defs.len() {
        let t = g.loss.type_of(&g.loss.defs[d].body);
        if g.loss.defs[d].kind == DefKind::Let {
            g.loss.defs[d].dtype = t;
        }
    }
    g.loss
}
