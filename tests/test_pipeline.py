"""The pipeline (napari_gmm.pipeline): numpy and dask look-ups, SplitModels, progress in every
phase, memory of the quantised output, and the package's import graph."""

import ast
import pathlib
import tracemalloc

import numpy as np
import pytest

import napari_gmm as ng
from napari_gmm import Cancelled


def _three_class(shape=(60, 70), seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    truth[:, shape[1] // 3 :] = 1
    truth[:, 2 * shape[1] // 3 :] = 2
    img = np.array([40.0, 120.0, 200.0])[truth] + rng.normal(0, 8, shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), truth + 1


def _rgb(seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, (50, 60))
    cols = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]])
    return np.clip(cols[truth] + rng.normal(0, 10, truth.shape + (3,)), 0, 255).astype(np.uint8)


def test_model_quantize_equals_quantize_function_grey_and_colour():
    img, _ = _three_class()
    q, m = ng.quantize(img, 3, channel_axis=None, return_model=True)
    np.testing.assert_array_equal(m.quantize(img), q)
    np.testing.assert_array_equal(m.quantize(img, m.predict(img)), q)
    assert q.dtype == img.dtype and set(np.unique(q)) == set(np.rint(m.means[:, 0]).astype(int))
    rgb = _rgb()
    qc, mc = ng.quantize(rgb, 3, return_model=True)
    np.testing.assert_array_equal(mc.quantize(rgb, channel_axis=-1), qc)
    # masked pixels keep their value; input untouched
    mask = np.ones(img.shape, bool)
    mask[:5] = False
    before = img.copy()
    qm = m.quantize(img, mask=mask)
    np.testing.assert_array_equal(qm[:5], img[:5])
    np.testing.assert_array_equal(img, before)


def test_float_quantize_keeps_dtype_and_nan():
    img, _ = _three_class()
    f = img.astype(np.float32) / 255
    f[0, 0] = np.nan
    m = ng.fit_mixture(f, 3)
    q = m.quantize(f)
    assert q.dtype == np.float32 and np.isnan(q[0, 0])
    np.testing.assert_allclose(np.unique(q[1:]), np.sort(m.means[:, 0]).astype(np.float32), rtol=1e-6)


def test_dask_lookups_equal_numpy():
    da = pytest.importorskip("dask.array")
    img, _ = _three_class((64, 80))
    m = ng.fit_mixture(img, 3)
    d = da.from_array(img, chunks=(20, 30))
    mask = np.ones(img.shape, bool)
    mask[3:9, 4:50] = False
    for kw in (dict(), dict(mask=mask)):
        lab = m.predict(d, **kw)
        assert isinstance(lab, da.Array)
        np.testing.assert_array_equal(lab.compute(), m.predict(img, **kw))
        p = m.predict_proba(d, **kw)
        assert isinstance(p, da.Array) and p.shape == (3,) + img.shape
        np.testing.assert_array_equal(p.compute(), m.predict_proba(img, **kw))
        q = m.quantize(d, **kw)
        assert isinstance(q, da.Array)
        np.testing.assert_array_equal(q.compute(), m.quantize(img, **kw))
    rgb = _rgb()
    mc = ng.fit_mixture(rgb, 3, channel_axis=-1)
    drgb = da.from_array(rgb, chunks=(20, 25, 3))
    np.testing.assert_array_equal(mc.predict(drgb, channel_axis=-1).compute(), mc.predict(rgb, channel_axis=-1))
    np.testing.assert_array_equal(
        mc.predict_proba(drgb, channel_axis=-1).compute(), mc.predict_proba(rgb, channel_axis=-1)
    )
    np.testing.assert_array_equal(mc.quantize(drgb, channel_axis=-1).compute(), mc.quantize(rgb, channel_axis=-1))


def test_split_models_apply_each_model_to_its_index():
    img, _ = _three_class()
    stack = np.stack([img, (img * 0.6).astype(np.uint8), (img * 0.3).astype(np.uint8)])
    labels, models = ng.segment(stack, 3, split_axis=0, return_model=True)
    assert isinstance(models, ng.SplitModels) and isinstance(models, list) and len(models) == 3
    assert models.split_axis == 0
    np.testing.assert_array_equal(models.predict(stack), labels)
    q = models.quantize(stack, labels)
    for t in range(3):
        np.testing.assert_array_equal(q[t], models[t].quantize(stack[t]))
    p = models.predict_proba(stack)
    assert p.shape == (3,) + stack.shape
    np.testing.assert_array_equal(p[:, 1], models[1].predict_proba(stack[1]))
    again = ng.SplitModels.from_dict(models.to_dict())
    np.testing.assert_array_equal(again.predict(stack), labels)
    with pytest.raises(ng.InputError, match="3 models"):
        models.predict(stack[:2])
    # dask stacks split the same way
    da = pytest.importorskip("dask.array")
    dl, dm = ng.segment(da.from_array(stack, chunks=(1, 30, 35)), 3, split_axis=0, return_model=True)
    np.testing.assert_array_equal(dl.compute(), labels)
    np.testing.assert_array_equal(models.quantize(da.from_array(stack, chunks=(1, 30, 35))).compute(), q)


def test_split_colour_along_time():
    rgb = _rgb()
    stack = np.stack([rgb, rgb // 2])
    labels, models = ng.segment(stack, 3, channel_axis=-1, split_axis=0, return_model=True)
    assert labels.shape == stack.shape[:-1]
    q = models.quantize(stack, channel_axis=-1)
    assert q.shape == stack.shape
    np.testing.assert_array_equal(q[1], models[1].quantize(stack[1], channel_axis=-1))


def test_errors_name_the_split_index():
    img, _ = _three_class()
    stack = np.stack([img, np.full_like(img, 7)])
    with pytest.raises(ng.InputError, match="index 1 of axis 0: the image is constant"):
        ng.segment(stack, 3, split_axis=0)
    da = pytest.importorskip("dask.array")
    with pytest.raises(ng.InputError, match="index 1 of axis 0"):
        ng.segment(da.from_array(stack, chunks=(1, 60, 70)), 3, split_axis=0)


def test_progress_reaches_the_lookup_and_cancels_there(monkeypatch):
    from napari_gmm._kernels import _config

    monkeypatch.setattr(_config, "LOOKUP_SLICE", 1000)
    img, _ = _three_class()
    calls = []
    ng.segment(img, 3, max_iter=40, progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert total == 48 and calls[-1] == (48, 48)  # compression 4, EM 40, look-up 4
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert any(0 < d < 4 for d, _ in calls)  # reports inside the compression
    assert any(44 < d < 48 for d, _ in calls)  # and inside the look-up

    def cancel_in_lookup(done, total):
        if done > 44:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        ng.segment(img, 3, max_iter=40, progress=cancel_in_lookup)
    m = ng.fit_mixture(img, 3)
    seen = []

    def cancel_paint(done, total):
        seen.append(done)
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        m.quantize(img, progress=cancel_paint)
    assert seen and issubclass(Cancelled, InterruptedError)


def test_quantised_output_memory_is_the_output():
    """The quantised image of a 64 MB uint16 stack allocates about the output (was 15x the input)."""
    rng = np.random.default_rng(0)
    stack = rng.normal(20000, 3000, (8, 2048, 2048)).clip(0, 65535).astype(np.uint16)
    m = ng.fit_mixture(stack[0], 3)
    labels = m.predict(stack)
    m.quantize(stack[:1], labels[:1])  # compile outside the measurement
    tracemalloc.start()
    q = m.quantize(stack, labels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert q.nbytes == stack.nbytes
    assert peak < 1.2 * stack.nbytes, peak / stack.nbytes


def test_progress_must_be_callable():
    img, _ = _three_class()
    with pytest.raises(ng.InputError, match="progress must be a callable"):
        ng.segment(img, 2, progress="yes")


def test_no_import_cycles():
    """No module of the package imports another that imports it back (at any depth), counting
    imports inside functions too."""
    root = pathlib.Path(ng.__file__).parent
    graph = {}
    for path in root.rglob("*.py"):
        mod = ".".join(("napari_gmm",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                name = node.module if node.level == 0 else (base + ("." + node.module if node.module else ""))
                names = [name] + [f"{name}.{a.name}" for a in node.names]
                deps.update(n for n in names if n and n.startswith("napari_gmm"))
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("napari_gmm"))
        graph[mod] = deps
    graph = {m: {d for d in ds if d in graph and d != m and d != "napari_gmm"} for m, ds in graph.items()}
    state = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_model_predict_of_a_lazy_integer_image_reads_it_once(dtype):
    """A saved model's labels of an 8/16-bit dask image: a look-up over the dtype, no histogram pass
    (the stack is read once, when the labels are computed), equal to the NumPy labels."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(100, 30, (64, 48)), 0, 255).astype(dtype)
    model = ng.fit_mixture(a, 3)
    reads = []

    def block(b):
        reads.append(1)
        return b

    lazy = da.from_array(a, chunks=(32, 24)).map_blocks(block, dtype=a.dtype, meta=np.empty((0, 0), a.dtype))
    labels = model.predict(lazy)
    assert reads == []  # nothing read yet
    np.testing.assert_array_equal(labels.compute(), model.predict(a))
    assert len(reads) == 4
