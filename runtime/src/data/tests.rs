//! Tests of the data-file readers and writers: round trips, foreign files, error messages and
//! a no-panic fuzz loop.

use std::io::{Cursor, Write};

use ::safetensors::tensor::TensorView;
use ::safetensors::{Dtype, serialize};
use npyz::WriterBuilder;
use npyz::npz::NpzWriter;
use npyz::zip::write::FileOptions;

use super::*;
use crate::tensor::{Data, Tensor};

fn f(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: Data::F64(v.to_vec()),
    }
}
fn i(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: Data::I64(v.to_vec()),
    }
}
fn b(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: Data::Bool(v.to_vec()),
    }
}
fn map(items: Vec<(&str, Tensor)>) -> TensorMap {
    items.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Equality with floats compared bit for bit (NaN == NaN).
fn same(a: &TensorMap, b: &TensorMap) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, ta), (kb, tb))| {
            ka == kb
                && ta.shape == tb.shape
                && match (&ta.data, &tb.data) {
                    (Data::F64(x), Data::F64(y)) => {
                        x.len() == y.len()
                            && x.iter().zip(y).all(|(p, q)| {
                                p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())
                            })
                    }
                    (x, y) => x == y,
                }
        })
}

/// Tensors every format round-trips exactly.
fn common() -> TensorMap {
    map(vec![
        (
            "f",
            f(
                &[2, 5],
                &[
                    0.1,
                    1.0,
                    -0.0,
                    1e300,
                    5e-324,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    -2.5,
                    1e16,
                ],
            ),
        ),
        ("i", i(&[3], &[i64::MIN, 0, i64::MAX])),
        ("b", b(&[2, 2], &[true, false, false, true])),
        ("s", Tensor::scalar(0.5)),
        ("si", i(&[], &[7])),
        ("sb", b(&[], &[true])),
        ("e0", f(&[0], &[])),
        ("e20", f(&[2, 0], &[])),
        ("r3", f(&[2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
    ])
}

#[test]
fn round_trip_every_format() {
    let tensors = common();
    for format in [Format::Json, Format::Npz, Format::Safetensors] {
        let bytes = encode_tensors(format, &tensors).unwrap();
        let back = parse_tensors(format, &bytes, "t").unwrap();
        assert!(same(&tensors, &back), "{format:?}: {back:?}");
    }
    // The binary formats also keep the dtype and full shape of empty tensors.
    let empties = map(vec![
        ("a", i(&[0], &[])),
        ("b", b(&[2, 0], &[])),
        ("c", f(&[0, 3], &[])),
        ("d", i(&[3, 0, 2], &[])),
    ]);
    for format in [Format::Npz, Format::Safetensors] {
        let bytes = encode_tensors(format, &empties).unwrap();
        assert_eq!(
            parse_tensors(format, &bytes, "t").unwrap(),
            empties,
            "{format:?}"
        );
    }
    // JSON cannot: an empty array is F64 and hides the dimensions after it.
    let bytes = encode_tensors(Format::Json, &empties).unwrap();
    let back = parse_tensors(Format::Json, &bytes, "t").unwrap();
    assert_eq!(back["a"], f(&[0], &[]));
    assert_eq!(back["b"], f(&[2, 0], &[]));
    assert_eq!(back["c"], f(&[0], &[]));
}

#[test]
fn files_on_disk() {
    let dir = std::env::temp_dir().join(format!("lossc-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["json", "npz", "safetensors"] {
        let path = dir.join(format!("t.{ext}"));
        write_tensors(&path, &common()).unwrap();
        assert!(same(&read_tensors(&path).unwrap(), &common()), "{ext}");
    }
    let missing = dir.join("missing.npz");
    let e = read_tensors(&missing).unwrap_err();
    assert!(e.message.contains("missing.npz"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn format_from_path() {
    use std::path::Path;
    assert_eq!(
        Format::from_path(Path::new("a/b.json")).unwrap(),
        Format::Json
    );
    assert_eq!(Format::from_path(Path::new("b.NPZ")).unwrap(), Format::Npz);
    assert_eq!(
        Format::from_path(Path::new("b.safetensors")).unwrap(),
        Format::Safetensors
    );
    for bad in ["x.txt", "x"] {
        let e = Format::from_path(Path::new(bad)).unwrap_err();
        assert!(e.message.starts_with(bad), "{e}");
        assert!(e.message.contains(".json, .npz or .safetensors"), "{e}");
    }
}

#[test]
fn json_reading() {
    let text = r#"{"x": [[1.5, 2], [3, 4]], "y": [0, 2], "s": 0.5, "m": [true, false],
        "n": ["NaN", "inf", "-Infinity", "nan", 1], "bare": [NaN, Infinity, -Infinity],
        "e": [], "ee": [[], []], "k": -0, "big": 1e400, "esc\u00e9\"": 1}"#;
    let t = parse_tensors(Format::Json, text.as_bytes(), "data.json").unwrap();
    assert_eq!(t["x"], f(&[2, 2], &[1.5, 2.0, 3.0, 4.0]));
    assert_eq!(t["y"], i(&[2], &[0, 2]));
    assert_eq!(t["s"], Tensor::scalar(0.5));
    assert_eq!(t["m"], b(&[2], &[true, false]));
    let Data::F64(n) = &t["n"].data else { panic!() };
    assert!(n[0].is_nan() && n[1] == f64::INFINITY && n[2] == f64::NEG_INFINITY && n[3].is_nan());
    assert_eq!(n[4], 1.0);
    let Data::F64(bare) = &t["bare"].data else {
        panic!()
    };
    assert!(bare[0].is_nan() && bare[1] == f64::INFINITY && bare[2] == f64::NEG_INFINITY);
    assert_eq!(t["e"], f(&[0], &[]));
    assert_eq!(t["ee"], f(&[2, 0], &[]));
    assert_eq!(t["k"], i(&[], &[0]));
    assert_eq!(t["big"], Tensor::scalar(f64::INFINITY));
    assert!(t.contains_key("esc\u{e9}\""));
    assert_eq!(
        parse_tensors(Format::Json, b" {} ", "d.json").unwrap(),
        TensorMap::new()
    );
}

#[test]
fn json_writing() {
    let t = map(vec![
        ("a", f(&[2, 2], &[1.0, 2.5, f64::NAN, f64::NEG_INFINITY])),
        ("b", i(&[], &[-3])),
        ("c", b(&[2], &[true, false])),
        ("d", f(&[2, 0], &[])),
        ("e\"q", Tensor::scalar(f64::INFINITY)),
        ("f", f(&[1, 1, 1], &[1e20])),
    ]);
    assert_eq!(
        to_json_string(&t),
        r#"{"a": [[1.0, 2.5], ["NaN", "-Infinity"]], "b": -3, "c": [true, false], "d": [[], []], "e\"q": "Infinity", "f": [[[1e20]]]}"#
    );
    // The file encoding is the same text plus a newline.
    let bytes = encode_tensors(Format::Json, &t).unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), to_json_string(&t) + "\n");
    // Shortest round-trip floats read back bit for bit.
    let xs: Vec<f64> = (1..200)
        .map(|k| (k as f64).powf(7.3) / 3.0 - 1.0 / k as f64)
        .collect();
    let t = map(vec![("x", f(&[xs.len()], &xs))]);
    let back = parse_tensors(Format::Json, to_json_string(&t).as_bytes(), "t").unwrap();
    assert!(same(&t, &back));
}

fn json_err(text: &str) -> String {
    parse_tensors(Format::Json, text.as_bytes(), "data.json")
        .unwrap_err()
        .message
}

#[test]
fn json_errors() {
    assert_eq!(
        json_err(r#"{"x": [[1,2],[3]]}"#),
        r#"data.json: tensor "x": row 1 has 1 element(s), row 0 has 2"#
    );
    let deep = format!(r#"{{"deep": {}1{}}}"#, "[".repeat(33), "]".repeat(33));
    let ok = format!(r#"{{"deep": {}1{}}}"#, "[".repeat(32), "]".repeat(32));
    assert_eq!(
        parse_tensors(Format::Json, ok.as_bytes(), "d").unwrap()["deep"].shape,
        vec![1; 32]
    );
    let cases: Vec<(String, &str, &str)> = vec![
        (r#"{"x": [[1,2],[3,[4]]]}"#.into(), "x", "[1][1]"),
        (
            r#"{"x": [[[1],[2]],[[3],[4,5]]]}"#.into(),
            "x",
            "row [1][1] has 2",
        ),
        (
            r#"{"x": [1, [2]]}"#.into(),
            "x",
            "element [1]: expected a number, found an array",
        ),
        (
            r#"{"x": [[1], 2]}"#.into(),
            "x",
            "element [1]: expected an array, found a number",
        ),
        (r#"{"x": [[], 2]}"#.into(), "x", "element [1]"),
        (
            r#"{"mix": [1, true]}"#.into(),
            "mix",
            "element [1] is a boolean, but element [0] is a number",
        ),
        (r#"{"nul": [1, null]}"#.into(), "nul", "null"),
        (r#"{"obj": [1, {"a": 1}]}"#.into(), "obj", "object"),
        (r#"{"obj2": {"a": 1}}"#.into(), "obj2", "object"),
        (r#"{"dup": 1, "dup": 2}"#.into(), "dup", "more than once"),
        (deep, "deep", "deeper than 32"),
        (
            r#"{"big": [1, 9223372036854775808]}"#.into(),
            "big",
            "does not fit",
        ),
        (
            r#"{"big": [1, 123456789012345678901234567890]}"#.into(),
            "big",
            "does not fit",
        ),
        (r#"{"str": ["abc"]}"#.into(), "str", "not a number"),
        (r#"{"num": [01]}"#.into(), "num", "leading zeros"),
        (r#"{"num": [1.]}"#.into(), "num", "invalid number"),
        (
            r#"{"open": [1, 2"#.into(),
            "open",
            "found the end of the file",
        ),
        (r#"{"x": [1 2]}"#.into(), "x", "expected ',' or ']'"),
        (r#"{"x" 1}"#.into(), "x", "expected ':'"),
        (r#"{"x": 1 "y": 2}"#.into(), "x", "expected ',' or '}'"),
    ];
    for (text, name, needle) in cases {
        let e = json_err(&text);
        assert!(
            e.starts_with(&format!("data.json: tensor \"{name}\"")),
            "{text}: {e}"
        );
        assert!(e.contains(needle), "{text}: {e}");
    }
    for (text, needle) in [
        ("[1, 2]", "top level"),
        ("", "empty"),
        ("{\"x\": 1} x", "after the top-level object"),
        ("{1: 2}", "tensor name"),
        ("{\"a\n\": 1}", "control character"),
        ("{\"\\ud800\": 1}", "surrogate"),
        ("{\"\\x\": 1}", "escape"),
    ] {
        let e = json_err(text);
        assert!(e.starts_with("data.json: "), "{text}: {e}");
        assert!(e.contains(needle), "{text}: {e}");
    }
    let e = parse_tensors(Format::Json, b"{\"x\": [1, \xff]}", "data.json").unwrap_err();
    assert!(e.message.contains("UTF-8"), "{e}");
}

/// An npz archive with the given members, written with npyz's zip (deflated).
fn npz_raw(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = NpzWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in members {
        w.zip_writer()
            .start_file(*name, FileOptions::default())
            .unwrap();
        w.zip_writer().write_all(bytes).unwrap();
    }
    w.zip_writer().finish().unwrap().into_inner()
}

/// The bytes of a `.npy` file with the given header fields and raw data.
fn npy_raw(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// One npyz-written array (default dtype for `T`) in an npz archive.
fn npz_of<T: npyz::AutoSerialize + Copy>(
    name: &str,
    shape: &[u64],
    order: npyz::Order,
    values: &[T],
) -> Vec<u8> {
    let mut w = NpzWriter::new(Cursor::new(Vec::new()));
    let mut a = w
        .array::<T>(name, FileOptions::default())
        .unwrap()
        .default_dtype()
        .shape(shape)
        .order(order)
        .begin_nd()
        .unwrap();
    a.extend(values.iter().copied()).unwrap();
    a.finish().unwrap();
    w.zip_writer().finish().unwrap().into_inner()
}

fn npz(bytes: &[u8]) -> Result<TensorMap, DataError> {
    parse_tensors(Format::Npz, bytes, "data.npz")
}

#[test]
fn npz_foreign_dtypes() {
    use npyz::Order::C;
    let t = npz(&npz_of::<f32>("a", &[2], C, &[1.5, -0.25])).unwrap();
    assert_eq!(t["a"], f(&[2], &[1.5, -0.25]));
    let t = npz(&npz_of::<i32>("a", &[3], C, &[-1, 0, i32::MAX])).unwrap();
    assert_eq!(t["a"], i(&[3], &[-1, 0, i64::from(i32::MAX)]));
    let t = npz(&npz_of::<u8>("a", &[2], C, &[0, 255])).unwrap();
    assert_eq!(t["a"], i(&[2], &[0, 255]));
    let t = npz(&npz_of::<i8>("a", &[1], C, &[-128])).unwrap();
    assert_eq!(t["a"], i(&[1], &[-128]));
    let t = npz(&npz_of::<u16>("a", &[1], C, &[65535])).unwrap();
    assert_eq!(t["a"], i(&[1], &[65535]));
    let t = npz(&npz_of::<u32>("a", &[1], C, &[u32::MAX])).unwrap();
    assert_eq!(t["a"], i(&[1], &[i64::from(u32::MAX)]));
    let t = npz(&npz_of::<u64>("a", &[1], C, &[5])).unwrap();
    assert_eq!(t["a"], i(&[1], &[5]));
    let t = npz(&npz_of::<bool>("m", &[2], C, &[true, false])).unwrap();
    assert_eq!(t["m"], b(&[2], &[true, false]));
    let e = npz(&npz_of::<u64>("huge", &[1], C, &[u64::MAX])).unwrap_err();
    assert!(
        e.message.contains("tensor \"huge\"") && e.message.contains("does not fit"),
        "{e}"
    );

    // float16 and big-endian, from raw .npy bytes.
    let half = npy_raw("<f2", false, "(3,)", &[0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c]);
    let big = npy_raw(">f8", false, "(1,)", &2.5f64.to_be_bytes());
    let bigi = npy_raw(">i4", false, "(1,)", &(-7i32).to_be_bytes());
    let py2 = npy_raw(
        "<i8",
        false,
        "(1L, 2L)",
        &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    );
    let t = npz(&npz_raw(&[
        ("h.npy", half),
        ("big.npy", big),
        ("bigi.npy", bigi),
        ("py2.npy", py2),
        ("readme.txt", b"ignored".to_vec()),
    ]))
    .unwrap();
    assert_eq!(t["h"], f(&[3], &[1.0, -2.0, f64::INFINITY]));
    assert_eq!(t["big"], f(&[1], &[2.5]));
    assert_eq!(t["bigi"], i(&[1], &[-7]));
    assert_eq!(t["py2"], i(&[1, 2], &[1, 2]));
    assert_eq!(t.len(), 4);
}

#[test]
fn npz_fortran_order() {
    use npyz::Order::Fortran;
    // A 2x3 matrix [[1,2,3],[4,5,6]] stored column by column.
    let t = npz(&npz_of::<f64>(
        "a",
        &[2, 3],
        Fortran,
        &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0],
    ))
    .unwrap();
    assert_eq!(t["a"], f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    // Rank 3: element (i, j, k) is stored at i + 2j + 6k; its value is 100i + 10j + k.
    let mut stored = vec![0i64; 24];
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                stored[a + 2 * b + 6 * c] = 100 * a as i64 + 10 * b as i64 + c as i64;
            }
        }
    }
    let t = npz(&npz_of::<i64>("r", &[2, 3, 4], Fortran, &stored)).unwrap();
    let expected: Vec<i64> = (0..2)
        .flat_map(|a| (0..3).flat_map(move |b| (0..4).map(move |c| 100 * a + 10 * b + c)))
        .collect();
    assert_eq!(t["r"], i(&[2, 3, 4], &expected));
}

#[test]
fn npz_written_dtypes() {
    // The writer uses <f8, <i8 and |b1.
    let bytes = encode_tensors(Format::Npz, &common()).unwrap();
    let mut archive = npyz::npz::NpzArchive::new(Cursor::new(&bytes[..])).unwrap();
    for (name, descr) in [("f", "'<f8'"), ("i", "'<i8'"), ("b", "'|b1'")] {
        let file = archive.by_name(name).unwrap().unwrap();
        assert_eq!(file.dtype().descr(), descr);
    }
    let file = archive.by_name("r3").unwrap().unwrap();
    assert_eq!(file.shape(), &[2, 1, 3]);
    assert_eq!(
        file.into_vec::<f64>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    // Deterministic bytes.
    assert_eq!(bytes, encode_tensors(Format::Npz, &common()).unwrap());
}

#[test]
fn npz_errors() {
    let d8 = [0u8; 8];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (npy_raw("<f8", false, "(2,)", &d8), "has 8 byte(s) of data"),
        (
            npy_raw("<f8", false, "(4294967296, 4294967296, 4294967296)", &d8),
            "too large",
        ),
        (npy_raw("<f8", false, "(1099511627776,)", &d8), "at most"),
        (
            npy_raw("<c16", false, "(1,)", &[0; 16]),
            "unsupported dtype",
        ),
        (npy_raw("<U3", false, "(1,)", &[0; 12]), "unsupported dtype"),
        (npy_raw("|O", false, "(1,)", &d8), "unsupported dtype"),
        (
            npy_raw("<f8", false, "(99999999999999999999999,)", &d8),
            "too large",
        ),
        (npy_raw("<f8", false, "(-1,)", &d8), "bad .npy header"),
        (b"\x93NUMPY\x01\x00\xff\xff{'descr'".to_vec(), "truncated"),
        (b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec(), "truncated"),
        (b"\x93NUMPY\x09\x00\x10\x00{}".to_vec(), "version"),
        (b"not numpy at all".to_vec(), "magic"),
    ];
    for (npy, needle) in cases {
        let e = npz(&npz_raw(&[("bad.npy", npy)])).unwrap_err();
        assert!(e.message.starts_with("data.npz: tensor \"bad\": "), "{e}");
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
    let mut structured = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n";
    structured.extend_from_slice(&(header.len() as u16).to_le_bytes());
    structured.extend_from_slice(header.as_bytes());
    let e = npz(&npz_raw(&[("rec.npy", structured)])).unwrap_err();
    assert!(
        e.message.contains("tensor \"rec\"") && e.message.contains("structured"),
        "{e}"
    );
    let dup = npy_raw("<f8", false, "()", &d8);
    let e = npz(&npz_raw(&[("x.npy", dup.clone()), ("x.npy\0junk", dup)])).unwrap_err();
    assert!(
        e.message.contains("tensor \"x\"") && e.message.contains("more than once"),
        "{e}"
    );
    let e = npz(b"PK\x03\x04 garbage").unwrap_err();
    assert!(e.message.starts_with("data.npz: "), "{e}");
}

fn st(items: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = items
        .iter()
        .map(|(n, d, s, bytes)| {
            (
                n.to_string(),
                TensorView::new(*d, s.clone(), bytes).unwrap(),
            )
        })
        .collect();
    serialize(views, None).unwrap()
}

fn sft(bytes: &[u8]) -> Result<TensorMap, DataError> {
    parse_tensors(Format::Safetensors, bytes, "w.safetensors")
}

#[test]
fn safetensors_foreign_dtypes() {
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let bytes = st(vec![
        ("f32", Dtype::F32, vec![2], le(&[1.5, -3.0])),
        (
            "i32",
            Dtype::I32,
            vec![2],
            [-5i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        ("u8", Dtype::U8, vec![3], vec![0, 200, 255]),
        ("i8", Dtype::I8, vec![1], vec![0x80]),
        ("u16", Dtype::U16, vec![1], vec![0xff, 0xff]),
        ("u32", Dtype::U32, vec![1], vec![0xff; 4]),
        (
            "f16",
            Dtype::F16,
            vec![4],
            vec![0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0xfc],
        ),
        ("bf16", Dtype::BF16, vec![2], vec![0xc0, 0x3f, 0x80, 0xff]),
        ("bool", Dtype::BOOL, vec![2, 1], vec![1, 0]),
        ("u64", Dtype::U64, vec![1], 42u64.to_le_bytes().to_vec()),
    ]);
    let t = sft(&bytes).unwrap();
    assert_eq!(t["f32"], f(&[2], &[1.5, -3.0]));
    assert_eq!(t["i32"], i(&[2], &[-5, 9]));
    assert_eq!(t["u8"], i(&[3], &[0, 200, 255]));
    assert_eq!(t["i8"], i(&[1], &[-128]));
    assert_eq!(t["u16"], i(&[1], &[65535]));
    assert_eq!(t["u32"], i(&[1], &[i64::from(u32::MAX)]));
    assert_eq!(
        t["f16"],
        f(&[4], &[1.0, -2.0, 2f64.powi(-24), f64::NEG_INFINITY])
    );
    assert_eq!(t["bf16"], f(&[2], &[1.5, f64::NEG_INFINITY]));
    assert_eq!(t["bool"], b(&[2, 1], &[true, false]));
    assert_eq!(t["u64"], i(&[1], &[42]));
}

/// A safetensors file from a raw header and data.
fn st_raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_errors() {
    let e = sft(&st(vec![("fp8", Dtype::F8_E4M3, vec![1], vec![0])])).unwrap_err();
    assert!(
        e.message.contains("tensor \"fp8\"") && e.message.contains("F8_E4M3"),
        "{e}"
    );
    let e = sft(&st(vec![(
        "big",
        Dtype::U64,
        vec![1],
        u64::MAX.to_le_bytes().to_vec(),
    )]))
    .unwrap_err();
    assert!(
        e.message.contains("tensor \"big\"") && e.message.contains("does not fit"),
        "{e}"
    );
    let cases = [
        // The offset that makes safetensors 0.8 overflow and slice out of bounds.
        (
            r#"{"x":{"dtype":"U8","shape":[18446744073709551607],"data_offsets":[0,18446744073709551607]}}"#,
            "x",
            "at most",
        ),
        (
            r#"{"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
            "x",
            "outside",
        ),
        (
            r#"{"x":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#,
            "x",
            "overflows",
        ),
        (
            r#"{"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}"#,
            "x",
            "shape",
        ),
        (
            r#"{"x":{"dtype":"U8","shape":[1],"data_offsets":[1]}}"#,
            "x",
            "data_offsets",
        ),
    ];
    for (header, name, needle) in cases {
        let e = sft(&st_raw(header, &[0, 0])).unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("w.safetensors: tensor \"{name}\"")),
            "{e}"
        );
        assert!(e.message.contains(needle), "{e}");
    }
    for (bytes, needle) in [
        (b"\x01\x00".to_vec(), "too short"),
        (st_raw("[1]", &[]), "not a JSON object"),
        (st_raw("{\"x\":", &[]), "not valid JSON"),
        (
            b"\xff\xff\xff\xff\xff\xff\xff\xff{}".to_vec(),
            "past the end",
        ),
        (
            st_raw(
                r#"{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#,
                &[0, 0, 0],
            ),
            "safetensors",
        ),
    ] {
        let e = sft(&bytes).unwrap_err();
        assert!(e.message.starts_with("w.safetensors: "), "{e}");
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn encode_errors() {
    let bad = map(vec![("bad", f(&[2, 2], &[1.0]))]);
    for format in [Format::Json, Format::Npz, Format::Safetensors] {
        let e = encode_tensors(format, &bad).unwrap_err();
        assert!(e.message.contains("tensor \"bad\""), "{e}");
    }
    let meta = map(vec![("__metadata__", Tensor::scalar(1.0))]);
    let e = encode_tensors(Format::Safetensors, &meta).unwrap_err();
    assert!(e.message.contains("__metadata__"), "{e}");
    // write_tensors names the file.
    let path = std::env::temp_dir().join("lossc-never-written.json");
    let e = write_tensors(&path, &bad).unwrap_err();
    assert!(
        e.message.starts_with(&path.display().to_string()) && e.message.contains("\"bad\""),
        "{e}"
    );
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_panics_on_hostile_bytes() {
    let small = map(vec![
        ("x", f(&[2, 2], &[1.0, f64::NAN, 3.0, 4.0])),
        ("y", i(&[2], &[1, 2])),
        ("m", b(&[], &[true])),
    ]);
    let mut rng = Rng(0x5eed);
    let interesting: &[u8] = b"[]{},:\"0123456789eE.-+ntfNI\\\x00\xff\x93PK";
    let mut count = 0usize;
    // LOSSC_FUZZ_ROUNDS raises the number of mutations per format for a longer local run.
    let rounds: usize = std::env::var("LOSSC_FUZZ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500);
    for format in [Format::Json, Format::Npz, Format::Safetensors] {
        let mut seeds = vec![encode_tensors(format, &small).unwrap()];
        match format {
            Format::Npz => {
                seeds.push(npz_raw(&[(
                    "h.npy",
                    npy_raw("<f2", true, "(2, 1)", &[0, 60, 0, 60]),
                )]));
            }
            Format::Safetensors => {
                seeds.push(st(vec![(
                    "a",
                    Dtype::F32,
                    vec![1, 2],
                    vec![0, 0, 128, 63, 0, 0, 0, 64],
                )]));
            }
            Format::Json => {
                seeds.push(br#"{"a": [[1, 2.5e3], ["NaN", -0]], "b": [[[true]]]}"#.to_vec())
            }
        }
        let seed = seeds[0].clone();
        // Every truncation of the main seed.
        for len in 0..seed.len() {
            let _ = parse_tensors(format, &seed[..len], "fuzz");
            count += 1;
        }
        // Mutations: flipped, overwritten, inserted and deleted bytes.
        for round in 0..rounds {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(4) {
                    0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
                    1 if !bytes.is_empty() => bytes[at] = interesting[rng.below(interesting.len())],
                    2 => bytes.insert(at, interesting[rng.below(interesting.len())]),
                    _ if !bytes.is_empty() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            if rng.below(4) == 0 {
                let cut = rng.below(bytes.len() + 1);
                bytes.truncate(cut);
            }
            let _ = parse_tensors(format, &bytes, "fuzz");
            count += 1;
        }
        // Random garbage, plain and with a plausible prefix.
        for _ in 0..100 {
            let mut bytes: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                let prefix = &seed[..rng.below(seed.len().min(64))];
                bytes.splice(0..0, prefix.iter().copied());
            }
            let _ = parse_tensors(format, &bytes, "fuzz");
            count += 1;
        }
    }
    eprintln!("fuzz inputs: {count}");
    assert!(count >= 2000, "{count}");
}

#[test]
fn floats_kept_in_f32_for_a_compiled_backend() {
    use npyz::Order::C;
    let f32s = |name: &str, t: &TensorMap| match &t[name].data {
        Data::F32(v) => v.clone(),
        other => panic!("{name} is {other:?}"),
    };
    // .npz: f32 and f16 members stay f32 (exactly), f64 ones f64, ints ints, in either order.
    let keep = |bytes: &[u8]| parse_tensors_as(Format::Npz, bytes, "data.npz", Floats::F32);
    let t = keep(&npz_of::<f32>("a", &[2], C, &[1.5, -0.1])).unwrap();
    assert_eq!(f32s("a", &t), vec![1.5, -0.1]);
    let t = keep(&npz_of::<f32>(
        "r",
        &[2, 3],
        npyz::Order::Fortran,
        &[1., 2., 3., 4., 5., 6.],
    ))
    .unwrap();
    assert_eq!(f32s("r", &t), vec![1., 3., 5., 2., 4., 6.]);
    let half = npy_raw("<f2", false, "(2,)", &[0x00, 0x3e, 0x00, 0xbc]);
    let t = keep(&npz_raw(&[("h.npy", half)])).unwrap();
    assert_eq!(f32s("h", &t), vec![1.5, -1.0]);
    let t = keep(&npz_of::<f64>("d", &[1], C, &[0.1])).unwrap();
    assert_eq!(t["d"], f(&[1], &[0.1]));
    let t = keep(&npz_of::<i64>("y", &[2], C, &[3, -1])).unwrap();
    assert_eq!(t["y"], i(&[2], &[3, -1]));
    // Written back, an f32 tensor is `<f4` again, bit for bit.
    let back = encode_tensors(Format::Npz, &t).unwrap();
    assert_eq!(keep(&back).unwrap(), t);
    let t = keep(&npz_of::<f32>("a", &[2], C, &[1.5, -0.1])).unwrap();
    let back = encode_tensors(Format::Npz, &t).unwrap();
    assert_eq!(keep(&back).unwrap(), t);
    // The element cap is 2^31 in f32 (2^26 in f64): a larger declared shape is still refused,
    // and one within it is checked against the bytes present before anything is allocated.
    let big = npy_raw("<f4", false, "(8192, 32000)", &[0; 8]);
    let e = npz(&npz_raw(&[("x.npy", big.clone())])).unwrap_err();
    assert!(e.message.contains("at most 67108864"), "{e}");
    let e = keep(&npz_raw(&[("x.npy", big)])).unwrap_err();
    assert!(
        e.message.contains("has 8 byte(s) of data") && e.message.contains("needs 1048576000"),
        "{e}"
    );
    let huge = npy_raw("<f4", false, "(2147483649,)", &[0; 8]);
    let e = keep(&npz_raw(&[("x.npy", huge)])).unwrap_err();
    assert!(e.message.contains("at most 2147483648"), "{e}");
    // .safetensors: F32, F16 and BF16 stay f32.
    let bytes = st(vec![
        ("a", Dtype::F32, vec![1], 0.1f32.to_le_bytes().to_vec()),
        ("h", Dtype::F16, vec![1], vec![0x00, 0x3e]),
        ("b", Dtype::BF16, vec![1], vec![0xc0, 0x3f]),
    ]);
    let t = parse_tensors_as(Format::Safetensors, &bytes, "w.safetensors", Floats::F32).unwrap();
    assert_eq!(f32s("a", &t), vec![0.1]);
    assert_eq!(f32s("h", &t), vec![1.5]);
    assert_eq!(f32s("b", &t), vec![1.5]);
    // A file on disk reads the same, member by member.
    let dir = std::env::temp_dir().join(format!("lossc-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.npz");
    std::fs::write(&path, npz_of::<f32>("a", &[2], C, &[1.5, -0.1])).unwrap();
    let t = read_tensors_as(&path, Floats::F32).unwrap();
    assert_eq!(f32s("a", &t), vec![1.5, -0.1]);
    assert_eq!(read_tensors(&path).unwrap()["a"].data.type_name(), "float");
    std::fs::remove_dir_all(&dir).ok();
}
