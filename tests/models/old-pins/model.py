# An old model whose exact pin no longer exists: runs with --ignore-pins / relaxRequirements.
import tabulate

# modelop.score
def score(record):
    yield {"table": tabulate.tabulate([[record["a"]]], tablefmt="plain")}
