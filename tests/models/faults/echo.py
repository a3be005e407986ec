# A deployed model that misbehaves on request, for the fault tests: it hangs, grows, forks
# a child process, or spins, as the record says; anything else is answered as is.
import os
import subprocess
import time

# modelop.init
def begin():
    pass

# modelop.score
def action(x):
    if isinstance(x, dict):
        if x.get("hang"):
            time.sleep(3600)
        if x.get("grow"):
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        if x.get("fork"):
            child = subprocess.Popen(["sleep", "3600"])
            yield {"child": child.pid}
            return
        if x.get("spin"):
            child = subprocess.Popen(["sleep", "3600"])
            with open(x["spin"], "w") as f:
                f.write("%d %d" % (os.getpid(), child.pid))
            while True:
                pass
    yield x
