def action(d):
    yield {"id": d["id"], "y": d["x"] * 2}
