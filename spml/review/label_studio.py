"""`spml-review push` and `pull`: the questions of `spml-review select` to a Label Studio server, and its answers back.

push creates a project with select's labeling config (label-studio.xml), connects a local-files storage for the
images and imports the tasks (label-studio.json) with the teacher's predictions. pull writes the project's JSON
export, which `spml-review merge` reads. Both talk to the server through label-studio-sdk (the `spml[review]`
extra), imported only here, only when asked for.

Images are shown through Label Studio's local-files serving: the server runs where the images are, started with
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT above them, and only serves
a file that lies below a local-files storage connected to a project the user may see. push connects one, at the
folder that holds every image of the tasks, and then fetches one image through the server as a browser would, so
that a project whose images do not show is never left behind. Or, with `upload`, the images are sent to the server
(each once, however many questions it has) and the tasks point at the server's copies: no local-files serving, no
storage, and a server that need not see the images' folder.
"""

from __future__ import annotations

import json
import mimetypes
import os
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from spml.data.json_stream import load_json
from spml.errors import SpmlError
from spml.files import atomic_write
from spml.review.select import CHOICE_NAME, IMAGE_NAME, LOCAL_FILES_URL

EXTRA = "pip install 'spml[review]'"
IMPORT_CHUNK = 5000  # tasks per import request (the server takes up to 250K and 200 MB; smaller requests fail sooner)
MODEL_VERSION = "spml teacher"  # select's predictions carry it; the project shows those predictions
# images per upload request: the server takes at most DATA_UPLOAD_MAX_NUMBER_FILES (100 by default) files and
# DATA_UPLOAD_MAX_MEMORY_SIZE (250 MB by default) bytes in one
UPLOAD_FILES, UPLOAD_BYTES = 50, 100 * 2 ** 20
MEDIA_URL = "/data/"  # Label Studio's MEDIA_URL: an upload named upload/P/NAME is served at /data/upload/P/NAME


@dataclass
class Pushed:
    project_id: int
    title: str
    tasks: int
    storage_path: str | None  # the local-files storage's folder, None when every image is a URL of its own
    uploaded: int = 0  # images uploaded to the server (with upload)


@dataclass
class Pulled:
    tasks: int  # tasks in the export (those with at least one annotation, skipped ones included)
    answered: int  # tasks with at least one annotation that chose yes or no


def client_for(url: str, token: str):
    """A label-studio-sdk client; a one-line error naming the extra when the SDK is not installed."""
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise SpmlError(f"spml-review push/pull need label-studio-sdk: {EXTRA}") from None
    return LabelStudio(base_url=url.rstrip("/"), api_key=token)


@contextmanager
def server_errors(url: str, doing: str):
    """The SDK's and httpx's exceptions as one line: what failed, and the server's own words."""
    import httpx

    try:
        from label_studio_sdk.core.api_error import ApiError
    except ImportError:  # an SDK that moved it: its errors still carry status_code and body
        ApiError = ()  # noqa: N806
    try:
        yield
    except httpx.HTTPError as e:
        raise SpmlError(f"{doing}: cannot reach Label Studio at {url} ({type(e).__name__}: {e})") from None
    except ApiError as e:  # type: ignore[misc]
        status = getattr(e, "status_code", None)
        hint = {401: "is --token the account's access token?", 403: "is --token the account's access token?",
                404: "no such project?"}.get(status)
        words = _server_words(getattr(e, "body", None))
        raise SpmlError(f"{doing}: Label Studio answered {status}" + (f" ({hint})" if hint else "")
                        + (f": {words}" if words else "")) from None


def _server_words(body) -> str:
    """What the server said, in one short line: its `detail` and validation errors; not an HTML page."""
    if isinstance(body, dict):
        body = " ".join(str(body[k]) for k in ("detail", "validation_errors") if body.get(k)) or json.dumps(body)
    text = " ".join(str(body or "").split())
    return "" if text.startswith("<") else text[:300]


def read_questions(folder: str | os.PathLike) -> tuple[list[dict], str]:
    """The tasks and the labeling config that `spml-review select` wrote in `folder`."""
    folder = Path(folder)
    tasks_path, config_path = folder / "label-studio.json", folder / "label-studio.xml"
    for path in (tasks_path, config_path):
        if not path.is_file():
            raise SpmlError(f"{path}: no such file (push reads the folder spml-review select --out wrote)") from None
    tasks = load_json(tasks_path)
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict)
                                               and isinstance(t["data"].get(IMAGE_NAME), str) for t in tasks):
        raise SpmlError(f"{tasks_path}: not Label Studio tasks with data.{IMAGE_NAME} (as spml-review select writes)") \
            from None
    if not tasks:
        raise SpmlError(f"{tasks_path}: no tasks; nothing to push") from None
    return tasks, config_path.read_text(encoding="utf-8")


def local_image_paths(tasks: list[dict], document_root: str | os.PathLike) -> list[Path]:
    """The files behind the tasks' local-files addresses (relative to the server's document root), each checked to
    exist: a task whose image is missing would show the person nothing."""
    root = Path(document_root).resolve()
    return [_local_file(task["data"][IMAGE_NAME], root) for task in tasks
            if task["data"][IMAGE_NAME].startswith(LOCAL_FILES_URL)]


def _local_file(url: str, root: Path) -> Path:
    relative = posixpath.normpath(unquote(url[len(LOCAL_FILES_URL):])).lstrip("/")
    path = root / relative
    if not path.is_file():
        raise SpmlError(f"{url}: no file {path} (the address is relative to Label Studio's "
                        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, {root} here: pass the server's as "
                        f"--document-root, or run select with that variable set)") from None
    return path


def upload_sources(tasks: list[dict], *, document_root: str | os.PathLike,
                   images: str | os.PathLike | None = None) -> list[Path]:
    """Each task's image file, to upload: `images`/data.file_name where `images` is given, else the file behind its
    local-files address; each checked to exist before anything is created."""
    if images is None:
        root = Path(document_root).resolve()
        if not all(task["data"][IMAGE_NAME].startswith(LOCAL_FILES_URL) for task in tasks):
            raise SpmlError("--upload: the tasks' images are addresses of their own (select --image-url); pass "
                            "--images, the folder of their file names") from None
        return [_local_file(task["data"][IMAGE_NAME], root) for task in tasks]
    paths = []
    for task in tasks:
        name = task["data"].get("file_name")
        path = Path(images) / name if isinstance(name, str) else None
        if path is None or not path.is_file():
            raise SpmlError(f"--images {images}: no file {name!r} (a task's data.file_name)") from None
        paths.append(path)
    return paths


def upload_images(client, url: str, project_id: int, paths: list[Path]) -> dict[Path, str]:
    """Upload each distinct file once to the project (never made tasks of: the questions are), and return the
    address the server shows each from (/data/upload/...)."""
    unique = list(dict.fromkeys(paths))
    addresses: dict[Path, str] = {}
    for batch in _batches(unique):
        files = {f"image{k}": (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream")
                 for k, p in enumerate(batch)}
        with server_errors(url, f"uploading {len(batch)} images"):
            response = client._client_wrapper.httpx_client.request(  # the SDK has no call for it; its session has
                f"api/projects/{project_id}/import", method="POST", params={"commit_to_project": "false"},
                files=files)
        ids = _upload_ids(response, len(batch))
        with server_errors(url, "listing the uploaded images"):
            listed = {u.id: MEDIA_URL + quote(u.file.lstrip("/"))
                      for u in client.files.list(id=project_id, ids=json.dumps(ids))}
        if set(listed) < set(ids):
            raise SpmlError(f"uploading images: Label Studio lists {len(listed)} of {len(ids)} uploads") from None
        addresses.update({p: listed[i] for p, i in zip(batch, ids)})
    return addresses


def _batches(paths: list[Path]):
    batch, size = [], 0
    for p in paths:
        n = p.stat().st_size
        if batch and (len(batch) == UPLOAD_FILES or size + n > UPLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += n
    if batch:
        yield batch


def _upload_ids(response, expected: int) -> list[int]:
    words = _server_words(response.text)
    if response.status_code != 201:
        raise SpmlError(f"uploading images: Label Studio answered {response.status_code}"
                        + (f": {words}" if words else "")) from None
    try:
        ids = response.json()["file_upload_ids"]
    except (ValueError, KeyError, TypeError):
        raise SpmlError(f"uploading images: no file_upload_ids in Label Studio's answer ({words})") from None
    if len(ids) != expected:
        raise SpmlError(f"uploading images: Label Studio took {len(ids)} of {expected}") from None
    return ids


def push(folder: str | os.PathLike, *, url: str, token: str, title: str | None = None,
         document_root: str | os.PathLike = "/", upload: bool = False, images: str | os.PathLike | None = None) -> Pushed:
    """Create a project from select's folder: its config, a local-files storage for its images (or, with
    `upload`, the images uploaded: from `images`/file_name, else from their local-files addresses), its tasks with
    the teacher's predictions. A project that fails half-way is deleted."""
    tasks, config = read_questions(folder)
    if upload:
        sources = upload_sources(tasks, document_root=document_root, images=images)
        return _push(tasks, config, url=url, token=token, title=title or f"spml review: {Path(folder).resolve().name}",
                     sources=sources)
    images = local_image_paths(tasks, document_root)
    storage_path = os.path.commonpath([str(p.parent) for p in images]) if images else None
    if storage_path is not None and Path(storage_path) == Path(document_root).resolve():
        # Label Studio refuses a storage at its document root, and serves no file that is not below a storage
        raise SpmlError(f"the images are in {storage_path}, Label Studio's document root itself: start it with "
                        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a folder above ({Path(storage_path).parent}), "
                        f"run select with that variable set too, and push with --document-root the same") from None
    title = title or f"spml review: {Path(folder).resolve().name}"
    client = client_for(url, token)
    with server_errors(url, "creating the project"):
        project = client.projects.create(title=title, label_config=config, model_version=MODEL_VERSION)
    try:
        if storage_path is not None:
            with server_errors(url, f"connecting the local-files storage {storage_path} (is the server started "
                                    "with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                                    "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT above it?)"):
                # never synced: the tasks are imported below; the storage only lets the server serve the files
                client.import_storage.local.create(project=project.id, path=storage_path, title="spml images",
                                                   use_blob_urls=False)
        imported = _import(client, url, project.id, tasks)
        if images:
            check_image_shows(client, url, tasks[0]["data"][IMAGE_NAME], images[0])
    except BaseException:
        _delete_quietly(client, project.id)
        raise
    return Pushed(project.id, title, imported, storage_path)


def _push(tasks: list[dict], config: str, *, url: str, token: str, title: str, sources: list[Path]) -> Pushed:
    """push with the images uploaded: `sources[k]` is task k's image file."""
    client = client_for(url, token)
    with server_errors(url, "creating the project"):
        project = client.projects.create(title=title, label_config=config, model_version=MODEL_VERSION)
    try:
        addresses = upload_images(client, url, project.id, sources)
        tasks = [{**task, "data": {**task["data"], IMAGE_NAME: addresses[p]}} for task, p in zip(tasks, sources)]
        imported = _import(client, url, project.id, tasks)
        check_image_shows(client, url, tasks[0]["data"][IMAGE_NAME], sources[0])
    except BaseException:
        _delete_quietly(client, project.id)
        raise
    return Pushed(project.id, title, imported, None, uploaded=len(addresses))


def _import(client, url: str, project_id: int, tasks: list[dict]) -> int:
    imported = 0
    for start in range(0, len(tasks), IMPORT_CHUNK):
        with server_errors(url, "importing the tasks"):
            response = client.projects.import_tasks(id=project_id, request=tasks[start:start + IMPORT_CHUNK])
        imported += int(getattr(response, "task_count", None) or 0)
    if imported != len(tasks):
        raise SpmlError(f"importing the tasks: Label Studio took {imported} of {len(tasks)}") from None
    return imported


def _delete_quietly(client, project_id: int) -> None:
    """Delete a half-made project; the error that stopped push is the one to report, not this one's."""
    try:
        client.projects.delete(id=project_id)
    except Exception:  # noqa: BLE001
        pass


def check_image_shows(client, url: str, address: str, path: Path) -> None:
    """Fetch `address` through the server as the person's browser will, and compare with the file's bytes."""
    import httpx

    headers = {"Authorization": client._client_wrapper.get_headers()["Authorization"]}  # the SDK's (legacy or JWT)
    with server_errors(url, f"fetching the image {address} through Label Studio"):
        try:
            response = httpx.get(url.rstrip("/") + address, headers=headers, timeout=60)
        except httpx.InvalidURL as e:  # not an HTTPError
            raise SpmlError(f"fetching the image {address} through Label Studio: not an address ({e})") from None
    if response.status_code != 200 or response.content != path.read_bytes():
        if not address.startswith(LOCAL_FILES_URL):  # uploaded
            raise SpmlError(f"{address}: Label Studio does not serve the upload of {path} as it was sent (answered "
                            f"{response.status_code})") from None
        raise SpmlError(f"{address}: Label Studio does not serve {path} (answered {response.status_code}); start it "
                        f"with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                        f"set to push's --document-root, or push with --upload") from None


def pull(*, url: str, token: str, project_id: int, out: str | os.PathLike) -> Pulled:
    """Write the project's JSON export (the tasks a person annotated or skipped, with their annotations) to `out`,
    atomically; an error, and nothing written, when no task has an answer yet."""
    client = client_for(url, token)
    with server_errors(url, f"exporting project {project_id}"):
        data = b"".join(client.projects.exports.download_sync(id=project_id, export_type="JSON"))
    try:
        tasks = json.loads(data)
    except ValueError as e:
        raise SpmlError(f"exporting project {project_id}: the export is not JSON ({e})") from None
    if not isinstance(tasks, list):
        raise SpmlError(f"exporting project {project_id}: the export is not a list of tasks") from None
    answered = sum(1 for t in tasks if isinstance(t, dict) and _has_answer(t))
    if not answered:
        raise SpmlError(f"project {project_id}: no task answered yet ({len(tasks)} exported); {out} not written") \
            from None
    with atomic_write(out) as f:
        json.dump(tasks, f, indent=1)
    return Pulled(len(tasks), answered)


def _has_answer(task: dict) -> bool:
    return any(isinstance(a, dict) and not a.get("was_cancelled") and any(
        isinstance(r, dict) and r.get("from_name") == CHOICE_NAME and (r.get("value") or {}).get("choices")
        for r in a.get("result") or []) for a in task.get("annotations") or [])
