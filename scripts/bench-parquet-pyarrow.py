#!/usr/bin/env python3
"""The Parquet floor for crates/codecs/benches/codecs.rs: pyarrow reading the same file into
Python dicts (`to_pylist()`, the rows a Python model would get), in records per second.

    pip install pyarrow
    python3 scripts/bench-parquet-pyarrow.py [FILE]

FILE defaults to the one the Rust bench leaves in the temp directory
(codecs-bench-1000000.parquet); if it does not exist, one of the same shape is written first.
"""
import os
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    n = int(os.environ.get("CODECS_BENCH_RECORDS", "1000000"))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        tempfile.gettempdir(), "codecs-bench-%d.parquet" % n)
    if not os.path.exists(path):
        t = pa.table({
            "id": pa.array(range(n), pa.int64()),
            "x": pa.array([i * 0.37 + 0.001 for i in range(n)]),
            "name": pa.array(["name%d" % (i % 1000) for i in range(n)]),
            "flag": pa.array([i % 2 == 0 for i in range(n)]),
        })
        pq.write_table(t, path, row_group_size=65536)
    best_whole = best_batches = None
    for _ in range(3):
        t = time.perf_counter()
        rows = pq.read_table(path).to_pylist()
        dt = time.perf_counter() - t
        best_whole = dt if best_whole is None else min(best_whole, dt)
        k = len(rows)
        del rows

        # As a streaming reader would: a batch of 1,024 rows at a time, each dropped after.
        t = time.perf_counter()
        m = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            m += len(batch.to_pylist())
        dt = time.perf_counter() - t
        best_batches = dt if best_batches is None else min(best_batches, dt)
    assert k == m
    print("pyarrow %s: %d records" % (pa.__version__, k))
    print("read_table().to_pylist(): %.0f records/s" % (k / best_whole))
    print("iter_batches(1024) + to_pylist(): %.0f records/s" % (k / best_batches))


if __name__ == "__main__":
    main()
