"""Release packaging: ``python -m build`` makes an sdist and a wheel (the wheel built from
the sdist, so the sdist is complete) that carry the plugin manifest, the sample data and
the bundled demo model; ``twine check`` passes; and the wheel, installed into a fresh
virtual environment (no editable install, no repository on the path), runs
``napari-sam2 --version`` and a one-frame segmentation with the demo model.

The sources are the repository's tracked files copied to a temporary folder, so nothing
is built inside the checkout. Until the trained demo model is committed, a checkout
without ``napari_sam2/model/weights/demo.pt`` gets a stand-in (the demo architecture
with random weights) in that copy only: the packaging path is the same either way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import napari_sam2

ROOT = Path(__file__).resolve().parents[1]
DEMO = "napari_sam2/model/weights/demo.pt"
SAMPLE_MODULES = ["__init__.py", "fluorescence.py", "clip.py", "zstack.py"]

pytestmark = pytest.mark.timeout(1200)


def _run(*argv, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _tracked_files() -> list[str]:
    if shutil.which("git") and (ROOT / ".git").exists():
        out = _run("git", "ls-files", "-z", cwd=ROOT).stdout
        return [name for name in out.split("\0") if name]
    # a source tree without git (an unpacked sdist): everything but build leftovers
    skip = {"build", "dist", ".git", "__pycache__"}
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)]


def _stand_in_demo(path: Path) -> None:
    import torch

    from napari_sam2.model import build_sam2
    from napari_sam2.model.saved import save_checkpoint
    from napari_sam2.training.demo import demo_config

    torch.manual_seed(0)
    save_checkpoint(build_sam2(demo_config(), device="cpu"), path, {"stand_in": True})


def _is_stand_in(path: Path) -> bool:
    """True for a missing demo file or an untrained stand-in (random weights)."""
    if not path.is_file():
        return True
    import torch

    record = torch.load(path, map_location="cpu", weights_only=True).get("napari_sam2", {})
    return bool((record.get("metadata") or {}).get("stand_in"))


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel) built from a copy of the repository's tracked files."""
    source = tmp_path_factory.mktemp("source")
    for name in _tracked_files():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    (source / DEMO).parent.mkdir(parents=True, exist_ok=True)
    if (ROOT / DEMO).is_file():
        shutil.copy2(ROOT / DEMO, source / DEMO)
    else:
        _stand_in_demo(source / DEMO)
    out = tmp_path_factory.mktemp("dist")
    # no isolation: setuptools and wheel come from the testing extra (no download)
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, timeout=900)
    sdists = sorted(out.glob("*.tar.gz"))
    wheels = sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return sdists[0], wheels[0]


def test_the_version_lives_in_one_place(dists):
    sdist, wheel = dists
    version = napari_sam2.__version__
    assert sdist.name == f"napari_sam2-{version}.tar.gz"
    assert wheel.name.startswith(f"napari_sam2-{version}-py3-none-any")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and f'"{version}"' not in pyproject
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()


def test_wheel_and_sdist_carry_manifest_samples_and_demo_model(dists):
    sdist, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        demo_size = zf.getinfo(DEMO).file_size
    assert "napari_sam2/napari.yaml" in names
    assert {f"napari_sam2/sample_data/{m}" for m in SAMPLE_MODULES} <= names
    assert demo_size > 1_000_000
    assert not any(n.startswith("tests/") for n in names)
    assert "[napari.manifest]" in entry_points and "napari-sam2 = napari_sam2:napari.yaml" in entry_points
    assert "napari-sam2 = napari_sam2.cli:main" in entry_points
    assert "Framework :: napari" in metadata and "Description-Content-Type: text/markdown" in metadata
    assert "Provides-Extra: qt" in metadata

    with tarfile.open(sdist) as tf:
        top = sdist.name[: -len(".tar.gz")]
        members = {m.name.removeprefix(top + "/") for m in tf.getmembers()}
    for name in ["pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "napari_sam2/napari.yaml", DEMO,
                 *(f"napari_sam2/sample_data/{m}" for m in SAMPLE_MODULES)]:
        assert name in members, name


def test_twine_check_passes(dists):
    done = _run(sys.executable, "-m", "twine", "check", "--strict", *dists)
    assert done.stdout.count("PASSED") == 2, done.stdout


def _fresh_venv(folder: Path) -> Path:
    """A virtual environment that sees the installed dependencies (torch, napari, ...)
    but not this checkout: the editable install's path hook lives in the base
    site-packages, and is skipped because the venv's own site-packages comes first."""
    import venv

    venv.EnvBuilder(system_site_packages=True, with_pip=False, clear=True).create(folder)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    assert python.exists()
    return python


def test_wheel_installs_and_runs_from_a_fresh_venv(dists, tmp_path):
    _, wheel = dists
    python = _fresh_venv(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # pip from the base environment installs into the venv it runs in
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", wheel,
         cwd=work, env=env)
    where = _run(python, "-c", "import napari_sam2, sys; print(napari_sam2.__file__); print(sys.prefix)",
                 cwd=work, env=env).stdout.split("\n")
    module, prefix = Path(where[0]).resolve(), Path(where[1]).resolve()
    assert prefix == (tmp_path / "venv").resolve()
    assert module.is_relative_to(prefix), (
        f"napari_sam2 was imported from {module}, not from the wheel in the venv: something puts the "
        "repository or an editable install ahead of the venv's site-packages"
    )
    assert not module.is_relative_to(ROOT)
    scripts = Path(sysconfig.get_path("scripts", vars={"base": str(prefix), "platbase": str(prefix)}))
    command = scripts / ("napari-sam2.exe" if os.name == "nt" else "napari-sam2")
    version = _run(command, "--version", cwd=work, env=env).stdout.strip()
    assert version == f"napari-sam2 {napari_sam2.__version__}"

    # one frame, one click, the bundled demo model, through the command line
    import tifffile

    from napari_sam2.io.prompts import PromptSet
    from napari_sam2.sample_data import cells_timelapse

    clip = cells_timelapse(num_frames=1, size=96, seed=5)
    tifffile.imwrite(work / "frame.tif", clip.image[:1], metadata={"axes": "TYX"})
    prompts = PromptSet()
    prompts.set_prompt(1, 0, points=[clip.centers[1][0]], labels=[1])
    prompts.to_json(work / "frame.prompts.json")
    done = _run(command, "track", "frame.tif", "-o", "masks.tif", "--model", "demo", "--device", "cpu",
                "--threads", "1", "-q", cwd=work, env=env, timeout=900)
    masks = tifffile.imread(work / "masks.tif")
    assert masks.reshape(-1, 96, 96).shape == (1, 96, 96), masks.shape
    assert set(np.unique(masks)) <= {0, 1}
    if not _is_stand_in(ROOT / DEMO):  # the trained model finds the clicked cell
        assert (masks == 1).any(), "the bundled demo model found nothing at the click"
    from_venv = _run(python, "-c", "import napari_sam2.model.bundled as b; print(b.bundled_path('demo'))",
                     cwd=work, env=env).stdout.strip()
    assert Path(from_venv).resolve().is_relative_to(prefix), from_venv
    assert json.loads((work / "frame.prompts.json").read_text())  # left as written
    assert done.stderr.count("error") == 0, done.stderr
