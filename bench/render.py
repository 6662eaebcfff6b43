"""Render speed: porch's in-process render against real ``kpt fn render`` on the same packages.

Packages: the conformance packages whose pipeline functions are all porch builtins —
``kpt-fn-render`` cases that render successfully with ``kpt fn render``, the function catalog's
``examples`` rendered from their Kptfile (no ``exec.sh``), and the ``nephio-catalog`` packages
that render cleanly in-process.

Two paths, in one run:

* **ours**: the package's files as an in-memory map through the engine's
  :class:`~porch.engine.render.FunctionRenderer` (builtins in-process), as ``porch serve``
  renders on every write;
* **kpt**: a copy of the package on disk where each pipeline ``image:`` is rewritten to an
  ``exec:`` of a small wrapper script running the same builtin as an exec binary
  (``porch fn run IMAGE``), rendered with ``kpt fn render --allow-exec``.

Both outputs are compared first (files byte for byte; Kptfiles as data with the original
pipeline and without the render bookkeeping, which the installed kpt 1.0.0-beta.56 does not
write), and mismatches are reported. The timing covers only packages whose outputs
agree. ``ours`` is the median of ``--repeat`` renders per package; ``kpt`` the median of
``--kpt-repeat`` runs. Phases reported: ours = load (files → map) + render; kpt = copy and
rewrite (untimed in the ratio) + ``kpt fn render`` wall time.

The last line of output is one JSON object: ``ours_ms`` and ``kpt_ms`` (sum over the timed
packages of the per-package medians), ``ratio_vs_kpt`` (kpt / ours), ``packages`` and
``mismatches``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porch.engine.render import FunctionRenderer, RuntimeOptions
from porch.fn.runtime import BuiltinRuntime, resolve_image
from porch.krm import yaml as krm_yaml

SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance"
SKIP_DIRS = {".expected", ".git"}


@dataclass
class Package:
    suite: str
    name: str
    path: Path
    images: list[str] = field(default_factory=list)  # as written in the Kptfiles


# --------------------------------------------------------------------------- discovery


def read_files(root: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            try:
                files[rel] = full.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return files


def kptfiles(files: Mapping[str, str]) -> list[str]:
    return [p for p in files if p == "Kptfile" or p.endswith("/Kptfile")]


def pipeline_functions(text: str) -> list[dict[str, Any]]:
    """Every function of a Kptfile's pipeline (mutators, then validators)."""
    try:
        docs = krm_yaml.parse_documents(text).objects()
    except Exception:  # noqa: BLE001 - an unreadable Kptfile: not a benchmark package
        return [{"exec": "<unreadable Kptfile>"}]
    out: list[dict[str, Any]] = []
    for doc in docs:
        pipeline = krm_yaml.to_plain(doc).get("pipeline") or {}
        for kind in ("mutators", "validators"):
            out += [f for f in pipeline.get(kind) or [] if isinstance(f, dict)]
    return out


def builtin_name(image: str, builtin: BuiltinRuntime) -> str | None:
    try:
        resolved = resolve_image(image)
    except ValueError:
        return None
    if builtin.lookup(resolved) is None:
        return None
    return resolved.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]


def usable(files: Mapping[str, str], builtin: BuiltinRuntime) -> tuple[bool, list[str], str]:
    """(all builtins?, images, reason) for a package's pipelines."""
    images: list[str] = []
    for path in kptfiles(files):
        for fn in pipeline_functions(files[path]):
            if fn.get("exec"):
                return False, images, f"exec function {fn['exec']}"
            image = str(fn.get("image") or "")
            if not image:
                return False, images, "function without image"
            if builtin_name(image, builtin) is None:
                return False, images, f"not a builtin: {image}"
            images.append(image)
    if not images:
        return False, images, "no pipeline"
    return True, images, ""


def package_roots(base: Path) -> Iterator[Path]:
    """Top-most directories holding a Kptfile."""
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        if "Kptfile" in filenames:
            dirnames[:] = []
            yield Path(dirpath)


def discover(builtin: BuiltinRuntime, skipped: list[str]) -> list[Package]:
    from porch.fn.conformance import load_config

    found: list[Package] = []
    kpt = SHARED / "kpt-fn-render"
    for case in sorted(p for p in kpt.iterdir() if (p / ".expected").is_dir()):
        config = load_config(case)
        if (
            config.test_type != "render"
            or config.exit_code != 0
            or config.skip
            or config.image_pull_policy
            or (case / ".expected" / "exec.sh").exists()
            or not (case / "Kptfile").exists()
        ):
            skipped.append(f"kpt-fn-render/{case.name}: not a successful plain render case")
            continue
        ok, images, why = usable(read_files(case), builtin)
        if ok:
            found.append(Package("kpt-fn-render", case.name, case, images))
        else:
            skipped.append(f"kpt-fn-render/{case.name}: {why}")
    examples = SHARED / "krm-functions-catalog" / "examples"
    for case in sorted(p for p in examples.iterdir() if (p / "Kptfile").exists()):
        expected = case / ".expected"
        if (expected / "exec.sh").exists():
            skipped.append(f"examples/{case.name}: imperative (exec.sh)")
            continue
        if (expected / "config.yaml").exists():
            config = load_config(case)
            if config.exit_code != 0 or config.skip or config.test_type != "render":
                skipped.append(f"examples/{case.name}: not a successful render case")
                continue
        ok, images, why = usable(read_files(case), builtin)
        if ok:
            found.append(Package("examples", case.name, case, images))
        else:
            skipped.append(f"examples/{case.name}: {why}")
    nephio = SHARED / "nephio-catalog"
    for root in package_roots(nephio):
        name = root.relative_to(nephio).as_posix()
        ok, images, why = usable(read_files(root), builtin)
        if ok:
            found.append(Package("nephio-catalog", name, root, images))
        else:
            skipped.append(f"nephio-catalog/{name}: {why}")
    return found


# --------------------------------------------------------------------------- the kpt path


def write_wrappers(workdir: Path, porch: str, images: set[str]) -> dict[str, Path]:
    """One exec wrapper per resolved image: ``porch fn run IMAGE`` picks the same builtin
    (including a version-specific one) as the in-process runtime does."""
    wrappers = {}
    bindir = workdir / "fns"
    bindir.mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(sorted(images)):
        name = image.rsplit("/", 1)[-1].replace(":", "-").replace("@", "-")
        script = bindir / f"{n:02d}-{name}.sh"
        script.write_text(f"#!/bin/sh\nexec {shlex.quote(porch)} fn run {shlex.quote(image)}\n")
        script.chmod(0o755)
        wrappers[image] = script
    return wrappers


def rewrite_kptfile(text: str, wrappers: Mapping[str, Path]) -> str:
    """Each pipeline function's ``image:`` (and ``tag:``) becomes ``exec: <wrapper>``."""
    docs = krm_yaml.parse_documents(text)
    for doc in docs.objects():
        pipeline = doc.get("pipeline") or {}
        for kind in ("mutators", "validators"):
            for fn in pipeline.get(kind) or []:
                image = fn.get("image")
                if not image:
                    continue
                keys = list(fn.keys())
                position = keys.index("image")
                fn.pop("image")
                fn.pop("tag", None)
                fn.insert(position, "exec", str(wrappers[resolve_image(str(image))]))
    return krm_yaml.dump_documents(docs)


def prepare_kpt_copy(pkg: Package, dest: Path, wrappers: Mapping[str, Path]) -> None:
    """Copy the package and rewrite its Kptfiles' images to the exec wrappers."""
    shutil.copytree(pkg.path, dest, ignore=shutil.ignore_patterns(*SKIP_DIRS))
    for path in dest.rglob("Kptfile"):
        path.write_text(rewrite_kptfile(path.read_text(), wrappers))


def kpt_render(dest: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["kpt", "fn", "render", "--allow-exec", "--truncate-output=false", str(dest)],
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, proc


# --------------------------------------------------------------------------- comparison


def normalize_kptfile(text: str, original_pipeline: Any) -> Any:
    """A Kptfile as plain data, comparable across the two paths.

    The pipeline is replaced by the original one (the kpt copy has ``exec:`` wrappers), and the
    render bookkeeping (``Rendered`` condition, ``status.renderStatus``) is dropped: the kpt on
    this machine (1.0.0-beta.56) does not write it yet, the kpt the conformance data was
    recorded with does, and so do we.
    """
    obj = krm_yaml.to_plain(krm_yaml.parse_documents(text).objects()[0])
    if original_pipeline:
        obj["pipeline"] = original_pipeline
    else:
        obj.pop("pipeline", None)
    status = obj.get("status")
    if isinstance(status, dict):
        status.pop("renderStatus", None)
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Rendered"]
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        if not status:
            obj.pop("status")
    return obj


def compare(
    ours: Mapping[str, str], theirs: Mapping[str, str], original: Mapping[str, str]
) -> list[str]:
    """What differs between the two outputs (empty: the same)."""
    problems: list[str] = []
    for path in sorted(set(ours) | set(theirs)):
        if path not in ours:
            problems.append(f"{path}: only in kpt's output")
        elif path not in theirs:
            problems.append(f"{path}: only in ours")
        elif path == "Kptfile" or path.endswith("/Kptfile"):
            pipeline = krm_yaml.to_plain(krm_yaml.parse_documents(original[path]).objects()[0]).get(
                "pipeline"
            )
            a = normalize_kptfile(ours[path], pipeline)
            b = normalize_kptfile(theirs[path], pipeline)
            if a != b:
                problems.append(f"{path}: differs: " + first_difference(str(a), str(b)))
        elif ours[path] != theirs[path]:
            problems.append(f"{path}: differs: " + first_difference(ours[path], theirs[path]))
    return problems


def first_difference(a: str, b: str) -> str:
    """The first differing line of two texts, for the report."""
    for n, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if x != y:
            return f"line {n}: ours {x.strip()[:70]!r} kpt {y.strip()[:70]!r}"
    return f"lengths {len(a)} vs {len(b)}"


def print_diffs(key: str, ours: Mapping[str, str], theirs: Mapping[str, str]) -> None:
    import difflib

    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path, ""), theirs.get(path, "")
        if a != b and not (path == "Kptfile" or path.endswith("/Kptfile")):
            lines = difflib.unified_diff(
                a.splitlines(True), b.splitlines(True), f"ours/{key}/{path}", f"kpt/{key}/{path}"
            )
            sys.stdout.writelines(lines)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="in-process renders per package")
    parser.add_argument("--kpt-repeat", type=int, default=1, help="kpt renders per package")
    parser.add_argument("--limit", type=int, default=0, help="at most this many packages")
    parser.add_argument("--diff", action="store_true", help="print diffs of mismatching files")
    parser.add_argument("--only", default="", help="only packages whose name contains this")
    parser.add_argument("--verbose", "-v", action="store_true", help="show skipped packages")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"conformance data not found at {SHARED}")
    if shutil.which("kpt") is None:
        sys.exit("kpt is not on PATH")
    porch = shutil.which("porch", path=str(Path(sys.executable).parent)) or shutil.which("porch")
    if porch is None:
        sys.exit("the porch command is not installed (pip install -e .)")

    builtin = BuiltinRuntime()
    skipped: list[str] = []
    packages = discover(builtin, skipped)
    if args.only:
        packages = [p for p in packages if args.only in f"{p.suite}/{p.name}"]
    if args.limit:
        packages = packages[: args.limit]
    renderer = FunctionRenderer.from_options(RuntimeOptions())

    # In-process renders first: the nephio packages must render cleanly to count.
    ours_out: dict[str, dict[str, str]] = {}
    originals: dict[str, dict[str, str]] = {}
    load_s: dict[str, float] = {}
    kept: list[Package] = []
    for pkg in packages:
        key = f"{pkg.suite}/{pkg.name}"
        start = time.perf_counter()
        files = read_files(pkg.path)
        load_s[key] = time.perf_counter() - start
        outcome = renderer.render(files)
        if outcome.failed:
            skipped.append(f"{key}: does not render in-process: {outcome.error[:160]}")
            continue
        ours_out[key] = outcome.files
        originals[key] = files
        kept.append(pkg)

    images = {resolve_image(i) for p in kept for i in p.images}
    mismatches: list[str] = []
    timed: list[Package] = []
    kpt_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="porch-bench-render-") as tmp:
        work = Path(tmp)
        wrappers = write_wrappers(work, porch, images)
        for i, pkg in enumerate(kept):
            key = f"{pkg.suite}/{pkg.name}"
            times = []
            theirs: dict[str, str] = {}
            failed = ""
            for r in range(max(args.kpt_repeat, 1)):
                dest = work / f"p{i}-{r}"
                prepare_kpt_copy(pkg, dest, wrappers)
                seconds, proc = kpt_render(dest)
                if proc.returncode != 0:
                    failed = proc.stderr.strip()[-300:] or f"exit {proc.returncode}"
                    break
                times.append(seconds)
                theirs = read_files(dest)
            if failed:
                mismatches.append(f"{key}: kpt fn render failed: {failed}")
                continue
            problems = compare(ours_out[key], theirs, originals[key])
            if problems:
                mismatches.append(f"{key}: " + "; ".join(problems[:3]))
                if args.diff:
                    print_diffs(key, ours_out[key], theirs)
                continue
            kpt_s[key] = statistics.median(times)
            timed.append(pkg)

    ours_s: dict[str, float] = {}
    for _ in range(2):  # warm-up (imports, caches)
        for pkg in timed:
            renderer.render(originals[f"{pkg.suite}/{pkg.name}"])
    for pkg in timed:
        key = f"{pkg.suite}/{pkg.name}"
        files = originals[key]
        samples = []
        for _ in range(max(args.repeat, 1)):
            start = time.perf_counter()
            renderer.render(files)
            samples.append(time.perf_counter() - start)
        ours_s[key] = statistics.median(samples)

    print(f"{'package':60} {'fns':>4} {'load ms':>8} {'ours ms':>8} {'kpt ms':>9} {'ratio':>7}")
    for pkg in timed:
        key = f"{pkg.suite}/{pkg.name}"
        print(
            f"{key[:60]:60} {len(pkg.images):4d} {load_s[key] * 1e3:8.2f}"
            f" {ours_s[key] * 1e3:8.2f} {kpt_s[key] * 1e3:9.1f}"
            f" {kpt_s[key] / ours_s[key]:7.1f}"
        )
    if args.verbose:
        print(f"\nskipped ({len(skipped)}):")
        for line in skipped:
            print(f"  {line}")
    print(f"\nmismatches ({len(mismatches)}):")
    for line in mismatches:
        print(f"  {line}")
    ours_ms = sum(ours_s.values()) * 1e3
    kpt_ms = sum(kpt_s.values()) * 1e3
    load_ms = sum(load_s[f"{p.suite}/{p.name}"] for p in timed) * 1e3
    by_suite: dict[str, int] = {}
    for pkg in timed:
        by_suite[pkg.suite] = by_suite.get(pkg.suite, 0) + 1
    print(
        f"\n{len(timed)} packages timed ({by_suite}), {len(skipped)} skipped,"
        f" {len(mismatches)} mismatches"
    )
    print(
        f"phases: ours load {load_ms:.1f} ms + render {ours_ms:.1f} ms;"
        f" kpt fn render {kpt_ms:.1f} ms"
    )
    ratio = kpt_ms / ours_ms if ours_ms else 0.0
    by_key = {f"{p.suite}/{p.name}": p for p in timed}
    print(f"ratio kpt / ours: {ratio:.1f}x")
    # Our starlark builtin starts a sandbox process per call: show the split.
    star = [k for k in ours_s if any("starlark" in i for i in by_key[k].images)]
    plain = [k for k in ours_s if k not in star]
    for label, keys in (("with starlark", star), ("without starlark", plain)):
        if keys:
            o = sum(ours_s[k] for k in keys) * 1e3
            t = sum(kpt_s[k] for k in keys) * 1e3
            print(f"  {label}: {len(keys)} packages, ours {o:.1f} ms, kpt {t:.1f} ms, {t / o:.1f}x")
    per_package = [kpt_s[k] / ours_s[k] for k in ours_s]
    figures = {
        "ours_ms": round(ours_ms, 2),
        "kpt_ms": round(kpt_ms, 1),
        "ratio_vs_kpt": round(ratio, 1),
        "median_package_ratio": round(statistics.median(per_package), 1) if per_package else 0,
        "packages": len(timed),
        "mismatches": len(mismatches),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
