"""Fast in-process checks of the server's parts: CLI options, settings, picture store, file names."""

from __future__ import annotations

import time

import pytest

from melcnn.cli import build_parser, main
from melcnn.server.artifacts import ArtifactStore
from melcnn.server.settings import MB, Settings, SettingsError, read_api_key
from melcnn.server.uploads import clean_filename


def test_serve_defaults():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.model, args.max_upload_mb) == ("127.0.0.1", 8000, None, 200.0)
    assert args.api_key_file is None and args.workers is None
    args = build_parser().parse_args(["serve", "--model", "v2", "--model", "v3", "--workers", "3"])
    assert args.model == ["v2", "v3"] and args.workers == 3


def test_serve_refuses_bad_options(tmp_path, tiny_checkpoints, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 4
    assert "cannot load model" in capsys.readouterr().err
    empty = tmp_path / "key"
    empty.write_text("\n")
    assert main(["serve", "--model", str(tiny_checkpoints["v3"]), "--api-key-file", str(empty)]) == 2
    assert "holds no key" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_checkpoints["v3"]), "--workers", "0"]) == 2
    assert main(["serve", "--model", str(tiny_checkpoints["v3"]), "--tmp-dir", str(tmp_path / "nope")]) == 2


def test_settings_validation(tmp_path):
    s = Settings(models=("v3",), tmp_dir=tmp_path, workers=2, queue_size=5)
    assert s.capacity == 7 and s.max_upload_bytes == 200 * MB
    for bad in ({"models": ()}, {"port": 70000}, {"max_upload_bytes": 0}, {"timeout_s": float("nan")}):
        with pytest.raises(SettingsError):
            Settings(**{"tmp_dir": tmp_path, **bad})
    key = tmp_path / "k"
    key.write_text("  abc \nsecond line\n")
    assert read_api_key(key) == b"abc"
    with pytest.raises(SettingsError, match="cannot read"):
        read_api_key(tmp_path / "absent")


def test_artifact_store_expires_and_evicts(tmp_path):
    store = ArtifactStore(tmp_path / "a", ttl_s=0.3, max_items=2)
    ids = []
    for i in range(3):
        src = tmp_path / f"p{i}.png"
        src.write_bytes(b"png%d" % i)
        ids.append(store.add(src))
        assert not src.exists()
    assert len(store) == 2 and store.get(ids[0]) is None  # the oldest was evicted
    data, art = store.get(ids[2])
    assert data == b"png2" and art.media_type == "image/png" and (art.path.stat().st_mode & 0o777) == 0o600
    assert store.get("../../etc/passwd") is None and store.get("") is None
    time.sleep(0.35)
    assert store.get(ids[2]) is None
    assert store.purge_expired() == 2 and list((tmp_path / "a").iterdir()) == []


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("a.wav", "a.wav"),
        ("C:\\Users\\x\\clip.mp3", "clip.mp3"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\n.wav", "ab.wav"),
    ],
)
def test_clean_filename(raw, shown):
    assert clean_filename(raw) == shown


def test_stale_work_dirs_removed(tmp_path):
    import os
    import subprocess
    import sys

    from melcnn.server.app import remove_stale_work_dirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"melcnn-serve-{int(dead.stdout)}-abc"
    (stale / "uploads").mkdir(parents=True)
    mine = tmp_path / f"melcnn-serve-{os.getpid()}-def"
    mine.mkdir()
    other = tmp_path / "melcnn-serve-notapid"
    other.mkdir()
    assert remove_stale_work_dirs(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])
