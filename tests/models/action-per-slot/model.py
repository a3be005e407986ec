# FastScore per-slot callbacks: slot 0 and slot 2 each have their own function.
# fastscore.action.0: on_left
# fastscore.action.2: on_right
# fastscore.slot.2: in-use


def on_left(datum):
    yield {"side": "left", "x": datum["x"]}


def on_right(datum, slot):
    yield {"side": "right", "slot": slot, "x": datum["x"]}
