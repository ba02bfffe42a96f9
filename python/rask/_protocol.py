"""How Python objects, functions and exceptions cross into rask and back.

The native module calls these: ``dumps``/``loads`` for values rask has no
type of its own for (pickle protocol 5; cloudpickle for what plain pickle
cannot reach, such as functions and classes defined in ``__main__``),
``loads_function`` and ``call_template`` on workers, ``encode_exception`` when
user code raises, and ``make_exception`` to raise rask's errors as the
exception types a Dask user catches.
"""

from __future__ import annotations

import base64
import concurrent.futures
import pickle
import traceback

import cloudpickle

try:  # tracebacks that survive pickling, as in dask.distributed
    import tblib
except ImportError:  # pragma: no cover - tblib is a dependency of the package
    tblib = None

#: Marks a pickled object inside a rask bytes value (same as the native module).
MAGIC = b"\x00rask-pickle5\x00"
#: Separates a task error's readable text from the pickled exception.
EXCEPTION_MARK = "\n--- rask: original exception (base64 pickle) ---\n"


def pickle_bytes(obj) -> bytes:
    """Pickle protocol 5; cloudpickle when the object refers to ``__main__``
    or cannot be pickled by reference (lambdas, local classes)."""
    try:
        data = pickle.dumps(obj, protocol=5)
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    return cloudpickle.dumps(obj, protocol=5)


def dumps(obj) -> bytes:
    return MAGIC + pickle_bytes(obj)


def loads(data):
    return pickle.loads(memoryview(data)[len(MAGIC):])


def loads_function(data):
    return pickle.loads(data)


class Dep:
    """A placeholder for the i-th input value in a call template."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return (Dep, (self.index,))


def fill(obj, values):
    """Replaces the placeholders in a template with the input values."""
    t = type(obj)
    if t is Dep:
        return values[obj.index]
    if t is list:
        return [fill(x, values) for x in obj]
    if t is tuple:
        return tuple(fill(x, values) for x in obj)
    if t is dict:
        return {k: fill(v, values) for k, v in obj.items()}
    if t is set:
        return {fill(x, values) for x in obj}
    return obj


def call_template(func, template, values):
    args, kwargs = pickle.loads(template)
    return func(*fill(args, values), **fill(kwargs, values))


def encode_exception(exc: BaseException, tb=None) -> str:
    """The task error text: type, message and traceback, then the pickled
    exception and traceback so that the client raises the same type again."""
    tb = tb if tb is not None else exc.__traceback__
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    tb_data = None
    if tblib is not None and tb is not None:
        try:
            tb_data = tblib.Traceback(tb).to_dict()
        except Exception:
            tb_data = None
    try:
        payload = cloudpickle.dumps((exc, tb_data), protocol=5)
        pickle.loads(payload)  # an exception that cannot be rebuilt is sent as text
    except Exception:
        payload = cloudpickle.dumps((RuntimeError(f"{type(exc).__name__}: {exc}"), tb_data), protocol=5)
    return f"{type(exc).__name__}: {exc}\n{text}{EXCEPTION_MARK}{base64.b64encode(payload).decode()}"


def split_error(message: str):
    """(readable text, exception or None) of a task error message."""
    text, mark, payload = message.partition(EXCEPTION_MARK)
    if not mark:
        return message, None
    try:
        exc, tb_data = pickle.loads(base64.b64decode(payload))
    except Exception:
        return text, None
    if tb_data is not None and tblib is not None:
        try:
            exc = exc.with_traceback(tblib.Traceback.from_dict(tb_data).as_traceback())
        except Exception:
            pass
    return text, exc


class KilledWorker(Exception):
    """A task was running on too many workers that died (Dask's KilledWorker)."""

    def __init__(self, task, last_worker=None, allowed_failures=3, message=""):
        super().__init__(message or f"task {task} was running on workers that died")
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures


def _builtin_error(key: str, message: str) -> Exception:
    """An error of a built-in (Rust) op, as the exception Python code would raise."""
    text = f"{message} (task {key})" if key else message
    low = message.lower()
    if "accessdenied" in low or "access denied" in low or "permission denied" in low or "forbidden" in low:
        return PermissionError(text)
    if ("no such file" in low or "nosuchkey" in low or "not found" in low or "does not exist" in low
            or "nosuchbucket" in low):
        return FileNotFoundError(text)
    if "timed out" in low or "timeout" in low:
        return TimeoutError(text)
    if "division by zero" in low:
        return ZeroDivisionError(text)
    if "no worker of the" in low:
        return RuntimeError(text)
    if "no column" in low or "unknown column" in low or "missing key" in low:
        return KeyError(text)
    if "error tokenizing data" in low:  # a malformed CSV row (pandas' ParserError is a ValueError)
        return ValueError(text)
    if "unsupported operand" in low or "expected " in low or " type" in low:
        return TypeError(text)
    return ValueError(text)


def make_exception(kind: str, key: str, message: str) -> BaseException:
    if kind == "raised":
        text, exc = split_error(message)
        if exc is not None:
            return exc
        return _builtin_error(key, text)
    if kind == "killed":
        return KilledWorker(key, message=f"{key}: {message}")
    if kind == "invalid":
        return ValueError(message)
    if kind == "cancelled":
        return concurrent.futures.CancelledError(key or message)
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "conversion":
        return TypeError(message)
    if kind == "connect":
        return OSError(message)
    return RuntimeError(message)
