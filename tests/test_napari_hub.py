"""What the napari hub and napari's plugin manager read: ``npe2 validate``, the hub's
description and listing, display names, and the stated napari versions."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HUB = ROOT / ".napari-hub"


def _napari_floor() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"napari>=([0-9.]+)"', pyproject)
    assert match, "pyproject.toml names no lowest napari version"
    return match.group(1)


def test_npe2_validate_passes():
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-sam2"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_every_contribution_has_a_display_name():
    manifest = yaml.safe_load((ROOT / "napari_sam2" / "napari.yaml").read_text())
    assert manifest["display_name"] == "SAM 2"
    contributions = manifest["contributions"]
    assert all(c["title"] for c in contributions["commands"])
    for kind in ("widgets", "writers", "sample_data"):
        assert all(item.get("display_name") for item in contributions[kind]), kind
    assert {item["command"] for items in contributions["menus"].values() for item in items} == {"napari-sam2.widget"}


def test_hub_listing_is_complete():
    config = yaml.safe_load((HUB / "config.yml").read_text())
    assert 20 <= len(config["summary"]) <= 200
    assert config["labels"]["ontology"].startswith("EDAM-BIOIMAGING")
    assert len(config["labels"]["terms"]) >= 3
    urls = config["project_urls"]
    for key in ("Documentation", "User Support", "Bug Tracker", "Source Code"):
        assert urls[key].startswith("https://"), key
    description = (HUB / "DESCRIPTION.md").read_text()
    assert description.startswith("# napari-sam2")
    # the hub shows this page without the repository: no links into it
    assert not re.search(r"\]\((?!https?://)[^)]+\)", description), "relative links do not work on the hub"


def test_supported_napari_versions_are_stated_and_tested():
    """The lowest napari is the dependency's floor; the tests run on the napari installed,
    which the README and the hub description name (update both when napari moves on)."""
    import napari
    from packaging.version import Version

    floor = _napari_floor()
    installed = Version(napari.__version__)
    assert installed >= Version(floor)
    tested = f"{installed.major}.{installed.minor}"
    statement = f"napari {floor} or newer; the tests run on napari {tested}"
    for path in (ROOT / "README.md", HUB / "DESCRIPTION.md"):
        text = " ".join(path.read_text().split())
        assert statement in text, f"{path.name} should say: {statement!r}"
