//! Built-in functions in f32: native instructions where Cranelift has them (`sqrt`, `abs`,
//! `min`, `max`), lossc's inline vector code (`vmath.rs`) for `exp`, `log`, `log1p`, `expm1`
//! and `tanh` (a scalar goes through lane 0: the lanes' results, and no call, whose clobbers
//! of every vector register would spill the loop around it), calls of the C math library's
//! `sinf`, `cosf` and `powf` otherwise, and the stable compositions of numerics.md for
//! `sigmoid`, `softplus`, `log_sigmoid` and `log1mexp`.

use super::ClifError;
use super::expr::Lowering;
use crate::ir::{Builtin, Expr, UnaryOp};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, Value, types};
use cranelift_module::{Linkage, Module};

/// The C math functions the generated code calls, with their arity: those without inline
/// vector code in `vmath.rs` (`exp`, `log`, `log1p`, `expm1` and `tanh` have it, for scalars
/// too).
pub const LIBM: [(&str, usize); 3] = [("sinf", 1), ("cosf", 1), ("powf", 2)];

impl<M: Module> Lowering<'_, M> {
    fn libm(&mut self, name: &'static str, args: &[Value]) -> Value {
        let f = match self.funcs.get(name) {
            Some(f) => *f,
            None => {
                let mut sig = self.module.make_signature();
                for _ in args {
                    sig.params.push(AbiParam::new(types::F32));
                }
                sig.returns.push(AbiParam::new(types::F32));
                let id = self
                    .module
                    .declare_function(name, Linkage::Import, &sig)
                    .expect("declaring a libm import");
                let f = self.module.declare_func_in_func(id, self.b.func);
                self.funcs.insert(name, f);
                f
            }
        };
        let call = self.b.ins().call(f, args);
        self.b.inst_results(call)[0]
    }

    /// `name` (`expf`, `logf`, `log1pf`, `expm1f`, `tanhf`, or a [`LIBM`] function of one
    /// argument) applied to `x`, a scalar or each lane of
    /// a vector.
    pub(super) fn math1(&mut self, name: &'static str, x: Value) -> Value {
        self.math(name, &[x])
    }

    /// `name` (a [`LIBM`] function of two arguments) applied to `x` and `y`, scalars or
    /// vectors lane by lane.
    pub(super) fn math2(&mut self, name: &'static str, x: Value, y: Value) -> Value {
        self.math(name, &[x, y])
    }

    fn math(&mut self, name: &'static str, args: &[Value]) -> Value {
        // Inline vector code where lossc has it (`vmath.rs`), otherwise one call per lane.
        let inline = match name {
            "expf" => Some(super::vmath::exp as fn(&mut _, bool, Value) -> Value),
            "logf" => Some(super::vmath::log as fn(&mut _, bool, Value) -> Value),
            "log1pf" => Some(super::vmath::log1p as fn(&mut _, bool, Value) -> Value),
            "expm1f" => Some(super::vmath::expm1 as fn(&mut _, bool, Value) -> Value),
            "tanhf" => Some(super::vmath::tanh as fn(&mut _, bool, Value) -> Value),
            _ => None,
        };
        if let Some(f) = inline {
            if self.is_vector(args[0]) {
                return f(&mut self.b, self.fma, args[0]);
            }
            // A scalar through lane 0 of the vector code: no call, whose clobbers of every
            // vector register would spill the loop around it, and the lanes' results.
            let v = self.b.ins().splat(types::F32X4, args[0]);
            let r = f(&mut self.b, self.fma, v);
            return self.b.ins().extractlane(r, 0);
        }
        if !self.is_vector(args[0]) {
            return self.libm(name, args);
        }
        let mut out = None;
        for lane in 0..4u8 {
            let scalars: Vec<Value> = args
                .iter()
                .map(|&a| self.b.ins().extractlane(a, lane))
                .collect();
            let r = self.libm(name, &scalars);
            out = Some(match out {
                None => self.b.ins().splat(types::F32X4, r),
                Some(v) => self.b.ins().insertlane(v, r, lane),
            });
        }
        out.expect("four lanes")
    }

    /// `1 + e` and its reciprocal, built the same way wherever the sigmoid family needs them
    /// (so value numbering computes them once).
    fn one_plus(&mut self, e: Value) -> (Value, Value) {
        let one = self.konst(e, 1.0);
        let u = self.b.ins().fadd(one, e);
        let r = self.b.ins().fdiv(one, u);
        (u, r)
    }

    /// `exp(-|y|)`, built the same way wherever it is needed (the sigmoid family, a
    /// softplus tail's sum), so that value numbering computes it once.
    pub(super) fn exp_neg_abs(&mut self, y: Value) -> Value {
        if self.is_vector(y) {
            let n = super::vmath::neg_abs(&mut self.b, y);
            super::vmath::exp_nonpositive_exact(&mut self.b, self.fma, n)
        } else {
            let a = self.b.ins().fabs(y);
            let n = self.b.ins().fneg(a);
            self.math1("expf", n)
        }
    }

    /// `log1p(exp(-|x|))`, the shared tail of the softplus family (the same for `x` and `-x`).
    fn softplus_tail(&mut self, x: Value) -> Value {
        let e = self.exp_neg_abs(x);
        // lossc's inline vector log1p for e in [0, 1], sharing 1 / (1 + e) with sigmoid; a
        // scalar through lane 0 (the lanes' results, no call).
        if self.is_vector(x) {
            let (u, r) = self.one_plus(e);
            return super::vmath::log1p_unit(&mut self.b, self.fma, e, u, r);
        }
        let v = self.b.ins().splat(types::F32X4, e);
        let (u, r) = self.one_plus(v);
        let t = super::vmath::log1p_unit(&mut self.b, self.fma, v, u, r);
        self.b.ins().extractlane(t, 0)
    }

    /// A built-in applied to argument expressions. The sigmoid family sees through the sign of
    /// its argument ([`Expr::strip_sign`]), so that `sigmoid(β·m)`, `sigmoid(-β·m)`,
    /// `log_sigmoid(m·-β)`, ... compute the same `exp(-|β·m|)`, which value numbering then
    /// computes once.
    pub(super) fn call(&mut self, f: Builtin, args: &[Expr]) -> Result<Value, ClifError> {
        if f == Builtin::Pow
            && let Some(k) = small_power(&args[1])
        {
            return self.power(&args[0], k);
        }
        if f == Builtin::Exp
            && let Expr::Unary(UnaryOp::Neg, a) = &args[0]
            && let Expr::Call(Builtin::Abs, y) = &**a
        {
            let y = self.expr(&y[0])?;
            let y = self.float(y);
            return Ok(self.exp_neg_abs(y));
        }
        if let Builtin::Sigmoid | Builtin::Softplus | Builtin::LogSigmoid = f {
            let (core, negated) = args[0].strip_sign();
            let y = self.expr(&core)?;
            let y = self.float(y);
            return Ok(self.sigmoid_family(f, y, negated));
        }
        let mut vals = vec![];
        for a in args {
            let v = self.expr(a)?;
            vals.push(self.float(v));
        }
        self.builtin(f, &vals)
    }

    /// `sigmoid`, `softplus` or `log_sigmoid` of `x = ±y` (`-y` when `negated`), from
    /// `e = exp(-|y|)`.
    fn sigmoid_family(&mut self, f: Builtin, y: Value, negated: bool) -> Value {
        let zero = self.konst(y, 0.0);
        match f {
            Builtin::Sigmoid => {
                // x >= 0: 1/(1+e), else e/(1+e).
                let e = self.exp_neg_abs(y);
                let (_, r) = self.one_plus(e);
                let small = self.b.ins().fmul(e, r);
                let ge = if negated {
                    self.b.ins().fcmp(FloatCC::LessThanOrEqual, y, zero)
                } else {
                    self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, y, zero)
                };
                self.pick(ge, r, small)
            }
            _ => {
                let x = if negated { self.b.ins().fneg(y) } else { y };
                let t = self.softplus_tail(y);
                // max(x, 0) and min(x, 0) as one compare and blend (one `maxps`/`minps` on
                // x64): a NaN x gives 0 here, and NaN through t.
                if f == Builtin::Softplus {
                    let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                    let m = self.pick(gt, x, zero);
                    self.b.ins().fadd(m, t)
                } else {
                    let lt = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                    let m = self.pick(lt, x, zero);
                    self.b.ins().fsub(m, t)
                }
            }
        }
    }

    /// A built-in applied to f32 arguments.
    pub(super) fn builtin(&mut self, f: Builtin, a: &[Value]) -> Result<Value, ClifError> {
        let x = a[0];
        Ok(match f {
            Builtin::Exp => self.math1("expf", x),
            Builtin::Log => self.math1("logf", x),
            Builtin::Log1p => self.math1("log1pf", x),
            Builtin::Expm1 => self.math1("expm1f", x),
            Builtin::Tanh => self.math1("tanhf", x),
            Builtin::Sin => self.math1("sinf", x),
            Builtin::Cos => self.math1("cosf", x),
            Builtin::Pow => self.math2("powf", x, a[1]),
            Builtin::Sqrt => self.b.ins().sqrt(x),
            Builtin::Abs => self.b.ins().fabs(x),
            Builtin::Min => self.b.ins().fmin(x, a[1]),
            Builtin::Max => self.b.ins().fmax(x, a[1]),
            Builtin::Clamp => {
                let lo = self.b.ins().fmax(x, a[1]);
                self.b.ins().fmin(lo, a[2])
            }
            Builtin::Detach => x,
            Builtin::Relu => {
                // x <= 0 → 0; NaN stays NaN.
                let zero = self.konst(x, 0.0);
                let le = self.b.ins().fcmp(FloatCC::LessThanOrEqual, x, zero);
                self.pick(le, zero, x)
            }
            Builtin::Sigmoid | Builtin::Softplus | Builtin::LogSigmoid => {
                self.sigmoid_family(f, x, false)
            }
            Builtin::Log1mexp => {
                // x > -ln 2: log(-expm1(x)); else log1p(-exp(x)).
                let em1 = self.math1("expm1f", x);
                let n = self.b.ins().fneg(em1);
                let near = self.math1("logf", n);
                let e = self.math1("expf", x);
                let ne = self.b.ins().fneg(e);
                let far = self.math1("log1pf", ne);
                let cut = self.konst(x, -std::f32::consts::LN_2);
                let gt = self.b.ins().fcmp(FloatCC::GreaterThan, x, cut);
                self.pick(gt, near, far)
            }
        })
    }
}

/// The exponent `e` when it is a constant lowered as multiplications (see
/// [`Lowering::power`]).
pub(super) fn small_power(e: &Expr) -> Option<i32> {
    let k = match e {
        Expr::Float(x) => *x,
        Expr::Int(k) => *k as f64,
        _ => return None,
    };
    [-2, -1, 1, 2, 3, 4]
        .into_iter()
        .find(|&p| f64::from(p) == k)
}

impl<M: Module> Lowering<'_, M> {
    /// `a ^ k` for a [`small_power`] `k` by multiplications: `x·x` for 2 (exactly `powf`'s
    /// correctly rounded square) and `1/x` for -1 are exact; 3, 4 and -2 round twice (within
    /// 2 ulp of `powf`).
    pub(super) fn power(&mut self, a: &Expr, k: i32) -> Result<Value, ClifError> {
        let x = self.expr(a)?;
        let x = self.float(x);
        let square = |s: &mut Self| s.b.ins().fmul(x, x);
        Ok(match k {
            1 => x,
            2 => square(self),
            3 => {
                let sq = square(self);
                self.b.ins().fmul(sq, x)
            }
            4 => {
                let sq = square(self);
                self.b.ins().fmul(sq, sq)
            }
            -1 => {
                let one = self.konst(x, 1.0);
                self.b.ins().fdiv(one, x)
            }
            -2 => {
                let sq = square(self);
                let one = self.konst(x, 1.0);
                self.b.ins().fdiv(one, sq)
            }
            _ => unreachable!("not a small power"),
        })
    }
}
