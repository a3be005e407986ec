import ctypes
import os


def exits(d):
    if d["n"] == 3:
        os._exit(3)
    return d


def segfaults(d):
    if d["n"] == 2:
        ctypes.string_at(0)
    return d
