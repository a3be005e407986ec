# A record-set model that answers each request with the size of the batch it came in, so
# a test can see how requests were batched.
# modelop.recordsets.0: true
# modelop.recordsets.1: true
import time


# modelop.score
def score(df):
    time.sleep(0.005)  # lets concurrent requests queue up into batches
    out = df.copy()
    out["batch"] = len(df)
    return out
