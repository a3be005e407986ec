#!/usr/bin/env python3
"""The Avro floor for crates/codecs/benches/codecs.rs: fastavro reading and writing the same
container file, in records per second.

    pip install fastavro
    python3 scripts/bench-avro-fastavro.py [FILE]

FILE defaults to the one the Rust bench leaves in the temp directory
(codecs-bench-1000000.avro); if it does not exist, one of the same shape is written first.
"""
import io
import os
import sys
import tempfile
import time

import fastavro

SCHEMA = {
    "type": "record",
    "name": "Small",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "x", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "flag", "type": "boolean"},
    ],
}


def main():
    n = int(os.environ.get("CODECS_BENCH_RECORDS", "1000000"))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        tempfile.gettempdir(), "codecs-bench-%d.avro" % n)
    if not os.path.exists(path):
        recs = ({"id": i, "x": i * 0.37 + 0.001, "name": "name%d" % (i % 1000), "flag": i % 2 == 0}
                for i in range(n))
        with open(path, "wb") as f:
            fastavro.writer(f, fastavro.parse_schema(SCHEMA), recs)
    with open(path, "rb") as f:
        data = f.read()

    best_read = best_write = None
    for _ in range(3):
        t = time.perf_counter()
        reader = fastavro.reader(io.BytesIO(data))
        schema = reader.writer_schema
        recs = list(reader)
        dt = time.perf_counter() - t
        best_read = dt if best_read is None else min(best_read, dt)

        t = time.perf_counter()
        out = io.BytesIO()
        fastavro.writer(out, fastavro.parse_schema(schema), recs)
        dt = time.perf_counter() - t
        best_write = dt if best_write is None else min(best_write, dt)

    k = len(recs)
    print("fastavro %s: %d records" % (fastavro.__version__, k))
    print("read:  %.0f records/s" % (k / best_read))
    print("write: %.0f records/s" % (k / best_write))
    print("read+write: %.0f records/s" % (k / (best_read + best_write)))


if __name__ == "__main__":
    main()
