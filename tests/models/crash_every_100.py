import os

# modelop.score
def score(d):
    if d["id"] % 100 == 0:
        os._exit(7)
    yield {"id": d["id"]}
