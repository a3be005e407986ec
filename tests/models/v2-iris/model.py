# A stand-in for an iris classifier, for the Open Inference Protocol tests: each record
# holds `features` (four numbers) and maybe a `tag`; the answer is their sum, whether it
# passes 12, and the tag back. A negative first feature raises.
# modelop.schema.0: input_schema.avsc
# modelop.schema.1: output_schema.avsc


# modelop.score
def score(record):
    features = record["features"]
    if features[0] < 0:
        raise ValueError("a negative sepal length")
    total = float(sum(features))
    answer = {"label": int(total > 12.0), "score": total}
    if record.get("tag") is not None:
        answer["tag"] = record["tag"]
    yield answer
