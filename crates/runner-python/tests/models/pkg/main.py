from helpers.util import triple


def action(d):
    return triple(d)
