# The Python half of the runner, compiled once into the worker as module `__runner`.
# The per-record loop lives here, in bytecode, because a Python loop calling `score` costs
# less than a call from Rust per record; values are built and read back in Rust.
import faulthandler
import gc
import importlib.machinery
import importlib.util
import inspect
import json
import mmap
import os
import site
import sys
import traceback
import types
import warnings
from array import array

_Gen = types.GeneratorType


class Failure:
    """An exception raised by model code, formatted without the runner's own frame."""

    __slots__ = ("message", "traceback")

    def __init__(self, e, tb=None):
        text = str(e)
        name = type(e).__qualname__
        self.message = f"{name}: {text}" if text else name
        # An exception fetched by the runner may carry its traceback apart from itself.
        if tb is None:
            tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_globals.get("__name__") == "__runner":
            tb = tb.tb_next
        if tb is None:
            # Raised by the runner itself (a conversion): no model code to show.
            self.traceback = ""
        else:
            self.traceback = "".join(traceback.format_exception(type(e), e, tb))


class _NotFromWorkDir:
    """Finds a module named like the main source anywhere but the working directory, so a
    model file called `inspect.py` cannot stand in for the standard library's `inspect`."""

    def __init__(self, name, work_dir):
        self.name = name
        self.work_dir = work_dir

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or path is not None:
            return None
        others = [p for p in sys.path if os.path.abspath(p or ".") != self.work_dir]
        return importlib.machinery.PathFinder.find_spec(fullname, others)


def _interpreter():
    base = sys.base_exec_prefix
    for name in (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"):
        candidate = os.path.join(base, "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    return ""


def _norm(path):
    return os.path.normcase(os.path.abspath(path or "."))


def prepare(work_dir, main_source, import_paths, progress_fd):
    """Sets the process up for the model; returns the progress words."""
    work_dir = os.path.abspath(work_dir)
    os.chdir(work_dir)
    sys.path.insert(0, work_dir)
    # A model environment's folders (with what their .pth files add) go before the base
    # site-packages, so the versions it pins win, yet after the standard library.
    base_sites = {_norm(x) for x in site.getsitepackages() + [site.getusersitepackages()]}
    for p in import_paths:
        before = list(sys.path)
        site.addsitedir(p)
        known = set(before)
        added = [x for x in sys.path if x not in known]
        at = next((i for i, x in enumerate(before) if _norm(x) in base_sites), len(before))
        sys.path[:] = before[:at] + added + before[at:]
    exe = _interpreter()
    if exe:
        sys.executable = exe
        sys._base_executable = exe
    sys.argv = [os.path.join(work_dir, main_source)]
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    warnings.simplefilter("error", UserWarning)
    # A crash in native code prints the Python stack to stderr, which reaches the job's log.
    faulthandler.enable()
    stem = os.path.splitext(os.path.basename(main_source))[0]
    if stem in sys.stdlib_module_names:
        finders = sys.meta_path
        at = next(
            (i for i, f in enumerate(finders) if f is importlib.machinery.PathFinder),
            len(finders),
        )
        finders.insert(at, _NotFromWorkDir(stem, work_dir))
    if progress_fd is not None:
        page = mmap.mmap(progress_fd, 4096)
    else:
        page = bytearray(16)
    return memoryview(page).cast("Q")


def load_module(work_dir, main_source):
    path = os.path.join(os.path.abspath(work_dir), main_source)
    spec = importlib.util.spec_from_file_location("__model", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["__model"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["__model"]
        raise
    return module


def describe(fn):
    """(positional parameter count, has *args, printable signature) of a callable."""
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (-1, True, f"{name}(...)")
    n = 0
    varargs = False
    P = inspect.Parameter
    for p in sig.parameters.values():
        if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            n += 1
        elif p.kind is P.VAR_POSITIONAL:
            varargs = True
    return (n, varargs, f"{name}{sig}")


def call_init(fn, arity, key, raw_json):
    if fn is not None:
        if arity == 0:
            fn()
        else:
            fn({"rawJson": raw_json, key: json.loads(raw_json)})
    settle()


def settle():
    """Once the model is loaded and initialised: collect the garbage its import and init
    left, then freeze what remains (modules, the model's own state) out of the cyclic
    collector's reach. Scoring allocates many short-lived containers; without this, every
    full collection walks the hundred thousand objects pandas and scikit-learn keep alive,
    a pause in the middle of some batch (docs/python-models.md)."""
    gc.collect()
    gc.freeze()


# One loop per score arity, generated from one template so the hot loop has no branch on
# arity. Each result is None (no output), a list (a generator's outputs), a 1-tuple (one
# returned value) or a Failure.
_LOOP = """
def run(data, slots, seqnos, progress, score, Failure, _Gen, offset=0):
    out = []
    append = out.append
    i = offset
    for {names} in {source}:
        i += 1
        progress[1] = i
        try:
            r = score({args})
            if r.__class__ is _Gen:
                r = list(r)
            elif r is not None:
                r = (r,)
            append(r)
        except Exception as e:
            append(Failure(e))
    return out
"""


def run_recordset(score, arity, data, slot, seqno, Failure, _Gen):
    """Scores a whole batch at once (`recordsets.<slot>: true`): the model gets one pandas
    DataFrame of the batch (a list of records without pandas), indexed 0..n-1 by the
    records' positions in the batch. Every output that is a DataFrame, or a `(slot,
    DataFrame)` tuple, becomes one output record per row, and each row belongs to the
    record its index label names (so a deployment answers each request with its own rows);
    a column of answers (a pandas Series or a numpy array as long as the batch, as
    `predict` returns) gives each record its own element; other outputs belong to the
    batch's first record. Returns one list of outputs per record, or a Failure for the
    whole batch. `data` is the records, or `(columns, n)` when they all have the same
    keys: a dict of one list per key, the frame built from it column by column."""
    columns = data.__class__ is tuple
    n = data[1] if columns else len(data)
    try:
        frame = frame_of_columns(data[0]) if columns else make_frame(data)
        args = (frame, slot, seqno)[:arity]
        r = score(*args)
        if r.__class__ is _Gen:
            r = list(r)
        elif r is None:
            r = []
        else:
            r = [r]
        if len(r) == 1:
            # The common cases, one answer for the batch:
            routed, o = route_of(r[0])
            if _pandas and isinstance(o, _pandas.DataFrame):
                # a frame of answers, handed over column by column;
                if unique_labels(o):
                    return Columns(routed, row_owners(o, n), o)
            elif n and is_column(o, n):
                # a column of answers (what `predict` returns): each record's outcome is
                # its element, as a 1-tuple.
                if routed is None:
                    return [(x,) for x in o.tolist()]
                return [((routed, x),) for x in o.tolist()]
        per = [[] for _ in range(n)]
        for o in r:
            routed, o = route_of(o)
            if _pandas and isinstance(o, _pandas.DataFrame):
                owners = row_owners(o, n)
                for k, row in zip(owners, frame_rows(o)):
                    per[k].append(row if routed is None else (routed, row))
            elif n and is_column(o, n):
                for k, x in enumerate(o.tolist()):
                    per[k].append(x if routed is None else (routed, x))
            elif n:
                per[0].append(o if routed is None else (routed, o))
        return per
    except Exception as e:
        return Failure(e)


class Columns:
    """A DataFrame answer as Rust reads it, column by column: `owners` the batch position
    of each row (`row_owners`; a number k when row i is record i's, for the first k
    records), `keys` the column labels, `columns` each column's values:
    `(typecode, bytes)` for a float64 ('d') or int64 ('q') column, its `tolist()` for
    others. Each row becomes one output record of its owner, to `slot` (None: slot 1)."""

    __slots__ = ("slot", "owners", "keys", "columns")

    def __init__(self, slot, owners, frame):
        self.slot = slot
        self.owners = owners.stop if owners.__class__ is range else owners
        self.keys = frame.columns.tolist()
        self.columns = [_column(s) for _, s in frame.items()]


def unique_labels(frame):
    keys = frame.columns.tolist()
    return len(set(keys)) == len(keys)


def _column(series):
    kind = series.dtype.__class__.__module__
    code = series.dtype.str if kind.startswith("numpy") else ""
    if code == "<f8":
        return ("d", series.to_numpy().tobytes())
    if code == "<i8":
        return ("q", series.to_numpy().tobytes())
    return series.tolist()


def route_of(o):
    """`(slot, output)` for an output routed to a slot (`(3, x)`), `(None, o)` otherwise."""
    if o.__class__ is tuple and len(o) == 2 and o[0].__class__ is int:
        return o
    return None, o


def is_column(o, n):
    """A pandas Series, or a numpy array of at least one dimension, with one element per
    record of the batch."""
    kind = o.__class__.__module__.split(".", 1)[0]
    if kind == "numpy" and o.__class__.__name__ == "ndarray":
        return o.ndim >= 1 and len(o) == n
    if kind == "pandas" and o.__class__.__name__ == "Series":
        return len(o) == n
    return False


def frame_rows(frame):
    """The rows of a DataFrame as dicts keyed by its column labels, with Python values (as
    `to_dict("records")` gives them): each column converted at once by `tolist()`, then
    zipped, at less than half the cost of pandas' row by row boxing."""
    keys = frame.columns.tolist()
    columns = [s.tolist() for _, s in frame.items()]
    return [dict(zip(keys, row)) for row in zip(*columns)] if columns else [{} for _ in range(len(frame))]


def row_owners(frame, n):
    """The batch position each row of an output DataFrame comes from: its index label when
    every label is a position of the batch, else its own position when the frame has as
    many rows as the batch. Otherwise the rows cannot be told apart: ValueError."""
    index = frame.index
    if (
        index.__class__ is _pandas.RangeIndex
        and index.start == 0
        and index.step == 1
        and index.stop <= n
    ):
        # The input's own index, or its first rows: each row is its record's.
        return range(index.stop)
    labels = index.tolist()
    if all(l.__class__ is int and 0 <= l < n for l in labels):
        return labels
    if len(labels) == n:
        return range(n)
    raise ValueError(
        f"the model returned a DataFrame of {len(labels)} rows for a batch of {n} records "
        "and its index does not say which record each row comes from: keep the input "
        "DataFrame's index (0..n-1, the records' positions) on the rows it returns"
    )


def make_loop(arity):
    names, source, args = {
        1: ("d", "data", "d"),
        2: ("d, s", "zip(data, slots)", "d, s"),
        3: ("d, s, n", "zip(data, slots, seqnos)", "d, s, n"),
    }[arity]
    scope = {"__name__": "__runner"}
    exec(_LOOP.format(names=names, source=source, args=args), scope)
    return scope["run"]


def call_all(fn, arity, frames):
    """Calls metrics or train; returns its outputs as a list."""
    r = fn() if arity == 0 else fn(*frames)
    if r.__class__ is _Gen:
        return list(r)
    if r is None:
        return []
    return [r]


_pandas = None


def load_pandas():
    """Imports pandas once: `_pandas` is the module, or False when it is missing."""
    global _pandas
    if _pandas is None:
        try:
            import pandas

            _pandas = pandas
        except ImportError:
            _pandas = False
    return _pandas


def make_frame(records):
    """A pandas DataFrame of the records, or the list itself when pandas is missing."""
    if load_pandas() is False:
        return records
    return _pandas.DataFrame(records)


def frame_of_columns(columns):
    """A pandas DataFrame of the columns (a dict of equal lengths: lists, or for a column
    of floats or of integers, `(typecode, bytearray)` read in place by numpy), or the list
    of records they make when pandas is missing."""
    if load_pandas() is False:
        keys = list(columns)
        values = [_numbers(v) if v.__class__ is tuple else v for v in columns.values()]
        return [dict(zip(keys, row)) for row in zip(*values)]
    np = sys.modules["numpy"]
    return _pandas.DataFrame(
        {
            k: np.frombuffer(v[1], _DTYPES[v[0]]) if v.__class__ is tuple else v
            for k, v in columns.items()
        }
    )


def _numbers(column):
    """A `(typecode, little-endian bytes)` column as a list of Python numbers."""
    a = array(column[0], column[1])
    if sys.byteorder == "big":
        a.byteswap()
    return a.tolist()


# A column of numbers passed as bytes (`to_py_columns`): its typecode (the `array`
# module's) to numpy's dtype.
_DTYPES = {"d": "<f8", "q": "<i8"}


def has_pandas():
    return load_pandas() is not False


def simplify(obj):
    """Turns a value Rust does not convert directly into one it does, or raises TypeError.
    See docs/python-models.md for the rules."""
    t = type(obj)
    mod = t.__module__
    if mod == "numpy" or mod.startswith("numpy."):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "item"):
            return obj.item()
    if hasattr(obj, "isoformat") and mod == "datetime":
        return obj.isoformat()
    if t.__name__ in ("NaTType", "NAType"):
        return None
    if mod == "decimal":
        if obj.is_finite() and obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    if mod == "pandas" or mod.startswith("pandas."):
        if t.__name__ == "DataFrame":
            return frame_rows(obj)
        if t.__name__ == "Series":
            return obj.to_dict()
        if hasattr(obj, "isoformat"):
            return obj.isoformat()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    import datetime
    import collections.abc

    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, collections.abc.Mapping):
        return dict(obj)
    raise TypeError(
        f"cannot convert an object of type '{mod}.{t.__qualname__}' to a record value"
    )


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
