# A model that answers with the names of the environment variables its worker sees, and
# prints them on init (so a job's log shows them too).
import os

# modelop.init
def begin():
    print("environment:", " ".join(sorted(os.environ)))

# modelop.score
def action(record):
    yield sorted(os.environ)
