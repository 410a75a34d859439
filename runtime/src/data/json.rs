//! The `.json` data format: one object mapping tensor names to numbers, booleans or nested
//! rectangular arrays of them.
//!
//! A hand-written parser (rather than `serde_json::Value`) so that integers beyond i64,
//! duplicate names and ragged rows are all detected, and every error gives the tensor and
//! element. It is iterative and caps nesting at [`MAX_DEPTH`], so no input can overflow the
//! stack.

use std::fmt::Write as _;

use super::{DataError, MAX_ELEMENTS, TensorMap, checked_numel};
use crate::tensor::{Data, Tensor};

/// The deepest nesting of arrays a tensor value may have (so tensors have rank at most 32).
const MAX_DEPTH: usize = 32;

/// One scalar element of a tensor value.
#[derive(Clone, Copy)]
enum Leaf {
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Leaf {
    fn is_bool(self) -> bool {
        matches!(self, Leaf::Bool(_))
    }

    fn describe(self) -> &'static str {
        if self.is_bool() {
            "a boolean"
        } else {
            "a number"
        }
    }
}

/// Parses a `.json` data file.
pub(super) fn parse(bytes: &[u8], origin: &str) -> Result<TensorMap, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        DataError::file(
            origin,
            format!("not valid UTF-8 text (at byte {})", e.valid_up_to()),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    Parser {
        text: text.as_bytes(),
        pos: 0,
        origin,
    }
    .document()
}

/// Formats an element position, e.g. `[1][0]`.
fn index_path(path: &[usize]) -> String {
    let mut s = String::new();
    for i in path {
        let _ = write!(s, "[{i}]");
    }
    s
}

/// Formats a row position: `1` for a row of a matrix, `[1][2]` deeper down.
fn row_path(path: &[usize]) -> String {
    match path {
        [i] => i.to_string(),
        _ => index_path(path),
    }
}

/// Describes the element at `path` for messages: `element [1][0]` or `the value` for a scalar.
fn element(path: &[usize]) -> String {
    if path.is_empty() {
        "the value".to_string()
    } else {
        format!("element {}", index_path(path))
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// `line L, column C` of the current position.
    fn position(&self) -> String {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        format!("line {line}, column {column}")
    }

    /// What is at the current position, for messages.
    fn found(&self) -> String {
        match std::str::from_utf8(&self.text[self.pos.min(self.text.len())..])
            .ok()
            .and_then(|rest| rest.chars().next())
        {
            None => "the end of the file".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn syntax(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::file(self.origin, format!("{}: {msg}", self.position()))
    }

    fn tensor_syntax(&self, name: &str, msg: impl std::fmt::Display) -> DataError {
        DataError::tensor(self.origin, name, format!("{}: {msg}", self.position()))
    }

    fn document(mut self) -> Result<TensorMap, DataError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.pos += 1,
            None => {
                return Err(DataError::file(
                    self.origin,
                    "the file is empty; expected a JSON object such as {\"x\": [1.0, 2.0]}",
                ));
            }
            Some(_) => {
                return Err(self.syntax(format!(
                    "expected a JSON object of named tensors such as {{\"x\": [1.0, 2.0]}} at the top level, found {}",
                    self.found()
                )));
            }
        }
        let mut map = TensorMap::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(self.syntax(format!(
                        "expected a tensor name (a string), found {}",
                        self.found()
                    )));
                }
                let name = self.string()?;
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(self.tensor_syntax(
                        &name,
                        format!("expected ':' after the name, found {}", self.found()),
                    ));
                }
                self.pos += 1;
                let tensor = self.tensor(&name)?;
                if map.contains_key(&name) {
                    return Err(DataError::tensor(
                        self.origin,
                        &name,
                        "appears more than once in the object",
                    ));
                }
                map.insert(name.clone(), tensor);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => {
                        return Err(self.tensor_syntax(
                            &name,
                            format!(
                                "expected ',' or '}}' after the value, found {}",
                                self.found()
                            ),
                        ));
                    }
                }
            }
        }
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.syntax(format!(
                "unexpected {} after the top-level object",
                self.found()
            )));
        }
        Ok(map)
    }

    /// Parses a JSON string at the current `"`.
    fn string(&mut self) -> Result<String, DataError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.extend_from_slice(&self.text[start..self.pos]);
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.syntax("control character inside a string")),
            }
        }
        // Raw runs end only at ASCII bytes of valid UTF-8 input, so this cannot fail.
        String::from_utf8(out).map_err(|_| self.syntax("invalid UTF-8 inside a string"))
    }

    /// Parses the escape after a backslash.
    fn escape(&mut self) -> Result<char, DataError> {
        let Some(b) = self.peek() else {
            return Err(self.syntax("unterminated string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if self.text.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(self.syntax("unpaired surrogate in a \\u escape"));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.syntax("unpaired surrogate in a \\u escape"));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| self.syntax("invalid \\u escape"))?
            }
            _ => return Err(self.syntax("invalid escape in a string")),
        })
    }

    fn hex4(&mut self) -> Result<u32, DataError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| {
                u32::from_str_radix(d, 16)
                    .ok()
                    .filter(|_| d.bytes().all(|b| b.is_ascii_hexdigit()))
            });
        match digits {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.syntax("a \\u escape needs four hex digits")),
        }
    }

    /// Parses one tensor value: a scalar or nested arrays, iteratively. Arrays must be
    /// rectangular and all elements booleans or all numbers.
    fn tensor(&mut self, name: &str) -> Result<Tensor, DataError> {
        let origin = self.origin;
        let err = |msg: String| DataError::tensor(origin, name, msg);
        // The index of the current element in each open array.
        let mut stack: Vec<usize> = Vec::new();
        // The length of the arrays at each depth, set by the first one to close.
        let mut dims: Vec<Option<usize>> = Vec::new();
        // The depth of the scalars, once one is seen.
        let mut rank: Option<usize> = None;
        let mut leaves: Vec<Leaf> = Vec::new();
        let mut first: Option<(Leaf, Vec<usize>)> = None;
        let mut any_float = false;
        'value: loop {
            self.skip_ws();
            let depth = stack.len();
            match self.peek() {
                Some(b'[') => {
                    if rank.is_some_and(|r| depth >= r) {
                        return Err(err(format!(
                            "{}: expected a number, found an array",
                            element(&stack)
                        )));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(err(format!(
                            "arrays are nested deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    self.pos += 1;
                    stack.push(0);
                    self.skip_ws();
                    if self.peek() != Some(b']') {
                        continue 'value;
                    }
                    self.pos += 1;
                    close_array(&mut stack, &mut dims, 0).map_err(err)?;
                }
                Some(b'{') => {
                    return Err(err(format!(
                        "{}: expected a number, boolean or array, found an object",
                        element(&stack)
                    )));
                }
                None => {
                    return Err(
                        self.tensor_syntax(name, "unexpected end of the file; expected a value")
                    );
                }
                Some(_) => {
                    let leaf = self.leaf(name, &stack)?;
                    if rank.is_none() {
                        if dims.len() > depth {
                            return Err(err(format!(
                                "{}: expected an array, found {}",
                                element(&stack),
                                leaf.describe()
                            )));
                        }
                        rank = Some(depth);
                    } else if rank != Some(depth) {
                        return Err(err(format!(
                            "{}: expected an array, found {}",
                            element(&stack),
                            leaf.describe()
                        )));
                    }
                    match &first {
                        None => first = Some((leaf, stack.clone())),
                        Some((f, fpath)) if f.is_bool() != leaf.is_bool() => {
                            return Err(err(format!(
                                "{} is {}, but {} is {}; a tensor's elements must be all booleans or all numbers",
                                element(&stack),
                                leaf.describe(),
                                element(fpath),
                                f.describe()
                            )));
                        }
                        Some(_) => {}
                    }
                    any_float |= matches!(leaf, Leaf::Float(_));
                    if leaves.len() >= MAX_ELEMENTS {
                        return Err(err(format!("has more than {MAX_ELEMENTS} elements")));
                    }
                    leaves.push(leaf);
                }
            }
            // After a complete value: close arrays or move on to the next element.
            loop {
                let Some(&index) = stack.last() else {
                    break 'value;
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if let Some(last) = stack.last_mut() {
                            *last += 1;
                        }
                        continue 'value;
                    }
                    Some(b']') => {
                        self.pos += 1;
                        close_array(&mut stack, &mut dims, index + 1).map_err(err)?;
                    }
                    _ => {
                        return Err(self.tensor_syntax(
                            name,
                            format!("expected ',' or ']' in an array, found {}", self.found()),
                        ));
                    }
                }
            }
        }
        let rank = rank.unwrap_or(dims.len());
        let shape: Vec<usize> = dims.iter().take(rank).map(|d| d.unwrap_or(0)).collect();
        if shape.len() != rank || checked_numel(&shape) != Some(leaves.len()) {
            // The checks above make this impossible; report rather than panic.
            return Err(err(format!("internal error: inconsistent shape {shape:?}")));
        }
        let data = match first {
            Some((f, _)) if f.is_bool() => Data::Bool(
                leaves
                    .iter()
                    .map(|l| matches!(l, Leaf::Bool(true)))
                    .collect(),
            ),
            _ if any_float || leaves.is_empty() => Data::F64(
                leaves
                    .iter()
                    .map(|l| match *l {
                        Leaf::Float(x) => x,
                        Leaf::Int(i) => i as f64,
                        Leaf::Bool(_) => 0.0,
                    })
                    .collect(),
            ),
            _ => Data::I64(
                leaves
                    .iter()
                    .map(|l| match *l {
                        Leaf::Int(i) => i,
                        _ => 0,
                    })
                    .collect(),
            ),
        };
        Ok(Tensor { shape, data })
    }

    /// Parses one scalar element at `path`.
    fn leaf(&mut self, name: &str, path: &[usize]) -> Result<Leaf, DataError> {
        let origin = self.origin;
        let err =
            |msg: String| DataError::tensor(origin, name, format!("{}: {msg}", element(path)));
        let rest = &self.text[self.pos..];
        for (word, leaf) in [
            (&b"true"[..], Leaf::Bool(true)),
            (b"false", Leaf::Bool(false)),
            (b"NaN", Leaf::Float(f64::NAN)),
            (b"Infinity", Leaf::Float(f64::INFINITY)),
            (b"-Infinity", Leaf::Float(f64::NEG_INFINITY)),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return Ok(leaf);
            }
        }
        if rest.starts_with(b"null") {
            return Err(err("expected a number or boolean, found null".to_string()));
        }
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                match s.to_ascii_lowercase().as_str() {
                    "nan" | "+nan" | "-nan" => Ok(Leaf::Float(f64::NAN)),
                    "inf" | "+inf" | "infinity" | "+infinity" => Ok(Leaf::Float(f64::INFINITY)),
                    "-inf" | "-infinity" => Ok(Leaf::Float(f64::NEG_INFINITY)),
                    _ => Err(err(format!(
                        "the string {:?} is not a number (only \"NaN\", \"Infinity\" and \"-Infinity\" are)",
                        truncate(&s)
                    ))),
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(name, path),
            _ => Err(self.tensor_syntax(
                name,
                format!(
                    "expected a number, boolean or array, found {}",
                    self.found()
                ),
            )),
        }
    }

    /// Parses a JSON number: an integer literal becomes `Int`, one with a fraction or exponent
    /// becomes `Float`.
    fn number(&mut self, name: &str, path: &[usize]) -> Result<Leaf, DataError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos > s
        };
        let bad = |p: &Self| p.tensor_syntax(name, format!("invalid number at {}", element(path)));
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.tensor_syntax(
                        name,
                        format!(
                            "invalid number at {}: leading zeros are not allowed",
                            element(path)
                        ),
                    ));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(bad(self)),
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            is_float = true;
            if !digits(self) {
                return Err(bad(self));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            is_float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(bad(self));
            }
        }
        // The bytes matched above are ASCII.
        let text = std::str::from_utf8(&self.text[start..self.pos]).map_err(|_| bad(self))?;
        if is_float {
            text.parse::<f64>().map(Leaf::Float).map_err(|_| bad(self))
        } else {
            text.parse::<i64>().map(Leaf::Int).map_err(|_| {
                DataError::tensor(
                    self.origin,
                    name,
                    format!(
                        "{}: the integer {} does not fit in 64 bits (write it with a decimal point to make the tensor float)",
                        element(path),
                        truncate(text)
                    ),
                )
            })
        }
    }
}

/// Shortens long text for messages.
fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Pops the innermost array, of length `len`, checking it against the other arrays at its depth.
fn close_array(
    stack: &mut Vec<usize>,
    dims: &mut Vec<Option<usize>>,
    len: usize,
) -> Result<(), String> {
    stack.pop();
    let depth = stack.len();
    if dims.len() <= depth {
        dims.resize(depth + 1, None);
    }
    match dims[depth] {
        None => dims[depth] = Some(len),
        Some(expected) if expected != len => {
            return Err(format!(
                "row {} has {len} element(s), row {} has {expected}",
                row_path(stack),
                row_path(&vec![0; depth])
            ));
        }
        Some(_) => {}
    }
    Ok(())
}

/// Writes `tensors` as one JSON object (see [`super::to_json_string`]).
pub(super) fn to_json_string(tensors: &TensorMap) -> String {
    let mut out = String::from("{");
    for (i, (name, tensor)) in tensors.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(&mut out, name);
        out.push_str(": ");
        write_tensor(&mut out, tensor);
    }
    out.push('}');
    out
}

/// Writes a JSON string literal.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes element `i` of `data`.
fn write_element(out: &mut String, data: &Data, i: usize) {
    match data {
        Data::F64(_) | Data::F32(_) => {
            let x = match data {
                Data::F32(v) => v.get(i).map_or(f64::NAN, |&x| f64::from(x)),
                Data::F64(v) => v.get(i).copied().unwrap_or(f64::NAN),
                _ => unreachable!("a float tensor"),
            };
            if x.is_nan() {
                out.push_str("\"NaN\"");
            } else if x.is_infinite() {
                out.push_str(if x > 0.0 {
                    "\"Infinity\""
                } else {
                    "\"-Infinity\""
                });
            } else {
                // Debug is the shortest round-trip form and always has a '.' or an exponent,
                // so the value reads back as a float.
                let _ = write!(out, "{x:?}");
            }
        }
        Data::I64(v) => {
            let _ = write!(out, "{}", v.get(i).copied().unwrap_or(0));
        }
        Data::Bool(v) => out.push_str(if v.get(i).copied().unwrap_or(false) {
            "true"
        } else {
            "false"
        }),
    }
}

/// Writes one tensor value as nested arrays, iteratively (any rank).
fn write_tensor(out: &mut String, tensor: &Tensor) {
    let shape: Vec<usize> = if checked_numel(&tensor.shape) == Some(tensor.data.len()) {
        tensor.shape.clone()
    } else {
        vec![tensor.data.len()]
    };
    // A zero-length dimension: write the dimensions before it, each innermost entry `[]`.
    if let Some(zero) = shape.iter().position(|&d| d == 0) {
        write_grid(out, &shape[..zero], |out, _| out.push_str("[]"));
    } else {
        write_grid(out, &shape, |out, i| write_element(out, &tensor.data, i));
    }
}

/// Writes nested arrays of the (all non-zero) `dims`, calling `element` for each entry in
/// row-major order.
fn write_grid(out: &mut String, dims: &[usize], mut element: impl FnMut(&mut String, usize)) {
    let total = checked_numel(dims).unwrap_or(0);
    let mut index = vec![0usize; dims.len()];
    for _ in dims {
        out.push('[');
    }
    for flat in 0..total {
        element(out, flat);
        let mut closed = 0;
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
            closed += 1;
        }
        for _ in 0..closed {
            out.push(']');
        }
        if flat + 1 < total {
            out.push_str(", ");
            for _ in 0..closed {
                out.push('[');
            }
        }
    }
}
