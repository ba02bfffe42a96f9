"""rask.image against scipy.ndimage, dask-image and scikit-image: the same
calls on the same random images, for several chunkings (results must not
depend on chunking), plus imread of real PNG/TIFF files and the errors a
dask-image user would catch."""

import os

import dask.array
import dask_image.imread
import dask_image.ndfilters
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.io
import tifffile

import rask.array as ra
from rask.image import imread, ndfilters, ndmeasure

CHUNKINGS = [(64, 48), (17, 13), (7, 48), (64, 5)]


def image(dtype="float64", shape=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, 200, shape).astype(dtype)


def same(rask_result, expected, exact=True):
    got = rask_result.compute()
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape
    if exact or got.dtype.kind != "f":
        np.testing.assert_array_equal(got, expected)
    else:
        # scipy keeps a float32 input's per-axis passes in float32; rask
        # accumulates in float64: at most an ulp or two apart.
        tol = 1e-12 if got.dtype == np.float64 else 5e-7
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "uint8", "int32"])
@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap"])
def test_gaussian_filter_matches_scipy(chunks, dtype, mode):
    a = image(dtype)
    x = ra.from_array(a, chunks=chunks)
    for sigma, order in [(1.5, 0), ((0.7, 2.0), 0), (1.0, (1, 0))]:
        expected = ndi.gaussian_filter(a, sigma, order=order, mode=mode, cval=0.5)
        same(ndfilters.gaussian_filter(x, sigma, order=order, mode=mode, cval=0.5), expected,
             exact=np.dtype(dtype).kind != "f")


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("name", ["uniform_filter", "minimum_filter", "maximum_filter", "median_filter"])
def test_box_filters_match_scipy(chunks, name):
    for dtype in ["float64", "uint8"]:
        a = image(dtype, seed=1)
        x = ra.from_array(a, chunks=chunks)
        for size in [3, (5, 2), 1]:
            expected = getattr(ndi, name)(a, size=size, mode="reflect")
            same(getattr(ndfilters, name)(x, size=size), expected, exact=name != "uniform_filter")


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_rank_percentile_and_footprints_match_scipy(chunks):
    a = image("int32", seed=2)
    x = ra.from_array(a, chunks=chunks)
    fp = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    same(ndfilters.rank_filter(x, 2, size=3), ndi.rank_filter(a, 2, size=3))
    same(ndfilters.rank_filter(x, -1, footprint=fp, mode="nearest"), ndi.rank_filter(a, -1, footprint=fp, mode="nearest"))
    same(ndfilters.percentile_filter(x, 30, size=(3, 4)), ndi.percentile_filter(a, 30, size=(3, 4)))
    same(ndfilters.median_filter(x, footprint=fp), ndi.median_filter(a, footprint=fp))
    same(ndfilters.minimum_filter(x, footprint=fp, origin=(1, 0)), ndi.minimum_filter(a, footprint=fp, origin=(1, 0)))
    same(ndfilters.maximum_filter(x, footprint=fp, mode="constant", cval=7),
         ndi.maximum_filter(a, footprint=fp, mode="constant", cval=7))


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_edges_laplace_and_kernels_match_scipy(chunks):
    a = image("float64", seed=3)
    x = ra.from_array(a, chunks=chunks)
    for axis in [0, 1, -1]:
        same(ndfilters.sobel(x, axis=axis), ndi.sobel(a, axis=axis), exact=False)
        same(ndfilters.prewitt(x, axis=axis, mode="nearest"), ndi.prewitt(a, axis=axis, mode="nearest"), exact=False)
    same(ndfilters.laplace(x), ndi.laplace(a), exact=False)
    same(ndfilters.gaussian_gradient_magnitude(x, 1.2), ndi.gaussian_gradient_magnitude(a, 1.2), exact=False)
    same(ndfilters.gaussian_laplace(x, (1.0, 2.0)), ndi.gaussian_laplace(a, (1.0, 2.0)), exact=False)
    w = np.arange(12, dtype=float).reshape(3, 4) / 10
    same(ndfilters.correlate(x, w), ndi.correlate(a, w), exact=False)
    same(ndfilters.convolve(x, w, mode="wrap"), ndi.convolve(a, w, mode="wrap"), exact=False)
    same(ndfilters.correlate(x, w, origin=(1, -1)), ndi.correlate(a, w, origin=(1, -1)), exact=False)


def test_the_same_code_on_dask_image_gives_the_same_answer():
    a = image("uint8", shape=(4, 40, 30), seed=4)
    ours = ndfilters.gaussian_filter(ra.from_array(a, chunks=(1, 20, 30)), sigma=(0, 2, 2)).compute()
    theirs = dask_image.ndfilters.gaussian_filter(dask.array.from_array(a, chunks=(1, 20, 30)), sigma=(0, 2, 2))
    np.testing.assert_array_equal(ours, theirs.compute())


@pytest.mark.parametrize("chunks", [(40, 40), (9, 11), (40, 3)])
@pytest.mark.parametrize("structure", [None, "full"])
def test_label_matches_scipy_for_every_chunking(chunks, structure):
    rng = np.random.default_rng(5)
    a = rng.random((40, 40)) > 0.6
    s = None if structure is None else np.ones((3, 3), bool)
    expected, n = ndi.label(a, structure=s)
    labels, count = ndmeasure.label(ra.from_array(a, chunks=chunks), structure=s)
    assert int(count.compute()) == n
    np.testing.assert_array_equal(labels.compute(), expected)


def test_label_statistics_match_scipy():
    rng = np.random.default_rng(6)
    values = rng.random((30, 30))
    labels, n = ndi.label(values > 0.5)
    x, lab = ra.from_array(values, chunks=(10, 15)), ra.from_array(labels, chunks=(10, 15))
    index = list(range(1, n + 1)) + [n + 5]
    for name in ["sum", "mean", "maximum", "minimum"]:
        got = getattr(ndmeasure, name)(x, lab, index).compute()
        np.testing.assert_allclose(got, getattr(ndi, name)(values, labels, index), rtol=1e-12)
    np.testing.assert_allclose(ndmeasure.sum(x).compute(), ndi.sum(values), rtol=1e-12)
    np.testing.assert_allclose(ndmeasure.mean(x, lab).compute(), ndi.mean(values, labels), rtol=1e-12)
    area = ndmeasure.area(x, lab, [1, 2]).compute()
    assert list(area) == [int((labels == 1).sum()), int((labels == 2).sum())]


def test_imread_reads_pngs_and_tiffs_as_dask_image_does(tmp_path):
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 255, (3, 20, 24, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        skimage.io.imsave(tmp_path / f"cam{i}.png", f, check_contrast=False)
    stack = imread.imread(str(tmp_path / "cam*.png"))
    assert stack.shape == (3, 20, 24, 3) and stack.dtype == np.uint8
    np.testing.assert_array_equal(stack.compute(), dask_image.imread.imread(str(tmp_path / "cam*.png")).compute())
    np.testing.assert_array_equal(stack[:, ::4, ::4, 1].compute(), frames[:, ::4, ::4, 1])
    pages = rng.integers(0, 60000, (6, 10, 12), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "vol.tif", pages)
    vol = imread.imread(str(tmp_path / "vol.tif"), nframes=2)
    assert vol.numblocks[0] == 3
    np.testing.assert_array_equal(vol.compute(), pages)


def test_bad_input_raises_what_dask_image_and_scipy_raise(tmp_path):
    x = ra.from_array(image("float64"), chunks=(32, 24))
    with pytest.raises(FileNotFoundError):
        imread.imread(str(tmp_path / "nothing*.png"))
    with pytest.raises(RuntimeError, match="boundary mode"):
        ndfilters.gaussian_filter(x, 1.0, mode="bogus")
    with pytest.raises(RuntimeError, match="sequence argument"):
        ndfilters.gaussian_filter(x, (1.0, 2.0, 3.0))
    with pytest.raises(RuntimeError, match="footprint"):
        ndfilters.median_filter(x)
    with pytest.raises(ValueError):
        ndfilters.uniform_filter(x, size=0).compute()
    with pytest.raises(TypeError):
        ndfilters.gaussian_filter([[1, 2], [3, 4]], 1.0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises((ValueError, OSError)):
        imread.imread(str(tmp_path / "broken.png")).compute()
