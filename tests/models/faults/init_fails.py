# A model whose init raises, for the failed-deployment tests.
# modelop.init
def begin():
    load_weights("/nowhere/weights.bin")

def load_weights(path):
    raise RuntimeError("cannot load weights from " + path)

# modelop.score
def action(x):
    yield x
