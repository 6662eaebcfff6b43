"""Lifecycle latency with 10, 1,000 and 10,000 published revisions present.

For each size a local bare repository is seeded with published revisions in Porch's layout
(tags ``pkg-NNNNN/vK`` on approval commits with ``kpt:`` trailers, the packages on ``main``,
at most ``--max-packages`` packages, 100 by default), indexed by a fresh engine, then timed
over the five lifecycle operations:
create (init), replace-resources, propose, approve and delete. The baseline is raw pygit2
plumbing making the same commits and ref moves on a copy of the same repository, in the same
run, so the ratio does not depend on how busy the machine is.

The last line of output is one JSON object:
``p50_ms_at_10``, ``p50_ms_at_1000``, ``p50_ms_at_10000`` (median over all five operations),
``ratio_10000_vs_10`` and ``ratio_vs_plumbing`` (engine p50 / plumbing p50 at 1,000).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pygit2

from porch.api.lifecycle import Endpoint
from porch.api.types import (
    GitRepositorySpec,
    ObjectMeta,
    PackageRevision,
    PackageRevisionSpec,
    Repository,
    RepositorySpec,
)
from porch.engine import Engine
from porch.krm.kptfile import init_package
from porch.repository.types import PackageRepository
from porch.store import SqliteStore

OPS = ("create", "replace-resources", "propose", "approve", "delete")
MAX_PACKAGES = 100
NS = "default"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  key: value\n"
PORCH = pygit2.Signature("Package Orchestration Service", "porch@kpt.dev")


def _tree(repo: pygit2.Repository, files: dict[str, str]) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    for name, text in sorted(files.items()):
        builder.insert(name, repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    return builder.write()


def _with_package(
    repo: pygit2.Repository, base: pygit2.Oid | None, name: str, tree: pygit2.Oid
) -> pygit2.Oid:
    builder = repo.TreeBuilder(repo[base]) if base else repo.TreeBuilder()
    builder.insert(name, tree, pygit2.GIT_FILEMODE_TREE)
    return builder.write()


def _trailer(package: str, ws: str, revision: int, task: str) -> str:
    body = {
        "package": package,
        "workspaceName": ws,
        "revision": str(revision),
        "task": {"type": task},
    }
    return "kpt:" + json.dumps(body, separators=(",", ":"))


def seed(path: Path, revisions: int, max_packages: int = MAX_PACKAGES) -> None:
    """Published revisions in Porch's layout, written with plumbing (fast).

    Revisions are spread over at most ``max_packages`` packages at the repository root, so the
    figure measures the number of revisions (refs, tags, history), not the width of the tree.
    """
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    packages = max(1, min(revisions, max_packages))
    per_package = revisions // packages
    root: pygit2.Oid | None = None
    head: pygit2.Oid | None = None
    for p in range(packages):
        name = f"pkg-{p:05d}"
        files = init_package(name, f"{name} description", [], "")
        for k in range(1, per_package + 1):
            files = {**files, "README.md": files["README.md"] + f"\nrevision {k}\n"}
            tree = _with_package(repo, root, name, _tree(repo, files))
            parents = [head] if head else []
            msg = f"Approving package revision {name}/{k}\n\n{_trailer(name, f'v{k}', k, 'init')}\n"
            head = repo.create_commit(None, PORCH, PORCH, msg, tree, parents)
            root = tree
            repo.references.create(f"refs/tags/{name}/v{k}", head)
    assert head is not None
    repo.references.create("refs/heads/main", head)
    repo.set_head("refs/heads/main")


def opener_for(path: Path) -> Callable[[Repository], PackageRepository]:
    def opener(repo: Repository) -> PackageRepository:
        from porch.repository.git import GitRepository

        return GitRepository(str(path), branch="main")

    return opener


@contextmanager
def timed(samples: dict[str, list[float]], op: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    samples[op].append((time.perf_counter() - start) * 1000)


def open_engine(work: Path) -> Engine:
    engine = Engine(store=SqliteStore(work / "store.db"), opener=opener_for(work / "repo.git"))
    engine.register_repository(
        Repository(
            metadata=ObjectMeta(name="bench", namespace=NS),
            spec=RepositorySpec(type="git", git=GitRepositorySpec(repo=str(work / "repo.git"))),
        )
    )
    return engine


def engine_iterations(
    engine: Engine, samples: dict[str, list[float]], first: int, count: int
) -> None:
    for i in range(first, first + count):
        spec = PackageRevisionSpec(
            package_name=f"bench-{i}", repository="bench", workspace_name="ws1"
        )
        with timed(samples, "create"):
            pr = engine.create(PackageRevision(metadata=ObjectMeta(namespace=NS), spec=spec))
        prr = engine.get_resources(NS, pr.metadata.name)
        prr.spec.resources = {**prr.spec.resources, "cm.yaml": CONFIGMAP}
        with timed(samples, "replace-resources"):
            engine.update_resources(prr)
        cur = engine.get(NS, pr.metadata.name)
        cur.spec.lifecycle = "Proposed"
        with timed(samples, "propose"):
            cur = engine.update(cur)
        cur.spec.lifecycle = "Published"
        with timed(samples, "approve"):
            cur = engine.update(cur, endpoint=Endpoint.APPROVAL)
        cur.spec.lifecycle = "DeletionProposed"
        engine.update(cur)
        with timed(samples, "delete"):
            engine.delete(NS, pr.metadata.name)


def plumbing_iterations(
    repo: pygit2.Repository, samples: dict[str, list[float]], first: int, count: int
) -> None:
    """The same commits and ref moves with raw pygit2, nothing else."""
    refs = repo.references
    for i in range(first, first + count):
        name = f"bench-{i}"
        files = init_package(name, f"{name} description", [], "")
        draft_ref, proposed_ref = f"refs/heads/drafts/{name}/ws1", f"refs/heads/proposed/{name}/ws1"
        with timed(samples, "create"):
            head = refs["refs/heads/main"].target
            tree = _with_package(repo, repo[head].tree_id, name, _tree(repo, files))
            msg = f"Creating new empty revision\n\n{_trailer(name, 'ws1', 0, 'init')}\n"
            draft = repo.create_commit(None, PORCH, PORCH, msg, tree, [head])
            refs.create(draft_ref, draft)
        with timed(samples, "replace-resources"):
            ref = refs[draft_ref]
            parent = repo[ref.target]
            pkg = _tree(repo, {**files, "cm.yaml": CONFIGMAP})
            tree = _with_package(repo, parent.tree_id, name, pkg)
            msg = f"Rendering package\n\n{_trailer(name, 'ws1', 0, 'render')}\n"
            draft = repo.create_commit(None, PORCH, PORCH, msg, tree, [parent.id])
            ref.set_target(draft)
        with timed(samples, "propose"):
            # The render changes nothing, so propose renames the branch (as the engine does).
            refs.create(proposed_ref, draft)
            refs.delete(draft_ref)
        with timed(samples, "approve"):
            main = refs["refs/heads/main"]
            tree = _with_package(repo, repo[main.target].tree_id, name, pkg)
            msg = f"Approving package revision {name}/1\n\n{_trailer(name, 'ws1', 1, 'init')}\n"
            oid = repo.create_commit(None, PORCH, PORCH, msg, tree, [main.target, draft])
            main.set_target(oid)
            refs.create(f"refs/tags/{name}/v1", oid)
            refs.delete(proposed_ref)
        refs.create(f"refs/heads/deletionProposed/{name}/v1", oid)
        with timed(samples, "delete"):
            refs.delete(f"refs/tags/{name}/v1")
            refs.delete(f"refs/heads/deletionProposed/{name}/v1")


def run(work: Path, iterations: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Engine and plumbing take turns, a few iterations each, so that whatever else the
    machine does at the time weighs on both alike."""
    engine = open_engine(work)
    repo = pygit2.Repository(str(work / "plumbing.git"))
    engine_samples: dict[str, list[float]] = {op: [] for op in OPS}
    plumbing_samples: dict[str, list[float]] = {op: [] for op in OPS}
    for first in range(0, iterations, 5):
        count = min(5, iterations - first)
        # A cyclic-GC pass can take milliseconds, and the kernel throttles a writer once
        # enough dirty pages pile up; either lands on whichever side happens to be running.
        # Collect and flush between chunks, untimed, so neither side pays for the other.
        gc.collect()
        gc.disable()
        try:
            os.sync()
            engine_iterations(engine, engine_samples, first, count)
            gc.collect()
            os.sync()
            plumbing_iterations(repo, plumbing_samples, first, count)
        finally:
            gc.enable()
    engine.store.close()
    return engine_samples, plumbing_samples


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def pooled(samples: dict[str, list[float]]) -> list[float]:
    return [v for op in OPS for v in samples[op]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument(
        "--max-packages",
        type=int,
        default=MAX_PACKAGES,
        help="spread the revisions over at most this many packages (tree width)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of p50 vs size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, tuple[dict[str, list[float]], dict[str, list[float]]]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix=f"porch-bench-{size}-") as tmp:
            work = Path(tmp)
            t0 = time.perf_counter()
            seed(work / "seed.git", size, args.max_packages)
            shutil.copytree(work / "seed.git", work / "repo.git")
            shutil.copytree(work / "seed.git", work / "plumbing.git")
            t1 = time.perf_counter()
            engine_samples, plumbing_samples = run(work, args.iterations)
            results[size] = (engine_samples, plumbing_samples)
            print(f"\n== {size} published revisions (seeded in {t1 - t0:.1f}s) ==")
            print(f"{'operation':<20}{'p50 ms':>10}{'p95 ms':>10}{'plumbing p50':>14}{'ratio':>8}")
            for op in OPS:
                e, b = engine_samples[op], plumbing_samples[op]
                print(
                    f"{op:<20}{p(e, 0.5):>10.2f}{p(e, 0.95):>10.2f}{p(b, 0.5):>14.2f}"
                    f"{p(e, 0.5) / p(b, 0.5):>8.2f}"
                )
            sys.stdout.flush()
    figures: dict[str, float] = {}
    for size in sizes:
        figures[f"p50_ms_at_{size}"] = round(p(pooled(results[size][0]), 0.5), 3)
    if 10 in results and 10000 in results:
        figures["ratio_10000_vs_10"] = round(
            figures["p50_ms_at_10000"] / figures["p50_ms_at_10"], 3
        )
    ref_size = 1000 if 1000 in results else sizes[0]
    ref_engine, ref_plumbing = results[ref_size]
    figures["ratio_vs_plumbing"] = round(
        p(pooled(ref_engine), 0.5) / p(pooled(ref_plumbing), 0.5), 3
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for op in OPS:
            ax.plot(sizes, [p(results[s][0][op], 0.5) for s in sizes], marker="o", label=op)
        ax.plot(
            sizes,
            [p(pooled(results[s][1]), 0.5) for s in sizes],
            "k--",
            label="pygit2 plumbing (all ops)",
        )
        ax.set_xscale("log")
        ax.set_xlabel("published revisions present")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title("porch lifecycle operations, local git")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
