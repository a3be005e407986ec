# The schema files these comments name were not shipped with the model.
# modelop.schema.0: input_schema.avsc
# modelop.schema.1: output_schema.avsc


# modelop.score
def score(d):
    yield {"x": d["x"], "y": d["x"] * 2}
