import os

def action(d):
    if d["x"] == 4:
        os._exit(3)
    yield d
