"""The notebook view of an array: Dask's table (bytes, shape, graph size,
dtype, for the whole array and one chunk) beside a drawing of the blocks."""

from __future__ import annotations

import html
import math


def _bytes(n):
    if isinstance(n, float) and math.isnan(n):
        return "unknown"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("kiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def _tuple(t):
    inner = ", ".join("nan" if isinstance(x, float) and math.isnan(x) else str(x) for x in t)
    return f"({inner},)" if len(t) == 1 else f"({inner})"


def _lines(chunks, length):
    """Positions (0..length) of the block edges along one axis."""
    known = [c for c in chunks if not (isinstance(c, float) and math.isnan(c))]
    if len(known) != len(chunks) or sum(known) == 0:
        return [0, length]
    total = sum(known)
    out, acc = [0.0], 0
    for c in known:
        acc += c
        out.append(length * acc / total)
    return out


def svg(chunks, size=120):
    """A 2-d drawing of the last two axes (one axis: a strip); lines at the
    block edges, as Dask's block diagram."""
    if not chunks:
        return ""
    axes = list(chunks[-2:]) if len(chunks) >= 2 else [(1,), chunks[-1]]
    rows, cols = axes
    nrows = sum(r for r in rows if not (isinstance(r, float) and math.isnan(r))) or 1
    ncols = sum(c for c in cols if not (isinstance(c, float) and math.isnan(c))) or 1
    ratio = nrows / ncols
    if len(chunks) == 1:
        w, h = size, 25
    elif ratio > 1:
        h, w = size, max(size / ratio, 10)
    else:
        w, h = size, max(size * ratio, 10)
    parts = [f'<svg width="{w + 50:.0f}" height="{h + 50:.0f}" style="stroke:rgb(0,0,0);stroke-width:1">']
    ys, xs = _lines(rows, h), _lines(cols, w)
    if len(ys) > 100:
        ys = [ys[0], ys[-1]]
    if len(xs) > 100:
        xs = [xs[0], xs[-1]]
    for y in ys:
        width = 2 if y in (ys[0], ys[-1]) else 1
        parts.append(f'<line x1="10" y1="{10 + y:.1f}" x2="{10 + w:.1f}" y2="{10 + y:.1f}" '
                     f'style="stroke-width:{width}" />')
    for x in xs:
        width = 2 if x in (xs[0], xs[-1]) else 1
        parts.append(f'<line x1="{10 + x:.1f}" y1="10" x2="{10 + x:.1f}" y2="{10 + h:.1f}" '
                     f'style="stroke-width:{width}" />')
    parts.append(f'<polygon points="10,10 {10 + w:.1f},10 {10 + w:.1f},{10 + h:.1f} 10,{10 + h:.1f}" '
                 'style="fill:#ECB172A0;stroke-width:0"/>')
    total_cols = "nan" if any(isinstance(c, float) and math.isnan(c) for c in cols) else sum(cols)
    parts.append(f'<text x="{10 + w / 2:.1f}" y="{30 + h:.1f}" font-size="1.0rem" font-weight="100" '
                 f'text-anchor="middle">{total_cols}</text>')
    if len(chunks) >= 2:
        total_rows = "nan" if any(isinstance(r, float) and math.isnan(r) for r in rows) else sum(rows)
        parts.append(f'<text x="{30 + w:.1f}" y="{10 + h / 2:.1f}" font-size="1.0rem" font-weight="100" '
                     f'text-anchor="middle" transform="rotate(-90,{30 + w:.1f},{10 + h / 2:.1f})">{total_rows}'
                     '</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def array_html(x):
    chunksize = x.chunksize
    itemsize = x.dtype.itemsize
    chunk_bytes = math.prod(chunksize) * itemsize if chunksize else itemsize
    layers = 1
    tasks = x._a.task_count()
    rows = [
        ("Bytes", _bytes(x.nbytes), _bytes(chunk_bytes)),
        ("Shape", _tuple(x.shape), _tuple(chunksize)),
        ("Dask graph", f"{x.npartitions} chunks in {tasks} tasks" if layers else "", ""),
        ("Data type", f"{x.dtype} numpy.ndarray", ""),
    ]
    body = "".join(f"<tr><th> {html.escape(k)} </th><td> {html.escape(a)} </td><td> {html.escape(b)} </td></tr>"
                   for k, a, b in rows)
    table = ('<table style="border-collapse: collapse;"><thead><tr><td> </td><th> Array </th><th> Chunk </th>'
             f"</tr></thead><tbody>{body}</tbody></table>")
    return f"<table><tr><td>{table}</td><td>{svg(x.chunks)}</td></tr></table>"
