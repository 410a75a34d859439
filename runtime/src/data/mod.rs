//! Reading and writing named tensors in lossc's data-file formats: JSON, NumPy `.npz` and
//! `.safetensors`.
//!
//! Every reader takes untrusted bytes. None of them panics: declared shapes are checked (with
//! overflow-checked arithmetic) against the bytes actually present before anything is allocated
//! from them, element counts are capped per tensor (2^26 when floats are widened to f64, 2^31
//! when they are kept in f32 for a compiled backend: [`Floats`]), and every error names the
//! file and, where it applies, the tensor.

mod json;
mod npz;
mod safetensors;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::tensor::Tensor;

/// A named set of tensors, ordered by name.
pub type TensorMap = BTreeMap<String, Tensor>;

/// The most elements one tensor read from a file may have (64 Mi, 512 MiB as f64); larger
/// tensors are rejected, so a malicious or compressed file cannot make a reader allocate
/// gigabytes.
pub(crate) const MAX_ELEMENTS: usize = 1 << 26;

/// The most elements one tensor read with [`Floats::F32`] may have (2^31, 8 GiB of f32): what
/// a compiled backend takes in one buffer. `.npz` and `.safetensors` readers still allocate
/// only for bytes present in the file (or, for a compressed `.npz` member, decompressed
/// within the archive's cap).
pub const MAX_F32_ELEMENTS: usize = 1 << 31;

/// How a reader stores float elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Floats {
    /// Every float widened to f64 ([`Data::F64`](crate::Data)), as the interpreter computes;
    /// at most 2^26 elements per tensor.
    #[default]
    F64,
    /// f16, bf16 and f32 elements kept in f32 ([`Data::F32`](crate::Data)) and f64 ones in f64,
    /// for a compiled backend that reads f32 without a copy (`lossc bench`); at most
    /// [`MAX_F32_ELEMENTS`] per tensor. `.json` numbers are read as f64 either way.
    F32,
}

impl Floats {
    /// The element cap of a tensor read this way.
    pub(crate) fn max_elements(self) -> usize {
        match self {
            Floats::F64 => MAX_ELEMENTS,
            Floats::F32 => MAX_F32_ELEMENTS,
        }
    }
}

/// The most dimensions a tensor read from a file may have (numpy's own limit is 64).
pub(crate) const MAX_RANK: usize = 64;

/// A data-file error: a clear, one-line-ish human message that names the file and, where it
/// applies, the tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    /// The whole message, e.g. `data.json: tensor "x": row 1 has 1 element(s), row 0 has 2`.
    pub message: String,
}

impl DataError {
    /// An error about the file `origin` as a whole.
    pub(crate) fn file(origin: &str, msg: impl fmt::Display) -> DataError {
        DataError {
            message: format!("{origin}: {msg}"),
        }
    }

    /// An error about tensor `name` of the file `origin`.
    pub(crate) fn tensor(origin: &str, name: &str, msg: impl fmt::Display) -> DataError {
        DataError {
            message: format!("{origin}: tensor {name:?}: {msg}"),
        }
    }

    /// An error about tensor `name` when there is no file (encoding).
    pub(crate) fn unfiled(name: &str, msg: impl fmt::Display) -> DataError {
        DataError {
            message: format!("tensor {name:?}: {msg}"),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}

/// The file format, chosen by the extension (.json, .npz, .safetensors); anything else is an
/// error naming the accepted extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object of nested arrays (`.json`).
    Json,
    /// A NumPy `.npz` archive of `.npy` arrays.
    Npz,
    /// A Hugging Face `.safetensors` file.
    Safetensors,
}

impl Format {
    /// The format named by `path`'s extension (case-insensitive), or an error naming the
    /// accepted extensions.
    pub fn from_path(path: &Path) -> Result<Format, DataError> {
        let origin = path.display().to_string();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Ok(Format::Json),
            Some("npz") => Ok(Format::Npz),
            Some("safetensors") => Ok(Format::Safetensors),
            Some(other) => Err(DataError::file(
                &origin,
                format!(
                    "unknown data-file extension \".{other}\"; expected .json, .npz or .safetensors"
                ),
            )),
            None => Err(DataError::file(
                &origin,
                "the file name has no extension; expected .json, .npz or .safetensors",
            )),
        }
    }
}

/// Reads the data file at `path`, choosing the format by its extension.
pub fn read_tensors(path: &Path) -> Result<TensorMap, DataError> {
    read_tensors_as(path, Floats::F64)
}

/// [`read_tensors`], storing floats as `floats` says. A `.npz` file is read member by member
/// straight from the file, each array decoded into its tensor as it is decompressed, so
/// reading holds the tensors and small buffers, not a copy of the file.
pub fn read_tensors_as(path: &Path, floats: Floats) -> Result<TensorMap, DataError> {
    let format = Format::from_path(path)?;
    let origin = path.display().to_string();
    let cannot = |e: std::io::Error| DataError::file(&origin, format!("cannot read the file: {e}"));
    if format == Format::Npz {
        let file = std::fs::File::open(path).map_err(cannot)?;
        let len = file.metadata().map_err(cannot)?.len();
        return npz::parse_reader(std::io::BufReader::new(file), len, &origin, floats);
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    parse_tensors_as(format, &bytes, &origin, floats)
}

/// Writes `tensors` to `path` in the format its extension names (the file is replaced).
pub fn write_tensors(path: &Path, tensors: &TensorMap) -> Result<(), DataError> {
    let format = Format::from_path(path)?;
    let origin = path.display().to_string();
    let bytes = encode_tensors(format, tensors).map_err(|e| DataError::file(&origin, e))?;
    std::fs::write(path, bytes)
        .map_err(|e| DataError::file(&origin, format!("cannot write the file: {e}")))
}

/// Parses the bytes of a data file in `format`; `origin` (usually the file name) starts every
/// error message. Never panics, whatever the bytes.
pub fn parse_tensors(format: Format, bytes: &[u8], origin: &str) -> Result<TensorMap, DataError> {
    parse_tensors_as(format, bytes, origin, Floats::F64)
}

/// [`parse_tensors`], storing floats as `floats` says.
pub fn parse_tensors_as(
    format: Format,
    bytes: &[u8],
    origin: &str,
    floats: Floats,
) -> Result<TensorMap, DataError> {
    match format {
        Format::Json => json::parse(bytes, origin),
        Format::Npz => npz::parse(bytes, origin, floats),
        Format::Safetensors => safetensors::parse(bytes, origin, floats),
    }
}

/// Encodes `tensors` as the bytes of a data file in `format`. Fails on a tensor whose shape does
/// not match its data, or on a name the format cannot hold; messages name the tensor.
pub fn encode_tensors(format: Format, tensors: &TensorMap) -> Result<Vec<u8>, DataError> {
    for (name, tensor) in tensors {
        check_tensor(name, tensor)?;
    }
    match format {
        Format::Json => {
            let mut text = json::to_json_string(tensors);
            text.push('\n');
            Ok(text.into_bytes())
        }
        Format::Npz => npz::encode(tensors),
        Format::Safetensors => safetensors::encode(tensors),
    }
}

/// JSON text of one flat object, used by `lossc eval --json`: same encoding as the .json format.
///
/// Non-finite floats become the strings `"NaN"`, `"Infinity"` and `"-Infinity"`; a tensor whose
/// shape does not match its data (a broken invariant) is written as its flat data.
pub fn to_json_string(tensors: &TensorMap) -> String {
    json::to_json_string(tensors)
}

/// The number of elements of `shape`, or `None` when the product overflows `usize` at any step
/// (so `[huge, huge, 0]` is rejected even though its true product is 0).
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Checks, before encoding, that a tensor's shape is sane and matches its data.
fn check_tensor(name: &str, tensor: &Tensor) -> Result<(), DataError> {
    match checked_numel(&tensor.shape) {
        None => Err(DataError::unfiled(
            name,
            format!(
                "shape {:?} is too large (its element count overflows)",
                tensor.shape
            ),
        )),
        Some(n) if n != tensor.data.len() => Err(DataError::unfiled(
            name,
            format!(
                "shape {:?} has {n} element(s) but the data has {}",
                tensor.shape,
                tensor.data.len()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Checks a shape read from a file: rank, overflow and the element cap `max_elements`. Returns
/// the element count; the message is meant to follow `tensor "name": `.
pub(crate) fn check_shape(shape: &[usize], max_elements: usize) -> Result<usize, String> {
    if shape.len() > MAX_RANK {
        return Err(format!(
            "has {} dimensions; at most {MAX_RANK} are supported",
            shape.len()
        ));
    }
    let n = checked_numel(shape)
        .ok_or_else(|| format!("shape {shape:?} is too large (its element count overflows)"))?;
    if n > max_elements {
        return Err(format!(
            "shape {shape:?} has {n} elements; at most {max_elements} are supported"
        ));
    }
    Ok(n)
}

/// Converts IEEE binary16 bits to f64 (exactly: every half is representable).
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 if mant == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Converts bfloat16 bits to f64 (exactly: bf16 is the top half of an f32).
pub(crate) fn bf16_to_f64(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}
