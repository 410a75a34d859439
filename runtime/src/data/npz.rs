//! The `.npz` data format: a zip archive of NumPy `.npy` arrays, one per tensor.
//!
//! The archive is read and written with `npyz` (and the `zip` crate it re-exports). Each
//! member's `.npy` header is parsed here, by a small strict parser, rather than by `npyz`:
//! `npyz` allocates the header buffer from the declared length, multiplies the declared shape
//! without overflow checks and parses the header with a recursive Python-literal grammar, so a
//! hostile file could make it allocate gigabytes, panic, or overflow the stack.

use std::io::{Cursor, Read, Seek};
use std::panic::{AssertUnwindSafe, catch_unwind};

use npyz::WriterBuilder;
use npyz::npz::{NpzArchive, NpzWriter};
use npyz::zip::write::FileOptions;
use npyz::zip::{CompressionMethod, DateTime};
use npyz::{DType, Endianness, TypeChar, TypeStr};

use super::{DataError, Floats, MAX_RANK, TensorMap, check_shape};
use crate::tensor::{Data, Tensor};

/// The most bytes all compressed members of one archive may decompress to, against zip bombs.
/// Stored (uncompressed) members, as `np.savez` writes them, are bounded by the file itself.
const MAX_TOTAL_BYTES: u64 = 1 << 30;

/// The most bytes one archive member may hold: a tensor at the element cap, as f8, plus room
/// for its header.
fn max_member_bytes(floats: Floats) -> u64 {
    (floats.max_elements() as u64) * 8 + (1 << 20)
}

/// Parses a `.npz` archive held in memory.
pub(super) fn parse(bytes: &[u8], origin: &str, floats: Floats) -> Result<TensorMap, DataError> {
    parse_reader(Cursor::new(bytes), bytes.len() as u64, origin, floats)
}

/// Parses a `.npz` archive read from `reader`, `len` bytes long.
pub(super) fn parse_reader<R: Read + Seek>(
    reader: R,
    len: u64,
    origin: &str,
    floats: Floats,
) -> Result<TensorMap, DataError> {
    // zip 0.6 (under npyz) has unchecked arithmetic and `panic!`s on some malformed archives
    // (e.g. an unsupported compression method). Everything of ours below returns errors; this
    // guard turns a panic inside the zip crate into an error too.
    match catch_unwind(AssertUnwindSafe(|| {
        parse_archive(reader, len, origin, floats)
    })) {
        Ok(result) => result,
        Err(_) => Err(DataError::file(
            origin,
            "malformed npz archive (the zip reader failed)",
        )),
    }
}

fn parse_archive<R: Read + Seek>(
    reader: R,
    len: u64,
    origin: &str,
    floats: Floats,
) -> Result<TensorMap, DataError> {
    let mut archive = NpzArchive::new(reader)
        .map_err(|e| DataError::file(origin, format!("not a valid npz (zip) archive: {e}")))?;
    let zip = archive.zip_archive();
    let mut map = TensorMap::new();
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let member = zip
            .by_index(i)
            .map_err(|e| DataError::file(origin, format!("cannot read archive member {i}: {e}")))?;
        if member.is_dir() {
            continue;
        }
        // Like numpy, members not ending in `.npy` are not arrays; they are ignored.
        let Some(name) = npyz::npz::array_name_from_file_name(member.name()) else {
            continue;
        };
        let name = name.to_string();
        if map.contains_key(&name) {
            return Err(DataError::tensor(
                origin,
                &name,
                "appears more than once in the archive",
            ));
        }
        let compressed = member.compression() != CompressionMethod::Stored;
        let cap = if compressed {
            max_member_bytes(floats).min(MAX_TOTAL_BYTES - total)
        } else {
            max_member_bytes(floats)
        };
        let mut limited = CountingReader {
            inner: member.take(cap + 1),
            count: 0,
        };
        let result = read_npy(&mut limited, len, floats);
        let read = limited.count;
        if read > cap {
            return Err(DataError::tensor(
                origin,
                &name,
                format!("decompresses to more than {cap} bytes, more than is supported"),
            ));
        }
        if compressed {
            total += read;
        }
        let tensor = result.map_err(|msg| DataError::tensor(origin, &name, msg))?;
        map.insert(name, tensor);
    }
    Ok(map)
}

/// A reader that counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot decompress the archive member: {e}")),
        }
    }
    Ok(filled)
}

/// The parts of a `.npy` header that matter.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// Reads one `.npy` file from `r`, decoding its elements as they arrive (no copy of the
/// member is held). `file_len` bounds what is reserved ahead: never more than the bytes the
/// archive holds. The message is meant to follow `tensor "name": `.
fn read_npy(r: &mut impl Read, file_len: u64, floats: Floats) -> Result<Tensor, String> {
    let mut start = [0u8; 12];
    let got = read_full(r, &mut start[..10])?;
    if got < 10 || &start[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (the magic string is missing)".to_string());
    }
    let header_len: usize = match start[6] {
        1 => usize::from(u16::from_le_bytes([start[8], start[9]])),
        2 | 3 => {
            if read_full(r, &mut start[10..12])? < 2 {
                return Err("the .npy header is truncated".to_string());
            }
            u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize
        }
        v => return Err(format!("unsupported .npy format version {v}.{}", start[7])),
    };
    let mut header_bytes = Vec::new();
    r.take(header_len as u64)
        .read_to_end(&mut header_bytes)
        .map_err(|e| format!("cannot decompress the archive member: {e}"))?;
    if header_bytes.len() < header_len {
        return Err("the .npy header is truncated".to_string());
    }
    let text = std::str::from_utf8(&header_bytes)
        .map_err(|_| "the .npy header is not text".to_string())?;
    let header = parse_header(text).map_err(|e| format!("bad .npy header: {e}"))?;

    let ty: TypeStr = header
        .descr
        .parse()
        .map_err(|_| format!("unsupported dtype {:?}", header.descr))?;
    let size = ty.size_field();
    let elem = match (ty.type_char(), size) {
        (TypeChar::Float, 2 | 4 | 8) => Elem::Float,
        (TypeChar::Int, 1 | 2 | 4 | 8) => Elem::Int,
        (TypeChar::Uint, 1 | 2 | 4 | 8) => Elem::Uint,
        (TypeChar::Bool, 1) => Elem::Bool,
        _ => {
            return Err(format!(
                "unsupported dtype '{}' (supported: float16/32/64, int8-64, uint8-64, bool)",
                header.descr
            ));
        }
    };
    let size = size as usize; // 1, 2, 4 or 8
    let big = ty.endianness() == Endianness::Big;

    if header.shape.len() > MAX_RANK {
        return Err(format!(
            "has {} dimensions; at most {MAX_RANK} are supported",
            header.shape.len()
        ));
    }
    let shape = header
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("dimension {d} is too large")))
        .collect::<Result<Vec<usize>, String>>()?;
    let n = check_shape(&shape, floats.max_elements())?;
    // n <= 2^31, so this cannot overflow.
    let expected = n * size;
    let keep_f32 = floats == Floats::F32 && matches!(elem, Elem::Float) && size <= 4;
    // Reserve ahead only what the archive can hold; a compressed member grows as it arrives.
    let ahead = (expected as u64).min(file_len) as usize / size;
    let mut out = Out::new(elem, size, keep_f32, ahead);
    let mut chunk = vec![0u8; (1 << 16) * size];
    let mut have = 0usize;
    while have < expected {
        let want = chunk.len().min(expected - have);
        let got = read_full(r, &mut chunk[..want])?;
        have += got;
        // Whole elements only; a partial one means the data is short (reported below).
        out.decode(&chunk[..got - got % size], elem, size, big)?;
        if got < want {
            break;
        }
    }
    // Whatever follows the elements is counted, so the message gives the data's true length.
    let rest = std::io::copy(r, &mut std::io::sink())
        .map_err(|e| format!("cannot decompress the archive member: {e}"))?;
    let present = have as u64 + rest;
    if present != expected as u64 {
        return Err(format!(
            "has {present} byte(s) of data, but shape {shape:?} of dtype '{}' needs {expected}",
            header.descr
        ));
    }
    let data = out.finish();
    let data = if header.fortran_order {
        fortran_to_c(data, &shape)?
    } else {
        data
    };
    Ok(Tensor { shape, data })
}

/// The element kind of a supported dtype.
#[derive(Clone, Copy)]
enum Elem {
    Float,
    Int,
    Uint,
    Bool,
}

/// `N` bytes as a little-endian array.
fn le<const N: usize>(chunk: &[u8], big: bool) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&chunk[..N]);
    if big {
        a.reverse();
    }
    a
}

/// The elements decoded so far, in the storage their tensor will have.
enum Out {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Out {
    /// Empty storage for elements of `elem` (floats kept in f32 when `keep_f32`), with room
    /// for `ahead` of them.
    fn new(elem: Elem, size: usize, keep_f32: bool, ahead: usize) -> Out {
        match elem {
            Elem::Float if keep_f32 && size <= 4 => Out::F32(crate::pages::with_capacity(ahead)),
            Elem::Float => Out::F64(Vec::with_capacity(ahead)),
            Elem::Int | Elem::Uint => Out::I64(Vec::with_capacity(ahead)),
            Elem::Bool => Out::Bool(Vec::with_capacity(ahead)),
        }
    }

    /// Decodes whole elements from `bytes` (a multiple of `size` long) and appends them.
    fn decode(&mut self, bytes: &[u8], elem: Elem, size: usize, big: bool) -> Result<(), String> {
        let chunks = bytes.chunks_exact(size);
        match (self, elem, size) {
            (Out::F32(v), _, 2) => {
                v.extend(chunks.map(|c| super::f16_to_f64(u16::from_le_bytes(le(c, big))) as f32))
            }
            (Out::F32(v), _, _) => v.extend(chunks.map(|c| f32::from_le_bytes(le(c, big)))),
            (Out::F64(v), _, 2) => {
                v.extend(chunks.map(|c| super::f16_to_f64(u16::from_le_bytes(le(c, big)))))
            }
            (Out::F64(v), _, 4) => {
                v.extend(chunks.map(|c| f64::from(f32::from_le_bytes(le(c, big)))))
            }
            (Out::F64(v), _, _) => v.extend(chunks.map(|c| f64::from_le_bytes(le(c, big)))),
            (Out::I64(v), Elem::Int, 1) => v.extend(chunks.map(|c| i64::from(c[0] as i8))),
            (Out::I64(v), Elem::Int, 2) => {
                v.extend(chunks.map(|c| i64::from(i16::from_le_bytes(le(c, big)))))
            }
            (Out::I64(v), Elem::Int, 4) => {
                v.extend(chunks.map(|c| i64::from(i32::from_le_bytes(le(c, big)))))
            }
            (Out::I64(v), Elem::Int, _) => v.extend(chunks.map(|c| i64::from_le_bytes(le(c, big)))),
            (Out::I64(v), _, 1) => v.extend(chunks.map(|c| i64::from(c[0]))),
            (Out::I64(v), _, 2) => {
                v.extend(chunks.map(|c| i64::from(u16::from_le_bytes(le(c, big)))))
            }
            (Out::I64(v), _, 4) => {
                v.extend(chunks.map(|c| i64::from(u32::from_le_bytes(le(c, big)))))
            }
            (Out::I64(v), _, _) => {
                for c in chunks {
                    let x = u64::from_le_bytes(le(c, big));
                    let i = v.len();
                    v.push(
                        i64::try_from(x).map_err(|_| {
                            format!("uint64 element {i} ({x}) does not fit in int64")
                        })?,
                    );
                }
            }
            (Out::Bool(v), _, _) => v.extend(chunks.map(|c| c[0] != 0)),
        }
        Ok(())
    }

    /// The tensor's data.
    fn finish(self) -> Data {
        match self {
            Out::F64(v) => Data::F64(v),
            Out::F32(v) => Data::F32(v),
            Out::I64(v) => Data::I64(v),
            Out::Bool(v) => Data::Bool(v),
        }
    }
}

/// Reorders elements stored in Fortran (column-major) order into row-major order.
fn fortran_to_c(data: Data, shape: &[usize]) -> Result<Data, String> {
    fn reorder<T: Copy>(v: Vec<T>, shape: &[usize]) -> Result<Vec<T>, String> {
        if shape.len() < 2 || v.is_empty() {
            return Ok(v);
        }
        // Fortran strides: the first dimension is contiguous.
        let mut strides = Vec::with_capacity(shape.len());
        let mut s = 1usize;
        for &d in shape {
            strides.push(s);
            s = s.saturating_mul(d);
        }
        let mut out = Vec::with_capacity(v.len());
        let mut index = vec![0usize; shape.len()];
        let mut offset = 0usize;
        for _ in 0..v.len() {
            out.push(
                *v.get(offset)
                    .ok_or("internal error reordering a Fortran-order array")?,
            );
            for d in (0..shape.len()).rev() {
                index[d] += 1;
                offset += strides[d];
                if index[d] < shape[d] {
                    break;
                }
                offset -= strides[d] * shape[d];
                index[d] = 0;
            }
        }
        Ok(out)
    }
    Ok(match data {
        Data::F64(v) => Data::F64(reorder(v, shape)?),
        Data::F32(v) => Data::F32(reorder(v, shape)?),
        Data::I64(v) => Data::I64(reorder(v, shape)?),
        Data::Bool(v) => Data::Bool(reorder(v, shape)?),
    })
}

/// Parses the Python dict literal of a `.npy` header, e.g.
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }`, followed by padding.
fn parse_header(text: &str) -> Result<NpyHeader, String> {
    let mut p = HeaderParser {
        s: text.as_bytes(),
        pos: 0,
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    p.ws();
    p.expect(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if matches!(p.peek(), Some(b'[')) {
                    return Err("structured (record) dtypes are not supported".to_string());
                }
                descr = Some(p.string()?);
            }
            "fortran_order" => fortran_order = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key {other:?}")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    if p.s[p.pos..]
        .iter()
        .any(|b| !b.is_ascii_whitespace() && *b != 0)
    {
        return Err("unexpected text after the header dict".to_string());
    }
    Ok(NpyHeader {
        descr: descr.ok_or("the key 'descr' is missing")?,
        fortran_order: fortran_order.ok_or("the key 'fortran_order' is missing")?,
        shape: shape.ok_or("the key 'shape' is missing")?,
    })
}

struct HeaderParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl HeaderParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", b as char, self.pos))
        }
    }

    /// A Python string literal in single or double quotes (escapes taken literally).
    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.pos)),
        };
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".to_string()),
                Some(b) if b == quote => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    if let Some(b) = self.peek() {
                        out.push(b);
                        self.pos += 1;
                    }
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "a string is not valid UTF-8".to_string())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        let rest = &self.s[self.pos..];
        if rest.starts_with(b"True") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at byte {}", self.pos))
        }
    }

    /// A tuple (or list) of non-negative integers, e.g. `()`, `(3,)`, `(2, 3)`; Python 2's
    /// `3L` is accepted.
    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        let close = match self.peek() {
            Some(b'(') => b')',
            Some(b'[') => b']',
            _ => return Err(format!("expected a shape tuple at byte {}", self.pos)),
        };
        self.pos += 1;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(close) {
                break;
            }
            let start = self.pos;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
            if digits.is_empty() {
                return Err(format!("expected a dimension at byte {}", self.pos));
            }
            let d: u64 = digits
                .parse()
                .map_err(|_| format!("dimension {digits} is too large"))?;
            self.eat(b'L');
            if dims.len() >= MAX_RANK {
                return Err(format!("more than {MAX_RANK} dimensions"));
            }
            dims.push(d);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                if !self.eat(close) {
                    return Err(format!(
                        "expected ',' or '{}' at byte {}",
                        close as char, self.pos
                    ));
                }
                break;
            }
        }
        Ok(dims)
    }
}

/// Encodes tensors as a `.npz` archive: F64 as `<f8`, F32 as `<f4`, I64 as `<i8`, Bool as `|b1`. Members
/// are stored uncompressed with a fixed timestamp, as `np.savez` does, so the bytes are
/// reproducible.
pub(super) fn encode(tensors: &TensorMap) -> Result<Vec<u8>, DataError> {
    let mut writer = NpzWriter::new(Cursor::new(Vec::new()));
    for (name, tensor) in tensors {
        if name.contains('\0') {
            return Err(DataError::unfiled(
                name,
                "a .npz member name cannot contain a NUL character",
            ));
        }
        let err = |e: std::io::Error| {
            DataError::unfiled(name, format!("cannot write the .npz member: {e}"))
        };
        let shape: Vec<u64> = tensor.shape.iter().map(|&d| d as u64).collect();
        let bytes_estimate = (tensor.data.len() as u64).saturating_mul(8);
        let options = FileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(DateTime::default())
            .large_file(bytes_estimate >= 0xF000_0000);
        match &tensor.data {
            Data::F64(v) => {
                write_array(&mut writer, name, options, "<f8", &shape, v).map_err(err)?
            }
            Data::F32(v) => {
                write_array(&mut writer, name, options, "<f4", &shape, v).map_err(err)?
            }
            Data::I64(v) => {
                write_array(&mut writer, name, options, "<i8", &shape, v).map_err(err)?
            }
            Data::Bool(v) => {
                write_array(&mut writer, name, options, "|b1", &shape, v).map_err(err)?
            }
        }
    }
    let cursor = writer.zip_writer().finish().map_err(|e| DataError {
        message: format!("cannot finish the .npz archive: {e}"),
    })?;
    Ok(cursor.into_inner())
}

/// Writes one array as an archive member.
fn write_array<T: npyz::Serialize + Copy>(
    writer: &mut NpzWriter<Cursor<Vec<u8>>>,
    name: &str,
    options: FileOptions,
    descr: &str,
    shape: &[u64],
    values: &[T],
) -> std::io::Result<()> {
    let ty: TypeStr = descr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut out = writer
        .array::<T>(name, options)?
        .dtype(DType::Plain(ty))
        .shape(shape)
        .begin_nd()?;
    out.extend(values.iter().copied())?;
    out.finish()
}
