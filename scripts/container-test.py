"""The container image, run with podman and checked from the host (scripts/test-container
builds the image and runs this). Each check raises on failure; the script exits non-zero.

What it proves: the image refuses to start without a token; it runs read-only (as the
Kubernetes manifests run it) with a named volume and the token from a mounted secret,
as the non-root user; health, readiness and the image's HEALTHCHECK; the example model
deployed and scored over REST from the host, answering as `engine run` does; a batch job
whose input and output are files on the volume; a metrics job (pandas) and an R model's
job; a model whose requirements.txt needs a package from PyPI, its environment built
inside the container; JSON logs; SIGTERM stopping it within podman's grace with exit 0;
a restart finding the job history and the deployment again; the deploy/ manifests.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "credit-score")
UID = 10001
RUN_ID = f"{os.getpid()}"
NAME = f"model-runtime-test-{RUN_ID}"
VOLUME = f"model-runtime-test-{RUN_ID}"
STOP_TIMEOUT = 10  # podman's grace before SIGKILL; the image's engine grace is 8 s


def log(msg):
    print(f"== container-test: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def podman(*args, check_rc=True, capture=True, timeout=600):
    r = subprocess.run(
        ["podman", *args],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        timeout=timeout,
    )
    if check_rc and r.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}"
        )
    return r


class Http:
    def __init__(self, url, token=None):
        self.url = url
        self.token = token

    def call(self, method, path, body=None, timeout=30):
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method, path, body=None):
        status, raw = self.call(method, path, body)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def wait_health(url, within=60.0):
    """Seconds until GET /1/health answers 200."""
    started = time.monotonic()
    probe = Http(url)
    while True:
        try:
            status, _ = probe.call("GET", "/1/health", timeout=2)
            if status == 200:
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        check(time.monotonic() - started < within, f"{url}/1/health not 200 within {within} s")
        time.sleep(0.02)


def host_port(name):
    out = podman("port", name, "8003/tcp").stdout.strip().splitlines()
    check(out, f"no published port for {name}")
    return out[0].strip()


def cli(engine, args, token, check_rc=True, stdin=None):
    env = dict(os.environ, ENGINE_TOKEN=token)
    env.pop("ENGINE_TOKEN_FILE", None)
    r = subprocess.run(
        [engine, *args], env=env, text=True, input=stdin,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600,
    )
    if check_rc and r.returncode != 0:
        raise AssertionError(f"engine {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def run_args(image, token_file):
    """The engine as the Kubernetes manifests run it: read-only root, a writable /tmp (a
    tmpfs, podman's --read-only default), the data dir on a named volume, the token from a mounted secret file (bound
    read-only, readable by the engine's user alone: podman 4.3's --secret cannot be
    combined with --read-only)."""
    return [
        "run", "-d", "--name", NAME,
        "--read-only",
        "-p", "127.0.0.1::8003",
        "-v", f"{VOLUME}:/var/lib/engine",
        "-v", f"{token_file}:/run/secrets/engine-token:ro",
        "-e", "ENGINE_TOKEN_FILE=/run/secrets/engine-token",
        image,
    ]


def expected_scores(engine):
    out = subprocess.run(
        [engine, "run", os.path.join(EXAMPLE, "model"), "--input",
         os.path.join(EXAMPLE, "applications.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True, timeout=120,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def credit_score_document(input_url, output_url):
    model_dir = os.path.join(EXAMPLE, "model")

    def read(name):
        with open(os.path.join(model_dir, name)) as f:
            return f.read()

    return {
        "jobType": "MODEL_BATCH_JOB",
        "name": "scores on the volume",
        "model": {"storedModel": {"modelMetaData": {"name": "credit-score"}, "modelAssets": [
            {"name": "model.py", "assetType": "SOURCE_CODE", "primaryModelSource": True,
             "sourceCode": read("model.py")},
            {"name": "weights.json", "assetType": "FILE", "fileContentString": read("weights.json")},
            {"name": "application_schema.avsc", "assetType": "FILE",
             "fileContentString": read("application_schema.avsc")},
        ]}},
        "inputData": [{"assetType": "EXTERNAL_FILE", "name": "applications.jsonl", "fileUrl": input_url}],
        "outputData": [{"assetType": "EXTERNAL_FILE", "name": "scored.jsonl", "fileUrl": output_url}],
    }


def wait_job(api, job_id, within=180):
    deadline = time.monotonic() + within
    while True:
        status, job = api.json("GET", f"/api/jobs/{job_id}?messages=false")
        check(status == 200, f"GET job {job_id}: {status} {job}")
        if job.get("jobStatus") in ("COMPLETE", "ERROR", "CANCELLED"):
            return job
        check(time.monotonic() < deadline, f"job {job_id} still {job.get('jobStatus')}")
        time.sleep(0.2)


def check_manifests():
    """deploy/: every document parses, and says what docs/container.md says it does."""
    try:
        import yaml
    except ImportError:
        raise AssertionError("PyYAML is missing (scripts/setup installs it with schemathesis)")
    kube = os.path.join(REPO, "deploy", "kubernetes")
    docs = {}
    for name in sorted(os.listdir(kube)):
        with open(os.path.join(kube, name)) as f:
            for d in yaml.safe_load_all(f):
                check(isinstance(d, dict) and "kind" in d, f"{name}: not a manifest: {d!r}")
                docs[d["kind"]] = d
    kustomization = docs.pop("Kustomization")
    listed = {r for r in kustomization["resources"]}
    check(listed == {n for n in os.listdir(kube) if n != "kustomization.yaml"},
          f"kustomization.yaml lists {sorted(listed)}")
    check(set(docs) == {"Deployment", "Service", "PersistentVolumeClaim", "Secret", "ConfigMap"},
          f"kinds: {sorted(docs)}")
    dep = docs["Deployment"]
    check(dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate",
          "one replica, replaced by Recreate (the data folder is locked)")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    check(pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == UID,
          "non-root pod")
    check(c["securityContext"]["readOnlyRootFilesystem"] is True, "read-only root")
    check(c["livenessProbe"]["httpGet"]["path"] == "/1/health", "liveness on health")
    check(c["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness on /ready")
    check(c["startupProbe"]["httpGet"]["path"] == "/1/health", "startup on health")
    check("limits" in c["resources"] and "requests" in c["resources"], "resources")
    env = {e["name"]: e.get("value") for e in c["env"]}
    check(env.get("ENGINE_TOKEN_FILE", "").startswith("/run/secrets/"), "token from the secret")
    grace_ms = int(env["ENGINE_SHUTDOWN_GRACE_MS"])
    check(grace_ms < pod["terminationGracePeriodSeconds"] * 1000, "the engine's grace fits the pod's")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(volumes[mounts["/var/lib/engine"]]["persistentVolumeClaim"]["claimName"]
          == docs["PersistentVolumeClaim"]["metadata"]["name"], "data dir on the claim")
    check("emptyDir" in volumes[mounts["/tmp"]], "/tmp writable")
    secret_dir = os.path.dirname(env["ENGINE_TOKEN_FILE"])
    check(volumes[mounts[secret_dir]]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"],
          "token volume is the Secret")
    check(" " in docs["Secret"]["stringData"]["token"], "the placeholder token is one the engine refuses")
    json.loads(docs["ConfigMap"]["data"]["application.json"])
    svc = docs["Service"]
    check(svc["spec"]["ports"][0]["port"] == 8003 and svc["spec"]["selector"]
          == dep["spec"]["template"]["metadata"]["labels"], "service selects the pod")
    with open(os.path.join(REPO, "deploy", "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    svc = compose["services"]["engine"]
    check("8003:8003" in svc["ports"] and "engine-data:/var/lib/engine" in svc["volumes"], "compose")
    check(svc["environment"]["ENGINE_TOKEN"].startswith("${ENGINE_TOKEN:?"), "compose requires a token")
    return docs["Secret"]["stringData"]["token"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--cli", required=True, help="the host's release engine (the CLI client)")
    a = p.parse_args()
    engine = a.cli
    check(os.geteuid() == 0, "run as root, with rootful podman: the test writes into the "
          "volume as the engine's uid")
    work = tempfile.mkdtemp(prefix="container-test-")
    figures = {}
    try:
        placeholder = check_manifests()
        log("deploy/ manifests parse and hold their promises")

        size = int(podman("image", "inspect", "--format", "{{.Size}}", a.image).stdout.strip())
        figures["image size"] = f"{size / 1e6:.0f} MB"
        check(size < 600e6, f"the image is {size / 1e6:.0f} MB, over the 600 MB target")
        user = podman("image", "inspect", "--format", "{{.Config.User}}", a.image).stdout.strip()
        check(user == f"{UID}:{UID}", f"image user {user!r}")
        health = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", a.image).stdout
        check("health" in health, f"HEALTHCHECK: {health}")

        # No token: refused, saying how to give one (and the manifests' placeholder too).
        r = podman("run", "--rm", a.image, check_rc=False, timeout=60)
        check(r.returncode == 64, f"without a token: exit {r.returncode}: {r.stderr}")
        check("no token is configured" in r.stderr and "ENGINE_TOKEN" in r.stderr, r.stderr)
        r = podman("run", "--rm", "-e", f"ENGINE_TOKEN={placeholder}", a.image, check_rc=False, timeout=60)
        check(r.returncode == 64 and "without spaces" in r.stderr, f"placeholder token: {r.stderr}")
        log("no token: the engine refuses to start (exit 64), naming ENGINE_TOKEN")

        # The Python libraries and R the image promises.
        r = podman("run", "--rm", "--entrypoint", "python3", a.image, "-c",
                   "import numpy, pandas, sklearn, scipy; print(numpy.__version__, pandas.__version__, sklearn.__version__)")
        log(f"numpy, pandas, scikit-learn: {r.stdout.strip()}")

        token = cli(engine, ["token"], "x" * 16).stdout.strip()
        token_file = os.path.join(work, "token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chown(token_file, UID, UID)
        os.chmod(token_file, 0o400)
        podman("volume", "create", VOLUME)

        started = time.monotonic()
        podman(*run_args(a.image, token_file))
        url = "http://" + host_port(NAME)
        wait_health(url)
        figures["podman run to health"] = f"{time.monotonic() - started:.2f} s"
        api = Http(url, token)
        anonymous = Http(url)
        status, h = anonymous.json("GET", "/1/health")
        check(status == 200 and h["id"], f"health {status} {h}")
        status, r = anonymous.json("GET", "/ready")
        check(status == 503 and r["reason"] == "no model is deployed", f"ready {status} {r}")
        check(anonymous.json("GET", "/api/engine")[0] == 401, "the API needs the token")
        status, details = api.json("GET", "/api/engine")
        check(status == 200, f"/api/engine {status}")
        langs = {pl["language"]: pl for pl in details["platforms"]}
        check(langs["python"]["version"].startswith("3.11"), f"python platform {langs.get('python')}")
        libs = " ".join(langs["python"]["libraries"])
        for lib in ("numpy==", "pandas==", "scikit-learn==", "uv=="):
            check(lib in libs, f"{lib} not among the engine's Python libraries: {libs}")
        check("jsonlite==" in " ".join(langs["R"]["libraries"]), f"R platform {langs.get('R')}")
        log(f"health 200, ready 503 (no model), Python {langs['python']['version']}, R {langs['R']['version']}")

        # Who runs: PID 1 is tini, the engine its child, both the non-root user.
        top = podman("top", NAME, "user", "pid", "comm").stdout.splitlines()[1:]
        procs = [line.split() for line in top if line.strip()]
        check(any(pr[2] == "engine" for pr in procs), f"no engine process: {top}")
        check(all(pr[0] == "engine" for pr in procs), f"a process not run as engine ({UID}): {top}")
        check([pr[2] for pr in procs if pr[1] == "1"] == ["tini"], f"PID 1: {top}")
        check(podman("exec", NAME, "id", "-u").stdout.strip() == str(UID), "exec user")
        r = podman("exec", NAME, "touch", "/usr/local/bin/x", check_rc=False)
        check(r.returncode != 0, "the root file system is read-only")
        log(f"processes run as uid {UID} ({', '.join(pr[2] for pr in procs)}); root file system read-only")

        # A model whose requirements need a package from PyPI: its environment is built
        # inside the container (uv), into the volume.
        req = os.path.join(work, "tabulated")
        os.makedirs(req)
        with open(os.path.join(req, "requirements.txt"), "w") as f:
            f.write("tabulate==0.9.0\n")
        with open(os.path.join(req, "model.py"), "w") as f:
            f.write("import tabulate\n\n# modelop.score\ndef action(x):\n"
                    "    yield {'table': tabulate.tabulate([[x['a'], x['b']]], tablefmt='plain'),\n"
                    "           'version': tabulate.__version__}\n")
        started = time.monotonic()
        cli(engine, ["deploy", req, "--name", "tabulated", "--engine", url], token)
        figures["environment built in the container (tabulate, uv)"] = f"{time.monotonic() - started:.1f} s"
        status, raw = api.call("POST", "/api/roundtrip/0/1", {"a": 1, "b": "two"})
        check(status == 200, f"tabulated: {status} {raw!r}")
        answer = json.loads(raw)
        check(answer == {"table": "1  two", "version": "0.9.0"}, f"tabulated answered {answer}")
        log("a model needing tabulate==0.9.0: environment built inside the container, scored")

        # The example model, deployed from the host and scored over REST from the host.
        expected = expected_scores(engine)
        check(len(expected) == 20, f"engine run gave {len(expected)} scores")
        cli(engine, ["deploy", os.path.join(EXAMPLE, "model"), "--name", "credit-score",
                     "--engine", url], token)
        status, r = anonymous.json("GET", "/ready")
        check(status == 200 and r["model"] == "credit-score", f"ready {status} {r}")
        with open(os.path.join(EXAMPLE, "applications.jsonl")) as f:
            applications = [json.loads(line) for line in f if line.strip()]
        for application, want in zip(applications, expected):
            status, raw = api.call("POST", "/api/roundtrip/0/1", application)
            check(status == 200 and json.loads(raw) == want, f"scored {application}: {status} {raw!r}, want {want}")
        log(f"credit-score deployed from the host, {len(applications)} records scored over REST as engine run scores them")
        r = podman("healthcheck", "run", NAME, check_rc=False)
        check(r.returncode == 0, f"HEALTHCHECK: {r.returncode} {r.stdout}{r.stderr}")
        r = podman("exec", NAME, "engine", "health", "--ready")
        check(r.stdout.strip() == "ready: model credit-score, 1 worker(s)", r.stdout)
        log("the image's HEALTHCHECK passes; engine health --ready inside says ready")

        # A batch job whose input and output are files on the volume.
        mountpoint = podman("volume", "inspect", "--format", "{{.Mountpoint}}", VOLUME).stdout.strip()
        os.makedirs(os.path.join(mountpoint, "in"), exist_ok=True)
        shutil.copy(os.path.join(EXAMPLE, "applications.jsonl"), os.path.join(mountpoint, "in"))
        for d in ("in", "in/applications.jsonl"):
            os.chown(os.path.join(mountpoint, d), UID, UID)
        status, job = api.json("POST", "/api/jobs", credit_score_document(
            "file:///var/lib/engine/in/applications.jsonl",
            "file:///var/lib/engine/out/scored.jsonl"))
        check(status == 201, f"job on the volume: {status} {job}")
        volume_job = job["id"]
        job = wait_job(api, volume_job)
        check(job["jobStatus"] == "COMPLETE" and job["jobResult"] == "SUCCESS", f"job {job}")
        with open(os.path.join(mountpoint, "out", "scored.jsonl")) as f:
            written = [json.loads(line) for line in f if line.strip()]
        check(written == expected, f"the job wrote {written[:2]}..., want {expected[:2]}...")
        log("a batch job read its input from the volume and wrote its output there")

        # A metrics job (pandas DataFrames) and an R model's job, from the CLI.
        r = cli(engine, ["job", "create", "testjob", os.path.join(EXAMPLE, "model"),
                         os.path.join(EXAMPLE, "labeled.csv"), "-", "--wait", "--engine", url], token)
        metrics_job = next(line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip())
        r = cli(engine, ["job", "result", metrics_job, "--engine", url], token)
        check("accuracy" in r.stdout or "precision" in r.stdout, f"metrics: {r.stdout}")
        r_in = os.path.join(work, "ids.jsonl")
        with open(r_in, "w") as f:
            f.write("".join(json.dumps({"id": i}) + "\n" for i in range(5)))
        r = cli(engine, ["job", "create", "batchjob", os.path.join(REPO, "tests", "models", "counter-r", "counter.R"),
                         r_in, "-", "--wait", "--engine", url], token)
        r_job = next(line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip())
        r = cli(engine, ["job", "result", r_job, "--engine", url], token)
        counts = [json.loads(line)["n"] for line in r.stdout.splitlines() if line.strip()]
        check(counts == [1, 2, 3, 4, 5], f"R model: {r.stdout}")
        log("a metrics job (pandas) and an R model's job ran in the container")

        # Logs: the engine's own lines on stderr as JSON objects.
        logs = podman("logs", NAME)
        check("engine listening on http://0.0.0.0:8003" in logs.stdout, f"stdout: {logs.stdout}")
        lines = [line for line in logs.stderr.splitlines() if line.strip()]
        check(lines, "the engine logged nothing")
        for line in lines:
            entry = json.loads(line)
            check({"timestamp", "level"} <= set(entry), f"log line {line}")
        log(f"{len(lines)} log lines on stderr, each a JSON object")

        # SIGTERM: the engine stops within podman's grace (no SIGKILL), exit 0.
        started = time.monotonic()
        podman("stop", "-t", str(STOP_TIMEOUT), NAME)
        figures["podman stop (SIGTERM) with a model deployed"] = f"{time.monotonic() - started:.2f} s"
        code = podman("inspect", "--format", "{{.State.ExitCode}}", NAME).stdout.strip()
        check(code == "0", f"exit code after SIGTERM: {code} (137: killed after the grace)")
        log("SIGTERM: stopped within the grace, exit 0")

        # Restart: the job history and the deployment come back from the volume.
        started = time.monotonic()
        podman("start", NAME)
        url = "http://" + host_port(NAME)
        wait_health(url)
        figures["podman start to health, model redeployed"] = f"{time.monotonic() - started:.2f} s"
        api = Http(url, token)
        status, jobs = api.json("GET", "/api/jobs")
        ids = {j["id"] for j in jobs["jobs"]}
        check({volume_job, metrics_job, r_job} <= ids, f"jobs after restart: {sorted(ids)}")
        status, d = api.json("GET", "/api/deployment")
        check(status == 200 and d["name"] == "credit-score", f"deployment after restart: {status} {d}")
        status, r = Http(url).json("GET", "/ready")
        check(status == 200, f"ready after restart: {status} {r}")
        status, raw = api.call("POST", "/api/roundtrip/0/1", applications[0])
        check(status == 200 and json.loads(raw) == expected[0], f"after restart: {status} {raw!r}")
        log("restarted: job history and deployment found again, scoring")

        # SIGTERM while a job's model is busy: the engine stops it at its grace (8 s in the
        # image), marks the job interrupted and exits 0 before podman's SIGKILL (10 s).
        slow = {
            "jobType": "MODEL_BATCH_JOB", "name": "busy at the stop",
            "model": {"storedModel": {"modelAssets": [{
                "name": "slow.py", "assetType": "SOURCE_CODE", "primaryModelSource": True,
                "sourceCode": "import time\n# modelop.score\ndef action(x):\n    time.sleep(600)\n    yield x\n",
            }]}},
            "inputData": [{"assetType": "FILE", "name": "in.jsonl", "fileContentString": "1\n"}],
        }
        status, job = api.json("POST", "/api/jobs", slow)
        check(status == 201, f"slow job: {status} {job}")
        slow_job = job["id"]
        deadline = time.monotonic() + 60
        while api.json("GET", f"/api/jobs/{slow_job}?messages=false")[1]["jobStatus"] != "RUNNING":
            check(time.monotonic() < deadline, "the slow job never ran")
            time.sleep(0.1)
        time.sleep(1)
        started = time.monotonic()
        podman("stop", "-t", str(STOP_TIMEOUT), NAME)
        figures["podman stop (SIGTERM) with a job's model busy"] = f"{time.monotonic() - started:.2f} s"
        code = podman("inspect", "--format", "{{.State.ExitCode}}", NAME).stdout.strip()
        check(code == "0", f"exit code after SIGTERM with a busy job: {code}")
        podman("start", NAME)
        url = "http://" + host_port(NAME)
        wait_health(url)
        api = Http(url, token)
        status, job = api.json("GET", f"/api/jobs/{slow_job}?messages=false")
        check(job["jobStatus"] == "ERROR" and job["interrupted"] is True, f"the busy job: {job}")
        log("SIGTERM with a job's model busy: stopped at the engine's grace, exit 0, the job interrupted (re-runnable)")

        # Start-up time of fresh containers (an empty volume each), for the record.
        times = []
        for i in range(3):
            name = f"{NAME}-start{i}"
            started = time.monotonic()
            podman("run", "-d", "--name", name, "-p", "127.0.0.1::8003", "-e", f"ENGINE_TOKEN={token}", a.image)
            try:
                times.append(wait_health("http://" + host_port(name)))
                times[-1] = time.monotonic() - started
            finally:
                podman("rm", "-f", "-t", "0", name, check_rc=False)
        figures["podman run to health, fresh (3 runs)"] = ", ".join(f"{t:.2f} s" for t in times)
    finally:
        podman("rm", "-f", "-t", "0", NAME, check_rc=False)
        podman("volume", "rm", "-f", VOLUME, check_rc=False)
        shutil.rmtree(work, ignore_errors=True)
    for k, v in figures.items():
        log(f"{k}: {v}")
    log("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"container-test: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
