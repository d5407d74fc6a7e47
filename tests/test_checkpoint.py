"""Checkpoint names, strict loading, downloads (from a local server) and device choice."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from functools import partial

import pytest
import torch

from napari_sam2.model import MODEL_NAMES, build_sam2, get_config
from napari_sam2.model import checkpoint as ckpt
from napari_sam2.model.checkpoint import CheckpointError, OfficialCheckpoint
from napari_sam2.model.sam2 import _expected_shapes, matching_variants


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return build_sam2("sam2.1_hiera_tiny", device="cpu").state_dict()


def save(state, path):
    torch.save({"model": state}, path)
    return path


def test_every_official_variant_has_a_config_and_a_checkpoint_entry():
    assert set(MODEL_NAMES) == set(ckpt.OFFICIAL_CHECKPOINTS)
    for name in MODEL_NAMES:
        entry = ckpt.OFFICIAL_CHECKPOINTS[name]
        assert entry.filename == f"{name}.pt"
        assert len(entry.sha256) == 64 and all(url.startswith("https://") for url in entry.urls)
        assert any("huggingface.co/facebook/" in url for url in entry.urls)


def test_variants_are_told_apart_by_their_keys_and_shapes():
    shapes = {name: _expected_shapes(name) for name in MODEL_NAMES}
    assert len({tuple(sorted(s.items())) for s in shapes.values()}) == len(MODEL_NAMES)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown SAM 2 model 'sam3'; known models: sam2.1_hiera_tiny"):
        build_sam2("sam3")
    with pytest.raises(CheckpointError, match="unknown SAM 2 model"):
        ckpt.checkpoint_path("sam3")


def test_round_trip_loads_strictly(tiny_state, tmp_path):
    path = save(tiny_state, tmp_path / "tiny.pt")
    model = build_sam2("sam2.1_hiera_tiny", checkpoint=path, device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_state[key]), key
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert matching_variants(tiny_state) == ["sam2.1_hiera_tiny"]


def test_checkpoint_of_another_variant_names_the_right_one(tmp_path):
    torch.manual_seed(0)
    small = build_sam2("sam2_hiera_small", device="cpu").state_dict()
    path = save(small, tmp_path / "small.pt")
    with pytest.raises(CheckpointError) as err:
        build_sam2("sam2.1_hiera_tiny", checkpoint=path, device="cpu")
    text = str(err.value)
    assert "does not fit the sam2.1_hiera_tiny model" in text
    assert "missing keys" in text and "unexpected keys" in text
    assert "It is a checkpoint of sam2_hiera_small" in text


def test_mismatched_shapes_and_partial_files_are_named(tiny_state, tmp_path):
    state = dict(tiny_state)
    state["no_mem_embed"] = torch.zeros(1, 1, 128)
    del state["obj_ptr_proj.layers.0.bias"]
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        build_sam2("sam2.1_hiera_tiny", checkpoint=save(state, tmp_path / "bad.pt"), device="cpu")
    text = str(err.value)
    assert "no_mem_embed (1, 1, 128) vs (1, 1, 256)" in text
    assert "obj_ptr_proj.layers.0.bias" in text and "extra.weight" in text
    assert "matches none of the official" in text


def test_truncated_and_foreign_files(tiny_state, tmp_path):
    good = save(tiny_state, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable SAM 2 checkpoint"):
        build_sam2("sam2.1_hiera_tiny", checkpoint=truncated, device="cpu")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable SAM 2 checkpoint"):
        ckpt.read_state_dict(text)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3}, other)
    with pytest.raises(CheckpointError, match="does not hold a SAM 2 state dict"):
        ckpt.read_state_dict(other)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        ckpt.read_state_dict(tmp_path / "missing.pt")


def test_smaller_input_size_uses_the_same_weights(tiny_state, tmp_path):
    path = save(tiny_state, tmp_path / "tiny.pt")
    model = build_sam2("sam2.1_hiera_tiny", checkpoint=path, device="cpu", image_size=512)
    assert model.image_size == 512 and model.config.embedding_size == 32
    with pytest.raises(ValueError, match="multiple of 32"):
        get_config("sam2.1_hiera_tiny", image_size=500)


# ---------------------------------------------------------------- downloads
class _Server:
    """A loopback HTTP server for one folder, so downloads are tested for real."""

    def __init__(self, folder):
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tiny_state, tmp_path, monkeypatch):
    folder = tmp_path / "www"
    folder.mkdir()
    payload = save(tiny_state, folder / "sam2.1_hiera_tiny.pt")
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    server = _Server(folder)
    cache = tmp_path / "cache"
    monkeypatch.setenv(ckpt.CACHE_ENV, str(cache))

    def use(urls, sha256=digest):
        entry = OfficialCheckpoint("sam2.1_hiera_tiny", "sam2.1_hiera_tiny.pt", tuple(urls), sha256, None)
        monkeypatch.setitem(ckpt.OFFICIAL_CHECKPOINTS, "sam2.1_hiera_tiny", entry)

    yield server, use, cache
    server.close()


def test_download_with_progress_and_cache(served):
    server, use, cache = served
    use([f"{server.url}/sam2.1_hiera_tiny.pt"])
    seen = []
    path = ckpt.download_checkpoint("sam2.1_hiera_tiny", progress=lambda done, total: seen.append((done, total)))
    assert path == cache / "sam2.1_hiera_tiny.pt" and path.is_file()
    assert seen and seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert ckpt.is_cached("sam2.1_hiera_tiny", verify=True)
    assert [p.name for p in cache.iterdir()] == ["sam2.1_hiera_tiny.pt"]  # no temporary left
    model = build_sam2("sam2.1_hiera_tiny", checkpoint="official", device="cpu")  # served from the cache
    assert torch.equal(model.no_mem_embed, torch.load(path, weights_only=True)["model"]["no_mem_embed"])


def test_download_falls_back_to_the_mirror(served):
    server, use, cache = served
    use([f"{server.url}/missing.pt", f"{server.url}/sam2.1_hiera_tiny.pt"])
    assert ckpt.download_checkpoint("sam2.1_hiera_tiny", progress=False).is_file()


class _Cancelled(Exception):
    pass


def test_cancel_during_a_download_stops_at_once(served):
    server, use, cache = served
    requests = []
    handler = server.httpd.RequestHandlerClass
    original = handler.func.do_GET

    def counting(self):
        requests.append(self.path)
        return original(self)

    handler.func.do_GET = counting
    try:
        use([f"{server.url}/sam2.1_hiera_tiny.pt", f"{server.url}/mirror/sam2.1_hiera_tiny.pt"])

        def cancel(done, total):
            if done:
                raise _Cancelled()

        with pytest.raises(_Cancelled):
            ckpt.download_checkpoint("sam2.1_hiera_tiny", progress=cancel)
    finally:
        handler.func.do_GET = original
    assert requests == ["/sam2.1_hiera_tiny.pt"]  # the mirror was never asked
    assert not cache.exists() or not any(cache.iterdir())  # no partial file


def test_corrupt_download_never_looks_complete(served):
    server, use, cache = served
    use([f"{server.url}/sam2.1_hiera_tiny.pt"], sha256="0" * 64)
    with pytest.raises(CheckpointError, match="could not download"):
        ckpt.download_checkpoint("sam2.1_hiera_tiny", progress=False)
    assert not (cache / "sam2.1_hiera_tiny.pt").exists()


def test_no_network_says_where_to_put_the_file(served):
    server, use, cache = served
    server.close()
    use(["http://127.0.0.1:9/sam2.1_hiera_tiny.pt"])
    with pytest.raises(CheckpointError) as err:
        ckpt.download_checkpoint("sam2.1_hiera_tiny", progress=False)
    text = str(err.value)
    assert "Without a network" in text and str(cache / "sam2.1_hiera_tiny.pt") in text
    assert ckpt.CACHE_ENV in text


def test_device_choice_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert ckpt.default_device().type == expected
    assert ckpt.autocast_dtype("cpu") is None


def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the whole reference model as its own builder makes it."""
    from reference import build_reference

    model = build_reference(name, video=False, obj_score_bias=0.0)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_full_state_dict_equals_the_official_layout(name):
    assert _expected_shapes(name) == _reference_shapes(name)
