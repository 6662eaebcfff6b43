"""The PackageVariant controller: one upstream package, one downstream package, kept in step.

Why it cannot flood a repository with drafts (Porch's "hundreds of branches overnight"):

* the downstream revisions a variant owns are found by its ownerReference uid, and while any
  of them is not yet published that one *is* the target: no second draft is ever started;
* a new draft's workspace is ``packagevariant-<n+1>``, n being the highest such number of the
  package, so two controllers racing compute the same name and the server refuses the second
  create with 409 (workspace names are unique) instead of storing a duplicate;
* reconcile writes only when the result differs from what is stored (semantic comparison of
  the package, of labels and of status), so a loop that re-runs changes nothing.

The controller never proposes or approves; its drafts wait for a person or other automation.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from porch.api.types import (
    Lifecycle,
    ObjectMeta,
    OwnerReference,
    PackageCloneTaskSpec,
    PackageEditTaskSpec,
    PackageRevision,
    PackageRevisionRef,
    PackageRevisionSpec,
    PackageUpgradeTaskSpec,
    Task,
    UpstreamPackage,
)
from porch.client import CONFIG, NotFound, PorchClient, StatusError
from porch.controllers import mutations
from porch.controllers.types import (
    CONDITION_READY,
    CONDITION_STALLED,
    CONFIG_API_VERSION,
    PV_FINALIZER,
    PV_KIND,
    WORKSPACE_PREFIX,
    Outcome,
    ReconcileError,
    ValidationError,
    condition,
    merge_conditions,
)
from porch.controllers.variantspec import (
    ADOPT_EXISTING,
    DELETE,
    INJECTABLE,
    Upstream,
    VariantSpec,
    validate,
)
from porch.errors import PorchError

_WORKSPACE = re.compile(rf"^{WORKSPACE_PREFIX}(\d+)$")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _published(pr: PackageRevision) -> bool:
    return pr.spec.lifecycle in (Lifecycle.PUBLISHED, Lifecycle.DELETION_PROPOSED)


def _owned_by(pr: PackageRevision, uid: str) -> bool:
    return any(o.uid == uid for o in pr.metadata.owner_references)


def _controlled_by_other(pr: PackageRevision, uid: str) -> bool:
    return any(o.controller and o.uid != uid for o in pr.metadata.owner_references)


class PackageVariantReconciler:
    """Reconciles one PackageVariant object at a time (callers serialise per object)."""

    def __init__(self, client: PorchClient, *, clock: Callable[[], str] = utc_now) -> None:
        self._client = client
        self._clock = clock
        # (variant uid, generation, target) → the target's resourceVersion when its package was
        # last found to need no change: the next pass skips reading it again if neither moved.
        self._clean: dict[tuple[str, int, str], str] = {}

    # --- entry point -----------------------------------------------------------------------

    def reconcile(
        self, obj: Mapping[str, Any], prs: Sequence[PackageRevision] | None = None
    ) -> Outcome:
        pv: dict[str, Any] = copy.deepcopy(dict(obj))
        meta = pv.get("metadata") or {}
        name = str(meta.get("name") or "")
        ns = str(meta.get("namespace") or self._client.namespace)
        if meta.get("deletionTimestamp"):
            return self._finalize(pv, ns)
        wrote = False
        if PV_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), PV_FINALIZER]
            pv = self._client.update_object(CONFIG, "packagevariants", pv)
            wrote = True
        targets: list[dict[str, Any]] = []
        error = ""
        try:
            spec = validate(pv.get("spec") or {})
        except ValidationError as exc:
            conditions = [
                condition(CONDITION_STALLED, True, "ValidationError", str(exc)),
                condition(CONDITION_READY, False, "Error", "invalid PackageVariant spec"),
            ]
            error = str(exc)
        else:
            try:
                if prs is None:
                    prs = self._client.list_package_revisions(namespace=ns)
                w, targets = self._ensure(pv, ns, spec, list(prs))
                wrote = wrote or w
                conditions = [
                    condition(CONDITION_STALLED, False, "Valid", "all validation checks passed"),
                    condition(
                        CONDITION_READY,
                        True,
                        "NoErrors",
                        "successfully ensured downstream package variant",
                    ),
                ]
            except (ReconcileError, StatusError, PorchError) as exc:
                # PorchError: a downstream package we cannot parse (bad YAML, bad Kptfile)
                error = str(exc)
                conditions = [
                    condition(CONDITION_STALLED, False, "Valid", "all validation checks passed"),
                    condition(CONDITION_READY, False, "Error", error),
                ]
        wrote = self._write_status(pv, conditions, targets) or wrote
        return Outcome(name, wrote=wrote, error=error)

    # --- status ----------------------------------------------------------------------------

    def _write_status(
        self, pv: dict[str, Any], conditions: list[dict[str, str]], targets: list[dict[str, Any]]
    ) -> bool:
        old = pv.get("status") or {}
        previous = {
            t.get("name"): t.get("renderStatus")
            for t in old.get("downstreamTargets") or []
            if isinstance(t, dict)
        }
        for target in targets:
            if "renderStatus" not in target and previous.get(target["name"]):
                target["renderStatus"] = previous[target["name"]]
        new: dict[str, Any] = {
            "conditions": merge_conditions(old.get("conditions") or [], conditions, self._clock())
        }
        if targets:
            new["downstreamTargets"] = targets
        if new == old:
            return False
        pv["status"] = new
        try:
            self._client.update_object(CONFIG, "packagevariants", pv, sub="status")
        except NotFound:
            return False
        return True

    # --- deletion --------------------------------------------------------------------------

    def _finalize(self, pv: dict[str, Any], ns: str) -> Outcome:
        meta = pv["metadata"]
        name = str(meta.get("name"))
        if PV_FINALIZER not in (meta.get("finalizers") or []):
            return Outcome(name)
        spec = pv.get("spec") or {}
        policy = str(spec.get("deletionPolicy") or DELETE)
        uid = str(meta.get("uid") or "")
        try:
            for pr in self._client.list_package_revisions(namespace=ns):
                if _owned_by(pr, uid):
                    self._let_go(pr, uid, policy)
        except StatusError as exc:
            return Outcome(name, error=str(exc))
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != PV_FINALIZER]
        self._client.update_object(CONFIG, "packagevariants", pv)
        return Outcome(name, wrote=True)

    def _let_go(self, pr: PackageRevision, uid: str, policy: str) -> None:
        """Apply the deletion policy to one revision this variant no longer wants."""
        lifecycle = pr.spec.lifecycle
        if policy == DELETE and lifecycle in (Lifecycle.DRAFT, Lifecycle.PROPOSED):
            self._client.delete_package_revision(pr.metadata.name, namespace=pr.metadata.namespace)
            return
        pr.metadata.owner_references = [o for o in pr.metadata.owner_references if o.uid != uid]
        if policy == DELETE and lifecycle == Lifecycle.PUBLISHED:
            pr.spec.lifecycle = Lifecycle.DELETION_PROPOSED
        self._client.update_package_revision(pr)

    # --- the work --------------------------------------------------------------------------

    def _ensure(
        self, pv: dict[str, Any], ns: str, spec: VariantSpec, prs: list[PackageRevision]
    ) -> tuple[bool, list[dict[str, Any]]]:
        meta = pv["metadata"]
        uid = str(meta.get("uid") or "")
        upstream = find_upstream(spec.upstream, prs)
        wrote = False
        downstreams: list[PackageRevision] = []
        for pr in prs:
            same = (
                pr.spec.repository == spec.downstream_repo
                and pr.spec.package_name == spec.downstream_package
            )
            if _owned_by(pr, uid):
                if same:
                    downstreams.append(pr)
                else:
                    # The variant now points elsewhere: what it made before is let go.
                    self._let_go(pr, uid, spec.deletion_policy)
                    wrote = True
            elif (
                same
                and spec.adoption_policy == ADOPT_EXISTING
                and pr.spec.revision != -1
                and not _controlled_by_other(pr, uid)
            ):
                downstreams.append(pr)
        siblings = [
            pr
            for pr in prs
            if pr.spec.repository == spec.downstream_repo
            and pr.spec.package_name == spec.downstream_package
        ]
        if not downstreams:
            created = self._create_draft(pv, ns, spec, siblings, clone=upstream.metadata.name)
            draft, render = self._mutate(created, pv, spec)
            return True, [_target(draft, render)]
        unpublished = [pr for pr in downstreams if not _published(pr)]
        if unpublished:
            targets = sorted(unpublished, key=lambda p: p.metadata.name)
        else:
            targets = [max(downstreams, key=lambda p: (p.spec.revision, p.metadata.name))]
        out: list[dict[str, Any]] = []
        for target in targets:
            changed, target = self._own(target, pv, spec)
            wrote = wrote or changed
            if target.spec.lifecycle == Lifecycle.DELETION_PROPOSED:
                target.spec.lifecycle = Lifecycle.PUBLISHED
                target = self._client.update_package_revision(target)
                wrote = True
            if not _up_to_date(target, upstream):
                if not _published(target):
                    raise ReconcileError(
                        f'downstream "{target.metadata.name}" is {target.spec.lifecycle} and'
                        f' based on an older upstream than "{upstream.metadata.name}"; publish'
                        " or delete it so the variant can upgrade"
                    )
                old = locked_upstream(target, upstream, prs)
                target = self._create_draft(
                    pv,
                    ns,
                    spec,
                    siblings,
                    upgrade=(old, upstream.metadata.name, target.metadata.name),
                )
                wrote = True
            mutated, render = self._mutate(target, pv, spec)
            wrote = wrote or mutated.metadata.name != target.metadata.name or render is not None
            out.append(_target(mutated, render))
        return wrote, out

    def _own(
        self, pr: PackageRevision, pv: dict[str, Any], spec: VariantSpec
    ) -> tuple[bool, PackageRevision]:
        """Our ownerReference, labels and annotations on a downstream revision."""
        uid = str(pv["metadata"].get("uid") or "")
        meta = pr.metadata
        labels = {**meta.labels, **spec.labels}
        labels.pop("kpt.dev/latest-revision", None)
        annotations = {**meta.annotations, **spec.annotations}
        current = dict(meta.labels)
        current.pop("kpt.dev/latest-revision", None)
        if _owned_by(pr, uid) and labels == current and annotations == meta.annotations:
            return False, pr
        if not _owned_by(pr, uid):
            meta.owner_references.append(_owner(pv))
        meta.labels, meta.annotations = labels, annotations
        return True, self._client.update_package_revision(pr)

    def _create_draft(
        self,
        pv: dict[str, Any],
        ns: str,
        spec: VariantSpec,
        siblings: list[PackageRevision],
        *,
        clone: str = "",
        upgrade: tuple[str, str, str] | None = None,
        edit: str = "",
    ) -> PackageRevision:
        if clone:
            task = Task(
                type="clone",
                clone=PackageCloneTaskSpec(
                    upstream_ref=UpstreamPackage(upstream_ref=PackageRevisionRef(clone))
                ),
            )
        elif upgrade is not None:
            old, new, local = upgrade
            task = Task(
                type="upgrade",
                upgrade=PackageUpgradeTaskSpec(
                    old_upstream_ref=PackageRevisionRef(old),
                    new_upstream_ref=PackageRevisionRef(new),
                    local_package_revision_ref=PackageRevisionRef(local),
                    strategy="resource-merge",
                ),
            )
        else:
            task = Task(type="edit", edit=PackageEditTaskSpec(source_ref=PackageRevisionRef(edit)))
        pr = PackageRevision(
            metadata=ObjectMeta(
                namespace=ns,
                labels=dict(spec.labels),
                annotations=dict(spec.annotations),
                owner_references=[_owner(pv)],
            ),
            spec=PackageRevisionSpec(
                package_name=spec.downstream_package,
                repository=spec.downstream_repo,
                workspace_name=next_workspace(siblings),
                lifecycle=Lifecycle.DRAFT,
                tasks=[task],
            ),
        )
        # A 409 here (someone made that workspace first) propagates: never a second name.
        return self._client.create_package_revision(pr)

    def _mutate(
        self, target: PackageRevision, pv: dict[str, Any], spec: VariantSpec
    ) -> tuple[PackageRevision, dict[str, Any] | None]:
        """Apply context, pipeline and injection; write only if the package really changes.
        A published target gets an edit draft first. Returns the target and the render status
        of a write (None when nothing was written)."""
        ns = target.metadata.namespace
        meta = pv["metadata"]
        key = (str(meta.get("uid")), int(meta.get("generation") or 0), target.metadata.name)
        version = target.metadata.resource_version
        if not spec.injectors and version and self._clean.get(key) == version:
            return target, None  # injected objects live elsewhere: those are always re-read
        prr = self._client.get_resources(target.metadata.name, namespace=ns)
        before = dict(prr.spec.resources)
        after = self._mutations(before, pv, spec, ns)
        if mutations.same_package(before, after):
            if len(self._clean) > 10_000:
                self._clean.clear()
            self._clean[key] = version
            return target, None
        if target.spec.lifecycle == Lifecycle.PROPOSED:
            raise ReconcileError(
                f'downstream "{target.metadata.name}" is Proposed; the variant\'s changes are'
                " applied once it is published or sent back to Draft"
            )
        if _published(target):
            prs = self._client.list_package_revisions(namespace=ns)
            siblings = [
                p
                for p in prs
                if p.spec.repository == target.spec.repository
                and p.spec.package_name == target.spec.package_name
            ]
            target = self._create_draft(pv, ns, spec, siblings, edit=target.metadata.name)
            prr = self._client.get_resources(target.metadata.name, namespace=ns)
            after = self._mutations(dict(prr.spec.resources), pv, spec, ns)
        prr.spec.resources = after
        written = self._client.update_resources(prr)
        render = (written.to_dict().get("status") or {}).get("renderStatus") or {}
        return target, render

    def _mutations(
        self, files: dict[str, str], pv: dict[str, Any], spec: VariantSpec, ns: str
    ) -> dict[str, str]:
        name = str(pv["metadata"].get("name"))
        files = mutations.apply_package_context(files, spec.context_data, spec.context_remove)
        files = mutations.apply_pipeline(files, name, spec.pipeline)
        if spec.injectors:

            def lookup(group: str, version: str, kind: str, obj: str) -> dict[str, Any] | None:
                plural = INJECTABLE.get((group, version, kind))
                if plural is None:
                    return None
                try:
                    return self._client.get_object(CONFIG, plural, obj, namespace=ns)
                except NotFound:
                    return None

            files = mutations.apply_injection(files, spec.injectors, lookup)
        return files


# --- pure helpers ----------------------------------------------------------------------------


def _owner(pv: Mapping[str, Any]) -> OwnerReference:
    meta = pv.get("metadata") or {}
    return OwnerReference(
        api_version=CONFIG_API_VERSION,
        kind=PV_KIND,
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        controller=True,
    )


def _target(pr: PackageRevision, render: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": pr.metadata.name}
    if render:
        out["renderStatus"] = render
    return out


def next_workspace(siblings: Sequence[PackageRevision]) -> str:
    numbers = [0]
    for pr in siblings:
        if m := _WORKSPACE.match(pr.spec.workspace_name):
            numbers.append(int(m.group(1)))
    return f"{WORKSPACE_PREFIX}{max(numbers) + 1}"


def find_upstream(up: Upstream, prs: Sequence[PackageRevision]) -> PackageRevision:
    """By workspaceName if given, else by revision if given, else the latest published."""
    candidates = [
        pr for pr in prs if pr.spec.repository == up.repo and pr.spec.package_name == up.package
    ]
    found: PackageRevision | None
    if up.workspace_name:
        found = next((p for p in candidates if p.spec.workspace_name == up.workspace_name), None)
    elif up.revision > 0:
        found = next((p for p in candidates if p.spec.revision == up.revision), None)
    else:
        published = [p for p in candidates if _published(p) and p.spec.revision > 0]
        found = max(published, key=lambda p: p.spec.revision) if published else None
    if found is None:
        raise ReconcileError(f"upstream package {up.describe()} not found")
    if not _published(found):
        raise ReconcileError(
            f'upstream "{found.metadata.name}" is {found.spec.lifecycle}; a variant follows'
            " published revisions only"
        )
    return found


def _locked_ref(pr: PackageRevision) -> str:
    lock = pr.status.upstream_lock
    return lock.git.ref if lock is not None and lock.git is not None else ""


def _up_to_date(downstream: PackageRevision, upstream: PackageRevision) -> bool:
    ref = _locked_ref(downstream)
    if not ref:
        return True  # not cloned from anything (an adopted package): nothing to upgrade
    if ref.startswith("drafts"):
        return False
    last = ref.rsplit("/", 1)[-1]
    want = upstream.spec.revision
    return last in (f"v{want}", str(want)) if want > 0 else last == upstream.spec.workspace_name


def locked_upstream(
    downstream: PackageRevision, upstream: PackageRevision, prs: Sequence[PackageRevision]
) -> str:
    """The published upstream revision the downstream was last cloned or upgraded from."""
    ref = _locked_ref(downstream)
    last = ref.rsplit("/", 1)[-1]
    for pr in prs:
        if (
            pr.spec.repository == upstream.spec.repository
            and pr.spec.package_name == upstream.spec.package_name
            and _published(pr)
            and last in (f"v{pr.spec.revision}", str(pr.spec.revision), pr.spec.workspace_name)
        ):
            return pr.metadata.name
    raise ReconcileError(
        f'cannot find the upstream revision "{ref}" that downstream'
        f' "{downstream.metadata.name}" was made from, so it cannot be upgraded'
    )
