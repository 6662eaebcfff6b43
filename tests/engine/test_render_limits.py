"""Render at the edges (issue #4's "done when"): a 5 MiB value renders; a function that never
ends is stopped by the timeout; a function that answers with invalid YAML is a clear error;
and on either failure nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from porch.engine.render import FunctionRenderer, RuntimeOptions
from porch.errors import Invalid
from tests.engine.conftest import NS, Harness

BIG = "x" * (5 * 1024 * 1024)


def _files(h: Harness, name: str) -> dict[str, str]:
    return dict(h.engine.get_resources(NS, name).spec.resources)


def _put(h: Harness, name: str, files: dict[str, str]) -> object:
    prr = h.engine.get_resources(NS, name)
    prr.spec.resources = files
    return h.engine.update_resources(prr)


def _with(kptfile: str, pipeline: str) -> str:
    return kptfile.rstrip("\n") + "\n" + pipeline


def test_a_five_mib_value_renders(harness: Harness) -> None:
    h = harness
    h.engine.renderer = FunctionRenderer.from_options(RuntimeOptions())
    h.register()
    pr = h.create()
    files = _files(h, pr.metadata.name)
    files["Kptfile"] = _with(
        files["Kptfile"],
        "pipeline:\n  mutators:\n    - image: set-labels:v0.2\n"
        "      configMap:\n        tier: big\n",
    )
    files["big.yaml"] = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: {BIG}\n"
    )
    _put(h, pr.metadata.name, files)
    stored = yaml.safe_load(_files(h, pr.metadata.name)["big.yaml"])
    assert stored["metadata"]["labels"] == {"tier": "big"}
    assert stored["data"]["blob"] == BIG


def _exec_renderer(tmp_path: Path, script: str, timeout: float) -> FunctionRenderer:
    path = tmp_path / "fn.sh"
    path.write_text(script)
    path.chmod(0o755)
    config = tmp_path / "exec.yaml"
    config.write_text(
        "functions:\n- image: bad-fn\n  prefixes: [example.com/fns]\n  tags: [v1]\n"
        f"  path: {path}\n"
    )
    return FunctionRenderer.from_options(
        RuntimeOptions(exec_config=config, function_timeout=timeout)
    )


@pytest.mark.parametrize(
    ("script", "timeout", "expected"),
    [
        ("#!/bin/sh\nwhile true; do :; done\n", 1.0, "timed out"),
        ("#!/bin/sh\ncat >/dev/null\necho 'items: [unclosed'\n", 30.0, "example.com/fns/bad-fn"),
    ],
    ids=["loops-forever", "invalid-yaml"],
)
def test_a_failing_function_writes_nothing(
    harness: Harness, tmp_path: Path, script: str, timeout: float, expected: str
) -> None:
    h = harness
    h.register()
    pr = h.create()
    before = _files(h, pr.metadata.name)
    rv = h.engine.get(NS, pr.metadata.name).metadata.resource_version
    h.engine.renderer = _exec_renderer(tmp_path, script, timeout)
    files = dict(before)
    files["Kptfile"] = _with(
        files["Kptfile"], "pipeline:\n  mutators:\n    - image: example.com/fns/bad-fn:v1\n"
    )
    files["cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"
    with pytest.raises(Invalid) as err:
        _put(h, pr.metadata.name, files)
    assert "Error rendering package" in str(err.value) or "error rendering package" in str(
        err.value
    )
    assert expected in str(err.value)
    assert _files(h, pr.metadata.name) == before  # nothing written
    assert h.engine.get(NS, pr.metadata.name).metadata.resource_version == rv
