"""Load from Triton's own Python client (tritonclient.http.aio) on a V2 `/infer` route, for
scripts/bench-service's `triton` part: PROCS processes, each CONC requests in flight on one
asyncio loop, for SECONDS; every answer is checked against the prediction expected for the
request's rows. Prints one line: requests/s, rows/s, latency p50 and p99, answers checked and
wrong. Run with the interpreter of the virtualenv scripts/setup makes for tests/v2.

  python bench-v2-client.py HOST MODEL json|binary ROWS PROCS CONC SECONDS EXPECTED.json

EXPECTED.json holds {"rows": [[4 floats], ...], "labels": [int, ...]}: the iris rows and
their predictions; request k carries ROWS rows starting at row k mod 150.
"""

import asyncio
import json
import multiprocessing as mp
import sys
import time
import urllib.request

import numpy as np


def load(host, model, mode, nrows, conc, seconds, rows, labels, out):
    import tritonclient.http.aio as http

    binary = mode == "binary"
    # tritonclient sends no Content-Type; MLServer 1.7.1 refuses a JSON body without one
    # (422), so both servers are sent it. A binary request is JSON followed by the tensors'
    # bytes, and says so with its Inference-Header-Content-Length.
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    x = np.asarray(rows, dtype=np.float64)
    want = np.asarray(labels)
    n = len(x)

    async def main():
        client = http.InferenceServerClient(url=host, conn_limit=conc)
        # The output's name (the engine names its own; MLServer's scikit-learn runtime
        # answers "predict"), from one plain JSON request first.
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": rows[0]}]}
        req = urllib.request.Request(
            f"http://{host}/v2/models/{model}/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            name = json.load(r)["outputs"][0]["name"]
        done = time.monotonic() + seconds
        lat, checked, wrong = [], [0], [0]

        async def one(k):
            at = k % n
            idx = [(at + i) % n for i in range(nrows)]
            inp = http.InferInput("x", [nrows, 4], "FP64")
            inp.set_data_from_numpy(x[idx], binary_data=binary)
            outs = [http.InferRequestedOutput(name, binary_data=binary)]
            t0 = time.monotonic()
            r = await client.infer(model, [inp], outputs=outs, request_id=str(k), headers=headers)
            lat.append(time.monotonic() - t0)
            checked[0] += 1
            got = r.as_numpy(name)
            if got is None or got.reshape(-1).astype(np.int64).tolist() != want[idx].tolist():
                wrong[0] += 1

        async def runner(j):
            k = j
            while time.monotonic() < done:
                try:
                    await one(k)
                except Exception as e:  # counted, and the first one shown
                    wrong[0] += 1
                    checked[0] += 1
                    if wrong[0] == 1:
                        print(f"error: {e}", file=sys.stderr)
                k += conc

        t0 = time.monotonic()
        await asyncio.gather(*(runner(j) for j in range(conc)))
        took = time.monotonic() - t0
        await client.close()
        out.put((checked[0], wrong[0], took, lat))

    asyncio.run(main())


def main():
    host, model, mode, nrows, procs, conc, seconds, expected = sys.argv[1:]
    nrows, procs, conc, seconds = int(nrows), int(procs), int(conc), float(seconds)
    exp = json.load(open(expected))
    out = mp.Queue()
    ps = [
        mp.Process(
            target=load,
            args=(host, model, mode, nrows, conc, seconds, exp["rows"], exp["labels"], out),
        )
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    results = [out.get() for _ in ps]
    for p in ps:
        p.join()
    checked = sum(r[0] for r in results)
    wrong = sum(r[1] for r in results)
    took = max(r[2] for r in results)
    lat = sorted(x for r in results for x in r[3])
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")
    print(
        f"{checked / took:.0f} req/s {checked * nrows / took:.0f} rows/s "
        f"p50 {pct(0.5):.2f} ms p99 {pct(0.99):.2f} ms "
        f"checked {checked} answers, {wrong} wrong"
    )


if __name__ == "__main__":
    main()
