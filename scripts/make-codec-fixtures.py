#!/usr/bin/env python3
"""Writes the codec fixture files under tests/data/codecs/ (one per encoding).

The Avro container files are written by fastavro (one per block codec: snappy needs cramjam,
zstandard backports.zstd on Pythons before 3.14) and the MessagePack stream by the msgpack
package, so the Rust decoders are checked against other implementations. The expected values
are spelled out in crates/codecs/tests/fixtures.rs; change both together.

    pip install fastavro cramjam backports.zstd msgpack
    python3 scripts/make-codec-fixtures.py
"""
import io
import json
import os

import fastavro
import msgpack

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "codecs")

SCHEMA = {
    "type": "record",
    "name": "Rich",
    "namespace": "fixture",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "ratio", "type": "double"},
        {"name": "half", "type": "float"},
        {"name": "name", "type": "string"},
        {"name": "ok", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 2}},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "scores", "type": {"type": "array", "items": "double"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "child", "type": ["null", "Rich"]},
    ],
}


def rich(i, child=None):
    return {
        "id": i * 1_000_000_000_000,
        "small": -i,
        "ratio": i / 4,
        "half": 0.5,
        "name": "n\u00e9\u00b5%d" % i,
        "ok": i % 2 == 0,
        "blob": bytes([i, 255]),
        "tag": b"ab",
        "color": "GREEN" if i % 2 else "RED",
        "scores": [1.5, -2.0][: i % 3],
        "attrs": {"k": i},
        "maybe": None if i % 2 else "yes",
        "when": 1_700_000_000_000 + i,
        "child": child,
    }


def main():
    os.makedirs(os.path.join(OUT, "malformed"), exist_ok=True)
    records = [rich(1), rich(2, rich(3)), rich(4), rich(5)]
    for codec in ("null", "deflate", "snappy", "zstandard"):
        with open(os.path.join(OUT, "rich-%s.avro" % codec), "wb") as f:
            fastavro.writer(f, fastavro.parse_schema(SCHEMA), records, codec=codec, sync_interval=1)
    with open(os.path.join(OUT, "rich.avsc"), "w") as f:
        json.dump(SCHEMA, f, indent=1)

    with open(os.path.join(OUT, "values.msgpack"), "wb") as f:
        for v in [
            {"a": 1, 2: b"\x00\xff", None: [True, 1.5]},
            "text",
            -33,
            2**64 - 1,
            -(2**63),
            [],
            {},
        ]:
            f.write(msgpack.packb(v, use_bin_type=True))

    with open(os.path.join(OUT, "records.jsonl"), "w") as f:
        f.write('{"id": 1, "x": 0.5, "name": "a", "flag": true}\n')
        f.write("\n")
        f.write('[1, "two", null]\n')
        f.write('{"nested": {"deep": [1e3, -2]}, "big": 18446744073709551615}\r\n')

    with open(os.path.join(OUT, "records.csv"), "w", newline="") as f:
        f.write("id,x,name,flag,empty\r\n")
        f.write('1,0.5,plain,true,\r\n')
        f.write('2,-1e3,"quoted, with comma",FALSE,\r\n')
        f.write('3,nan,"multi\nline ""q""",True,\r\n')

    with open(os.path.join(OUT, "lines.txt"), "wb") as f:
        f.write("caf\u00e9\r\n\nsecond line\nno newline at end".encode("utf-8"))

    with open(os.path.join(OUT, "chunks.bin"), "wb") as f:
        f.write(bytes(range(10)))

    # Malformed inputs: the decoders must reject exactly what tests/data/codecs/malformed/
    # expected.json lists.
    with open(os.path.join(OUT, "rich-null.avro"), "rb") as f:
        good = f.read()
    sync = good[-16:]
    first_block = good.index(sync) + 16
    second_block = good.index(sync, first_block) + 16
    mal = os.path.join(OUT, "malformed")
    # Truncated in the middle of the last block.
    with open(os.path.join(mal, "truncated.avro"), "wb") as f:
        f.write(good[:-20])
    # The second block's sync marker damaged: reading resumes after the next marker, which
    # ends the third block, so the fourth is read again.
    damaged = bytearray(good)
    third_block = good.index(sync, second_block) + 16
    damaged[third_block - 1] ^= 0xFF
    with open(os.path.join(mal, "bad-sync.avro"), "wb") as f:
        f.write(bytes(damaged))
    # The snappy file's second block with a CRC32 that does not match its data: the block is
    # rejected, naming it, and reading goes on with the third.
    with open(os.path.join(OUT, "rich-snappy.avro"), "rb") as f:
        snappy = bytearray(f.read())
    ssync = bytes(snappy[-16:])
    s_first = snappy.index(ssync) + 16  # after the header
    s_second = snappy.index(ssync, s_first) + 16
    s_second_end = snappy.index(ssync, s_second)
    snappy[s_second_end - 1] ^= 0xFF  # the last byte of the block's CRC32
    with open(os.path.join(mal, "bad-crc.avro"), "wb") as f:
        f.write(bytes(snappy))
    buf = io.BytesIO()
    buf.write(msgpack.packb({"ok": 1}))
    buf.write(b"\xa3ab")  # a str of 3 bytes cut short
    with open(os.path.join(mal, "truncated.msgpack"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(mal, "bad-str.msgpack"), "wb") as f:
        f.write(msgpack.packb(1) + b"\xa2\xff\xfe" + msgpack.packb(2))


if __name__ == "__main__":
    main()
