# modelop.init
def begin():
    raise RuntimeError("cannot load weights")

# modelop.score
def score(d):
    yield d
