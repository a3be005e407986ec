# A credit-scoring model written the ModelOp way: marker comments name the functions, init
# loads the model's weights from an asset beside it, score yields one decision per
# application, metrics compares decisions with known outcomes.
#
# modelop.schema.0: application_schema.avsc
import json
import math

WEIGHTS = None
THRESHOLD = 0.5


# modelop.init
def begin(job=None):
    global WEIGHTS, THRESHOLD
    with open("weights.json") as f:
        WEIGHTS = json.load(f)
    if job:
        params = json.loads(job["rawJson"]).get("jobParameters", {})
        THRESHOLD = float(params.get("threshold", THRESHOLD))
    print(f"loaded {len(WEIGHTS['coefficients'])} coefficients, threshold {THRESHOLD}")


def probability(application):
    z = WEIGHTS["intercept"]
    for name, coef in WEIGHTS["coefficients"].items():
        z += coef * float(application[name])
    return 1.0 / (1.0 + math.exp(-z))


# modelop.score
def score(application):
    p = probability(application)
    yield {
        "id": application["id"],
        "probability_of_default": round(p, 4),
        "decision": "decline" if p >= THRESHOLD else "approve",
    }


# modelop.metrics
def metrics(df):
    rows = df.to_dict("records")
    tp = fp = tn = fn = 0
    for row in rows:
        predicted = probability(row) >= THRESHOLD
        actual = bool(row["defaulted"])
        tp += predicted and actual
        fp += predicted and not actual
        tn += not predicted and not actual
        fn += not predicted and actual
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    yield {
        "records": len(rows),
        "accuracy": (tp + tn) / len(rows) if rows else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_matrix": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }
