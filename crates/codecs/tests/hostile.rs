//! Hostile inputs that once made a decoder loop (nearly) for ever or allocate without bound,
//! kept small and written out byte by byte. Each read is capped, so a regression fails
//! instead of hanging.

use codecs::{AvroSchema, CodecConfig, Encoding, Framing};
use runtime_core::ReadItem;

/// Reads at most `cap` items; the error, if reading broke, comes last as a string.
fn read_capped(cfg: &CodecConfig, bytes: &[u8], cap: usize) -> (Vec<ReadItem>, Option<String>) {
    let mut dec = codecs::decoder(cfg, std::io::Cursor::new(bytes.to_vec()), "test").unwrap();
    let mut items = Vec::new();
    while let Some(item) = dec.next_item() {
        match item {
            Ok(item) => items.push(item),
            Err(e) => return (items, Some(e.to_string())),
        }
        assert!(items.len() <= cap, "more than {cap} items from {bytes:?}");
    }
    (items, None)
}

fn zigzag(v: i64, out: &mut Vec<u8>) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

const SYNC: [u8; 16] = *b"0123456789abcdef";

/// A container header with `schema` and the `null` codec.
fn ocf_header(schema: &str) -> Vec<u8> {
    let mut h = b"Obj\x01".to_vec();
    zigzag(1, &mut h);
    for s in ["avro.schema", schema] {
        zigzag(s.len() as i64, &mut h);
        h.extend_from_slice(s.as_bytes());
    }
    zigzag(0, &mut h);
    h.extend_from_slice(&SYNC);
    h
}

fn ocf_block(out: &mut Vec<u8>, count: i64, data: &[u8]) {
    zigzag(count, out);
    zigzag(data.len() as i64, out);
    out.extend_from_slice(data);
    out.extend_from_slice(&SYNC);
}

fn rejection(item: &ReadItem) -> &str {
    match item {
        ReadItem::Rejected(r) => &r.reason,
        ReadItem::Record(r) => panic!("wanted a rejection, got {:?}", r.value),
    }
}

#[test]
fn ocf_block_claiming_billions_of_null_records_is_refused() {
    // 31 bytes of block framing claiming 2^40 `null` records: each takes no bytes, so the
    // decoder used to hand out records from nothing until the caller gave up.
    let mut f = ocf_header(r#""null""#);
    let start = f.len();
    ocf_block(&mut f, 1 << 40, &[]);
    ocf_block(&mut f, 3, &[]);
    let cfg = CodecConfig::new(Encoding::AvroBinary);
    let (items, err) = read_capped(&cfg, &f, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 4, "{items:?}");
    let why = rejection(&items[0]);
    assert!(
        why.contains(&format!("corrupt block at byte offset {start}"))
            && why.contains("claims 1099511627776 records"),
        "{why}"
    );
    assert!(items[1..]
        .iter()
        .all(|i| matches!(i, ReadItem::Record(r) if r.value == runtime_core::Value::Null)));
}

#[test]
fn ocf_block_count_beyond_its_bytes_is_refused() {
    // Two longs (one byte each) in a block claiming a billion records.
    let mut f = ocf_header(r#""long""#);
    ocf_block(&mut f, 1_000_000_000, &[2, 4]);
    ocf_block(&mut f, 2, &[6, 8]);
    let cfg = CodecConfig::new(Encoding::AvroBinary);
    let (items, err) = read_capped(&cfg, &f, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        rejection(&items[0]).contains("its 2 bytes hold at most 2"),
        "{}",
        rejection(&items[0])
    );
    // The count is not trusted for numbering either: the next block's records follow on.
    match &items[1] {
        ReadItem::Record(r) => assert_eq!(r.position.record, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ocf_deflate_blocks_with_absurd_counts_do_not_overflow_record_numbers() {
    // Blocks that do not inflate skip their claimed record count; three claiming i64::MAX
    // records each must not overflow the record number.
    let mut h = b"Obj\x01".to_vec();
    zigzag(2, &mut h);
    for s in ["avro.schema", r#""long""#, "avro.codec", "deflate"] {
        zigzag(s.len() as i64, &mut h);
        h.extend_from_slice(s.as_bytes());
    }
    zigzag(0, &mut h);
    h.extend_from_slice(&SYNC);
    for _ in 0..3 {
        ocf_block(&mut h, i64::MAX, &[0xff, 0xff]);
    }
    let cfg = CodecConfig::new(Encoding::AvroBinary);
    let (items, err) = read_capped(&cfg, &h, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 3);
    assert!(rejection(&items[2]).contains("cannot inflate"));
}

/// A container header with the schema `"long"` and block codec `codec`.
fn ocf_header_with_codec(codec: &str) -> Vec<u8> {
    let mut h = b"Obj\x01".to_vec();
    zigzag(2, &mut h);
    for s in ["avro.schema", r#""long""#, "avro.codec", codec] {
        zigzag(s.len() as i64, &mut h);
        h.extend_from_slice(s.as_bytes());
    }
    zigzag(0, &mut h);
    h.extend_from_slice(&SYNC);
    h
}

#[test]
fn snappy_and_zstandard_blocks_that_would_inflate_past_the_limit_are_rejected_unread() {
    let mut cfg = CodecConfig::new(Encoding::AvroBinary);
    cfg.max_record_bytes = 1024;
    // Snappy: a block too short for its CRC32; one whose header claims 2 GiB uncompressed
    // (the length is read before anything is allocated); then a good one.
    let mut f = ocf_header_with_codec("snappy");
    ocf_block(&mut f, 1, &[0x01, 0x02]);
    let mut claim = vec![0x80, 0x80, 0x80, 0x80, 0x08]; // varint 2^31
    claim.extend_from_slice(&[0, 0, 0, 0]);
    ocf_block(&mut f, 1, &claim);
    let mut good = snap::raw::Encoder::new().compress_vec(&[0x54]).unwrap(); // long 42
    good.extend_from_slice(&crc32fast::hash(&[0x54]).to_be_bytes());
    ocf_block(&mut f, 1, &good);
    let (items, err) = read_capped(&cfg, &f, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(rejection(&items[0]).contains("4-byte CRC32"), "{items:?}");
    assert!(rejection(&items[1]).contains("inflates to more than 1024 bytes"));
    assert!(matches!(&items[2], ReadItem::Record(r) if r.value == runtime_core::Value::Int(42)));

    // Zstandard: 64 MiB of zeros in a few bytes is cut off at the limit, not inflated whole.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
    assert!(bomb.len() < 64 * 1024);
    let mut f = ocf_header_with_codec("zstandard");
    ocf_block(&mut f, 1, &bomb);
    ocf_block(&mut f, 1, &zstd::bulk::compress(&[0x54], 3).unwrap());
    let (items, err) = read_capped(&cfg, &f, 10);
    assert_eq!(err, None);
    assert!(rejection(&items[0]).contains("inflates to more than 1024 bytes"));
    assert!(matches!(&items[1], ReadItem::Record(r) if r.value == runtime_core::Value::Int(42)));
}

#[test]
fn datum_stream_of_a_zero_byte_schema_breaks_instead_of_looping() {
    // A `null` datum takes no bytes: any input after it cannot be split into datums, and the
    // decoder used to return null records for ever without consuming a byte.
    let mut cfg = CodecConfig::new(Encoding::AvroBinary);
    cfg.framing = Some(Framing::AvroDatums);
    cfg.schema = Some(AvroSchema::parse(r#""null""#).unwrap());
    let (items, err) = read_capped(&cfg, b"x", 10);
    assert!(items.is_empty(), "{items:?}");
    let err = err.expect("the stream breaks");
    assert!(err.contains("takes no bytes"), "{err}");
    // No input, no records, no error.
    let (items, err) = read_capped(&cfg, b"", 10);
    assert!(items.is_empty() && err.is_none());
}

#[test]
fn csv_row_of_empty_fields_is_bounded_by_the_record_limit() {
    // Empty fields take no output bytes, so only the field-end table grew: a row of a
    // million delimiters used to be buffered whatever the limit.
    let mut cfg = CodecConfig::new(Encoding::Csv);
    cfg.max_record_bytes = 1024;
    let mut input = b"a\n".to_vec();
    input.extend(std::iter::repeat_n(b',', 1_000_000));
    input.extend_from_slice(b"\n7\n");
    let (items, err) = read_capped(&cfg, &input, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 2, "{items:?}");
    match &items[0] {
        ReadItem::Rejected(r) => assert_eq!(r.kind.as_str(), "size limit", "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&items[1], ReadItem::Record(_)));
}

#[test]
fn datum_stream_skips_strings_past_the_record_limit_and_reads_on() {
    // Strings are skipped, not buffered, once they would take the datum past the limit: one
    // long string used to break the stream, many short ones to be kept whatever their total.
    let mut cfg = CodecConfig::new(Encoding::AvroBinary);
    cfg.framing = Some(Framing::AvroDatums);
    cfg.max_record_bytes = 16;
    cfg.schema = Some(AvroSchema::parse(r#"{"type": "array", "items": "string"}"#).unwrap());
    let mut input = Vec::new();
    // [20 bytes], then [10 bytes x 5], then ["ok"].
    zigzag(1, &mut input);
    zigzag(20, &mut input);
    input.extend_from_slice(&[b'a'; 20]);
    zigzag(0, &mut input);
    zigzag(5, &mut input);
    for _ in 0..5 {
        zigzag(10, &mut input);
        input.extend_from_slice(&[b'b'; 10]);
    }
    zigzag(0, &mut input);
    zigzag(1, &mut input);
    zigzag(2, &mut input);
    input.extend_from_slice(b"ok");
    zigzag(0, &mut input);
    let (items, err) = read_capped(&cfg, &input, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 3, "{items:?}");
    for item in &items[..2] {
        match item {
            ReadItem::Rejected(r) => assert_eq!(r.kind.as_str(), "size limit", "{r}"),
            other => panic!("{other:?}"),
        }
    }
    match &items[2] {
        ReadItem::Record(r) => assert_eq!(
            r.value,
            runtime_core::Value::Array(vec![runtime_core::Value::String("ok".into())])
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn msgpack_value_of_many_small_strings_past_the_limit_is_rejected_and_reading_goes_on() {
    // Each str is under the limit, together they are not: they are skipped as read.
    let mut cfg = CodecConfig::new(Encoding::MsgPack);
    cfg.max_record_bytes = 64;
    let mut input = vec![0x9a]; // an array of 10
    for _ in 0..10 {
        input.push(0xa0 | 30);
        input.extend_from_slice(&[b'c'; 30]);
    }
    input.push(0x07);
    let (items, err) = read_capped(&cfg, &input, 10);
    assert_eq!(err, None);
    assert_eq!(items.len(), 2, "{items:?}");
    match &items[0] {
        ReadItem::Rejected(r) => assert_eq!(r.kind.as_str(), "size limit", "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&items[1], ReadItem::Record(r) if r.value == runtime_core::Value::Int(7)));
}
