# modelop.score
def score(d):
    return {"x": float("nan")} if d["x"] == 2 else {"x": d["x"]}
