"""``rask.diagnostics``: progress of computations, as ``dask.diagnostics``.

``ProgressBar`` shows how many of a computation's tasks have finished,
while ``compute`` waits: a text bar in a terminal, an updating HTML bar in a
notebook. Use it as a context manager around ``compute`` calls, or
``register()`` it for every computation::

    from rask.diagnostics import ProgressBar
    with ProgressBar():
        x.mean().compute()
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["ProgressBar"]

_active: list = []
_lock = threading.Lock()


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (ipykernel), where a display can update in place."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Bar:
    """One progress line: text with ``\\r`` in a terminal, an updating display in a notebook."""

    def __init__(self, width=40, out=None, notebook=None):
        self.width = width
        self.out = out
        self.notebook = _in_notebook() if notebook is None and out is None else bool(notebook)
        self.handle = None
        self.start = time.monotonic()

    def text(self, done, total):
        frac = done / total if total else 1.0
        bar = "#" * int(self.width * frac)
        return f"[{bar:<{self.width}}] | {frac * 100:3.0f}% Completed | {time.monotonic() - self.start:4.1f}s"

    def html(self, done, total):
        frac = done / total if total else 1.0
        return (f'<div style="font-family:monospace"><progress value="{done}" max="{max(total, 1)}" '
                f'style="width:20em"></progress> {frac * 100:3.0f}% Completed ({done}/{total} tasks) | '
                f'{time.monotonic() - self.start:4.1f}s</div>')

    def show(self, done, total):
        if self.notebook:
            from IPython.display import HTML, display

            view = HTML(self.html(done, total))
            if self.handle is None:
                self.handle = display(view, display_id=True)
            else:
                self.handle.update(view)
            return
        out = self.out or sys.stdout
        out.write("\r" + self.text(done, total))
        out.flush()

    def finish(self, done, total):
        self.show(done, total)
        if not self.notebook:
            (self.out or sys.stdout).write("\n")


class ProgressBar:
    """A progress bar for ``compute`` (Dask's ``ProgressBar``).

    ``minimum``: show nothing for computations shorter than this many
    seconds. ``width``: the text bar's width. ``dt``: seconds between
    updates. ``out``: a file to write the text bar to (the standard output
    by default; in a notebook an HTML bar is shown instead).
    """

    def __init__(self, minimum=0, width=40, dt=0.1, out=None):
        self.minimum = minimum
        self.width = width
        self.dt = dt
        self.out = out
        self.last_duration = 0.0

    def __enter__(self):
        self.register()
        return self

    def __exit__(self, *exc):
        self.unregister()

    def register(self):
        """Shows progress for every computation until ``unregister()``."""
        with _lock:
            _active.append(self)

    def unregister(self):
        with _lock:
            if self in _active:
                _active.remove(self)

    def _watch(self, tasks, counter, futures):
        """Waits for ``futures``, showing ``counter()`` (tasks finished so
        far) against ``tasks``."""
        start = time.monotonic()
        bar = None
        base = counter()
        while True:
            pending = [f for f in futures if not f.done()]
            done = min(tasks, max(0, counter() - base)) if pending else tasks
            if bar is None and time.monotonic() - start >= self.minimum:
                bar = _Bar(self.width, self.out)
                bar.start = start
            if not pending:
                break
            if bar is not None:
                bar.show(done, tasks)
            pending[0].wait(self.dt)
        self.last_duration = time.monotonic() - start
        if bar is not None:
            bar.finish(tasks, tasks)


def _active_bar():
    with _lock:
        return _active[-1] if _active else None

