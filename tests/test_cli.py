"""The `melcnn` command, run as a real subprocess."""

import argparse
import json
import os
import subprocess
import sys

import jsonschema
import pytest
from conftest import bonafide_signal, spoof_signal, write_wav

from melcnn.report import schema

MELCNN = [sys.executable, "-m", "melcnn"]


def run(*args, env=None, umask=None):
    return subprocess.run(
        [*MELCNN, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def piped_into_head(*args) -> tuple[int, str, str]:
    """`melcnn ARGS | head -1` through a real pipe: (melcnn's exit status, head's output, melcnn's stderr)."""
    melcnn = subprocess.Popen([*MELCNN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=melcnn.stdout, stdout=subprocess.PIPE)
    melcnn.stdout.close()  # head alone holds the pipe's read end: when it exits, melcnn's writes fail
    out = head.communicate(timeout=300)[0].decode()
    err = melcnn.stderr.read().decode()
    return melcnn.wait(timeout=300), out, err


def png_text(path) -> dict[str, str]:
    """The tEXt fields of a PNG file."""
    from PIL import Image

    with Image.open(path) as img:
        return dict(img.text)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "real": write_wav(d / "real.wav", bonafide_signal(7.0, seed=601)),
        "fake": write_wav(d / "fake.wav", spoof_signal(7.0, seed=602)),
        "short": write_wav(d / "short.wav", bonafide_signal(1.0, seed=603)),
        "dir": d,
    }


def test_summary_output(tiny_checkpoints, files):
    p = run("analyze", files["real"], files["fake"], "--model", tiny_checkpoints["v3"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    real_line = next(line for line in lines if line.startswith(str(files["real"])))
    fake_line = next(line for line in lines if line.startswith(str(files["fake"])))
    assert "REAL" in real_line and "FAKE" in fake_line
    assert sum("timeline" in line for line in lines) == 2


def test_json_single_and_json_lines(tiny_checkpoints, files):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v2"], "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\n") == 1  # compact: the whole report (V2's 128x94 spectrogram data too) on one line
    report = json.loads(p.stdout)
    assert report["file"] == str(files["fake"]) and report["prediction"] == "FAKE"
    jsonschema.validate(report, schema())
    assert len(report["visualization"]["spectrogram_data"]) == 128  # the full report, not a cut-down one

    pretty = run("analyze", files["fake"], "--model", tiny_checkpoints["v2"], "--pretty")
    assert pretty.returncode == 0, pretty.stderr
    assert pretty.stdout.count("\n") > 1000 and pretty.stdout.startswith('{\n  "file": ')
    again = json.loads(pretty.stdout)
    for r in (report, again):
        del r["processing_time"], r["timings"]
    assert again == report

    p = run("analyze", files["real"], files["short"], files["fake"], "--model", tiny_checkpoints["v3"], "--json")
    assert p.returncode == 3  # one file could not be analysed
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(files["real"]), str(files["short"]), str(files["fake"])]
    assert rows[1]["error"]["code"] == "too_short"
    assert "1.00 s" in rows[1]["error"]["message"] and "3.00 s" in rows[1]["error"]["message"]
    assert "short.wav" in p.stderr and "Traceback" not in p.stderr
    assert rows[0]["prediction"] == "REAL" and rows[2]["prediction"] == "FAKE"
    assert rows[2]["metrics"]["num_chunks"] == 3


@pytest.mark.parametrize(("variant", "size"), [("v3", (500, 1000)), ("v2", (400, 1000))])
def test_plot_dir(tiny_checkpoints, files, tmp_path, variant, size):
    """Pictures are named after their input, titled with its name, readable by others (umask 022)."""
    import matplotlib.image

    odd = files["dir"] / "my call (1) #2.wav"  # spaces, brackets and '#' in the input's name
    odd.write_bytes(files["fake"].read_bytes())
    pics = tmp_path / "pics"
    p = run(
        "analyze", files["real"], odd, "--model", tiny_checkpoints[variant], "--json", "--plot-dir", pics, umask=0o022
    )
    assert p.returncode == 0, p.stderr
    urls = [json.loads(line)["visualization"]["spectrogram_url"] for line in p.stdout.splitlines()]
    kind = "timeline" if variant == "v3" else "spectrogram"
    assert [os.path.basename(u) for u in urls] == [f"real_{variant}_{kind}.png", f"my_call_1_2_{variant}_{kind}.png"]
    assert sorted(os.listdir(pics)) == sorted(os.path.basename(u) for u in urls)  # no temporary files left
    for url, name in zip(urls, ("real.wav", "my call (1) #2.wav"), strict=True):
        assert os.stat(url).st_mode & 0o777 == 0o644
        img = matplotlib.image.imread(url)
        assert img.shape[:2] == size and img[..., :3].std() > 0.1
        assert name in png_text(url)["Title"]


def test_two_inputs_with_one_name_keep_both_pictures(tiny_checkpoints, files, tmp_path):
    other = tmp_path / "elsewhere" / "fake.wav"
    other.parent.mkdir()
    other.write_bytes(files["real"].read_bytes())
    p = run("analyze", files["fake"], other, "--model", tiny_checkpoints["v2"], "--plot-dir", tmp_path / "pics")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "pics")) == ["fake_v2_spectrogram-2.png", "fake_v2_spectrogram.png"]


def test_plot_dir_that_cannot_be_made_is_a_usage_error(tiny_checkpoints, files, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for bad in ("/proc/nope", blocker, blocker / "sub"):
        p = run("analyze", files["fake"], "--model", tiny_checkpoints["v2"], "--plot-dir", bad)
        assert p.returncode == 2, p.stderr
        assert f"--plot-dir '{bad}'" in p.stderr and "Errno" not in p.stderr and "Traceback" not in p.stderr


def test_max_duration_error_names_the_option(tiny_checkpoints, files):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v2"], "--max-duration", "5", "--json")
    assert p.returncode == 3
    assert "--max-duration" in p.stderr and "max_duration_s" not in p.stderr
    assert json.loads(p.stdout)["error"]["code"] == "too_long"
    assert "--max-duration" in json.loads(p.stdout)["error"]["message"]


def test_one_chunk_is_singular(tiny_checkpoints, tmp_path):
    one = write_wav(tmp_path / "one.wav", bonafide_signal(3.2, seed=604))
    p = run("analyze", one, "--model", tiny_checkpoints["v2"])
    assert p.returncode == 0, p.stderr
    assert "|  1 chunk  |" in p.stdout and "1 chunks" not in p.stdout
    p = run("analyze", one, "--model", tiny_checkpoints["v2"], "--json")
    assert len(json.loads(p.stdout)["chunks"]) == 1


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_piping_into_head_is_silent_and_succeeds(tiny_checkpoints, files, json_flag):
    """`melcnn analyze ... | head -1`: head exits after the first file; melcnn stops quietly with status 0."""
    names = [files["real"], files["fake"], files["real"], files["fake"]]
    status, out, err = piped_into_head("analyze", *names, "--model", tiny_checkpoints["v2"], *json_flag)
    assert out.startswith("{" if json_flag else str(files["real"])) and out.count("\n") == 1
    assert status == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    status, out, err = piped_into_head("models")
    assert status == 0 and out.startswith("MEL-Spectrogram-CNN-V2") and "Traceback" not in err


def test_first_run_says_what_it_prepares_once(files, tmp_path):
    """A fresh cache folder: one stderr line says what is being prepared; the next run is silent."""
    env = dict(os.environ, MELCNN_CACHE_DIR=str(tmp_path / "cache"))
    first = run("analyze", files["fake"], env=env)
    assert first.returncode == 0, first.stderr
    notice = [line for line in first.stderr.splitlines() if "first run" in line]
    assert len(notice) == 1 and "filter bank" in notice[0] and "once" in notice[0], first.stderr
    # what the first run prepared is kept (its time, about 5 s, is measured by the benchmarks, not here)
    kept = sorted(f.name for f in (tmp_path / "cache").rglob("*") if f.is_file())
    assert any(n.endswith(".npz") for n in kept) and any("wisdom" in n for n in kept), kept
    second = run("analyze", files["fake"], env=env)
    assert second.returncode == 0 and "first run" not in second.stderr
    assert second.stdout.splitlines()[0] == first.stdout.splitlines()[0]  # the same verdict and score


def _options(parser: argparse.ArgumentParser, path: str = "melcnn"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_every_option_has_help_stating_its_default():
    from melcnn.cli import build_parser

    checked = []
    for path, action in _options(build_parser()):
        name = f"{path} {action.option_strings[-1]}"
        assert action.help, f"{name} has no help text"
        flag = action.nargs == 0  # store_true and the like: no value, so no default to state
        stated = "default" in action.help or "(required)" in action.help
        assert flag or stated, f"{name}: help does not state the default: {action.help!r}"
        checked.append(name)
    assert "melcnn data build --minutes" in checked and "melcnn serve --timeout-s" in checked
    assert "melcnn analyze --device" in checked and len(checked) > 30


def test_analyze_and_serve_share_one_default_model():
    from melcnn.cli import DEFAULT_MODEL, SERVE_MODELS, build_parser
    from melcnn.server import Settings

    args = build_parser().parse_args(["analyze", "x.wav"])
    assert args.model == DEFAULT_MODEL == SERVE_MODELS[0] == Settings().models[0]


def test_overlap_option(tiny_checkpoints, files):
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--json", "--overlap", "2.5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["metrics"]["chunk_overlap_s"] == 2.5
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--overlap", "3")
    assert p.returncode == 2 and p.stdout == ""
    rule = "overlap must be a number of seconds from 0 to 2.5 (the 3 s chunk length less 0.5 s)"
    assert p.stderr == f"melcnn: {rule}; got 3\n"
    p = run("analyze", files["fake"], "--model", tiny_checkpoints["v3"], "--overlap", "-1")
    assert p.returncode == 2


def test_errors_and_exit_codes(tiny_checkpoints, files):
    p = run("analyze", files["dir"] / "missing.wav", "--model", tiny_checkpoints["v2"])
    assert p.returncode == 3 and "missing.wav" in p.stderr and "Traceback" not in p.stderr
    p = run("analyze", files["real"], "--model", "no-such-model")
    assert p.returncode == 4 and "unknown model" in p.stderr
    p = run("analyze")
    assert p.returncode == 2
    p = run("frobnicate")
    assert p.returncode == 2


def test_models_lists_both_models():
    p = run("models", "--json")
    assert p.returncode == 0, p.stderr
    names = [m["name"] for m in json.loads(p.stdout)["models"]]
    assert names == ["MEL-Spectrogram-CNN-V2", "MEL-Spectrogram-CNN-V3"]
    p = run("models")
    assert p.returncode == 0 and "MEL-Spectrogram-CNN-V3" in p.stdout
