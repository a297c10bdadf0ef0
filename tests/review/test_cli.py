"""spml-review follows the commands' conventions: help and a shown default on every option, --version on every
command, and --help that imports no numpy (the review stage must stay as light as the labeler: no torch at all)."""

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from spml.review.cli import main

COMMANDS = [("spml-review", main)] + [(f"spml-review {n}", c) for n, c in main.commands.items()]


def test_the_review_commands_exist():
    assert set(main.commands) == {"select", "merge", "simulate", "calibrate", "push", "pull"}


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_has_help_and_a_shown_default(name, cmd):
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name in ("help", "version"):
            continue
        assert param.help, f"{name} {param.opts[0]}: no help text"
        required = param.get_help_extra(click.Context(cmd)).get("required")
        assert param.is_flag or required or param.show_default, f"{name} {param.opts[0]}: no shown default"


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_version_on_every_command(name, cmd):
    from spml import __version__

    result = CliRunner().invoke(main, name.split()[1:] + ["--version"])
    assert result.exit_code == 0 and __version__ in result.output, result.output


def test_help_imports_nothing_heavy_and_the_stage_never_torch():
    code = ("import sys\nimport spml.review.cli\n"
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'PIL', 'pycocotools') if m in sys.modules))\n"
            "import spml.review.select, spml.review.merge, spml.review.simulate, spml.review.label_studio\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'onnxruntime', 'label_studio_sdk') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]


@pytest.mark.parametrize("args", [["push", "DIR"], ["pull", "--project", "1", "--out", "a.json"]])
def test_push_and_pull_without_the_sdk_name_the_extra(tmp_path, monkeypatch, args):
    review = tmp_path / "review"
    review.mkdir()
    (review / "label-studio.json").write_text('[{"data": {"image": "http://example.com/a.png"}}]')
    (review / "label-studio.xml").write_text("<View/>")
    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)  # import label_studio_sdk now raises ImportError
    args = [str(review) if a == "DIR" else a for a in args]
    result = CliRunner().invoke(main, args + ["--label-studio", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        "Error: spml-review push/pull need label-studio-sdk: pip install 'spml[review]'")


def test_push_refuses_a_task_whose_image_is_missing(tmp_path):
    from spml.review.select import LOCAL_FILES_URL

    review = tmp_path / "review"
    review.mkdir()
    (tmp_path / "here.png").write_bytes(b"png")
    tasks = [{"data": {"image": LOCAL_FILES_URL + name}} for name in ("here.png", "gone.png")]
    (review / "label-studio.json").write_text(json.dumps(tasks))
    (review / "label-studio.xml").write_text("<View/>")
    result = CliRunner().invoke(main, ["push", str(review), "--label-studio", "http://127.0.0.1:9", "--token", "t",
                                       "--document-root", str(tmp_path)])
    assert result.exit_code != 0
    assert f"no file {tmp_path / 'gone.png'}" in result.output and "Traceback" not in result.output


def test_push_refuses_images_at_the_document_root_before_it_creates_anything(tmp_path):
    """Label Studio connects no storage at its document root, and serves no file outside a storage."""
    from spml.review.select import LOCAL_FILES_URL

    review = tmp_path / "review"
    review.mkdir()
    (tmp_path / "a.png").write_bytes(b"png")
    (review / "label-studio.json").write_text(json.dumps([{"data": {"image": LOCAL_FILES_URL + "a.png"}}]))
    (review / "label-studio.xml").write_text("<View/>")
    result = CliRunner().invoke(main, ["push", str(review), "--label-studio", "http://127.0.0.1:9", "--token", "t",
                                       "--document-root", str(tmp_path)])  # port 9: nothing listens, nothing asked
    assert result.exit_code != 0
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a folder above ({tmp_path.parent})" in result.output


def test_push_to_no_server_is_one_line(tmp_path):
    review = tmp_path / "review"
    review.mkdir()
    (review / "label-studio.json").write_text('[{"data": {"image": "http://example.com/a.png"}}]')
    (review / "label-studio.xml").write_text("<View/>")
    result = CliRunner().invoke(main, ["push", str(review), "--label-studio", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code != 0
    assert result.output.startswith("Error: creating the project: cannot reach Label Studio at http://127.0.0.1:9 (")
    assert len(result.output.strip().splitlines()) == 1


def test_push_upload_finds_every_image_before_it_creates_anything(tmp_path):
    """--upload reads --images/file_name, or the file behind a local-files address; an address of its own
    (select --image-url) needs --images; --images alone is refused."""
    review = tmp_path / "review"
    review.mkdir()
    tasks = [{"data": {"image": "https://example.invalid/a.png", "file_name": name}} for name in ("a.png", "b.png")]
    (review / "label-studio.json").write_text(json.dumps(tasks))
    (review / "label-studio.xml").write_text("<View/>")
    (tmp_path / "a.png").write_bytes(b"png")
    server = ["--label-studio", "http://127.0.0.1:9", "--token", "t"]
    cases = [(["--upload"], "Error: --upload: the tasks' images are addresses of their own (select --image-url); "
                            "pass --images, the folder of their file names"),
             (["--upload", "--images", str(tmp_path)], f"Error: --images {tmp_path}: no file 'b.png' (a task's "
                                                       "data.file_name)"),
             (["--images", str(tmp_path)], "Error: --images goes with --upload (local files are found from the "
                                           "tasks' addresses)")]
    for args, message in cases:
        result = CliRunner().invoke(main, ["push", str(review), *server, *args])
        assert result.exit_code != 0 and result.output.strip().splitlines()[-1] == message, result.output
