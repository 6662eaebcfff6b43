"""``rpkg pull|push|diff``: package contents between the server and local files.

``pull`` writes ``.KptRevisionMetadata`` beside the files so that ``push`` can send the
resourceVersion it started from: the server then refuses (409) to overwrite someone else's
newer edit instead of silently losing it. Files are written and read as exact UTF-8 text, so a
pull followed by a push with no edits sends back the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any

import click
import yaml

from porch.api.types import ObjectMeta, PackageRevisionResources
from porch.cli.ctl._common import (
    CtlError,
    LocalError,
    connection_options,
    ctl_of,
    exit_code_for,
    handle_errors,
    progress,
)
from porch.cli.ctl._output import dump_yaml
from porch.cli.ctl.rpkg import rpkg
from porch.client import Conflict, PorchClient

METADATA_FILE = ".KptRevisionMetadata"
PATH_ANNOTATION = "config.kubernetes.io/path"
INDEX_ANNOTATION = "config.kubernetes.io/index"
INTERNAL_PATH = "internal.config.kubernetes.io/path"
INTERNAL_INDEX = "internal.config.kubernetes.io/index"
KRM_SUFFIXES = (".yaml", ".yml")


def is_krm_file(path: str) -> bool:
    return path.endswith(KRM_SUFFIXES) or PurePosixPath(path).name in ("Kptfile", METADATA_FILE)


def metadata_document(prr: PackageRevisionResources) -> str:
    meta = PackageRevisionResources(metadata=prr.metadata).to_dict()["metadata"]
    doc = {"apiVersion": prr.api_version, "kind": "KptRevisionMetadata", "metadata": meta}
    return dump_yaml(doc)


def _safe_target(root: Path, rel: str) -> Path:
    """Refuse server-supplied paths that would land outside the target directory."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts:
        raise LocalError(f"refusing to write {rel!r} outside the package directory")
    return root.joinpath(*pure.parts)


def resource_list(files: dict[str, str]) -> dict[str, Any]:
    """KRM files as a ResourceList with kpt's path/index annotations (other files are left out)."""
    items: list[dict[str, Any]] = []
    for path in sorted(files):
        if not is_krm_file(path):
            continue
        try:
            docs = [d for d in yaml.safe_load_all(files[path]) if isinstance(d, dict)]
        except yaml.YAMLError:
            raise LocalError(f"{path} is not valid YAML; pull into a directory instead") from None
        for index, doc in enumerate(docs):
            annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[PATH_ANNOTATION] = annotations[INTERNAL_PATH] = path
            annotations[INDEX_ANNOTATION] = annotations[INTERNAL_INDEX] = str(index)
            items.append(doc)
    return {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": items}


def files_from_resource_list(text: str) -> dict[str, str]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LocalError(f"stdin is not a YAML ResourceList: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ResourceList":
        raise LocalError("stdin is not a ResourceList")
    grouped: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for item in doc.get("items") or []:
        annotations = item.get("metadata", {}).get("annotations", {})
        path = annotations.get(PATH_ANNOTATION) or annotations.get(INTERNAL_PATH)
        if not path:
            raise LocalError(f"ResourceList item {item.get('kind')} has no {PATH_ANNOTATION}")
        index = int(annotations.get(INDEX_ANNOTATION) or annotations.get(INTERNAL_INDEX) or 0)
        for key in (PATH_ANNOTATION, INTERNAL_PATH, INDEX_ANNOTATION, INTERNAL_INDEX):
            annotations.pop(key, None)
        if not annotations:
            item["metadata"].pop("annotations")
        grouped.setdefault(path, []).append((index, item))
    return {
        path: "---\n".join(dump_yaml(item) for _i, item in sorted(docs, key=lambda d: d[0]))
        for path, docs in grouped.items()
    }


@rpkg.command("pull")
@click.argument("name")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@connection_options
@click.pass_context
@handle_errors
def pull(ctx: click.Context, name: str, directory: Path | None) -> None:
    """Write the files of package revision NAME into DIRECTORY (which must not exist).

    Without DIRECTORY the package's KRM resources are printed as a ResourceList.
    """
    if directory is not None and directory.exists():
        raise LocalError(f"{directory} already exists; pull into a new directory")
    prr = ctl_of(ctx).client().get_resources(name)
    files = {**prr.spec.resources, METADATA_FILE: metadata_document(prr)}
    if directory is None:
        click.echo(dump_yaml(resource_list(files)), nl=False)
        return
    targets = [(_safe_target(directory, rel), text) for rel, text in sorted(files.items())]
    for target, text in progress(targets, "writing files", threshold=200):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))


def read_directory(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        raise LocalError(f"{directory} is not a directory")
    files: dict[str, str] = {}
    paths = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in progress(paths, "reading files", threshold=200):
        rel = path.relative_to(directory).as_posix()
        try:
            files[rel] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise LocalError(f"{rel} is not UTF-8 text; porch packages hold text only") from None
    return files


def split_metadata(name: str, files: dict[str, str]) -> tuple[ObjectMeta, dict[str, str]]:
    """Take ``.KptRevisionMetadata`` out of the files; its resourceVersion guards the push."""
    text = files.pop(METADATA_FILE, None)
    if text is None:
        raise LocalError(
            f"no {METADATA_FILE} found; run `porchctl rpkg pull {name} DIR` and push that DIR"
        )
    try:
        doc = yaml.safe_load(text) or {}
        meta = doc.get("metadata") or {}
    except (yaml.YAMLError, AttributeError):
        raise LocalError(f"{METADATA_FILE} is not valid YAML metadata") from None
    rv = str(meta.get("resourceVersion") or "")
    return ObjectMeta(
        name=name, namespace=str(meta.get("namespace") or ""), resource_version=rv
    ), files


def print_render_status(prr: PackageRevisionResources) -> None:
    status = prr.status.render_status
    if status is None or status.result is None:
        return
    for item in status.result.items:
        image = item.image or item.exec_path
        click.echo(f'[RUNNING] "{image}"')
        click.echo(f'[{"PASS" if item.exit_code == 0 else "FAIL"}] "{image}"')
        if item.results:
            click.echo("  Results:")
            for res in item.results:
                click.echo(f"    [{(res.severity or 'info').lower()}] {res.message}")
        for line in item.stderr.splitlines():
            click.echo(f"  Stderr: {line}")


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = [f"added: {p}" for p in sorted(new.keys() - old.keys())]
    lines += [f"modified: {p}" for p in sorted(old.keys() & new.keys()) if old[p] != new[p]]
    lines += [f"deleted: {p}" for p in sorted(old.keys() - new.keys())]
    return lines


@rpkg.command("push")
@click.argument("name")
@click.argument("directory", required=False, default="-")
@click.option("--dry-run", is_flag=True, help="List the files that would change; push nothing.")
@connection_options
@click.pass_context
@handle_errors
def push(ctx: click.Context, name: str, directory: str, dry_run: bool) -> None:
    """Replace the files of Draft NAME with DIRECTORY (or a ResourceList on stdin with -).

    DIRECTORY must hold the .KptRevisionMetadata written by `rpkg pull`; files missing from
    DIRECTORY are deleted from the package.
    """
    if directory == "-":
        files = files_from_resource_list(sys.stdin.read())
    else:
        files = read_directory(Path(directory))
    meta, files = split_metadata(name, files)
    client: PorchClient = ctl_of(ctx).client()
    meta.namespace = meta.namespace or client.namespace
    if dry_run:
        current = client.get_resources(name, namespace=meta.namespace)
        for line in changes(current.spec.resources, files) or ["no changes"]:
            click.echo(line)
        return
    prr = PackageRevisionResources(metadata=meta)
    prr.spec.resources = files
    try:
        result = client.update_resources(prr)
    except Conflict as exc:
        raise CtlError(
            f"{exc}; pull {name} again and re-apply your edits", exit_code_for(exc)
        ) from None
    print_render_status(result)
    click.echo(f"{name} pushed")
