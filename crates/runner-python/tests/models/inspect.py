# A model whose file is named like a standard library module.
import dataclasses
import inspect


def action(d):
    return {
        "stdlib_inspect": hasattr(inspect, "signature"),
        "dataclasses": hasattr(dataclasses, "dataclass"),
        "me": __name__,
    }
