# modelop.schema.0: input_schema.avsc
# modelop.schema.1: output_schema.avsc

# modelop.score
def score(d):
    # x == 4 produces an output that breaks the output schema (score must be a double).
    yield {"id": d["id"], "score": "high" if d["x"] == 4 else d["x"] * 1.5}
