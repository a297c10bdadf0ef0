"""spml-review push and pull against a real Label Studio server: push a selection, answer its tasks through the
API as a person's clicks would, pull, merge, and find exactly the answers given in the merged file. Every task's
image is fetched through the server, as the person's browser would, and must be the file's bytes.

The server is the `label-studio` of .venv-labelstudio (made by `make test`) or $SPML_LABEL_STUDIO; it starts on a
free port of 127.0.0.1 with a throw-away data folder, and its process group is killed at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.review.conftest import CATEGORY_IDS, TAU

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

REPO = Path(__file__).parents[2]
START_TIMEOUT_S = 600  # migrations on first start take about a minute here, several on a loaded machine


def label_studio_executable() -> Path:
    path = Path(os.environ.get("SPML_LABEL_STUDIO") or REPO / ".venv-labelstudio" / "bin" / "label-studio")
    if path.is_file():
        return path
    if "MAKELEVEL" in os.environ:  # under make test the server venv is a prerequisite: its absence is a failure
        pytest.fail(f"{path}: no Label Studio server (make's .venv-labelstudio target makes it)")
    pytest.skip(f"{path}: no Label Studio server; `make .venv-labelstudio/bin/label-studio` or set $SPML_LABEL_STUDIO")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Label Studio server for the module's tests, serving local files below the tests' temporary folders
    (Label Studio connects no storage at its document root itself): (url, token, document root)."""
    import httpx

    tmp_path = tmp_path_factory.mktemp("server")
    root = tmp_path_factory.getbasetemp()  # every test's tmp_path is below it
    executable = label_studio_executable()
    port, token = free_port(), secrets.token_hex(20)
    env = {**os.environ,
           "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "label-studio-data"),
           "LABEL_STUDIO_USERNAME": "reviewer@example.com", "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
           "LABEL_STUDIO_USER_TOKEN": token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log = tmp_path / "label-studio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/projects", headers={"Authorization": f"Token {token}"}, timeout=10) \
                        .status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio not answering after {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield url, token, root
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def write_images(world) -> dict[str, bytes]:
    """A distinct little PNG for each image of the world, where the labels file says its images are."""
    from PIL import Image

    from spml.data.coco import resolve_images_dir

    labels = world["labels"]
    folder = resolve_images_dir(labels, json.loads(labels.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for k in range(world["n"]):
        name = f"img{k:02d}.png"
        Image.new("RGB", (8, 8), (k * 10 % 256, 255 - k, 7 * k % 256)).save(folder / name)
        written[name] = (folder / name).read_bytes()
    return written


def test_push_answer_pull_merge_round_trip(world, cli, server, monkeypatch):
    import httpx

    url, token, root = server
    auth = {"Authorization": f"Token {token}"}
    images = write_images(world)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(root))  # select's addresses: relative to it
    review = world["tmp"] / "review"
    r = cli("select", world["labels"], "--budget", 14, "--strategy", "random", "--out", review)
    assert r.exit_code == 0, r.output

    r = cli("push", review, "--label-studio", url, "--token", token, "--project", "round trip")
    assert r.exit_code == 0, r.output
    project_id = _project_id(url, auth, "round trip")

    tasks = _tasks(url, auth, project_id)
    assert len(tasks) == 14
    questions = json.loads((review / "label-studio.json").read_text())
    assert sorted((t["data"]["image_id"], t["data"]["category_id"]) for t in tasks) == \
        sorted((q["data"]["image_id"], q["data"]["category_id"]) for q in questions)
    for task in tasks:
        # the teacher's pseudo label as the prediction, from the score and tau, independently of select's code
        (prediction,) = task["predictions"]
        assert prediction["result"][0]["value"]["choices"] == (["yes"] if task["data"]["score"] > TAU else ["no"])
        # the image shows: the server hands its bytes to whoever may see the project
        shown = httpx.get(url + task["data"]["image"], headers=auth, timeout=60)
        assert shown.status_code == 200 and shown.content == images[task["data"]["file_name"]]

    r = cli("pull", "--label-studio", url, "--token", token, "--project", project_id, "--out", world["tmp"] / "a.json")
    assert r.exit_code != 0 and "no task answered" in r.output and not (world["tmp"] / "a.json").exists()

    # a person answers: the truth for most tasks, a change of mind on one (the later answer counts), one skipped,
    # one left alone
    truth, ids = world["truth_matrix"], world["image_ids"]
    expected = {}
    for n, task in enumerate(tasks):
        pair = (task["data"]["image_id"], task["data"]["category_id"])
        answer = bool(truth[ids.index(pair[0]), CATEGORY_IDS.index(pair[1])])
        if n == 0:
            _annotate(url, auth, task["id"], not answer)
            _annotate(url, auth, task["id"], answer)
        elif n == 1:
            _annotate(url, auth, task["id"], None)  # skipped: no answer
            continue
        elif n == 2:
            continue
        else:
            _annotate(url, auth, task["id"], answer)
        expected[pair] = answer

    answers = world["tmp"] / "answers.json"
    r = cli("pull", "--label-studio", url, "--token", token, "--project", project_id, "--out", answers)
    assert r.exit_code == 0, r.output
    merged = world["tmp"] / "sp2.json"
    r = cli("merge", world["observed"], answers, "--out", merged)
    assert r.exit_code == 0, r.output
    assert "1 conflicts" in r.output

    before, after = json.loads(world["observed"].read_text()), json.loads(merged.read_text())
    got = {(a["image_id"], a["category_id"]): True for a in after["annotations"] if a.get("source") == "verified"}
    old_negatives = {im["id"]: set(im.get("neg_category_ids", [])) for im in before["images"]}
    for im in after["images"]:
        for c in set(im.get("neg_category_ids", [])) - old_negatives[im["id"]]:
            got[(im["id"], c)] = False
    assert got == expected
    assert sum(expected.values()) and not all(expected.values())  # both answers were given
    kept = {(a["image_id"], a["category_id"]) for a in after["annotations"] if a.get("source") != "verified"}
    assert kept == {(a["image_id"], a["category_id"]) for a in before["annotations"]}


def test_push_upload_sends_the_images_and_each_task_shows_its_own(world, cli, server, monkeypatch):
    """--upload: the server shows its own copy of each image, uploaded once, with no local-files storage; from the
    tasks' local-files addresses, or from --images and the file names when select wrote addresses of its own."""
    import httpx

    url, token, _ = server
    auth = {"Authorization": f"Token {token}"}
    images = write_images(world)
    folder = world["tmp"] / "images"
    folder.mkdir()
    for name, data in images.items():  # a second copy, for --images: the one the tasks' addresses name is not read
        (folder / name).write_bytes(data)
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)  # absolute local-files addresses
    cases = {"uploaded": [], "uploaded from --images": ["--image-url", "https://example.invalid/img/"]}
    for title, select_args in cases.items():
        review = world["tmp"] / title.replace(" ", "_")
        r = cli("select", world["labels"], "--budget", 20, "--strategy", "random", "--out", review, *select_args)
        assert r.exit_code == 0, r.output
        push_args = ["--images", folder] if "--images" in title else []
        r = cli("push", review, "--label-studio", url, "--token", token, "--project", title, "--upload", *push_args)
        assert r.exit_code == 0, r.output
        project_id = _project_id(url, auth, title)
        tasks = _tasks(url, auth, project_id)
        questions = json.loads((review / "label-studio.json").read_text())
        assert sorted((t["data"]["image_id"], t["data"]["category_id"]) for t in tasks) == \
            sorted((q["data"]["image_id"], q["data"]["category_id"]) for q in questions)
        distinct = {q["data"]["file_name"] for q in questions}
        assert f"{len(distinct)} images uploaded" in r.output and len(distinct) < len(questions)
        addresses = {}
        for task in tasks:
            address = task["data"]["image"]
            assert address.startswith("/data/upload/")
            addresses.setdefault(task["data"]["file_name"], set()).add(address)
            shown = httpx.get(url + address, headers=auth, timeout=60)
            assert shown.status_code == 200 and shown.content == images[task["data"]["file_name"]]
        assert all(len(a) == 1 for a in addresses.values())  # one upload per image, shared by its tasks
        storages = httpx.get(f"{url}/api/storages/localfiles", params={"project": project_id}, headers=auth,
                             timeout=60).json()
        assert storages == []


def _project_id(url: str, auth: dict, title: str) -> int:
    import httpx

    projects = json.loads(httpx.get(f"{url}/api/projects", headers=auth, timeout=60).text)
    projects = projects.get("results", projects)
    (project,) = [p for p in projects if p["title"] == title]
    return project["id"]


def _tasks(url: str, auth: dict, project_id: int) -> list[dict]:
    import httpx

    response = httpx.get(f"{url}/api/tasks", params={"project": project_id, "page_size": 1000, "fields": "all"},
                         headers=auth, timeout=60)
    response.raise_for_status()
    body = response.json()
    tasks = body["tasks"] if isinstance(body, dict) else body
    return [json.loads(httpx.get(f"{url}/api/tasks/{t['id']}", headers=auth, timeout=60).text) for t in tasks]


def _annotate(url: str, auth: dict, task_id: int, present: bool | None) -> None:
    """What Label Studio's editor posts when a person clicks yes or no and submits (None: skips the task)."""
    import httpx

    result = [] if present is None else [{"from_name": "answer", "to_name": "image", "type": "choices",
                                          "value": {"choices": ["yes" if present else "no"]}}]
    response = httpx.post(f"{url}/api/tasks/{task_id}/annotations", headers=auth, timeout=60,
                          json={"result": result, "was_cancelled": present is None, "lead_time": 1.5})
    assert response.status_code == 201, response.text
