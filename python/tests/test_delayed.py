"""rask.delayed against dask.delayed: the same programs give the same results."""

import operator
import time

import dask
import pytest

import rask
from rask import compute, delayed, persist, visualize


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def double(x):
    return 2 * x


def both(lib):
    """Runs a program written against a delayed module on rask and on dask."""
    return lib


PROGRAMS = {
    "inc_add": lambda d: d.delayed(add)(d.delayed(inc)(1), d.delayed(inc)(2)),
    "list_sum": lambda d: d.delayed(sum)([d.delayed(inc)(i) for i in range(10)]),
    "nested_args": lambda d: d.delayed(lambda xs, k=0: sum(a * b for a, b in xs) + k)(
        [(d.delayed(inc)(i), i) for i in range(5)], k=d.delayed(double)(3)),
    "arithmetic": lambda d: (d.delayed(inc)(3) * 2 - 1) / 4 + 10 // d.delayed(inc)(1) ** 2 % 7,
    "item_and_attr": lambda d: d.delayed(dict)(a=d.delayed(inc)(1), b=[1, 2, 3])["b"][d.delayed(inc)(0)]
    + d.delayed(complex)(1, d.delayed(inc)(1)).imag,
    "objects": lambda d: d.delayed(lambda s: {k: len(v) for k, v in s.items()})(
        d.delayed(dict)(x=d.delayed(str)(123456), y=(1, 2))),
    "comparison": lambda d: d.delayed(inc)(1) < 3,
    "literal": lambda d: d.delayed([d.delayed(inc)(1), 2, (d.delayed(double)(4), "s")]),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_same_result_as_dask(name):
    program = PROGRAMS[name]
    got = program(rask).compute()
    want = program(dask).compute(scheduler="threads")
    assert got == want
    assert type(got) is type(want)


def test_compute_many_shares_intermediates(tmp_path):
    calls = tmp_path / "calls"

    def counted(x):
        with open(calls, "a") as f:
            f.write("x")
        return x * 10

    shared = delayed(counted)(4)
    a = delayed(add)(shared, 1)
    b = delayed(add)(shared, 2)
    assert compute(a, b) == (41, 42) == dask.compute(dask.delayed(add)(40, 1), dask.delayed(add)(40, 2))
    assert calls.read_text() == "x"
    # Structures of lazy values, as dask.compute traverses them.
    assert compute([a, b], {"k": b}, 7) == ([41, 42], {"k": 42}, 7)


def test_keys_pure_and_names():
    assert delayed(inc)(1).key.startswith("inc-")
    assert delayed(inc)(1).key != delayed(inc)(1).key  # impure by default, as in Dask
    assert delayed(inc, pure=True)(1).key == delayed(inc, pure=True)(1).key
    assert delayed(inc, pure=True)(1).key != delayed(inc, pure=True)(2).key
    x = delayed(inc)(1, dask_key_name="my-key")
    assert x.key == "my-key" and repr(x) == "Delayed('my-key')"
    assert x.compute() == 2


def test_nout_unpacks():
    def divmod_(a, b):
        return divmod(a, b)

    q, r = delayed(divmod_, nout=2)(17, 5)
    assert compute(q, r) == (3, 2)
    with pytest.raises(TypeError):
        iter(delayed(divmod_)(17, 5))
    with pytest.raises(TypeError):
        bool(delayed(inc)(1))


def test_decorator_and_methods():
    @delayed
    def mul(a, b):
        return a * b

    @delayed(pure=True)
    def up(s):
        return s.upper()

    assert mul(3, up("ab")).compute() == "ABABAB"
    text = delayed("hello world")
    assert text.split().compute() == ["hello", "world"]
    assert text.upper().replace("O", "0").compute() == "HELL0 W0RLD"


def test_persist_keeps_results():
    slow = delayed(lambda x: (time.sleep(0.2), x)[1])(5)
    (p,) = persist(slow)
    assert p.key == slow.key
    start = time.monotonic()
    assert (p + 1).compute() == 6
    assert time.monotonic() - start < 0.2  # the persisted value is not recomputed
    assert slow.persist().compute() == 5


def test_visualize(tmp_path):
    z = delayed(add)(delayed(inc)(1), delayed(inc)(2))
    out = z.visualize(filename=str(tmp_path / "graph.dot"))
    text = open(out).read()
    assert "digraph" in text and "inc" in text and "add" in text
    png = visualize(z, filename=str(tmp_path / "graph"))
    assert png.endswith(".png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_large_and_numpy_values():
    np = pytest.importorskip("numpy")
    a = delayed(np.arange)(1_000_000)
    total = delayed(np.sum)(a * 2)
    assert total.compute() == np.sum(np.arange(1_000_000) * 2)
    assert int(total.compute()) == int(dask.delayed(np.sum)(dask.delayed(np.arange)(1_000_000) * 2).compute())


def test_exceptions_keep_type_message_and_traceback():
    def fails(x):
        raise KeyError(f"missing {x}")

    with pytest.raises(KeyError, match="missing 3") as info:
        delayed(fails)(3).compute()
    frames = [f.name for f in info.traceback]
    assert "fails" in frames  # the user's frame, as with dask.distributed

    class Custom(ValueError):
        pass

    def custom():
        raise Custom("odd")

    with pytest.raises(Custom, match="odd"):
        delayed(custom)().compute()
    # Downstream tasks fail with the upstream error.
    with pytest.raises(ZeroDivisionError):
        (delayed(inc)(1) / delayed(lambda: 0)()).compute()


def test_many_tasks():
    xs = [delayed(inc)(i) for i in range(5000)]
    while len(xs) > 1:
        xs = [delayed(add)(xs[i], xs[i + 1]) if i + 1 < len(xs) else xs[i] for i in range(0, len(xs), 2)]
    assert xs[0].compute() == sum(range(1, 5001))
