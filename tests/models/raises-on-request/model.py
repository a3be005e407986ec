# Raises on a request asking for it; otherwise doubles x.
def action(d):
    if d.get("boom"):
        raise ValueError("boom")
    yield {"y": d["x"] * 2}
