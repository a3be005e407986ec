# A join: each output combines the records with the same id from input slots 0, 2 and 4,
# buffered until all three have arrived.
# modelop.slot.2: in-use
# modelop.slot.4: in-use

waiting = {}


# modelop.score
def join(datum, slot):
    row = waiting.setdefault(datum["id"], {})
    row[slot] = datum["v"]
    if len(row) == 3:
        del waiting[datum["id"]]
        yield {"id": datum["id"], "a": row[0], "b": row[2], "c": row[4]}
