//! R's serialization format (`runner_r::rds`) against R itself: fixtures under `tests/data/`
//! written by R (`scripts/make-r-fixtures.R`, the way the worker's driver serializes its
//! replies) are read to exact record values, the engine's writer produces R's very bytes,
//! and hostile frames (truncated, lying lengths, deep nesting) are refused with an error,
//! without a panic and without allocating more than a small multiple of their size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use runner_r::rds::{self, Writer};
use runtime_core::Value;
use serde_json::json;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The record value R's serialization in `name` becomes.
fn decoded(name: &str) -> Result<Value, String> {
    rds::read(&fixture(name)).and_then(|v| rds::to_value(&v))
}

fn value(j: serde_json::Value) -> Value {
    Value::from(j)
}

#[test]
fn r_atomic_vectors_become_scalars_and_arrays() {
    assert_eq!(decoded("null.bin"), Ok(Value::Null));
    assert_eq!(
        decoded("logical.bin"),
        Ok(value(json!([true, false, null])))
    );
    assert_eq!(
        decoded("integer.bin"),
        Ok(value(json!([1, null, -7, 2147483647])))
    );
    // NA is null; -0 and 3 are whole (integers); 1e300 and Inf stay floats.
    assert_eq!(
        decoded("double.bin"),
        Ok(Value::Array(vec![
            Value::Float(1.5),
            Value::Null,
            Value::Int(0),
            Value::Float(1e300),
            Value::Int(3),
            Value::Float(f64::INFINITY),
        ]))
    );
    assert_eq!(
        decoded("character.bin"),
        Ok(value(json!(["a", null, "été", ""])))
    );
    assert_eq!(decoded("latin1.bin"), Ok(value(json!("café"))));
    assert_eq!(decoded("raw.bin"), Ok(Value::Bytes(vec![0, 255, 16])));
}

#[test]
fn r_lists_names_factors_matrices_and_data_frames() {
    let list = value(json!({"a": 1, "b": "x", "c": [true, null]}));
    assert_eq!(decoded("named_list.bin"), Ok(list.clone()));
    // The same list in R's other forms: big-endian XDR, and format version 3.
    assert_eq!(decoded("named_list.xdr.bin"), Ok(list.clone()));
    assert_eq!(decoded("named_list.v3.bin"), Ok(list));
    // The symbol `names` is written once and referred back to (REFSXP) after that.
    assert_eq!(
        decoded("nested_names.bin"),
        Ok(value(json!({"outer": {"inner": {"deep": 2.5}}})))
    );
    assert_eq!(
        decoded("named_vector.bin"),
        Ok(value(json!({"a": 1.5, "b": 2})))
    );
    assert_eq!(
        decoded("factor.bin"),
        Ok(value(json!(["lo", "hi", "lo", null])))
    );
    // Stored column by column, leaves as rows.
    assert_eq!(
        decoded("matrix.bin"),
        Ok(value(json!([[1, 3, 5], [2, 4, 6]])))
    );
    assert_eq!(
        decoded("data_frame.bin"),
        Ok(value(json!([
            {"x": 1, "y": "a", "z": 0.5},
            {"x": 2, "y": "b", "z": null},
        ])))
    );
}

#[test]
fn r_values_that_are_not_records_are_named_in_the_error() {
    let complex = decoded("complex.bin").unwrap_err();
    assert!(complex.contains("complex"), "{complex}");
    let closure = decoded("closure.bin").unwrap_err();
    assert!(closure.contains("closure"), "{closure}");
    let altrep = decoded("altrep.v3.bin").unwrap_err();
    assert!(altrep.contains("ALTREP"), "{altrep}");
}

fn written(v: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    w.value(v);
    w.finish()
}

/// The writer's bytes are R's own: what R 4.2.2 writes with `serialize(x, NULL, xdr = FALSE,
/// version = 2L)` on this (little-endian) machine.
#[test]
fn record_values_are_written_like_r() {
    let cases = [
        ("write_int.bin", value(json!(5))),
        ("write_double.bin", value(json!(2.5))),
        ("write_bool.bin", value(json!(true))),
        ("write_string.bin", value(json!("hé"))),
        ("write_raw.bin", Value::Bytes(vec![1, 2])),
        ("write_ints.bin", value(json!([1, 2, 3]))),
        ("write_doubles.bin", value(json!([1, 2.5]))),
        ("write_logicals.bin", value(json!([true, null]))),
        ("write_strings.bin", value(json!(["a", null]))),
        ("write_list.bin", value(json!([1, "x"]))),
        ("null.bin", Value::Null),
    ];
    for (name, v) in cases {
        let r = fixture(name);
        assert_eq!(written(&v), r, "{name}: {v}");
        // And R's bytes read back to the value written.
        let back = rds::to_value(&rds::read(&r).unwrap()).unwrap();
        let expected = match v {
            // A whole double leaves as an integer, as jsonlite writes it.
            Value::Array(a) if name == "write_doubles.bin" => Value::Array(
                a.into_iter()
                    .map(|x| match x {
                        Value::Float(f) if f.fract() == 0.0 => Value::Int(f as i128),
                        x => x,
                    })
                    .collect(),
            ),
            v => v,
        };
        assert_eq!(back, expected, "{name}");
    }
    // A second `names` attribute: R refers back to the symbol (REFSXP 1) where the writer
    // spells it again; both read the same.
    let map = value(json!({"a": 1, "b": "x", "c": {"x": [1.5, 2]}}));
    let ours = written(&map);
    let r = fixture("write_map.bin");
    let symbol: &[u8] = &[
        1, 0, 0, 0, 9, 0, 4, 0, 5, 0, 0, 0, b'n', b'a', b'm', b'e', b's',
    ];
    let second = ours
        .windows(symbol.len())
        .enumerate()
        .filter(|(_, w)| *w == symbol)
        .nth(1)
        .map(|(at, _)| at)
        .expect("the names symbol twice");
    let mut referred = ours[..second].to_vec();
    referred.extend_from_slice(&[255, 1, 0, 0]);
    referred.extend_from_slice(&ours[second + symbol.len()..]);
    assert_eq!(referred, r);
    assert_eq!(rds::read(&ours), rds::read(&r));
    assert_eq!(rds::to_value(&rds::read(&r).unwrap()), Ok(map));
    let rows = [
        value(json!({"x": 1, "y": "a"})),
        value(json!({"x": 2, "y": "b"})),
    ];
    let mut w = Writer::new();
    w.data_frame(&rows);
    assert_eq!(w.finish(), fixture("write_frame.bin"));
    assert_eq!(decoded("write_frame.bin"), Ok(Value::Array(rows.to_vec())));
}

// ---------------------------------------------------------------------------------------
// Hostile frames

/// Counts this thread's live heap bytes and their peak, so a test can bound what one call
/// allocates while other tests run on other threads.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(n);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(n)));
}

// Safety: every call is forwarded to the system allocator unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // Safety: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // Safety: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        // Safety: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What decoding `bytes` to a record value gives, and the peak heap it took.
fn decode_counted(bytes: &[u8]) -> (Result<Value, String>, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let got = rds::read(bytes).and_then(|v| rds::to_value(&v));
    let peak = PEAK.with(Cell::get) - before;
    (got, peak)
}

/// A frame can be refused; it never panics, and never costs more than a small multiple of
/// its own size (plus a constant for the error message).
fn refused_within_bounds(what: &str, bytes: &[u8]) -> String {
    let (got, peak) = decode_counted(bytes);
    let bound = 64 * bytes.len() + 64 * 1024;
    assert!(
        peak <= bound,
        "{what}: {peak} bytes allocated for a frame of {}",
        bytes.len()
    );
    match got {
        Err(e) => e,
        Ok(v) => panic!("{what}: read as {v}"),
    }
}

fn header() -> Vec<u8> {
    let mut b = b"B\n".to_vec();
    for i in [2, 0x0004_0202, 0x0002_0300] {
        b.extend_from_slice(&i32::to_le_bytes(i));
    }
    b
}

fn int(b: &mut Vec<u8>, i: i32) {
    b.extend_from_slice(&i.to_le_bytes());
}

#[test]
fn every_truncation_of_every_fixture_is_an_error() {
    let names = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(names.len() > 20, "{names:?}");
    for name in names {
        let full = fixture(&name);
        for cut in 0..full.len() {
            let (got, _) = decode_counted(&full[..cut]);
            assert!(
                got.is_err(),
                "{name} cut at {cut} of {} read as {:?}",
                full.len(),
                got
            );
        }
    }
}

#[test]
fn lying_lengths_are_refused_without_allocating_them() {
    const INTSXP: i32 = 13;
    const REALSXP: i32 = 14;
    const STRSXP: i32 = 16;
    const VECSXP: i32 = 19;
    const RAWSXP: i32 = 24;
    const CHARSXP: i32 = 9;
    for ty in [INTSXP, REALSXP, STRSXP, VECSXP, RAWSXP] {
        // A 32-bit length near the top, and a long-vector length (-1, then two halves).
        let mut short = header();
        int(&mut short, ty);
        int(&mut short, i32::MAX);
        short.extend_from_slice(&[0; 64]);
        let e = refused_within_bounds(&format!("type {ty}, length 2^31-1"), &short);
        assert!(
            e.contains("beyond the end") || e.contains("ends early"),
            "{e}"
        );
        let mut long = header();
        int(&mut long, ty);
        int(&mut long, -1);
        int(&mut long, 0x7fff_ffff);
        int(&mut long, -1);
        long.extend_from_slice(&[0; 64]);
        let e = refused_within_bounds(&format!("type {ty}, long length"), &long);
        assert!(
            e.contains("beyond the end") || e.contains("too large"),
            "{e}"
        );
        let mut negative = header();
        int(&mut negative, ty);
        int(&mut negative, -5);
        let e = refused_within_bounds(&format!("type {ty}, negative length"), &negative);
        assert!(e.contains("negative"), "{e}");
    }
    // A string whose length runs past the end.
    let mut s = header();
    int(&mut s, STRSXP);
    int(&mut s, 1);
    int(&mut s, CHARSXP);
    int(&mut s, 1 << 30);
    s.extend_from_slice(b"abc");
    refused_within_bounds("a string longer than the frame", &s);
}

/// Lists inside lists, each claiming as many elements as the bytes left could hold (4 bytes
/// each): what each level reserves up front must stay bounded by the frame, not multiply
/// with the depth.
#[test]
fn nested_lists_claiming_the_whole_frame_stay_bounded() {
    const VECSXP: i32 = 19;
    let depth: i32 = 150;
    let tail: i32 = 256 * 1024;
    let mut b = header();
    for level in 0..depth {
        int(&mut b, VECSXP);
        let remaining = (depth - level - 1) * 8 + tail;
        int(&mut b, remaining / 4);
    }
    // Then integers of 0 elements, each a valid list element, far fewer than claimed.
    for _ in 0..tail / 8 {
        int(&mut b, 13);
        int(&mut b, 0);
    }
    let e = refused_within_bounds("nested lists", &b);
    assert!(
        e.contains("ends early") || e.contains("beyond the end"),
        "{e}"
    );
}

#[test]
fn nesting_deeper_than_the_bound_is_refused() {
    const VECSXP: i32 = 19;
    let mut b = header();
    for _ in 0..10_000 {
        int(&mut b, VECSXP);
        int(&mut b, 1);
    }
    int(&mut b, 254);
    let e = refused_within_bounds("10000 nested lists", &b);
    assert!(e.contains("nested deeper"), "{e}");
}

/// An integer vector with a `dim` attribute, as R would write it if it could lie.
fn matrix_frame(values: &[i32], dim: [i32; 2]) -> Vec<u8> {
    let mut b = header();
    int(&mut b, 13 | (1 << 9)); // INTSXP with attributes
    int(&mut b, i32::try_from(values.len()).unwrap());
    for v in values {
        int(&mut b, *v);
    }
    int(&mut b, 2 | (1 << 10)); // LISTSXP with a tag
    int(&mut b, 1); // SYMSXP
    int(&mut b, 9 | (64 << 12)); // CHARSXP, ASCII
    int(&mut b, 3);
    b.extend_from_slice(b"dim");
    int(&mut b, 13);
    int(&mut b, 2);
    int(&mut b, dim[0]);
    int(&mut b, dim[1]);
    int(&mut b, 254);
    b
}

#[test]
fn a_matrix_whose_dim_lies_is_refused() {
    for (values, dim) in [
        // R never writes these; a frame can.
        (&[1, 2][..], [i32::MAX, i32::MAX]),
        (&[1, 2][..], [2, 2]),
        (&[1, 2][..], [-1, -2]),
        // No columns, so rows x cols is the length whatever the rows.
        (&[][..], [i32::MAX, 0]),
    ] {
        let e = refused_within_bounds(&format!("dim {dim:?}"), &matrix_frame(values, dim));
        assert!(e.contains("dim"), "{e}");
    }
    // A dim that fits: a 1x2 matrix, and a 3x0 one.
    let read = |values: &[i32], dim| rds::to_value(&rds::read(&matrix_frame(values, dim)).unwrap());
    assert_eq!(read(&[1, 2], [1, 2]), Ok(value(json!([[1, 2]]))));
    assert_eq!(read(&[], [3, 0]), Ok(value(json!([[], [], []]))));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A fixed pseudo-random walk over mutations of the fixtures (the fuzz target
    // fuzz/fuzz_targets/decode_rds.rs does the same without end).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in [
        "named_list.bin",
        "data_frame.bin",
        "factor.bin",
        "nested_names.bin",
    ] {
        let base = fixture(name);
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            let (_, peak) = decode_counted(&b);
            assert!(peak <= 64 * b.len() + 64 * 1024, "{name}: {peak} bytes");
        }
    }
}
