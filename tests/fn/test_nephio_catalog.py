"""Nephio's catalog of real kpt packages (issue #4 "done when"): every package whose pipeline
functions are all porch builtins renders without error, and rendering twice changes nothing
(but the result messages recorded in the Kptfile; a third render is byte-identical).

Packages needing a function we do not ship are skipped, the reason naming the image(s); run
``pytest -rs`` to list them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from porch.engine.render import FunctionRenderer, RuntimeOptions
from porch.fn.runtime import BuiltinRuntime, resolve_image
from porch.krm import yaml as krm_yaml

CATALOG = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "nephio-catalog"


def package_roots(base: Path) -> list[Path]:
    """The top-most directories holding a Kptfile (a nested Kptfile is a subpackage)."""
    roots = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "Kptfile" in filenames:
            dirnames[:] = []
            roots.append(Path(dirpath))
    return sorted(roots)


def read_package(root: Path) -> dict[str, str]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in filenames:
            path = Path(dirpath) / name
            try:
                files[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return files


def pipeline_images(files: Mapping[str, str]) -> list[str]:
    images = []
    for path, text in sorted(files.items()):
        if path != "Kptfile" and not path.endswith("/Kptfile"):
            continue
        for doc in krm_yaml.parse_documents(text, filename=path).objects():
            pipeline: Any = krm_yaml.to_plain(doc).get("pipeline") or {}
            for kind in ("mutators", "validators"):
                for fn in pipeline.get(kind) or []:
                    images.append(str(fn.get("image") or f"exec:{fn.get('exec')}"))
    return images


def not_builtin(images: list[str]) -> list[str]:
    runtime = BuiltinRuntime()
    return sorted(
        {i for i in images if i.startswith("exec:") or runtime.lookup(resolve_image(i)) is None}
    )


def cases() -> list[Any]:
    if not CATALOG.is_dir():
        return [
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"nephio catalog not found at {CATALOG}")
            )
        ]
    return [
        pytest.param(root, id=root.relative_to(CATALOG).as_posix())
        for root in package_roots(CATALOG)
    ]


def test_catalog_is_found_and_has_packages() -> None:
    if not CATALOG.is_dir():
        pytest.skip(f"nephio catalog not found at {CATALOG}")
    roots = package_roots(CATALOG)
    assert len(roots) > 20
    # subpackages are rendered with their parent, never on their own
    assert all(not any(r in p.parents for r in roots) for p in roots)


@pytest.mark.parametrize("root", cases())
def test_package_renders_and_is_stable(root: Path) -> None:
    try:
        import porch.fn.render  # noqa: F401
    except ImportError:
        pytest.skip("the render core porch.fn.render is not in this build yet")
    files = read_package(root)
    images = pipeline_images(files)
    if not images:
        pytest.skip("no pipeline: nothing to render")
    missing = not_builtin(images)
    if missing:
        pytest.skip("needs non-builtin function(s): " + ", ".join(missing))
    renderer = FunctionRenderer.from_options(RuntimeOptions())
    first = renderer.render(files)
    assert not first.failed, first.error
    assert first.result is not None
    assert len(first.result["items"]) == len(images)
    assert all(item["exitCode"] == 0 for item in first.result["items"])
    kptfile = krm_yaml.to_plain(krm_yaml.parse_documents(first.files["Kptfile"]).objects()[0])
    conditions = kptfile.get("status", {}).get("conditions", [])
    assert {"type": "Rendered", "status": "True", "reason": "RenderSuccess"} in [
        {k: c.get(k) for k in ("type", "status", "reason")} for c in conditions
    ]
    second = renderer.render(first.files)
    assert not second.failed, second.error
    # The resources do not move on a second render; only the results recorded in the root
    # Kptfile's status.renderStatus may say so ("already ..., no value changed").
    assert changed_files(first.files, second.files) <= {"Kptfile"}
    assert without_render_status(first.files["Kptfile"]) == without_render_status(
        second.files["Kptfile"]
    )
    # ...and from then on a render is a fixed point, byte for byte.
    third = renderer.render(second.files)
    assert not third.failed, third.error
    assert not changed_files(second.files, third.files)


def changed_files(a: Mapping[str, str], b: Mapping[str, str]) -> set[str]:
    return {p for p in set(a) | set(b) if a.get(p) != b.get(p)}


def without_render_status(kptfile: str) -> dict[str, Any]:
    obj = krm_yaml.to_plain(krm_yaml.parse_documents(kptfile).objects()[0])
    steps = obj.get("status", {}).get("renderStatus", {})
    for key in ("mutationSteps", "validationSteps"):
        for step in steps.get(key) or []:
            step.pop("results", None)
    return obj
