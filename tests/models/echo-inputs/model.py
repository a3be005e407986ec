# Echoes each record with the Python type it arrived as, for the input decoding tests.

# modelop.score
def score(record):
    yield {"type": type(record).__name__, "value": record}
