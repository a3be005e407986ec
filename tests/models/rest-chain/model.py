# A model for the REST scoring chain: Avro in and out on slots 0 and 1, a yield to slot 3
# when asked, and an answer its output schema refuses when asked.
# modelop.schema.0: in.avsc
# modelop.schema.1: out.avsc
# modelop.slot.3: in-use


# modelop.score
def action(datum):
    if datum["id"] == 55:
        # Says whether x came as a float (a CSV cell typed by the slot's schema).
        yield {"id": 55, "score": 1.0 if isinstance(datum["x"], float) else 0.0}
        return
    if datum["id"] < 0:
        # The output schema wants an int id: a string is refused.
        yield {"id": "negative", "score": datum["x"]}
        return
    if datum["id"] >= 100:
        yield (3, {"side": "other slot", "id": datum["id"]})
        yield (3, {"side": "other slot again", "id": datum["id"]})
    yield {"id": datum["id"], "score": datum["x"] * 2}
