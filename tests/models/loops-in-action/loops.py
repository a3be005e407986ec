# A model whose action loops forever on a record with "loop": true and echoes every other
# record: for the service's per-record timeout (jobs and deployments alike).
import os


def action(datum):
    if datum.get("loop"):
        while True:
            pass
    yield dict(datum, pid=os.getpid())
