import os

print("about to exit", flush=True)
os._exit(7)


def action(d):
    return d
