# A model that pins an older `six` than the engine's base environment has: it must see its own.
import six

# modelop.score
def score(d):
    yield {"six": six.__version__, "x": d["x"]}
