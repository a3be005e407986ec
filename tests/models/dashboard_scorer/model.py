# A small fraud scorer for the dashboard's browser test (crates/engine-bin/tests/dashboard.rs):
# deployed with a schema on each slot, scored under load through the REST routes and a
# REST stream. An amount below zero is refused, so the failures chart has something to show.
# modelop.schema.0: transaction.avsc
# modelop.schema.1: scored_transaction.avsc
import math


# modelop.init
def begin():
    print("fraud scorer ready")


# modelop.score
def action(t):
    if t["amount"] < 0:
        raise ValueError(f"transaction {t['id']}: a negative amount")
    score = 1.0 / (1.0 + math.exp(-(t["amount"] - 500.0) / 150.0))
    yield {"id": t["id"], "score": round(score, 4), "flagged": score > 0.9}
