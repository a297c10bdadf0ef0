"""Issue 19: inputs that hung, crashed or multiplied, each fixed as a class.

1. special files (FIFO, device, socket) named like images: never opened, never waited on; and a reader blocked for
   good (a dead network mount) does not keep SIGTERM from ending spml-label, whose rerun resumes;
2. link cycles under an images folder: each real folder visited once, each real file labeled once;
3. paths the OS cannot take (NUL byte, too long, unencodable, a FIFO) in an image list: failure entries, not tracebacks;
4. JSON nested too deeply (or too big for memory), in every reader of a user's JSON: one line, not a traceback;
5. a COCO key given twice: read as json.load reads it (the last wins).
Steps that would hang on a broken build run in a subprocess or a thread with a deadline, so they fail, not hang."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from spml.data.coco import dataset_from_dict, load_coco
from spml.data.image_list import image_size, load_image_folder, load_image_list, scan_folder
from spml.data.images import ImageError, load_image
from spml.errors import SpmlError

CATS = [{"id": 3, "name": "dog"}, {"id": 8, "name": "cat"}]
DEEP = "[" * 200_000 + "]" * 200_000  # far beyond the decoder's recursion limit


def spml_label(*args):
    return [sys.executable, "-c", "import sys; from spml.label.cli import main; main(sys.argv[1:])", *map(str, args)]


def run(cmd, timeout=180, **kw):
    """The command's result; a hang is a test failure (the process killed), not a hung test run."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout}s: {' '.join(map(str, cmd[3:]))}")


def finishes(fn, *args, fifos=(), timeout=20):
    """fn(*args) or the exception it raised, run with a deadline; on a hang, the FIFOs are opened for writing and
    closed (an end of file for the blocked reader) so the test fails instead of hanging."""
    box = {}

    def call():
        try:
            box["value"] = fn(*args)
        except Exception as e:  # noqa: BLE001
            box["value"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"{fn.__name__} did not finish in {timeout}s")
    return box["value"]


@pytest.fixture
def folder_with_special_files(tmp_path):
    """Two images and, named like images: a FIFO, a socket, a link to a device that reads without end."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (12, 8), (200, 10, 10)).save(root / "a.jpg")
    Image.new("RGB", (6, 9), (10, 200, 10)).save(root / "sub" / "b.png")
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "sub" / "pipe2.png")
    os.symlink("/dev/zero", root / "zero.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.png"))
    yield root
    sock.close()


# 1. special files ---------------------------------------------------------------------------------------------

def test_the_folder_scan_takes_regular_files_only(folder_with_special_files):
    root = folder_with_special_files
    assert scan_folder(root) == ["a.jpg", "sub/b.png"]
    ds = finishes(load_image_folder, root, CATS, fifos=[root / "pipe.jpg", root / "sub" / "pipe2.png"])
    assert [(im["file_name"], im["width"], im["height"]) for im in ds.images] == [("a.jpg", 12, 8), ("sub/b.png", 6, 9)]


def test_special_files_named_in_a_list_are_refused_unopened(folder_with_special_files):
    root = folder_with_special_files
    fifos = [root / "pipe.jpg"]
    for name, kind in [("pipe.jpg", "FIFO"), ("zero.jpg", "character device"), ("sock.png", "socket"), ("sub", "folder")]:
        assert finishes(image_size, root / name, fifos=fifos) is None
        error = finishes(load_image, root / name, fifos=fifos)
        assert isinstance(error, ImageError) and f"not an image file (a {kind})" in str(error), error
    assert np.asarray(load_image(root / "a.jpg")).shape == (8, 12, 3)  # a regular file still decodes


def test_a_folder_with_special_files_is_labeled(tiny_onnx, folder_with_special_files, tmp_path):
    root = folder_with_special_files
    out = tmp_path / "labels.json"
    result = run(spml_label(tiny_onnx, "--images", root, "--tau", "0.5", "--out", out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert [im["file_name"] for im in json.loads(out.read_text())["images"]] == ["a.jpg", "sub/b.png"]


def listed_images(tiny_data, tmp_path):
    """A .txt list of 40 of the tiny dataset's images, row 20 named stuck.jpg; the options of a job over it."""
    images = tiny_data["sp"].parent / "images" / "train"
    sources = sorted(p.name for p in images.glob("*.jpg"))[:40]
    names = list(sources)
    names[20] = "stuck.jpg"  # row 20: in the third chunk of 8
    folder = tmp_path / "imgs"
    folder.mkdir()
    for source, name in zip(sources, names):
        shutil.copy(images / source, folder / name)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(names) + "\n")
    return ["--ann", listing, "--images", folder, "--tau", "0.5", "--batch-size", "4", "--chunk-size", "8",
            "--threads", "2"]


def sigterm_while_blocked(model, args, tmp_path, when: str, env) -> str:
    """Run spml-label with a reader stuck in open() for good once `when` exists (as on a dead network mount: here
    a FIFO no one writes, opened instead of stuck.jpg), SIGTERM it, and return its output once it ended; a test
    failure if it does not end within 10 s."""
    fifo, blocked = tmp_path / "never_written", tmp_path / "blocked"
    os.mkfifo(fifo)
    # PIL.Image.open is where every reader (header or decoder) opens an image
    hook = f"""
import os, sys, PIL.Image
real = PIL.Image.open
def stuck_open(fp, *a, **k):
    if str(getattr(fp, "name", fp)).endswith("stuck.jpg") and os.path.exists({str(when)!r}):
        open({str(blocked)!r}, "w").close()
        open({str(fifo)!r}, "rb")
    return real(fp, *a, **k)
PIL.Image.open = stuck_open
from spml.label.cli import main
main(sys.argv[1:])
"""
    proc = subprocess.Popen([sys.executable, "-c", hook, model, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not blocked.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert blocked.exists(), proc.stdout.read() if proc.poll() is not None else "never blocked"
        time.sleep(0.5)  # the main thread is now waiting on the blocked reader
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not end spml-label within 10 s while a reader was blocked")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read()
    assert code != 0 and "Traceback" not in output, output
    return output


def test_sigterm_ends_the_labeler_while_a_decoder_is_blocked_and_the_rerun_resumes(tiny_data, tiny_onnx, tmp_path):
    args = listed_images(tiny_data, tmp_path)
    out = tmp_path / "labels.json"
    manifest = tmp_path / "labels.json.partial" / "manifest.json"
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    whole = run(spml_label(tiny_onnx, *args, "--out", tmp_path / "whole.json"), env=env)
    assert whole.returncode == 0, whole.stderr

    # blocked once labeling is under way (the manifest written): in the decoder, in the third chunk
    sigterm_while_blocked(tiny_onnx, [*args, "--out", out], tmp_path, manifest, env)
    assert json.loads(manifest.read_text())["rows"] == [0, 40] and not out.exists()
    chunks = sorted(p.name for p in manifest.parent.glob("chunk_*.npz"))
    assert chunks == ["chunk_000000000.npz", "chunk_000000008.npz"] and not list(tmp_path.rglob("*.tmp"))

    rerun = run(spml_label(tiny_onnx, *args, "--out", out), env=env)  # the mount is back: no hook
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming: 2 of 5 chunks" in rerun.stderr
    assert out.read_bytes() == (tmp_path / "whole.json").read_bytes()


def test_sigterm_ends_the_labeler_while_a_header_reader_is_blocked(tiny_data, tiny_onnx, tmp_path):
    args = listed_images(tiny_data, tmp_path)
    out = tmp_path / "labels.json"
    sigterm_while_blocked(tiny_onnx, [*args, "--out", out], tmp_path, tmp_path / "list.txt", os.environ)
    assert not out.exists() and not (tmp_path / "labels.json.partial").exists()


# 2. link cycles ---------------------------------------------------------------------------------------------

def real_images(root):
    """The reference: every image file under root reached without following a link, by its real path."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and name.endswith((".jpg", ".png")):
                found.setdefault(os.path.realpath(path), os.path.relpath(path, root))
    return sorted(found.values())


def test_link_cycles_and_second_links_give_each_real_file_once(tmp_path):
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a").mkdir()
    for n, name in enumerate(["g0.jpg", "sub/g1.jpg", "sub/deeper/g2.png", "a/x.png"]):
        Image.new("RGB", (4 + n, 4), (n, n, n)).save(root / name)
    os.symlink(".", root / "sub" / "loop")  # a cycle: sub/loop/loop/... was every image of sub ~40 times
    os.symlink("..", root / "sub" / "deeper" / "up")  # a cycle through the parent
    os.symlink("../sub", root / "a" / "again")  # a second way to sub, sorted before it
    os.symlink("sub", root / "b_link")
    os.symlink("g0.jpg", root / "alias.jpg")  # a second name of one file
    os.symlink("self", root / "self")  # a link to itself (ELOOP)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (3, 3)).save(outside / "o.jpg")
    os.symlink(outside, root / "z_outside")  # a folder only a link leads to: followed, as before

    names = finishes(scan_folder, root)  # two cycles: paths without end, if each path were a new folder
    assert names == sorted(real_images(root) + ["z_outside/o.jpg"])
    assert names == ["a/x.png", "g0.jpg", "sub/deeper/g2.png", "sub/g1.jpg", "z_outside/o.jpg"]


# 3. paths the OS cannot take ------------------------------------------------------------------------------

def test_paths_the_os_cannot_take_are_failures_with_their_reason(tiny_data, tiny_onnx, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = sorted((tiny_data["sp"].parent / "images" / "train").glob("*.jpg"))[:2]
    for p in good:
        shutil.copy(p, folder / p.name)
    os.mkfifo(folder / "pipe.jpg")
    bad = {"nul\x00byte.jpg": "embedded null byte", str(folder / "abs\x00nul.jpg"): "embedded null byte",
           "x" * 300 + ".jpg": "File name too long", "lone\ud800surrogate.jpg": "surrogates not allowed",
           "pipe.jpg": "not an image file (a FIFO)", "d/" * 2100 + "deep.jpg": "File name too long"}
    listing = tmp_path / "list.jsonl"
    with open(listing, "w") as f:
        for name in [good[0].name, *bad, good[1].name]:
            f.write(json.dumps({"file_name": name}) + "\n")  # json.dumps escapes them: \u0000, \ud800
    out = tmp_path / "labels.json"
    result = run(spml_label(tiny_onnx, "--ann", listing, "--images", folder, "--tau", "0.5", "--out", out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert [im["file_name"] for im in json.loads(out.read_text())["images"]] == [good[0].name, good[1].name]
    failures = [json.loads(line) for line in (tmp_path / "labels.failures.jsonl").read_text().splitlines()]
    reasons = {f["file_name"]: f["reason"] for f in failures}
    assert set(reasons) == set(bad)
    for name, reason in bad.items():
        assert reason in reasons[name], reasons[name]


# 4. JSON too deep or too big -------------------------------------------------------------------------------

def deep_coco(where: str) -> str:
    images = '[{"id": 1, "file_name": "a.jpg"}]'
    if where == "images":
        images = '[{"id": 1, "file_name": "a.jpg", "extra": ' + DEEP + "}]"
    info = DEEP if where == "info" else "{}"
    return '{"info": ' + info + ', "images": ' + images + ', "categories": [{"id": 3, "name": "dog"}]}'


@pytest.mark.parametrize("where", ["info", "images"])
def test_deeply_nested_coco_is_not_json_to_every_reader(where, tmp_path):
    from spml.data.coco import _read_raw
    from spml.data.provenance import read_info

    path = tmp_path / "deep.json"
    path.write_text(deep_coco(where))
    with pytest.raises(SpmlError, match="not a JSON file .nested too deeply"):
        load_coco(path)
    with pytest.raises(SpmlError, match="nested too deeply"):
        _read_raw(path)
    assert read_info(path) == {}


def test_deeply_nested_user_json_elsewhere_is_one_line(tiny_onnx, tiny_data, tmp_path):
    from spml.eval.seeds import main as seeds_cli
    from spml.label.cli import main as label_cli
    from spml.label.job import merge_labels

    (tmp_path / "deep.json").write_text(DEEP)
    (tmp_path / "list.jsonl").write_text(json.dumps({"file_name": "a.jpg"}) + "\n" + DEEP + "\n")
    with pytest.raises(SpmlError, match=r"list.jsonl:2: not a JSON line \(nested too deeply"):
        load_image_list(tmp_path / "list.jsonl", CATS)
    (tmp_path / "long.csv").write_text("file_name\n" + "x" * 200_000 + ".jpg\n")  # over the csv module's limit
    with pytest.raises(SpmlError, match="long.csv: cannot read .field larger than field limit"):
        load_image_list(tmp_path / "long.csv", CATS)
    with pytest.raises(SpmlError, match="deep.json: not a JSON file .nested too deeply"):
        merge_labels([tmp_path / "deep.json"], tmp_path / "merged.json")
    result = CliRunner().invoke(seeds_cli, [str(tmp_path / "deep.json")])
    assert result.exit_code == 1 and "not a JSON file (nested too deeply" in result.output, result.output
    result = CliRunner().invoke(label_cli, [str(tiny_onnx), "--ann", str(tiny_data["sp"]), "--tau", "0.5",
                                            "--class-prior", str(tmp_path / "deep.json"),
                                            "--out", str(tmp_path / "labels.json")])
    assert result.exit_code == 1 and "Error: --class-prior" in result.output, result.output
    assert not isinstance(result.exception, RecursionError)


def test_memory_error_while_decoding_is_not_json(tmp_path, monkeypatch):
    import spml.data.json_stream as json_stream

    class Exhausted:
        def raw_decode(self, *a):
            raise MemoryError

        def scan_once(self, *a):
            raise MemoryError

    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATS}))
    monkeypatch.setattr(json_stream, "_DECODER", Exhausted())
    with pytest.raises(SpmlError, match="not a JSON file .too large to decode in memory"):
        load_coco(path)
    monkeypatch.setattr(json_stream.json, "load", lambda f: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(SpmlError, match="not a JSON file .too large"):
        json_stream.load_json(path)


# 5. a key given twice ------------------------------------------------------------------------------------------

TWICE = {
    "images twice": '{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": %(cats)s, '
                    '"annotations": [{"id": 1, "image_id": 2, "category_id": 3}], '
                    '"images": [{"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}]}',
    "annotations twice": '{"annotations": [{"id": 1, "image_id": 1, "category_id": 3}], '
                         '"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}], '
                         '"categories": %(cats)s, "annotations": [{"id": 7, "image_id": 2, "category_id": 8, "score": 0.5}]}',
    "annotations then empty": '{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": %(cats)s, '
                              '"annotations": [{"id": 1, "image_id": 1, "category_id": 3}], "annotations": []}',
    "categories and info twice": '{"info": {"v": 1}, "categories": [{"id": 9, "name": "x"}], '
                                 '"images": [{"id": 1, "file_name": "a.jpg"}], "categories": %(cats)s, '
                                 '"info": {"v": 2}, "annotations": [{"id": 1, "image_id": 1, "category_id": 8}]}',
    "a key twice inside a record": '{"images": [{"id": 1, "file_name": "a.jpg", "file_name": "b.jpg", "id": 4}], '
                                   '"categories": %(cats)s}',
}


@pytest.mark.parametrize("case", list(TWICE))
def test_a_key_given_twice_reads_as_json_load_reads_it(case, tmp_path):
    text = TWICE[case] % {"cats": json.dumps(CATS)}
    path = tmp_path / "ann.json"
    path.write_text(text)
    streamed = load_coco(path)
    reference = dataset_from_dict(json.loads(text))  # json.load: the last value of a key wins
    assert list(streamed.images) == list(reference.images)
    assert streamed.categories == reference.categories and streamed.meta == reference.meta
    np.testing.assert_array_equal(streamed.positives, reference.positives)
    assert (streamed.scores is None) == (reference.scores is None)
    if reference.scores is not None:
        np.testing.assert_array_equal(streamed.scores, reference.scores)


def test_a_key_given_twice_where_the_last_is_not_a_list_is_not_coco(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": %s, "images": 5}' % json.dumps(CATS))
    with pytest.raises(SpmlError, match="no 'images' list"):
        load_coco(path)


def test_the_streamed_reader_refuses_a_key_twice_where_its_caller_cannot_restart():
    from spml.data.json_stream import STREAMED, stream_object

    items = []
    assert stream_object(io.BytesIO(b'{"a": [1], "b": 2, "b": 3}'), {"a": items.append}) == {"a": STREAMED, "b": 3}
    with pytest.raises(ValueError, match="'a' given twice"):
        stream_object(io.BytesIO(b'{"a": [1], "a": [2]}'), {"a": items.append})


def test_deeply_nested_json_to_review_and_zero_shot_is_one_line(tmp_path):
    """The readers added since (spml-review's labels, observed and answer files, Label Studio tasks, zero-shot
    categories and open_clip configs) go through the same decoding: one line, never a RecursionError."""
    from spml.review.cli import main as review_cli
    from spml.train.clip_models import clip_model_config
    from spml.train.zero_shot import read_categories

    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    (tmp_path / "sp.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATS,
                                                  "annotations": []}))
    folder = tmp_path / "review"
    folder.mkdir()
    (folder / "label-studio.json").write_text(DEEP)
    (folder / "label-studio.xml").write_text("<View/>")
    runs = {"select": ["select", str(deep), "--budget", "1", "--out", str(tmp_path / "q")],
            "merge observed": ["merge", str(deep), str(tmp_path / "answers.json"), "--out", str(tmp_path / "o.json")],
            "merge answers": ["merge", str(tmp_path / "sp.json"), str(deep), "--out", str(tmp_path / "o.json")]}
    (tmp_path / "answers.json").write_text("[]")
    for what, args in runs.items():
        result = CliRunner().invoke(review_cli, args)
        assert result.exit_code == 1 and "not a JSON file (nested too deeply" in result.output, (what, result.output)
        assert not (tmp_path / "o.json").exists()
    with pytest.raises(SpmlError, match="not a JSON file .nested too deeply"):
        read_categories(deep)
    with pytest.raises(SpmlError, match="not a JSON file .nested too deeply"):
        clip_model_config(f"open_clip/{deep}")
