# A record-set model telling what frame it got: its columns, the dtype of column "a", and
# each row's values, so a test can check the frame whether the engine built it column by
# column (records of one shape) or row by row (records of different keys).
# modelop.recordsets.0: true
import math


# modelop.score
def action(df):
    columns = list(df.columns)
    dtype = str(df["a"].dtype)
    for label, row in df.iterrows():
        values = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        yield {"columns": columns, "a_dtype": dtype, "row": int(label), "values": values}
