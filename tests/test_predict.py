"""Predictor and `cnnlab predict`: right answers, streaming past bad files, every output format."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main as cli_main
from cnnlab.data.datasets import load_dataset
from cnnlab.errors import ImageInputError
from cnnlab.predict import Failure, Prediction, Predictor, collect_files
from cnnlab.preprocess import to_model_input
from cnnlab.runs import load_run
from drawn import draw_digit, encode
from tiny_runs import make_run


@pytest.fixture
def fake_run(fake_dataset, tmp_path) -> Path:
    """A `cnn` (width 4) trained on the fake bars for 3 epochs, saved as an image-folder run
    (style "fit", plain fit and pad), so that the fake test images, saved as PNGs, reach the
    model exactly as in training (fitting 28 into 28 is the identity)."""
    return make_run(
        tmp_path / "run", "fake", "cnn", {"width": 4}, epochs=3, style="fit", saved_as="imagefolder:fake"
    )


@pytest.fixture
def fake_pngs(fake_dataset, tmp_path) -> tuple[list[Path], list[int]]:
    """The first 12 fake test images as PNG files, and their labels."""
    test = load_dataset("fake", "test")
    folder = tmp_path / "pngs"
    folder.mkdir()
    paths = []
    for i in range(12):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(test.images[i, 0].numpy()).save(path)
        paths.append(path)
    return paths, test.targets[:12].tolist()


def test_predictions_are_right_and_well_formed(fake_run, fake_pngs):
    predictor = Predictor(load_run(fake_run))
    paths, labels = fake_pngs
    preds = predictor.predict(paths, top=3)
    assert [p.name for p in preds] == [str(p) for p in paths]
    assert sum(int(p.label) == y for p, y in zip(preds, labels, strict=True)) >= 11
    for p in preds:
        probs = [q for _, q in p.top]
        assert len(p.top) == 3 and probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6 and p.probability == probs[0]
        assert p.input.dtype == torch.uint8 and p.input.shape == (1, 28, 28)


def test_probabilities_match_the_model_on_the_same_input(fake_run, fake_pngs):
    run = load_run(fake_run)
    predictor = Predictor(run)
    pred = predictor.predict([fake_pngs[0][0]], top=10)[0]
    with torch.no_grad():
        expected = torch.softmax(run.model(to_model_input(pred.input, run.mean, run.std)), 1)[0]
    got = torch.tensor([q for _, q in sorted(pred.top, key=lambda t: int(t[0]))])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert len(predictor.predict([fake_pngs[0][0]], top=50)[0].top) == 10  # capped at the classes


def test_predictor_is_thread_safe(fake_run, fake_pngs):
    """Eight threads predicting at once get exactly what one thread gets."""
    predictor = Predictor(load_run(fake_run))
    paths = fake_pngs[0]
    expected = [p.top for p in predictor.predict(paths)]
    results, errors = {}, []

    def work(i):
        try:
            results[i] = [p.top for p in predictor.predict(paths[i % 3 :] + paths[: i % 3])]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, tops in results.items():
        want = expected[i % 3 :] + expected[: i % 3]
        assert [[c for c, _ in t] for t in tops] == [[c for c, _ in t] for t in want]
        assert np.allclose(
            [[q for _, q in t] for t in tops], [[q for _, q in t] for t in want], atol=1e-6
        )


def test_stream_goes_past_bad_files_in_order(fake_run, fake_pngs, tmp_path):
    predictor = Predictor(load_run(fake_run))
    good = fake_pngs[0][:5]
    bad_text = tmp_path / "notes.png"
    bad_text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    order = [good[0], bad_text, good[1], good[2], empty, good[3], tmp_path / "missing.png", good[4]]
    seen = []
    results = list(predictor.predict_files(order, batch_size=2, on_result=seen.append))
    assert [r.name for r in results] == [str(p) for p in order]
    assert seen == results
    kinds = [type(r) for r in results]
    assert kinds == [
        Prediction,
        Failure,
        Prediction,
        Prediction,
        Failure,
        Prediction,
        Failure,
        Prediction,
    ]
    assert "notes.png" in results[1].error and "empty" in results[4].error
    single = {p.name: p.top for p in predictor.predict(good)}  # one batch of 5, not 2 + 2 + 1
    for r in results:
        if isinstance(r, Prediction):
            assert [c for c, _ in r.top] == [c for c, _ in single[r.name]]
            assert np.allclose([q for _, q in r.top], [q for _, q in single[r.name]], atol=1e-5)


def test_predict_raises_for_a_bad_image_in_a_batch(fake_run):
    with pytest.raises(ImageInputError, match="upload"):
        Predictor(load_run(fake_run)).predict([b"nonsense"])


def test_collect_files_walks_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/1.png", "a/b/2.JPG", "a/b/3.webp", "a/readme.txt", "a/.hidden/4.png", "a/.5.png"):
        (tmp_path / name).write_bytes(b"x")
    files, skipped = collect_files([tmp_path / "a", tmp_path / "named.tif"])
    rel = [str(p.relative_to(tmp_path)) for p in files]
    assert rel == ["a/1.png", "a/b/2.JPG", "a/b/3.webp", "named.tif"]  # named files always tried
    assert [p.name for p in skipped] == ["readme.txt"]


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `cnnlab ARGS` in this process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli_main(list(args))
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def test_cli_table_with_bad_files_and_previews(fake_run, fake_pngs, tmp_path):
    paths, labels = fake_pngs
    (paths[0].parent / "bad.png").write_bytes(encode(draw_digit(1), "PNG")[:300])  # truncated
    (paths[0].parent / "notes.txt").write_text("skipped: not an image suffix")
    code, out, err = run_cli(
        "predict", str(fake_run), str(paths[0].parent), "--top", "2", "--preview", str(tmp_path / "prev")
    )
    assert code == 2  # one file failed
    assert err.count("cnnlab: error:") == 1 and "bad.png" in err and "truncated" in err
    assert "predicted 12 of 13" in err and "skipped 1" in err
    rows = out.strip().splitlines()[2:]
    assert len(rows) == 13 and rows[0].split()[1] == "error"
    predicted = {Path(r.split()[0]).name: r.split()[1] for r in rows[1:]}
    assert sum(predicted[p.name] == str(y) for p, y in zip(paths, labels, strict=True)) >= 11
    previews = sorted(p.name for p in (tmp_path / "prev").iterdir())
    assert previews == sorted(f"{p.stem}.png" for p in paths)
    with Image.open(tmp_path / "prev" / "img00.png") as img:
        assert img.format == "PNG" and img.width > 2 * 28 * 7


def test_cli_json_and_csv(fake_run, fake_pngs, tmp_path):
    paths = [str(p) for p in fake_pngs[0][:3]]
    missing = str(tmp_path / "gone.png")
    code, out, err = run_cli("predict", str(fake_run), *paths, missing, "--format", "json", "--top", "4")
    assert code == 2 and "gone.png" in err
    data = json.loads(out)
    assert [d["file"] for d in data] == paths + [missing]
    assert all(len(d["top"]) == 4 for d in data[:3]) and "error" in data[3]
    probs = [t["probability"] for t in data[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    code, out, _ = run_cli("predict", str(fake_run), *paths, "--format", "csv", "--top", "2")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["file", "class1", "p1", "class2", "p2", "error"]
    assert [r[0] for r in rows[1:]] == paths and all(r[-1] == "" for r in rows[1:])
    assert all(float(r[2]) >= float(r[4]) for r in rows[1:])


def test_cli_errors_are_one_line(fake_run, tmp_path):
    code, _, err = run_cli("predict", str(tmp_path / "norun"), str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "norun" in err
    code, _, err = run_cli("predict", str(fake_run), str(tmp_path / "run"))  # a folder, no images
    assert code == 2 and "no image files" in err


def test_cli_subprocess_no_progress_bar_when_not_a_tty(fake_run, fake_pngs):
    """As a script would run it: no bar characters on a non-terminal stderr, exit 0."""
    paths = [str(p) for p in fake_pngs[0][:2]]
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "predict", str(fake_run), *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "it/s" not in proc.stderr and "img/s" not in proc.stderr and "%|" not in proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 4


def test_digits_style_run_accepts_arrays_and_bytes(fake_dataset, tmp_path):
    """A "digits" run preprocesses every kind of source the same way."""
    run = make_run(tmp_path / "drun", "fake", "cnn", {"width": 4}, epochs=1)
    predictor = Predictor(load_run(run))
    img = draw_digit(7, ink=0, paper=255)
    a, b, c = predictor.predict([img, encode(img, "PNG"), np.asarray(img)])
    assert a.top == b.top == c.top and torch.equal(a.input, b.input)
    assert a.preprocessed.inverted


def test_unreadable_inputs_are_one_error_line_each(fake_run, fake_pngs, tmp_path):
    """An OSError reading one input (EIO from /proc/self/mem, no permission) fails that file only."""
    paths = [str(p) for p in fake_pngs[0][:2]]
    locked = tmp_path / "locked.png"
    locked.write_bytes(Path(paths[0]).read_bytes())
    locked.chmod(0)
    unreadable = ["/proc/self/mem"] if Path("/proc/self/mem").is_file() else []
    if os.geteuid() != 0:  # root reads a file without read permission
        unreadable.append(str(locked))
    if not unreadable:
        pytest.skip("no unreadable file on this system")
    code, out, err = run_cli("predict", str(fake_run), paths[0], *unreadable, paths[1])
    assert code == 2 and "Traceback" not in err
    for bad in unreadable:
        assert f"cnnlab: error: {bad}: cannot read the file (" in err
    rows = out.strip().splitlines()[2:]
    assert [r.split()[0] for r in rows] == [paths[0], *unreadable, paths[1]]
    assert f"predicted 2 of {2 + len(unreadable)} images" in err


def test_folder_deeper_than_the_recursion_limit_is_walked(fake_run, fake_pngs, tmp_path):
    from test_datasets import deep_folder

    (tmp_path / "deep").mkdir()
    with deep_folder(tmp_path / "deep", sys.getrecursionlimit() + 200) as deep:
        (deep / "x.png").write_bytes(fake_pngs[0][0].read_bytes())
        assert collect_files([tmp_path / "deep"]) == ([deep / "x.png"], [])
        code, out, err = run_cli("predict", str(fake_run), str(tmp_path / "deep"))
        assert code == 0 and "x.png" in out, err


@pytest.mark.parametrize("command", ["predict", "explain", "eval"])
def test_output_folder_that_is_a_file_or_cannot_be_made_is_one_line(
    command, fake_run, fake_pngs, tmp_path
):
    image = str(fake_pngs[0][0])
    flag, argv = {
        "predict": ("--preview", ["predict", str(fake_run), image]),
        "explain": ("--out", ["explain", str(fake_run), image]),
        "eval": ("--out", ["eval", str(fake_run)]),
    }[command]
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    bad = [(a_file, "is a file, not a folder"), (a_file / "sub", "cannot create the folder")]
    if Path("/proc/self").is_dir():
        bad.append((Path("/proc/self/no-such-dir"), "cannot create the folder"))
    for path, why in bad:
        code, _, err = run_cli(*argv, flag, str(path))
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"cnnlab: error: {flag} {path}: {why}") and "choose" in err
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_output_folder_is_one_line(fake_run, fake_pngs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run_cli("predict", str(fake_run), str(fake_pngs[0][0]), "--preview", str(locked))
    assert code == 2 and f"--preview {locked}: cannot write into the folder" in err
