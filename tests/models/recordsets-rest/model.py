# A record-set model deployed on REST: concurrent requests arrive together as one
# DataFrame; each row must go back to its own request.
# modelop.recordsets.0: true
# modelop.recordsets.1: true
import time

import pandas as pd


# modelop.score
def score(df):
    time.sleep(0.01)  # lets requests queue up into batches
    if "agg" in df.columns and df["agg"].notna().any():
        # Rows that no longer say which record they come from.
        return pd.DataFrame({"total": [len(df), len(df)]}, index=["a", "b"])
    keep = df[df["x"] % 7 != 0].copy()  # drops some rows: their requests get no output
    keep["y"] = keep["x"] * 10
    return keep[["x", "y"]]
