# Scores x/ (x - 3): record with x == 3 raises; prints on init; warns on x == 5.
import warnings

# modelop.init
def setup():
    print("model says hello")

# modelop.score
def score(d):
    if d["x"] == 5:
        warnings.warn("five is suspicious", UserWarning)
    yield {"x": d["x"], "y": d["x"] / (d["x"] - 3)}
