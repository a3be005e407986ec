seen = {}


def begin_none():
    seen["called"] = True


def begin_arg(arg):
    seen["raw"] = arg["rawJson"]
    seen["keys"] = sorted(arg)
    key = "job" if "job" in arg else "deployedModel"
    seen["name"] = arg[key]["name"]


def begin_two(a, b):
    pass


def begin_raises():
    helper()


def helper():
    raise RuntimeError("cannot open weights.pkl")


def action(d):
    return dict(seen)


def frozen(d):
    import gc

    return gc.get_freeze_count() > 0
