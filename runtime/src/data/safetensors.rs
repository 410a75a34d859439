//! The `.safetensors` data format, read and written with the `safetensors` crate.
//!
//! The header is checked here first (offsets inside the file, shapes that do not overflow,
//! the element cap): `safetensors` 0.8 adds the last data offset to the header length without
//! overflow checks and then slices the buffer with it, which a hostile header can make panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ::safetensors::tensor::TensorView;
use ::safetensors::{Dtype, SafeTensors, serialize};

use super::{DataError, Floats, TensorMap, bf16_to_f64, check_shape, f16_to_f64};
use crate::tensor::{Data, Tensor};

/// Parses a `.safetensors` file.
pub(super) fn parse(bytes: &[u8], origin: &str, floats: Floats) -> Result<TensorMap, DataError> {
    prevalidate(bytes, origin, floats)?;
    // After `prevalidate` the library should not panic; the guard is defence in depth against
    // unchecked arithmetic in the library on inputs not foreseen here.
    let file = match catch_unwind(AssertUnwindSafe(|| SafeTensors::deserialize(bytes))) {
        Ok(result) => result
            .map_err(|e| DataError::file(origin, format!("not a valid safetensors file: {e}")))?,
        Err(_) => return Err(DataError::file(origin, "malformed safetensors file")),
    };
    let mut map = TensorMap::new();
    for (name, view) in file.iter() {
        let tensor = convert(&view, floats).map_err(|msg| DataError::tensor(origin, name, msg))?;
        map.insert(name.to_string(), tensor);
    }
    Ok(map)
}

/// Checks the header: its length, that it is a JSON object, and for each tensor a shape that
/// passes [`check_shape`] and data offsets inside the file.
fn prevalidate(bytes: &[u8], origin: &str, floats: Floats) -> Result<(), DataError> {
    let err = |msg: String| DataError::file(origin, msg);
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(err(format!(
            "the file is too short ({} bytes) to be a safetensors file",
            bytes.len()
        )));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(n);
    let header_end = usize::try_from(header_len)
        .ok()
        .and_then(|h| h.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            err(format!(
                "the header length {header_len} runs past the end of the file ({} bytes); not a safetensors file?",
                bytes.len()
            ))
        })?;
    let data_len = (bytes.len() - header_end) as u64;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|e| err(format!("the header is not valid JSON: {e}")))?;
    let Some(entries) = header.as_object() else {
        return Err(err("the header is not a JSON object".to_string()));
    };
    for (name, info) in entries {
        if name == "__metadata__" {
            continue;
        }
        let terr = |msg: &str| DataError::tensor(origin, name, msg);
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| terr("the header entry has no \"shape\" array"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| terr("the shape has an entry that is not a non-negative integer"))?;
        check_shape(&shape, floats.max_elements())
            .map_err(|msg| DataError::tensor(origin, name, msg))?;
        let offsets = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| match o.as_slice() {
                [a, b] => Some((a.as_u64()?, b.as_u64()?)),
                _ => None,
            })
            .ok_or_else(|| terr("the header entry has no valid \"data_offsets\" pair"))?;
        if offsets.0 > offsets.1 || offsets.1 > data_len {
            return Err(DataError::tensor(
                origin,
                name,
                format!(
                    "data offsets [{}, {}] lie outside the {data_len} data byte(s) of the file",
                    offsets.0, offsets.1
                ),
            ));
        }
    }
    Ok(())
}

/// `N` little-endian bytes.
fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&chunk[..N]);
    a
}

/// Converts one tensor view (f16, bf16 and f32 to f32 with [`Floats::F32`]); the message is
/// meant to follow `tensor "name": `.
fn convert(view: &TensorView<'_>, floats: Floats) -> Result<Tensor, String> {
    let shape = view.shape().to_vec();
    let n = check_shape(&shape, floats.max_elements())?;
    let bytes = view.data();
    let dtype = view.dtype();
    let size = match dtype {
        Dtype::BOOL | Dtype::U8 | Dtype::I8 => 1,
        Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
        Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
        Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        other => {
            return Err(format!(
                "unsupported dtype {other:?} (supported: F16, BF16, F32, F64, I8-I64, U8-U64, BOOL)"
            ));
        }
    };
    if n.checked_mul(size) != Some(bytes.len()) {
        return Err(format!(
            "has {} data byte(s), but shape {shape:?} of dtype {dtype:?} needs {}",
            bytes.len(),
            n.saturating_mul(size)
        ));
    }
    let chunks = bytes.chunks_exact(size);
    let narrow = |bits: u32| f32::from_bits(bits);
    let data = match dtype {
        Dtype::F16 if floats == Floats::F32 => Data::F32(
            chunks
                .map(|c| f16_to_f64(u16::from_le_bytes(le(c))) as f32)
                .collect(),
        ),
        Dtype::BF16 if floats == Floats::F32 => Data::F32(
            chunks
                .map(|c| narrow(u32::from(u16::from_le_bytes(le(c))) << 16))
                .collect(),
        ),
        Dtype::F32 if floats == Floats::F32 => {
            Data::F32(chunks.map(|c| f32::from_le_bytes(le(c))).collect())
        }
        Dtype::F16 => Data::F64(
            chunks
                .map(|c| f16_to_f64(u16::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::BF16 => Data::F64(
            chunks
                .map(|c| bf16_to_f64(u16::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::F32 => Data::F64(
            chunks
                .map(|c| f64::from(f32::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::F64 => Data::F64(chunks.map(|c| f64::from_le_bytes(le(c))).collect()),
        Dtype::I8 => Data::I64(chunks.map(|c| i64::from(c[0] as i8)).collect()),
        Dtype::U8 => Data::I64(chunks.map(|c| i64::from(c[0])).collect()),
        Dtype::I16 => Data::I64(
            chunks
                .map(|c| i64::from(i16::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::U16 => Data::I64(
            chunks
                .map(|c| i64::from(u16::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::I32 => Data::I64(
            chunks
                .map(|c| i64::from(i32::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::U32 => Data::I64(
            chunks
                .map(|c| i64::from(u32::from_le_bytes(le(c))))
                .collect(),
        ),
        Dtype::I64 => Data::I64(chunks.map(|c| i64::from_le_bytes(le(c))).collect()),
        Dtype::U64 => Data::I64(
            chunks
                .enumerate()
                .map(|(i, c)| {
                    let v = u64::from_le_bytes(le(c));
                    i64::try_from(v)
                        .map_err(|_| format!("U64 element {i} ({v}) does not fit in I64"))
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => Data::Bool(chunks.map(|c| c[0] != 0).collect()),
    };
    Ok(Tensor { shape, data })
}

/// Encodes tensors as a `.safetensors` file: F64 as F64, F32 as F32, I64 as I64, Bool as BOOL.
pub(super) fn encode(tensors: &TensorMap) -> Result<Vec<u8>, DataError> {
    let mut buffers: Vec<(&str, Dtype, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if name == "__metadata__" {
            return Err(DataError::unfiled(
                name,
                "this name is reserved in .safetensors files",
            ));
        }
        let (dtype, bytes) = match &tensor.data {
            Data::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Bool(v) => (Dtype::BOOL, v.iter().map(|&b| u8::from(b)).collect()),
        };
        buffers.push((name, dtype, bytes));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for ((name, dtype, bytes), tensor) in buffers.iter().zip(tensors.values()) {
        let view = TensorView::new(*dtype, tensor.shape.clone(), bytes)
            .map_err(|e| DataError::unfiled(name, format!("cannot encode: {e}")))?;
        views.push((name.to_string(), view));
    }
    serialize(views, None).map_err(|e| DataError {
        message: format!("cannot encode the safetensors file: {e}"),
    })
}
