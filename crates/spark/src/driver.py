# The driver of a batch job on Spark, run by spark-submit as its primary resource:
#   spark-submit ... driver.py JOB.json
# It loads the model, calls its init, then its score, metrics or train function, and writes
# what became of the job to the outcome file JOB.json names. The engine reads that file;
# the exit status only tells that the driver ended.
#
# Two kinds of model (docs/spark.md):
# - PySpark models in ModelOp's convention: the function takes (external_inputs,
#   external_outputs, external_model_assets), lists of asset dicts, and does its own I/O
#   through Spark.
# - Record models (a function of one record, as `engine run` scores them): the first input
#   is read as a DataFrame, each partition is scored by `engine run` on the executor
#   (the same conventions, the same results as on one machine), and the records yielded are
#   written as JSON lines under the first output's URL.
import importlib.util
import inspect
import json
import os
import site
import sys
import traceback

# The engine finds the application in the driver's output by this word.
APP_MARK = "MODEL_RUNTIME_SPARK_APP"
# How many failed records' reasons the outcome carries (all are counted).
FAILURES_KEPT = 20


class ModelError(Exception):
    """A failure with the reason the job gets, and the model's traceback when it has one."""

    def __init__(self, reason, tb=""):
        super().__init__(reason)
        self.reason = reason
        self.tb = tb


class Assets(list):
    """The asset dicts a PySpark model gets: a list, which older models read as a dict
    (`.values()`, `.items()`, `assets["name"]`) keyed by each asset's name."""

    def _name(self, a):
        return a.get("name") or a.get("filename") or a.get("fileUrl")

    def values(self):
        return list(self)

    def keys(self):
        return [self._name(a) for a in self]

    def items(self):
        return [(self._name(a), a) for a in self]

    def get(self, key, default=None):
        for a in self:
            if self._name(a) == key:
                return a
        return default

    def __getitem__(self, key):
        if isinstance(key, str):
            for a in self:
                if self._name(a) == key:
                    return a
            raise KeyError(key)
        return super().__getitem__(key)


def model_traceback(e):
    """The traceback of `e` without this driver's frames."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") == "__main__":
        tb = tb.tb_next
    if tb is None:
        return ""
    return "".join(traceback.format_exception(type(e), e, tb))


def described(e):
    text = str(e)
    name = type(e).__qualname__
    return f"{name}: {text}" if text else name


def arity(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    P = inspect.Parameter
    n = 0
    for p in sig.parameters.values():
        if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            n += 1
        elif p.kind is P.VAR_POSITIONAL:
            return 3
    return n


def load_model(job):
    work_dir = job["workDir"]
    for p in job.get("importPaths", []):
        site.addsitedir(p)
    os.chdir(work_dir)
    sys.path.insert(0, work_dir)
    path = os.path.join(work_dir, job["mainSource"])
    spec = importlib.util.spec_from_file_location("__model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__model"] = module
    # The model's functions go to executors by value, as a script's would (spark-submit runs
    # a model as `__main__`): by reference, an executor would look for a module `__model`.
    try:
        from pyspark import cloudpickle
    except ImportError:
        cloudpickle = None
    by_value = getattr(cloudpickle, "register_pickle_by_value", None)
    if by_value is not None:
        by_value(module)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ModelError(f"the model failed to load: {described(e)}", model_traceback(e))
    return module


def function(module, name, what):
    fn = getattr(module, name, None) if name else None
    if fn is None or not callable(fn):
        raise ModelError(
            f"the model has no {what} function (name it with a '# modelop.{what}' comment "
            "above its definition)"
        )
    return fn


def on_cluster(job):
    """Whether the executors may run elsewhere (a master that is not `local[...]`), so the
    model's files must be shipped to them."""
    return not job.get("master", "").startswith("local")


def model_archive(job):
    """The model's folder as a zip archive beside the job's files, made afresh (a run before
    may have left one half written)."""
    import shutil

    base = os.path.join(os.path.dirname(job["outcome"]), "model-files")
    return shutil.make_archive(base, "zip", job["workDir"])


def spark_session():
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        spark = SparkSession.builder.getOrCreate()
    sc = spark.sparkContext
    print(f"{APP_MARK} {sc.applicationId} {sc.uiWebUrl or '-'}", file=sys.stderr, flush=True)
    return spark


def executor_failure(e):
    """A Spark failure as (reason, traceback): the Python traceback an executor's error
    carries (Spark quotes it in its own), else the error's own first line."""
    text = str(e)
    at = text.rfind("Traceback (most recent call last):")
    if at >= 0:
        tb = text[at:]
        end = tb.find("\n\tat ")
        tb = (tb[:end] if end >= 0 else tb).strip()
        lines = [l.strip() for l in tb.splitlines() if l.strip()]
        # A traceback ends with its exception (which Spark may quote whole).
        reason = lines[-1] if lines else described(e)
        if len(reason) > 1 and reason[0] == reason[-1] and reason[0] in "'\"":
            reason = reason[1:-1]
        return f"a Spark task failed: {reason}", tb
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    first = lines[0] if lines else described(e)
    return f"Spark failed: {first}", text[-20000:]


# --- record models -------------------------------------------------------------------

INPUT_FORMATS = {
    "json": "json", "jsonl": "json", "ndjson": "json",
    "csv": "csv", "parquet": "parquet", "orc": "orc", "avro": "avro", "avro-binary": "avro",
    "txt": "text", "utf-8": "text",
    "text": "text",
}


def spark_url(url):
    """An S3 URL as Hadoop's S3 client reads it (s3a://)."""
    return "s3a://" + url[len("s3://"):] if url.startswith("s3://") else url


def input_format(asset):
    fmt = (asset.get("fileFormat") or "").lower()
    if not fmt:
        url = asset.get("fileUrl") or ""
        ext = url.rsplit("/", 1)[-1].rsplit(".", 1)
        fmt = ext[1].lower() if len(ext) == 2 else ""
    if fmt not in INPUT_FORMATS:
        raise ModelError(
            f"input {asset.get('fileUrl')}: cannot tell its format; give 'fileFormat' "
            f"(one of {', '.join(sorted(set(INPUT_FORMATS.values())))})"
        )
    return INPUT_FORMATS[fmt]


def json_lines(path):
    """The lines of a file of JSON lines as Arrow batches of one string column, read by
    Arrow's CSV reader as one column with neither quoting nor delimiter (JSON text holds
    no raw control character): no Python string per line."""
    import pyarrow as pa
    import pyarrow.csv as pc

    if os.path.getsize(path) == 0:
        return
    reader = pc.open_csv(
        path,
        read_options=pc.ReadOptions(column_names=["value"], block_size=16 << 20),
        parse_options=pc.ParseOptions(delimiter="\x01", quote_char=False, escape_char=False),
        convert_options=pc.ConvertOptions(
            column_types={"value": pa.string()},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    yield from reader


def score_records(spark, job):
    from pyspark import SparkFiles
    from pyspark.accumulators import AccumulatorParam

    # (failed records, the first of their error records): plain values, as tasks send
    # their updates back pickled.
    class FailuresParam(AccumulatorParam):
        def zero(self, value):
            return (0, [])

        def addInPlace(self, a, b):
            return (a[0] + b[0], (a[1] + b[1])[:FAILURES_KEPT])

    inputs, outputs = job["inputs"], job["outputs"]
    if not inputs or not inputs[0].get("fileUrl"):
        raise ModelError("a record model on Spark reads its first input by its 'fileUrl'")
    if not outputs or not outputs[0].get("fileUrl"):
        raise ModelError(
            "a record model on Spark writes its records under its first output's 'fileUrl' "
            "(a folder of part files)"
        )
    src, dest = inputs[0], spark_url(outputs[0]["fileUrl"])
    fmt = input_format(src)
    url = spark_url(src["fileUrl"])
    if fmt in ("json", "text"):
        # JSON lines go to the engine as they are: the same records as `engine run` reads.
        frame, as_lines = spark.read.text(url), True
    else:
        reader = spark.read
        if fmt == "csv":
            reader = reader.option("header", "true").option("inferSchema", "true")
        # Columns go to the engine as Parquet: no record is built on the way.
        frame, as_lines = reader.format(fmt).load(url), False

    sc = spark.sparkContext
    engine, model_dir = job["engine"], job["workDir"]
    batch_size = job["batchSize"]
    main_source = job["mainSource"]
    shipped = on_cluster(job)
    if shipped:
        # Executors elsewhere get the engine and the model's folder (as an archive, which
        # each unpacks once) through Spark.
        sc.addFile(engine)
        sc.addArchive(model_archive(job))
    counts = {k: sc.accumulator(0) for k in ("in", "out")}
    failures = sc.accumulator((0, []), FailuresParam())

    def score_partition(batches):
        """A partition's Arrow batches, scored by `engine run`: its records' outputs as
        batches of one string column, a JSON document each."""
        import shutil
        import subprocess
        import tempfile

        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        index = TaskContext.get().partitionId()
        exe, mdir = engine, model_dir
        if shipped:
            exe = SparkFiles.get(os.path.basename(engine))
            mdir = SparkFiles.get("model-files.zip")
            if not os.access(exe, os.X_OK):
                os.chmod(exe, 0o755)
        tmp = tempfile.mkdtemp(prefix="engine-spark-")
        try:
            n = 0
            if as_lines:
                inp = os.path.join(tmp, "in.jsonl")
                with open(inp, "w", encoding="utf-8") as f:
                    for b in batches:
                        lines = b.column(0).to_pylist()
                        if lines:
                            f.write("\n".join(lines))
                            f.write("\n")
                        n += len(lines)
            else:
                inp = os.path.join(tmp, "in.parquet")
                writer = None
                for b in batches:
                    if writer is None:
                        writer = pq.ParquetWriter(inp, b.schema)
                    writer.write_batch(b)
                    n += b.num_rows
                if writer is not None:
                    writer.close()
            if n == 0:
                return
            out, errs = os.path.join(tmp, "out.jsonl"), os.path.join(tmp, "errors.jsonl")
            # One worker: Spark already runs a task per core.
            cmd = [exe, "run", mdir, "--source", main_source, "--input", inp, "--output",
                   out, "--errors", errs, "--workers", "1", "--batch-size", str(batch_size)]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # 0: all scored; 1: done, some records failed (in the error file).
            if p.returncode not in (0, 1):
                raise RuntimeError(
                    f"engine run failed on partition {index} (exit {p.returncode}):\n"
                    + p.stderr[-8000:]
                )
            counts["in"].add(n)
            failed, kept = 0, []
            if os.path.exists(errs):
                with open(errs, encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            continue
                        failed += 1
                        if len(kept) < FAILURES_KEPT:
                            rec = json.loads(line)
                            rec["partition"] = index
                            kept.append(rec)
            failures.add((failed, kept))
            n_out = 0
            for batch in json_lines(out):
                n_out += batch.num_rows
                yield batch
            counts["out"].add(n_out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # One `engine run` (one init) per task slot: partitions beyond the cluster's parallelism
    # are merged, in order and without a shuffle (fewer are left as they are).
    frame = frame.coalesce(sc.defaultParallelism)
    frame.mapInArrow(score_partition, "value string").write.mode("overwrite").text(dest)
    failed, kept = failures.value
    return {
        "recordsIn": counts["in"].value,
        "recordsOut": counts["out"].value,
        "recordsFailed": failed,
        "failures": kept,
        "output": dest,
    }


# --- the job --------------------------------------------------------------------------


def run(job):
    module = load_model(job)
    fns = job["functions"]
    what = job["function"]
    init = getattr(module, fns["init"], None) if fns.get("init") else None
    if init is not None:
        try:
            if arity(init) == 0:
                init()
            else:
                raw = job.get("rawJson") or "{}"
                init({"rawJson": raw, "job": json.loads(raw)})
        except Exception as e:
            raise ModelError(f"the model's init failed: {described(e)}", model_traceback(e))
    fn = function(module, fns.get(what), what)
    n = arity(fn)
    spark = spark_session()
    if n == 1 and what == "score":
        return {"convention": "records", **score_records(spark, job)}
    if n == 1:
        raise ModelError(
            f"a {what} function of one argument needs every record on one machine: run this "
            "job without runtime spark, or take (external_inputs, external_outputs, "
            "external_model_assets)"
        )
    if on_cluster(job):
        # Executors elsewhere import the model's own modules from its folder, shipped.
        spark.sparkContext.addPyFile(model_archive(job))
    args = (Assets(job["inputs"]), Assets(job["outputs"]), Assets(job["modelAssets"]))[:n]
    try:
        r = fn(*args)
        if inspect.isgenerator(r):
            r = list(r)
    except ModelError:
        raise
    except Exception as e:
        if type(e).__name__ in ("Py4JJavaError", "PythonException", "SparkException") or type(
            e
        ).__module__.startswith(("py4j", "pyspark")):
            reason, tb = executor_failure(e)
            raise ModelError(reason, tb + "\n\n" + model_traceback(e))
        raise ModelError(f"the model's {what} failed: {described(e)}", model_traceback(e))
    return {"convention": "pyspark"}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    try:
        outcome = {"status": "ok", **run(job)}
    except ModelError as e:
        outcome = {"status": "error", "reason": e.reason, "traceback": e.tb}
    except Exception as e:
        reason, tb = executor_failure(e)
        outcome = {"status": "error", "reason": reason, "traceback": tb}
    with open(job["outcome"] + ".partial", "w", encoding="utf-8") as f:
        json.dump(outcome, f)
    os.replace(job["outcome"] + ".partial", job["outcome"])
    try:
        from pyspark.sql import SparkSession

        s = SparkSession.getActiveSession()
        if s is not None:
            s.stop()
    except Exception:
        pass


if __name__ == "__main__":
    main()
