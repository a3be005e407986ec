#modelop.score.0:predict
# modelop.init: setup
def setup():
    global factor
    factor = 3


def predict(datum):
    yield {"by": "predict", "x": datum["x"] * factor}
