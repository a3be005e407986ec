# The schemas describe scoring; metrics and training yield other shapes.
# modelop.schema.0: input_schema.avsc
# modelop.schema.1: output_schema.avsc


# modelop.score
def score(d):
    yield {"id": d["id"], "score": d["x"] * 1.5}


# modelop.metrics
def metrics(df):
    yield {"records": len(df), "mean_x": float(df["x"].mean()), "ids": list(df["id"])}
