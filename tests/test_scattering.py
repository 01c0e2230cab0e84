"""melcnn.scattering: the NumPy scattering equals Kymatio 0.3.0's torch Scattering2D, and so does the torch engine.

Kymatio builds its 256x256 filter bank in ~15 s, so the reference is built once per module and its
filters seed the (temporary) cache of the object under test. Small configurations, whose filters
build in well under a second, exercise the cache itself and the geometric corner cases.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from melcnn import scattering as sc
from melcnn.errors import MelcnnError

torch = pytest.importorskip("torch")
ScatteringTorch2D = pytest.importorskip("kymatio.scattering2d.frontend.torch_frontend").ScatteringTorch2D

RTOL = 1e-5  # max |ours - kymatio| <= RTOL * max |kymatio|


def _clear_process_caches() -> None:
    sc._filter_bank_cached.cache_clear()
    sc._get_scattering.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory and a cold in-process cache."""
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    _clear_process_caches()
    yield
    _clear_process_caches()


def kymatio_filters(ref) -> dict[str, np.ndarray]:
    """The filter bank of a Kymatio ScatteringTorch2D, under our cache's names."""
    arrays = {f"phi_{r}": np.asarray(level, np.float32) for r, level in enumerate(ref.phi["levels"])}
    for psi in ref.psi:
        for r, level in enumerate(psi["levels"]):
            arrays[f"psi_{psi['j']}_{psi['theta']}_{r}"] = np.asarray(level, np.float32)
    return arrays


def kymatio(ref, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def assert_matches(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape and got.dtype == np.float32
    for g, w in zip(got, want, strict=True):
        err = np.abs(g - w).max()
        assert err <= RTOL * np.abs(w).max(), f"max abs diff {err:.3g} vs max abs {np.abs(w).max():.3g}"
    return float(np.abs(got - want).max() / np.abs(want).max())


def smooth_images(n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Image-like inputs with values in [0, 1] (smooth ridges, a blob and a little noise)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / np.array(shape, float)[:, None, None]
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(2, 12, 3)
        img = 0.5 + 0.3 * np.sin(a * xx + b * yy) * np.cos(c * yy)
        img += 0.2 * np.exp(-((xx - rng.random()) ** 2 + (yy - rng.random()) ** 2) / 0.02)
        out.append(np.clip(img + 0.02 * rng.standard_normal(shape), 0, 1))
    return np.asarray(out, np.float32)


# ------------------------------------------------------------------------------------------------
# the production configuration: J=4, L=8, 256 x 256


@pytest.fixture(scope="module")
def reference_256(tmp_path_factory):
    """Kymatio's ScatteringTorch2D(J=4, (256, 256), L=8), and a cache directory seeded with its filters."""
    ref = ScatteringTorch2D(J=4, shape=(256, 256), L=8)
    cache = tmp_path_factory.mktemp("cache256")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MELCNN_CACHE_DIR", str(cache))
        path = sc._cache_path(4, 8, (288, 288))
        sc._write_cache(path, kymatio_filters(ref), 4, 8, (288, 288))
    assert path.is_file()
    return ref, cache


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Torch's OpenMP threads spin-wait and crawl on a busy 2-core machine (10x slower first calls)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scattering_256(reference_256, monkeypatch) -> sc.Scattering:
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(reference_256[1]))
    return sc.Scattering(J=4, L=8, shape=(256, 256))


def test_shape_channels_and_pooled(scattering_256):
    s = scattering_256
    assert s.n_channels == 417 and s.out_spatial == (16, 16)
    x = smooth_images(3, (256, 256), np.random.default_rng(0))
    y = s(x)
    assert y.shape == (3, 417, 16, 16) and y.dtype == np.float32
    p = s.pooled(x)
    assert p.shape == (3, 417, 16) and p.dtype == np.float32
    np.testing.assert_allclose(p, y.mean(axis=-1), rtol=1e-6, atol=1e-9)
    assert s(np.zeros((0, 256, 256), np.float32)).shape == (0, 417, 16, 16)
    assert s.pooled(np.zeros((0, 256, 256))).shape == (0, 417, 16)


def test_numpy_matches_kymatio_256(reference_256, scattering_256):
    ref = reference_256[0]
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            smooth_images(2, (256, 256), rng),  # image-like, [0, 1]
            rng.random((2, 256, 256), dtype=np.float32),  # uniform noise
            rng.standard_normal((1, 256, 256)).astype(np.float32),  # zero-mean noise
        ]
    )
    want = kymatio(ref, x)
    assert scattering_256._engine.fft.backend == "fftw"  # pyFFTW is a dependency
    rel = assert_matches(scattering_256(x), want)
    assert rel < 1e-5
    assert_matches(scattering_256.pooled(x), want.mean(axis=-1))
    # the fallback where pyFFTW is missing: scipy.fft
    fallback = sc.Scattering(fft="scipy")
    assert fallback._engine.fft.backend == "scipy"
    assert_matches(fallback(x), want)
    assert_matches(fallback.pooled(x), want.mean(axis=-1))
    # the compiled kernels (the default here) and the NumPy path where they are not built
    assert scattering_256._engine.kernels == "compiled"
    numpy_path = sc.Scattering(kernels="numpy")
    assert numpy_path._engine.kernels == "numpy"
    assert_matches(numpy_path(x), want)
    assert_matches(numpy_path.pooled(x), want.mean(axis=-1))


@pytest.fixture(scope="module")
def mel_images() -> np.ndarray:
    """Model input images of real speech: the bundled example clips through melcnn's feature path."""
    import melcnn
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk
    from melcnn.spectrogram import chunk_images

    cfg = melcnn.load_model("v2").config
    out = []
    for name in ("bonafide_en.flac", "spoof_en.flac"):
        y = load_audio(Path(melcnn.__file__).parent / "examples" / name, sample_rate=cfg.sample_rate).samples
        out.append(chunk_images(chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=0.0).samples[:3], cfg=cfg))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def torch_inputs(mel_images) -> np.ndarray:
    """Six mel images of real speech, two smooth images and one of uniform noise."""
    rng = np.random.default_rng(2)
    return np.concatenate([mel_images, smooth_images(2, (256, 256), rng), rng.random((1, 256, 256), dtype=np.float32)])


@pytest.mark.parametrize("batch", [1, 4, 9])
def test_torch_engine_on_cpu_matches_numpy_engine_256(scattering_256, reference_256, monkeypatch, torch_inputs, batch):
    """The engine of device="cuda" (batched torch, device-agnostic) run on the CPU against the NumPy engine, one
    image per call, several (with a remainder) and all nine at once: max abs difference <= 1e-5 of the largest
    coefficient, full and time-pooled."""
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(reference_256[1]))
    torch_engine = sc.Scattering(J=4, L=8, shape=(256, 256), device="cpu-torch", batch=batch)
    assert isinstance(torch_engine._engine, sc._TorchEngine) and torch_engine._engine.device.type == "cpu"
    assert torch_engine.batch == batch
    x = torch_inputs
    assert x.shape == (9, 256, 256) and x[:6].std() > 0.05  # the mel images are not blank
    assert_matches(torch_engine(x), scattering_256(x))
    assert_matches(torch_engine.pooled(x), scattering_256.pooled(x))
    if batch == 9:  # and against Kymatio itself
        assert_matches(torch_engine(x), kymatio(reference_256[0], x))


@pytest.mark.parametrize(("J", "L", "shape"), [(2, 4, (32, 32)), (3, 5, (17, 40)), (4, 3, (16, 16)), (1, 2, (8, 6))])
def test_torch_engine_small_and_odd_shapes_match_numpy_engine(J, L, shape):
    """Other geometries: odd sizes, Kymatio's padding equal to the image size (16 x 16 with J=4), J=1."""
    x = np.random.default_rng(J).random((3, *shape), dtype=np.float32)
    want = sc.Scattering(J=J, L=L, shape=shape)
    got = sc.Scattering(J=J, L=L, shape=shape, device="cpu-torch", batch=2)
    assert got.n_channels == want.n_channels and got.out_spatial == want.out_spatial
    assert_matches(got(x), want(x))
    assert_matches(got.pooled(x), want.pooled(x))
    assert got.pooled(np.zeros((0, *shape))).shape == (0, want.n_channels, want.out_spatial[0])


def test_torch_engine_holds_full_float32_matmuls_and_restores_the_setting():
    """TF32 (torch's "high"/"medium" float32 matmul precision) would leave errors of about 1e-3: the engine runs
    at "highest" and gives the caller's setting back, also when calls overlap."""
    from melcnn.scattering.engine_torch import _float32_matmul

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with _float32_matmul(torch):
            inside = [torch.get_float32_matmul_precision()]
            with _float32_matmul(torch):  # a second call while the first runs
                inside.append(torch.get_float32_matmul_precision())
            inside.append(torch.get_float32_matmul_precision())
        assert inside == ["highest"] * 3
        assert torch.get_float32_matmul_precision() == "medium"
        x = np.random.default_rng(0).random((2, 32, 32), dtype=np.float32)
        got = sc.Scattering(J=2, L=4, shape=(32, 32), device="cpu-torch").pooled(x)
        assert torch.get_float32_matmul_precision() == "medium"
        assert_matches(got, sc.Scattering(J=2, L=4, shape=(32, 32)).pooled(x))
    finally:
        torch.set_float32_matmul_precision(before)


TORCH_WITHOUT_KYMATIO = r"""
import json, sys
sys.modules["kymatio"] = None  # any import of Kymatio now fails
import numpy as np
from melcnn.scattering import Scattering
x = np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
a = Scattering(J=2, L=4, shape=(32, 32), device="cpu-torch")(x)
b = Scattering(J=2, L=4, shape=(32, 32))(x)
print(json.dumps({"rel": float(np.abs(a - b).max() / np.abs(b).max())}))
"""


def test_torch_engine_needs_no_kymatio(tmp_path):
    env = dict(os.environ, MELCNN_CACHE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", TORCH_WITHOUT_KYMATIO], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["rel"] <= RTOL


TRITON_ON_CPU = r"""
import json, os
os.environ["TRITON_INTERPRET"] = "1"  # Triton's interpreter: the GPU kernel's own code, run on the CPU
import numpy as np
from melcnn.scattering import Scattering
from melcnn.scattering.engine_torch import _TorchEngine
from melcnn.scattering.filters import load_filter_bank
out = {}
for J, L, shape in [(3, 4, (32, 32)), (3, 2, (17, 40))]:
    x = np.random.default_rng(J).random((3, *shape), dtype=np.float32)
    engine = _TorchEngine(J, L, shape, load_filter_bank(J, L, shape), "cpu", products="triton")
    ref = Scattering(J=J, L=L, shape=shape)
    full, pooled = ref(x), ref.pooled(x)
    out[str(shape)] = {
        "products": engine.products,
        "kernels": sum(p.triton for p in [*engine.psi1, *engine.psi2.values()]),
        "full": float(np.abs(engine(x) - full).max() / np.abs(full).max()),
        "pooled": float(np.abs(engine(x, pooled=True) - pooled).max() / np.abs(pooled).max()),
    }
out["auto_on_cpu"] = _TorchEngine(2, 2, (16, 16), load_filter_bank(2, 2, (16, 16)), "cpu").products
print(json.dumps(out))
"""


def test_triton_kernel_of_the_gpu_engine_matches_numpy_engine(tmp_path):
    """The fused periodised-product kernel that the engine uses on CUDA, run by Triton's CPU interpreter
    inside the whole transform (odd shapes and block counts too), against the NumPy engine."""
    pytest.importorskip("triton", reason="Triton is installed by the test extra (and with CUDA builds of torch)")
    env = dict(os.environ, MELCNN_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", TRITON_ON_CPU], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("auto_on_cpu") == "torch"  # the interpreter is for tests: "auto" uses Triton on CUDA only
    for shape, r in out.items():
        assert r["products"] == "triton" and r["kernels"] >= 3, shape
        assert r["full"] <= RTOL and r["pooled"] <= RTOL, (shape, r)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (the same engine runs on CPU above)")
def test_cuda_engine_matches_numpy_engine_256(scattering_256, reference_256, monkeypatch):
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(reference_256[1]))
    cuda = sc.Scattering(J=4, L=8, shape=(256, 256), device="cuda")
    assert cuda._engine.device.type == "cuda"
    assert cuda.batch == 256
    x = smooth_images(3, (256, 256), np.random.default_rng(4))
    assert_matches(cuda(x), scattering_256(x))
    assert_matches(cuda.pooled(x), scattering_256.pooled(x))


def test_filter_bank_is_kymatios_bit_for_bit_256(reference_256):
    """melcnn._filters builds the production bank (about 1 s) identical to Kymatio's (12-16 s)."""
    from melcnn._filters import filter_bank

    want = kymatio_filters(reference_256[0])
    got = filter_bank(288, 288, 4, 8)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], want[k]), k


@pytest.mark.parametrize(("M", "N", "J", "L"), [(40, 40, 2, 4), (48, 64, 3, 6), (32, 32, 1, 8), (72, 40, 3, 8)])
def test_filter_bank_is_kymatios_bit_for_bit_small(M, N, J, L):
    from kymatio.scattering2d.filter_bank import filter_bank as kymatio_bank

    from melcnn._filters import filter_bank

    ref = kymatio_bank(M, N, J, L)
    got = filter_bank(M, N, J, L)
    want = {f"phi_{r}": level for r, level in enumerate(ref["phi"]["levels"])}
    for psi in ref["psi"]:
        want.update({f"psi_{psi['j']}_{psi['theta']}_{r}": level for r, level in enumerate(psi["levels"])})
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def test_threads_and_task_splits_agree(scattering_256, reference_256, monkeypatch):
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(reference_256[1]))
    x = smooth_images(5, (256, 256), np.random.default_rng(3))
    single = sc.Scattering(threads=1)(x)
    np.testing.assert_allclose(scattering_256(x), single, rtol=1e-6, atol=1e-7 * np.abs(single).max())
    np.testing.assert_allclose(scattering_256(x[2:3])[0], single[2], rtol=1e-6, atol=1e-7 * np.abs(single).max())


# ------------------------------------------------------------------------------------------------
# other configurations (cheap to build): geometry corner cases


@pytest.mark.parametrize(
    ("J", "L", "shape"),
    [
        (2, 4, (32, 48)),  # rectangular
        (3, 6, (40, 56)),  # odd L, 6 orientations
        (4, 8, (16, 32)),  # padding == image height: Kymatio's special reflection case
        (2, 8, (30, 44)),  # not a multiple of 2**J
        (1, 3, (8, 8)),
    ],
)
def test_numpy_matches_kymatio_small(J, L, shape):
    ref = ScatteringTorch2D(J=J, shape=shape, L=L)
    s = sc.Scattering(J=J, L=L, shape=shape)
    rng = np.random.default_rng(J * 100 + L)
    x = np.concatenate([smooth_images(2, shape, rng), rng.random((2, *shape), dtype=np.float32)])
    want = kymatio(ref, x)
    assert s.n_channels == want.shape[1] == 1 + J * L + L * L * J * (J - 1) // 2
    assert s.out_spatial == want.shape[2:]
    assert_matches(s(x), want)
    assert_matches(sc.Scattering(J=J, L=L, shape=shape, fft="scipy")(x), want)
    assert_matches(sc.Scattering(J=J, L=L, shape=shape, kernels="numpy")(x), want)
    assert_matches(sc.Scattering(J=J, L=L, shape=shape, kernels="numpy", fft="scipy")(x), want)


# ------------------------------------------------------------------------------------------------
# input validation


@pytest.fixture
def small() -> sc.Scattering:
    return sc.Scattering(J=2, L=4, shape=(32, 32))


@pytest.mark.parametrize("shape", [(32, 32), (1, 32, 31), (2, 16, 32), (1, 1, 32, 32), ()])
def test_bad_shapes_raise(small, shape):
    with pytest.raises(MelcnnError, match=r"\(n, 32, 32\)"):
        small(np.zeros(shape, np.float32))


def test_bad_dtype_and_conversion(small):
    with pytest.raises(MelcnnError, match="real"):
        small(np.zeros((1, 32, 32), np.complex64))
    x = (np.random.default_rng(4).random((2, 32, 32)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(small(x), small(x.astype(np.float32)))
    np.testing.assert_allclose(small(x.astype(np.float64)), small(x.astype(np.float32)))
    assert small(x.astype(np.float64)).dtype == np.float32


def test_compiled_kernels_are_built():
    """``pip install`` builds melcnn._kernels where a C compiler exists, as on this project's machines and CI."""
    assert sc._kernels is not None, (
        "melcnn._kernels is not built, so the scattering runs its slower NumPy path: "
        "reinstall melcnn (pip install -e .) on a machine with a C compiler and look for the build error"
    )
    assert sc.Scattering(J=2, L=4, shape=(32, 32))._engine.kernels == "compiled"


def test_kernels_argument(monkeypatch):
    with pytest.raises(MelcnnError, match="unknown scattering kernels 'fortran'"):
        sc.Scattering(J=2, L=4, shape=(32, 32), kernels="fortran")
    assert sc.Scattering(J=2, L=4, shape=(32, 32), kernels="numpy")._engine.kernels == "numpy"
    # an installation without a C compiler: "auto" falls back to NumPy, "compiled" says why it can't
    monkeypatch.setattr(sc.products, "_kernels", None)  # the module that reads it
    assert sc.Scattering(J=2, L=4, shape=(32, 32))._engine.kernels == "numpy"
    with pytest.raises(MelcnnError, match="compiled scattering kernels are not built"):
        sc.Scattering(J=2, L=4, shape=(32, 32), kernels="compiled")


def test_unknown_fft_backend_raises():
    with pytest.raises(MelcnnError, match="unknown FFT backend 'numpy'"):
        sc.Scattering(J=2, L=4, shape=(32, 32), fft="numpy")


@pytest.mark.parametrize("shape", [(2, 288, 288), (3, 6, 8), (1, 5, 7), (2, 4, 1), (1, 1, 6)])
def test_hermitian_completion_equals_full_fft(shape):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    full = sc._hermitian_full(np.fft.rfft2(x).astype(np.complex64), np.empty(shape, np.complex64))
    want = np.fft.fft2(x)
    np.testing.assert_allclose(full, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_bad_parameters_raise():
    with pytest.raises(MelcnnError, match="at least 16"):
        sc.Scattering(J=4, shape=(8, 64))
    with pytest.raises(MelcnnError, match="device"):
        sc.Scattering(device="tpu")
    with pytest.raises(MelcnnError, match="batch must be at least 1"):
        sc.Scattering(J=2, L=4, shape=(32, 32), batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_raises():
    with pytest.raises(MelcnnError, match="CUDA is not available"):
        sc.Scattering(device="cuda")


def test_get_scattering_is_shared():
    a = sc.get_scattering(J=2, L=4, shape=(32, 32))
    assert sc.get_scattering(2, 4, (32, 32)) is a
    assert sc.get_scattering(2, 4, (32, 64)) is not a


# ------------------------------------------------------------------------------------------------
# the filter cache


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(tmp_path / "a"))
    assert sc.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MELCNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sc.cache_dir() == tmp_path / "xdg" / "melcnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sc.cache_dir() == Path.home() / ".cache" / "melcnn"


FRESH = r"""
import json, sys, logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import numpy as np
from melcnn.scattering import Scattering
s = Scattering(J=2, L=4, shape=(32, 32))
y = s(np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32))
print(json.dumps({"torch": "torch" in sys.modules, "kymatio": "kymatio" in sys.modules,
                  "sum": float(np.abs(y).sum())}))
"""


def _fresh_process(cache: Path) -> tuple[dict, str]:
    env = dict(os.environ, MELCNN_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_fresh_process_loads_from_cache_without_torch_or_kymatio(tmp_path):
    first, log1 = _fresh_process(tmp_path)
    assert "building the Kymatio scattering filter bank" in log1
    assert not first["torch"] and not first["kymatio"]  # built without either
    assert list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.tmp"))
    second, log2 = _fresh_process(tmp_path)
    assert "building" not in log2 and "ignoring" not in log2
    assert not second["torch"] and not second["kymatio"]
    assert second["sum"] == first["sum"]


def _cached_file() -> Path:
    (path,) = sc.cache_dir().glob("scattering2d-*.npz")
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "wrong_meta"])
def test_damaged_cache_is_rebuilt(damage, caplog):
    x = smooth_images(2, (32, 32), np.random.default_rng(5))
    want = sc.Scattering(J=2, L=4, shape=(32, 32))(x)
    path = _cached_file()
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # inside array data (caught by the zip CRC or by our checksum)
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0x5A
    elif damage == "garbage":
        data = bytearray(b"not an npz file at all")
    else:  # a valid file for other parameters under this name
        arrays = sc.load_filter_bank(J=2, L=4, shape=(32, 32))
        sc._write_cache(path, arrays, 2, 3, sc.padded_shape((32, 32), 2))
        data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))
    _clear_process_caches()
    with caplog.at_level(logging.WARNING, logger="melcnn.scattering"):
        got = sc.Scattering(J=2, L=4, shape=(32, 32))(x)
    assert "ignoring invalid scattering filter cache" in caplog.text
    np.testing.assert_array_equal(got, want)
    # rewritten, valid again
    assert sc._read_cache(path, 2, 4, sc.padded_shape((32, 32), 2)) is not None


def test_cache_file_format(small):
    path = _cached_file()
    assert f"kymatio{sc.KYMATIO_VERSION}" in path.name and "J2-L4-40x40" in path.name
    assert f"fmt{sc.CACHE_FORMAT_VERSION}" in path.name
    with np.load(path, allow_pickle=False) as z:
        assert str(z["sha256"][()]) and str(z["meta_kymatio"][()]) == sc.KYMATIO_VERSION


def test_unwritable_cache_dir_warns_and_works(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="melcnn.scattering"):
        s = sc.Scattering(J=2, L=4, shape=(32, 32))
    assert "cannot write the scattering filter bank cache" in caplog.text
    assert s(np.ones((1, 32, 32))).shape == (1, 1 + 8 + 16, 8, 8)


# ------------------------------------------------------------------------------------------------
# FFTW wisdom cache

_WISDOM_RUN = r"""
import json, sys
import numpy as np
from melcnn import scattering as sc
if sys.argv[1] == "wisdom-only":  # every plan must come from wisdom (pyFFTW raises otherwise)
    sc.fft._FFTW_FLAGS = (*sc.fft._FFTW_FLAGS, "FFTW_WISDOM_ONLY")
x = np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
try:
    y = sc.Scattering(J=2, L=4, shape=(32, 32), threads=2)(x)
except RuntimeError as e:
    print(json.dumps({"error": str(e)}))
else:
    print(json.dumps({"y": y.ravel()[::7].tolist()}))
"""


def _wisdom_run(cache: Path, mode: str) -> dict:
    env = dict(os.environ, MELCNN_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-c", _WISDOM_RUN, mode], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _wisdom_file(cache: Path) -> Path:
    (path,) = cache.glob("fftw-wisdom-*.txt")
    return path


def test_fftw_wisdom_is_cached_and_reused_by_a_new_process(tmp_path):
    # without wisdom, a process that may not measure plans cannot make them
    assert "wisdom" in _wisdom_run(tmp_path, "wisdom-only")["error"].lower()
    assert not list(tmp_path.glob("fftw-wisdom-*"))
    first = _wisdom_run(tmp_path, "measure")  # measures its plans and writes the wisdom
    assert _wisdom_file(tmp_path).read_bytes().startswith(b"(fftw-3")
    second = _wisdom_run(tmp_path, "wisdom-only")  # every plan from the cached wisdom
    assert "error" not in second
    np.testing.assert_allclose(second["y"], first["y"], rtol=1e-6, atol=1e-7 * np.abs(first["y"]).max())


def test_invalid_fftw_wisdom_is_ignored_and_replaced(tmp_path, caplog):
    reference = _wisdom_run(tmp_path / "clean", "measure")["y"]
    cache = tmp_path / "damaged"
    cache.mkdir()
    sc._filter_bank_cached.cache_clear()
    fftw = pytest.importorskip("pyfftw")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MELCNN_CACHE_DIR", str(cache))
        wisdom = sc._wisdom_path(fftw)
        wisdom.write_bytes(b"(fftw-3.3.5 fftwf_wisdom not really\n")
        with caplog.at_level(logging.WARNING, logger="melcnn.scattering"):
            s = sc.Scattering(J=2, L=4, shape=(32, 32))
            x = np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
            got = s(x).ravel()[::7]
    assert "ignoring invalid FFTW wisdom cache" in caplog.text
    np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-7 * np.abs(reference).max())
    assert wisdom.read_bytes().startswith(b"(fftw-3") and b"not really" not in wisdom.read_bytes()
    assert fftw.import_wisdom((b"", wisdom.read_bytes(), b""))[1]


# ------------------------------------------------------------------------------------------------
# building blocks


@pytest.mark.parametrize("separable", [True, False])
def test_lowpass_operator_equals_kymatio_formula(separable):
    """sum(A @ x @ B) == unpad(real(ifft2(subsample_fourier(fft2(x) * h, k)))) for any real h."""
    rng = np.random.default_rng(6)
    m, n, k = 24, 32, 4
    if separable:
        h = np.outer(rng.random(m), rng.random(n)).astype(np.float32)
    else:
        h = rng.random((m, n)).astype(np.float32)
    x = rng.standard_normal((3, m, n)).astype(np.float32)
    spec = np.fft.fft2(x) * h
    sub = spec.reshape(3, k, m // k, k, n // k).mean(axis=(1, 3))
    want = np.fft.ifft2(sub).real[:, 1:-1, 1:-1]
    ops = sc._lowpass_operator(h, k)
    assert (len(ops) <= 2) == separable  # real and imaginary part of one separable term
    got = sc._apply_lowpass(x, ops)
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(("j2", "k"), [(1, 2), (2, 4), (3, 8)])
def test_alias_filter_product_equals_kymatio_periodisation(j2, k):
    """Periodised products (alias blocks below float32 noise skipped) == Kymatio's subsample_fourier * k**2."""
    filters = sc.load_filter_bank(4, 8, (256, 256))
    h = np.stack([filters[f"psi_{j2}_{t}_0"] for t in range(8)])
    af = sc._AliasFilter(h, k)
    if k >= 4:
        assert af.blocks.shape[1] < k * k  # some alias blocks are skipped
        # two runs of orientations, each multiplied over its own slice of blocks only
        (a0, a1, ac0, ac1), (b0, b1, bc0, bc1) = af.groups
        assert (a0, b1) == (0, 8) and a1 == b0 and ac0 == 0 and bc1 == af.blocks.shape[1]
        assert ac1 - ac0 < af.blocks.shape[1] and bc1 - bc0 < af.blocks.shape[1]
    rng = np.random.default_rng(8)
    # a spectrum like the ones the transform sees: strong low frequencies, decaying upwards
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(288), np.fft.fftfreq(288), indexing="ij"))
    spec = (rng.standard_normal((2, 288, 288)) + 1j * rng.standard_normal((2, 288, 288))) * np.exp(-10 * freq)
    want = (spec[:, None] * h[None].astype(np.float64)).reshape(2, 8, k, 288 // k, k, 288 // k).sum(axis=(2, 4))
    out = np.empty(want.shape, np.complex64)
    got = af.product(spec.astype(np.complex64), out)
    assert got is out and got.dtype == np.complex64
    np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max())
    part = af.product(spec.astype(np.complex64), np.empty((2, 3, *want.shape[2:]), np.complex64), 2, 5)
    np.testing.assert_array_equal(part, got[:, 2:5])
    # the filters can carry a scale factor (the unnormalised forward FFT's 1 / size)
    scaled = sc._AliasFilter(h, k, scale=0.25).product(spec.astype(np.complex64), np.empty_like(out))
    np.testing.assert_allclose(scaled, 0.25 * want, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize(("j1", "j2"), [(0, 0), (0, 1), (0, 2), (0, 3), (1, 2), (2, 3)])
def test_sparse_filter_product_equals_kymatio_periodisation(reference_256, monkeypatch, j1, j2):
    """Compiled periodised products from half spectra == subsample_fourier(fft2(x) * psi) * k**2."""
    monkeypatch.setenv("MELCNN_CACHE_DIR", str(reference_256[1]))
    filters = sc.load_filter_bank(4, 8, (256, 256))
    h = np.stack([filters[f"psi_{j2}_{t}_{j1}"] for t in range(8)])
    m, k = 288 >> j1, 2 ** (j2 - j1)
    sf = sc._SparseFilter(h, k)
    if k >= 2:  # most filter values are below float32 noise and never multiplied
        assert sf.values.size < 0.5 * h.size
        assert np.flatnonzero(sf.pieces[:, 5]).size > 0  # some pieces read the spectrum's mirrored half
    rng = np.random.default_rng(j1 * 10 + j2)
    # real images like the transform's: a bright mean, smooth structure and noise
    x = 1 + np.cumsum(rng.standard_normal((2, m, m)), axis=1) / m + 0.1 * rng.standard_normal((2, m, m))
    half = np.ascontiguousarray(np.fft.rfft2(x), np.complex64)
    full = sc._hermitian_full(half, np.empty((2, m, m), np.complex64)).astype(np.complex128)  # same rounding
    want = (full[:, None] * h[None].astype(np.float64)).reshape(2, 8, k, m // k, k, m // k).sum(axis=(2, 4))
    out = np.full(want.shape, np.nan, np.complex64)  # every value is written
    got = sf.product(half, out)
    assert got is out and got.dtype == np.complex64
    # compared where the transform uses them, after the inverse FFT: the dropped filter values
    # (below 1e-6 of the peak) times the large low frequencies of such images leave errors of
    # about 1e-6 of the largest value (float32 rounding level; <= 1.5e-6 measured), which become
    # O(1) with a wrong piece or sign
    spatial = np.fft.ifft2(want)
    np.testing.assert_allclose(np.fft.ifft2(got), spatial, atol=5e-6 * np.abs(spatial).max())
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
    part = sf.product(half, np.full((2, 3, *want.shape[2:]), np.nan, np.complex64), 2, 5)
    np.testing.assert_array_equal(part, got[:, 2:5])
    scaled = sc._SparseFilter(h, k, scale=0.25).product(half, np.empty_like(out))
    np.testing.assert_allclose(scaled, 0.25 * got, rtol=1e-6, atol=1e-7 * np.abs(got).max())


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("store", [True, False])
def test_compiled_modulus_lowpass_equals_numpy(pooled, store):
    rng = np.random.default_rng(9)
    eng = sc.Scattering(J=2, L=4, shape=(32, 32))._engine
    assert eng.kernels == "compiled"
    u = (rng.standard_normal((3, 4, 40, 48)) + 1j * rng.standard_normal((3, 4, 40, 48))).astype(np.complex64)
    h = np.outer(np.hanning(40), np.hanning(48)).astype(np.float32)
    ops = sc._lowpass_operator(h, 4)
    if pooled:
        ops = [(a, b.mean(axis=1, keepdims=True)) for a, b in ops]
    want = sc._apply_lowpass(np.abs(u), ops)
    kept = np.full(u.shape, np.nan, np.float32) if store else None
    got = eng._modulus_lowpass(u, ops, kept)
    assert got.shape == want.shape == (3, 4, 8, 1 if pooled else 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    if store:
        np.testing.assert_allclose(kept, np.abs(u), rtol=1e-6)


def test_submit_runs_on_the_workers_and_returns_a_future(small):
    future = small.submit(lambda a, b=0: a + b, 1, b=2)
    assert future.result(timeout=10) == 3
    failing = small.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    x = smooth_images(3, (32, 32), np.random.default_rng(9))
    want = small(x)
    started = small.submit(lambda: small(x))  # a transform while another one runs
    np.testing.assert_array_equal(small(x), want)
    np.testing.assert_array_equal(started.result(timeout=30), want)


def test_task_queue_uses_both_threads_and_reports_errors():
    import threading
    import time

    engine = sc.Scattering(J=2, L=4, shape=(32, 32), threads=2)._engine
    seen, lock = [], threading.Lock()

    def task(i):
        time.sleep(0.01)
        with lock:
            seen.append((i, threading.current_thread().name))

    engine._drain([lambda i=i: task(i) for i in range(6)])
    assert sorted(i for i, _ in seen) == list(range(6))
    assert len({name for _, name in seen}) == 2  # the caller and the pool thread

    seen.clear()

    def boom():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        engine._drain([boom] + [lambda i=i: task(i) for i in range(20)])
    assert len(seen) < 20  # the queue stops after an error
    engine.close()


def test_concurrent_callers_share_one_object(small):
    from concurrent.futures import ThreadPoolExecutor

    x = smooth_images(4, (32, 32), np.random.default_rng(7))
    want = small(x)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: small(x), range(8)))
    for got in results:
        np.testing.assert_array_equal(got, want)
