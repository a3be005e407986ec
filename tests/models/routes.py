# modelop.score
def score(d, slot, seqno):
    yield {"seq": seqno, "slot": slot, "x": d["x"]}
    if d["x"] % 2 == 0:
        yield (3, {"even": d["x"]})
