# A metrics function written for DataFrames, as real ModelOp metrics models are.
# modelop.metrics
def metrics(df):
    yield {"mean_x": float(df["x"].mean())}
