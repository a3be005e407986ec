import subprocess
import sys


def action(d):
    child = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
    )
    return {
        "executable": sys.executable,
        "same_prefix": child.stdout.strip() == sys.prefix,
        "argv_ok": sys.argv[0].endswith("interp.py"),
    }
