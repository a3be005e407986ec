# A model that takes its time, for following a job's progress: each record is
# {"n": N, "sleep": SECONDS}; {"fail": true} raises.
import time


# modelop.init
def begin():
    pass


# modelop.score
def action(record):
    if record.get("fail"):
        raise ValueError(f"record {record['n']} refused: 'fail' is set")
    time.sleep(record.get("sleep", 0))
    yield {"n": record["n"]}
