"""The tutorial's delayed section with `dask` changed to `rask` in the imports.

Run as a script: on `Client()`, which is an embedded local cluster, or a
running scheduler when DASK_SCHEDULER_ADDRESS is set. It checks what the
tutorial shows: the lazy values, the results, and that independent calls
run in parallel. An optional argument is a directory for the drawings.
"""

import os
import sys
from time import perf_counter, sleep

import numpy as np

from rask import compute, delayed
from rask.distributed import Client

client = Client()


def inc(x):
    sleep(1)
    return x + 1


def add(x, y):
    sleep(1)
    return x + y


x = delayed(inc)(1)
y = delayed(inc)(2)
z = delayed(add)(x, y)
assert repr(z).startswith("Delayed('add-"), repr(z)

start = perf_counter()
assert z.compute() == 5
took = perf_counter() - start
assert took < 2.9, f"z.compute() took {took:.2f} s: the two inc calls did not run in parallel"
print(f"z.compute() = 5 in {took:.2f} s")

x2 = delayed(inc)(1)
y2 = delayed(inc)(2)
z2 = delayed(add)(x2, y2)
total = delayed(add)(z, z2)
total_plus = z + z2
total_sum = sum([z, z2])
assert compute(total, total_plus, total_sum) == (10, 10, 10)

out = sys.argv[1] if len(sys.argv) > 1 else None
if out:
    total.visualize(filename=os.path.join(out, "total.svg"))

# Exercise: inc over a list, then the product of all elements.
data = [3, 8, 1, 4, 2, 9, 4, 6]
newdata = [delayed(inc)(v) for v in data]
expected = int(np.prod([v + 1 for v in data]))
prod = np.prod(newdata)  # a chain of multiplications, still lazy
assert int(prod.compute()) == expected
prod = delayed(np.prod)(newdata)  # one task over the parallel incs
start = perf_counter()
assert int(prod.compute()) == expected
took = perf_counter() - start
print(f"prod = {expected} in {took:.2f} s")
if out:
    prod.visualize(filename=os.path.join(out, "prod.png"))

print("tutorial delayed section: ok on", client.scheduler_address)
client.close()
