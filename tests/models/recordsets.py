# modelop.recordsets.0: true
# modelop.recordsets.1: true

# modelop.score
def score(df):
    df["y"] = df["x"] * 10
    df["batch_size"] = len(df)
    yield df
