# A model that takes 2.5 s over the record x == 2, for the slow-record warning of engine run.
import time

# modelop.score
def score(d):
    if d["x"] == 2:
        time.sleep(2.5)
    yield d
