import datetime
import decimal

import numpy as np
import pandas as pd


def outputs(d):
    return {
        "np_int": np.int64(7),
        "np_float": np.float32(1.5),
        "np_bool": np.bool_(True),
        "np_array": np.arange(3),
        "np_matrix": np.ones((2, 2)),
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "date": datetime.date(2024, 1, 2),
        "time": datetime.time(1, 2, 3),
        "dec_int": decimal.Decimal("2"),
        "dec_frac": decimal.Decimal("1.25"),
        "nan": float("nan"),
        "set": {1},
        "bytes": b"\x00\xff",
        "big": 2**64 - 1,
        "tuple": (1, 2),
        "frame": pd.DataFrame({"a": [1, 2]}),
        "timestamp": pd.Timestamp("2024-01-02T03:04:05"),
    }


def bad_output(d):
    if d == 1:
        return object()
    if d == 3:
        return {"n": -(2**63) - 1}
    return d


def inputs(d):
    return {k if isinstance(k, str) else repr(k): type(v).__name__ for k, v in d.items()}
