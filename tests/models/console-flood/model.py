# Floods the console: one 3 MB line without a newline at init, then a 20 KB line per record.
import sys

# modelop.init
def begin():
    sys.stdout.write("x" * 3_000_000)
    sys.stdout.write("\n")
    sys.stdout.flush()

# modelop.score
def score(record):
    print("y" * 20_000, flush=True)
    yield record
