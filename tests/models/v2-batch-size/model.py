# A record-set model answering each record with the size of the batch it came in, so a
# test can see how the deployment batched its requests.
# modelop.recordsets.0: true
# modelop.recordsets.1: true
import time

import numpy as np


# modelop.score
def score(df):
    time.sleep(0.005)  # lets concurrent requests queue up into batches
    return np.full(len(df), len(df), dtype=np.int64)
