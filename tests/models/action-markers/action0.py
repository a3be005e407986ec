# fastscore.action.0: predict
def action(datum):
    raise RuntimeError("the default name must not be used when action.0 names another")


def predict(datum):
    yield {"by": "predict", "x": datum["x"]}
