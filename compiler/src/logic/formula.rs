//! Boolean formulas over the four preference atoms, their `! & | -> ^` syntax, and their
//! truth tables.
//!
//! Syntax, loosest binding first: `a -> b` (right-associative), `a | b`, `a ^ b` (xor),
//! `a & b`, `!a`; parentheses; the atoms `Mw Ml Rw Rl` and the constants `true false`.
//! The paper's symbols `¬ ∧ ∨ → ⊕ ⊤ ⊥` are accepted as synonyms.

use super::worlds::BoolFn;
use std::fmt;

/// A proposition of the DPA semantics (dpa_logic.md §1.2): whether the tuned model (`M`) or
/// the reference model (`R`) deems the winner (`w`) or the loser (`l`) a valid generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// `M(x, y_w)`: the tuned model deems the chosen response valid; weight `w = π_θ(y_w|x)`.
    Mw,
    /// `M(x, y_l)`: the tuned model deems the rejected response valid; weight `l = π_θ(y_l|x)`.
    Ml,
    /// `Ref(x, y_w)`: the reference model deems the chosen response valid; weight `r_w`.
    Rw,
    /// `Ref(x, y_l)`: the reference model deems the rejected response valid; weight `r_l`.
    Rl,
}

impl Atom {
    /// Every atom, in world-bit order.
    pub const ALL: [Atom; 4] = [Atom::Mw, Atom::Ml, Atom::Rw, Atom::Rl];

    /// The atom's bit in a world index (`Mw` = bit 0, ..., `Rl` = bit 3).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The atom's name in formulas: `Mw`, `Ml`, `Rw` or `Rl`.
    pub fn name(self) -> &'static str {
        match self {
            Atom::Mw => "Mw",
            Atom::Ml => "Ml",
            Atom::Rw => "Rw",
            Atom::Rl => "Rl",
        }
    }

    /// The atom called `name`.
    pub fn from_name(name: &str) -> Option<Atom> {
        Atom::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The name of its weight (a probability) in ratios: `w`, `l`, `r_w` or `r_l`.
    pub fn weight(self) -> &'static str {
        match self {
            Atom::Mw => "w",
            Atom::Ml => "l",
            Atom::Rw => "r_w",
            Atom::Rl => "r_l",
        }
    }

    /// The input that holds its log-weight unless the loss names its atoms with `@atoms`.
    pub fn default_input(self) -> &'static str {
        match self {
            Atom::Mw => "policy_chosen_logps",
            Atom::Ml => "policy_rejected_logps",
            Atom::Rw => "reference_chosen_logps",
            Atom::Rl => "reference_rejected_logps",
        }
    }

    /// True for the reference-model atoms `Rw` and `Rl`.
    pub fn is_reference(self) -> bool {
        matches!(self, Atom::Rw | Atom::Rl)
    }
}

/// A binary connective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `a & b`
    And,
    /// `a | b`
    Or,
    /// `a ^ b`: exactly one of `a`, `b`
    Xor,
    /// `a -> b`
    Implies,
}

impl Op {
    /// The connective as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::And => "&",
            Op::Or => "|",
            Op::Xor => "^",
            Op::Implies => "->",
        }
    }

    /// Applies the connective to two truth tables.
    pub fn apply(self, a: BoolFn, b: BoolFn) -> BoolFn {
        match self {
            Op::And => a.and(b),
            Op::Or => a.or(b),
            Op::Xor => a.xor(b),
            Op::Implies => a.implies(b),
        }
    }

    /// True for `&`, `|` and `^`.
    pub fn is_commutative(self) -> bool {
        self != Op::Implies
    }
}

/// A Boolean formula over the atoms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Formula {
    /// `true` or `false`.
    Const(bool),
    /// An atom.
    Atom(Atom),
    /// `!a`.
    Not(Box<Formula>),
    /// `a op b`.
    Bin(Op, Box<Formula>, Box<Formula>),
}

/// Why a formula did not parse: a message and the byte offset it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What was expected and what was found.
    pub message: String,
    /// Byte offset into the text.
    pub offset: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at column {})", self.message, self.offset + 1)
    }
}

/// How deeply a formula may nest before it is refused (adversarial input must not overflow
/// the stack).
const MAX_DEPTH: usize = 200;
/// How many symbols a formula may hold (four atoms never need more).
const MAX_TOKENS: usize = 2000;

impl Formula {
    /// Parses the `! & | -> ^` syntax.
    pub fn parse(text: &str) -> Result<Formula, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            depth: 0,
            end: text.len(),
        };
        let f = p.implication()?;
        match p.peek() {
            None => Ok(f),
            Some((t, at)) => Err(ParseError {
                message: format!(
                    "expected a connective (`&`, `|`, `^`, `->`) or the end, found {}",
                    t.describe()
                ),
                offset: at,
            }),
        }
    }

    /// `a op b`.
    pub fn bin(op: Op, a: Formula, b: Formula) -> Formula {
        Formula::Bin(op, Box::new(a), Box::new(b))
    }

    /// `!a`, with double negations removed.
    pub fn negation(a: Formula) -> Formula {
        match a {
            Formula::Not(inner) => *inner,
            Formula::Const(b) => Formula::Const(!b),
            other => Formula::Not(Box::new(other)),
        }
    }

    /// The formula's truth table over the 16 worlds of the four atoms.
    pub fn truth(&self) -> BoolFn {
        match self {
            Formula::Const(true) => BoolFn::TRUE,
            Formula::Const(false) => BoolFn::FALSE,
            Formula::Atom(a) => BoolFn::atom(*a),
            Formula::Not(a) => a.truth().complement(),
            Formula::Bin(op, a, b) => op.apply(a.truth(), b.truth()),
        }
    }

    /// The atoms the formula mentions (whether or not its value depends on them).
    pub fn atoms(&self) -> Vec<Atom> {
        let mut out = vec![];
        self.collect_atoms(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn collect_atoms(&self, out: &mut Vec<Atom>) {
        match self {
            Formula::Const(_) => {}
            Formula::Atom(a) => out.push(*a),
            Formula::Not(a) => a.collect_atoms(out),
            Formula::Bin(_, a, b) => {
                a.collect_atoms(out);
                b.collect_atoms(out);
            }
        }
    }

    /// The number of atom occurrences.
    pub fn leaves(&self) -> usize {
        match self {
            Formula::Const(_) | Formula::Atom(_) => 1,
            Formula::Not(a) => a.leaves(),
            Formula::Bin(_, a, b) => a.leaves() + b.leaves(),
        }
    }

    /// Flattens chains of one commutative connective and sorts their operands (by the first
    /// atom they mention, plain before negated, smaller first), so that equal formulas print
    /// alike: `(Mw & Rl) | (Ml & Rw)`, not `(Rw & Ml) | (Rl & Mw)`.
    pub fn canonical(self) -> Formula {
        match self {
            Formula::Not(a) => Formula::negation(a.canonical()),
            Formula::Bin(op, a, b) if op.is_commutative() => {
                let mut operands = vec![];
                flatten(op, a.canonical(), &mut operands);
                flatten(op, b.canonical(), &mut operands);
                operands.sort_by_key(sort_key);
                let mut it = operands.into_iter();
                let first = it.next().expect("two operands");
                it.fold(first, |acc, x| Formula::bin(op, acc, x))
            }
            Formula::Bin(op, a, b) => Formula::bin(op, a.canonical(), b.canonical()),
            leaf => leaf,
        }
    }
}

fn flatten(op: Op, f: Formula, out: &mut Vec<Formula>) {
    match f {
        Formula::Bin(o, a, b) if o == op => {
            flatten(op, *a, out);
            flatten(op, *b, out);
        }
        other => out.push(other),
    }
}

fn sort_key(f: &Formula) -> (usize, bool, usize, String) {
    let first = first_atom(f).map_or(usize::MAX, Atom::index);
    (
        first,
        matches!(f, Formula::Not(_)),
        f.leaves(),
        f.to_string(),
    )
}

fn first_atom(f: &Formula) -> Option<Atom> {
    match f {
        Formula::Const(_) => None,
        Formula::Atom(a) => Some(*a),
        Formula::Not(a) => first_atom(a),
        Formula::Bin(_, a, b) => match (first_atom(a), first_atom(b)) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        },
    }
}

impl fmt::Display for Formula {
    /// Prints with `! & | -> ^`. Operands of a connective that are themselves connectives are
    /// parenthesised unless they continue the same `&`, `|` or `^` chain, so the reader never
    /// needs the precedence table: `(Ml & Rw) -> (Mw & Rl)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Formula::Const(b) => write!(f, "{b}"),
            Formula::Atom(a) => f.write_str(a.name()),
            Formula::Not(a) => match **a {
                Formula::Const(_) | Formula::Atom(_) | Formula::Not(_) => write!(f, "!{a}"),
                _ => write!(f, "!({a})"),
            },
            Formula::Bin(op, a, b) => {
                let side = |x: &Formula, left: bool| match x {
                    Formula::Bin(o, ..) if o == op && op.is_commutative() => format!("{x}"),
                    // `a -> b -> c` is `a -> (b -> c)`: the right operand may chain.
                    Formula::Bin(Op::Implies, ..) if *op == Op::Implies && !left => {
                        format!("{x}")
                    }
                    Formula::Bin(..) => format!("({x})"),
                    _ => format!("{x}"),
                };
                write!(f, "{} {} {}", side(a, true), op.symbol(), side(b, false))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Atom(Atom),
    Const(bool),
    Not,
    Op(Op),
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Atom(a) => format!("the atom `{}`", a.name()),
            Token::Const(b) => format!("`{b}`"),
            Token::Not => "`!`".into(),
            Token::Op(op) => format!("`{}`", op.symbol()),
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let mut out = vec![];
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            let token = match word.as_str() {
                "true" => Token::Const(true),
                "false" => Token::Const(false),
                w => match Atom::from_name(w) {
                    Some(a) => Token::Atom(a),
                    None => {
                        let hint = Atom::ALL
                            .into_iter()
                            .find(|a| a.name().eq_ignore_ascii_case(w))
                            .map(|a| format!(" (did you mean `{}`?)", a.name()))
                            .unwrap_or_default();
                        return Err(ParseError {
                            message: format!(
                                "unknown atom `{w}`: the atoms are Mw, Ml, Rw, Rl{hint}"
                            ),
                            offset: at,
                        });
                    }
                },
            };
            out.push((token, at));
            continue;
        }
        chars.next();
        let token = match c {
            '!' | '¬' | '~' => Token::Not,
            '&' | '∧' => Token::Op(Op::And),
            '|' | '∨' => Token::Op(Op::Or),
            '^' | '⊕' => Token::Op(Op::Xor),
            '→' => Token::Op(Op::Implies),
            '⊤' => Token::Const(true),
            '⊥' => Token::Const(false),
            '(' => Token::Open,
            ')' => Token::Close,
            '-' if chars.peek().map(|&(_, c)| c) == Some('>') => {
                chars.next();
                Token::Op(Op::Implies)
            }
            other => {
                return Err(ParseError {
                    message: format!(
                        "unexpected `{}`: formulas use the atoms Mw Ml Rw Rl, true, false, `!`, `&`, `|`, `^`, `->` and parentheses",
                        other.escape_debug()
                    ),
                    offset: at,
                });
            }
        };
        out.push((token, at));
        if out.len() > MAX_TOKENS {
            return Err(ParseError {
                message: format!("the formula is longer than {MAX_TOKENS} symbols"),
                offset: at,
            });
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    depth: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(Token, usize)> {
        self.tokens.get(self.pos).cloned()
    }

    fn eat_op(&mut self, op: Op) -> bool {
        if matches!(self.peek(), Some((Token::Op(o), _)) if o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.peek().map_or(self.end, |(_, at)| at);
            return Err(ParseError {
                message: format!("the formula nests more than {MAX_DEPTH} levels deep"),
                offset: at,
            });
        }
        Ok(())
    }

    fn implication(&mut self) -> Result<Formula, ParseError> {
        self.deeper()?;
        let a = self.chain(Op::Or)?;
        let f = if self.eat_op(Op::Implies) {
            Formula::bin(Op::Implies, a, self.implication()?)
        } else {
            a
        };
        self.depth -= 1;
        Ok(f)
    }

    /// `|` chains of `^` chains of `&` chains of unary formulas.
    fn chain(&mut self, op: Op) -> Result<Formula, ParseError> {
        let next = |p: &mut Parser| match op {
            Op::Or => p.chain(Op::Xor),
            Op::Xor => p.chain(Op::And),
            _ => p.unary(),
        };
        let mut f = next(self)?;
        while self.eat_op(op) {
            f = Formula::bin(op, f, next(self)?);
        }
        Ok(f)
    }

    fn unary(&mut self) -> Result<Formula, ParseError> {
        let Some((t, at)) = self.peek() else {
            return Err(ParseError {
                message: "the formula ends where an atom, `true`, `false`, `!` or `(` was expected"
                    .into(),
                offset: self.end,
            });
        };
        self.pos += 1;
        match t {
            Token::Atom(a) => Ok(Formula::Atom(a)),
            Token::Const(b) => Ok(Formula::Const(b)),
            Token::Not => {
                self.deeper()?;
                let f = Formula::Not(Box::new(self.unary()?));
                self.depth -= 1;
                Ok(f)
            }
            Token::Open => {
                let f = self.implication()?;
                match self.peek() {
                    Some((Token::Close, _)) => {
                        self.pos += 1;
                        Ok(f)
                    }
                    Some((t, at)) => Err(ParseError {
                        message: format!("expected `)`, found {}", t.describe()),
                        offset: at,
                    }),
                    None => Err(ParseError {
                        message: format!("`(` at column {} is never closed", at + 1),
                        offset: self.end,
                    }),
                }
            }
            other => Err(ParseError {
                message: format!(
                    "expected an atom (Mw, Ml, Rw, Rl), `true`, `false`, `!` or `(`, found {}",
                    other.describe()
                ),
                offset: at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_printing() {
        let f = Formula::parse("Ml & Rw -> Mw & Rl").unwrap();
        assert_eq!(f.to_string(), "(Ml & Rw) -> (Mw & Rl)");
        let g = Formula::parse("!Mw | Ml ^ Mw & Ml").unwrap();
        assert_eq!(g.to_string(), "!Mw | (Ml ^ (Mw & Ml))");
        let h = Formula::parse("Mw -> Ml -> Rw").unwrap();
        assert_eq!(h.to_string(), "Mw -> Ml -> Rw");
        assert_eq!(
            Formula::parse("(Mw -> Ml) -> Rw").unwrap().to_string(),
            "(Mw -> Ml) -> Rw"
        );
        assert_eq!(Formula::parse("¬Ml ∧ ⊤").unwrap().to_string(), "!Ml & true");
    }

    #[test]
    fn errors_are_precise() {
        let e = Formula::parse("Mw & mx").unwrap_err();
        assert!(e.message.contains("unknown atom `mx`"), "{e}");
        assert_eq!(e.offset, 5);
        let e = Formula::parse("Mw &").unwrap_err();
        assert!(e.message.contains("ends"), "{e}");
        let e = Formula::parse("(Mw").unwrap_err();
        assert!(e.message.contains("never closed"), "{e}");
        let deep = "!".repeat(10_000) + "Mw";
        assert!(Formula::parse(&deep).is_err());
        let deep = "(".repeat(10_000) + "Mw" + &")".repeat(10_000);
        assert!(Formula::parse(&deep).is_err());
    }
}
