# Keeps a running count across records: the n-th record scored gets n.
count = None


def begin():
    global count
    count = 0


def action(datum):
    global count
    count += 1
    yield {"id": datum["id"], "n": count}
