# Score functions of every shape; tests pick one by name.
import warnings


def double(d):
    yield {"id": d["id"], "y": d["x"] * 2}


def two(datum, slot):
    return {"slot": slot, "datum": datum}


def three(datum, slot, seqno):
    return [datum, slot, seqno]


def four(a, b, c, d):
    return a


def none():
    return 1


def many(d):
    for i in range(d):
        yield i


def returns(d):
    if d == 0:
        return None
    if d == 1:
        return [1, 2]
    return {"d": d}


def routed(d):
    yield (3, d)
    yield d
    yield ("a", 1)
    yield (5, {"deep": (1, 2)})


def fails(d):
    if d == 2:
        raise ValueError(f"bad {d}")
    if d == 3:
        warnings.warn("careful with 3")
    if d == 4:
        yield 40
        raise KeyError("half way")
    yield d
