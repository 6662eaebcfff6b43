"""The PackageVariantSet controller (``v1alpha2``): one PackageVariant per target.

Targets expand to (repoDefault, packageDefault, object) tuples; each renders one PackageVariant
spec from the template (CEL expressions see ``repoDefault``, ``packageDefault``, ``upstream``,
``target`` and ``repository``). Variants are named after what they make, so re-rendering the
same targets names the same variants: creating is idempotent, and a target that goes away
deletes exactly its variant — whose own deletionPolicy then deletes or orphans the downstream.

There is no Kubernetes garbage collector behind this API server, so the set keeps a finalizer
and deletes its variants itself when it is deleted.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from porch.api.types import PackageRevision
from porch.client import CONFIG, CONFIG_V1ALPHA2, NotFound, PorchClient, StatusError
from porch.controllers import cel
from porch.controllers.packagevariant import find_upstream, utc_now
from porch.controllers.types import (
    CONDITION_READY,
    CONDITION_STALLED,
    CONFIG_API_VERSION,
    CONFIG_API_VERSION_V1ALPHA2,
    PV_FINALIZER,
    PV_KIND,
    PVS_KIND,
    PVS_LABEL,
    Outcome,
    ReconcileError,
    ValidationError,
    condition,
    merge_conditions,
)
from porch.controllers.variantspec import INJECTABLE, Upstream, parse_revision

PVS_FINALIZER = "config.porch.kpt.dev/packagevariantsets"
MAX_NAME = 63

# Kinds an objectSelector may select (what this API server serves besides Secrets).
SELECTABLE = {(f"{g}/{v}", k): p for (g, v, k), p in INJECTABLE.items()}


def variant_name(pvs_name: str, repo: str, package: str) -> str:
    identity = f"{pvs_name}-{repo}-{package.replace('/', '-')}"
    if len(identity) <= MAX_NAME:
        return identity
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    return f"{identity[:54]}-{digest}"


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a label map."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key"), expr.get("operator")
        values = expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValidationError(f'unsupported label selector operator "{op}"')
    return True


def _exposed(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "labels": dict(meta.get("labels") or {}),
        "annotations": dict(meta.get("annotations") or {}),
    }


def _one_of(section: Mapping[str, Any], plain: str, expr: str, where: str) -> None:
    if bool(section.get(plain)) == bool(section.get(expr)):
        raise ValidationError(f"{where}: exactly one of {plain} and {expr} must be set")


def validate(spec: Mapping[str, Any]) -> Upstream:
    errors: list[str] = []
    up = spec.get("upstream")
    if not isinstance(up, Mapping) or not up.get("repo") or not up.get("package"):
        raise ValidationError("spec.upstream needs repo and package")
    revision = parse_revision(up.get("revision"))
    if revision < 0:
        errors.append(f'spec.upstream.revision "{up.get("revision")}" is not a number')
    targets = spec.get("targets")
    if not isinstance(targets, list) or not targets:
        errors.append("spec.targets must list at least one target")
        targets = []
    for i, target in enumerate(targets):
        where = f"spec.targets[{i}]"
        if not isinstance(target, Mapping):
            errors.append(f"{where} must be an object")
            continue
        kinds = [
            k for k in ("repositories", "repositorySelector", "objectSelector") if target.get(k)
        ]
        if len(kinds) != 1:
            errors.append(
                f"{where} must have exactly one of repositories, repositorySelector, objectSelector"
            )
        for j, repo in enumerate(target.get("repositories") or []):
            if not isinstance(repo, Mapping) or not repo.get("name"):
                errors.append(f"{where}.repositories[{j}].name is required")
        sel = target.get("objectSelector")
        if isinstance(sel, Mapping) and (sel.get("apiVersion"), sel.get("kind")) not in SELECTABLE:
            supported = ", ".join(f"{k} ({a})" for a, k in SELECTABLE)
            errors.append(
                f'{where}.objectSelector: kind "{sel.get("kind")}" ({sel.get("apiVersion")}) is'
                f" not served by this Porch API server; supported: {supported}"
            )
        template = target.get("template") or {}
        down = template.get("downstream") or {}
        try:
            if down:
                if down.get("repo") and down.get("repoExpr"):
                    raise ValidationError(
                        f"{where}.template.downstream: repo and repoExpr are exclusive"
                    )
                if down.get("package") and down.get("packageExpr"):
                    raise ValidationError(
                        f"{where}.template.downstream: package and packageExpr are exclusive"
                    )
            for expr in _expressions(template):
                cel.compile_check(expr)
        except ValidationError as exc:
            errors.append(str(exc))
    if errors:
        raise ValidationError("; ".join(errors))
    return Upstream(
        str(up["repo"]), str(up["package"]), max(revision, 0), str(up.get("workspaceName") or "")
    )


def _expressions(template: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    down = template.get("downstream") or {}
    out += [down[k] for k in ("repoExpr", "packageExpr") if down.get(k)]
    for field in ("labelExprs", "annotationExprs"):
        for m in template.get(field) or []:
            out += [m[k] for k in ("keyExpr", "valueExpr") if m.get(k)]
    ctx = template.get("packageContext") or {}
    for m in ctx.get("dataExprs") or []:
        out += [m[k] for k in ("keyExpr", "valueExpr") if m.get(k)]
    out += list(ctx.get("removeKeyExprs") or [])
    for inj in template.get("injectors") or []:
        if inj.get("nameExpr"):
            out.append(inj["nameExpr"])
    return out


class PackageVariantSetReconciler:
    def __init__(self, client: PorchClient, *, clock: Callable[[], str] = utc_now) -> None:
        self._client = client
        self._clock = clock

    def reconcile(
        self, obj: Mapping[str, Any], prs: Sequence[PackageRevision] | None = None
    ) -> Outcome:
        pvs: dict[str, Any] = copy.deepcopy(dict(obj))
        meta = pvs.get("metadata") or {}
        name = str(meta.get("name") or "")
        ns = str(meta.get("namespace") or self._client.namespace)
        uid = str(meta.get("uid") or "")
        existing = self._client.list_objects(
            CONFIG, "packagevariants", namespace=ns, labels=f"{PVS_LABEL}={uid}"
        )
        if meta.get("deletionTimestamp"):
            return self._finalize(pvs, existing)
        wrote = False
        if PVS_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), PVS_FINALIZER]
            pvs = self._client.update_object(CONFIG_V1ALPHA2, "packagevariantsets", pvs)
            wrote = True
        error = ""
        try:
            upstream_ref = validate(pvs.get("spec") or {})
        except ValidationError as exc:
            error = str(exc)
            conditions = [
                condition(CONDITION_STALLED, True, "ValidationError", error),
                condition(CONDITION_READY, False, "Error", "invalid PackageVariantSet spec"),
            ]
            return Outcome(name, wrote=self._write_status(pvs, conditions) or wrote, error=error)
        try:
            if prs is None:
                prs = self._client.list_package_revisions(namespace=ns)
            upstream = find_upstream(upstream_ref, prs)
        except ReconcileError as exc:
            error = str(exc)
            conditions = [
                condition(CONDITION_STALLED, True, "UpstreamNotFound", error),
                condition(CONDITION_READY, False, "UpstreamNotFound", error),
            ]
            return Outcome(name, wrote=self._write_status(pvs, conditions) or wrote, error=error)
        try:
            desired = self._desired(pvs, ns, upstream)
            wrote = self._apply(pvs, ns, desired, existing) or wrote
            conditions = [
                condition(CONDITION_STALLED, False, "Valid", "all validation checks passed"),
                condition(CONDITION_READY, True, "Reconciled", "package variants are up to date"),
            ]
        except (ReconcileError, ValidationError, StatusError) as exc:
            error = str(exc)
            conditions = [
                condition(CONDITION_STALLED, False, "Valid", "all validation checks passed"),
                condition(CONDITION_READY, False, "Error", error),
            ]
        return Outcome(name, wrote=self._write_status(pvs, conditions) or wrote, error=error)

    # --- expanding targets into variant specs ----------------------------------------------

    def _desired(
        self, pvs: dict[str, Any], ns: str, upstream: PackageRevision
    ) -> dict[str, dict[str, Any]]:
        spec = pvs["spec"]
        pvs_name = str(pvs["metadata"]["name"])
        repos = {
            str(r["metadata"]["name"]): r
            for r in self._client.list_objects(CONFIG, "repositories", namespace=ns)
        }
        up_vars = {
            **_exposed(upstream.to_dict()),
            "repo": upstream.spec.repository,
            "package": upstream.spec.package_name,
            "revision": upstream.spec.revision,
        }
        desired: dict[str, dict[str, Any]] = {}
        for target in spec["targets"]:
            for repo_default, package_default, target_var in self._expand(
                target, ns, repos, upstream
            ):
                template = target.get("template") or {}
                variables = {
                    "repoDefault": repo_default,
                    "packageDefault": package_default,
                    "upstream": up_vars,
                    "target": target_var,
                }
                down = template.get("downstream") or {}
                repo = _pick(down, "repo", variables) or repo_default
                if repo not in repos:
                    raise ReconcileError(f'downstream repository "{repo}" does not exist')
                variables["repository"] = _exposed(repos[repo])
                package = _pick(down, "package", variables) or package_default
                pv_spec = _render(spec["upstream"], template, repo, package, variables)
                desired[variant_name(pvs_name, repo, package)] = pv_spec
        return desired

    def _expand(
        self,
        target: Mapping[str, Any],
        ns: str,
        repos: Mapping[str, dict[str, Any]],
        upstream: PackageRevision,
    ) -> list[tuple[str, str, dict[str, Any]]]:
        package = upstream.spec.package_name
        out: list[tuple[str, str, dict[str, Any]]] = []
        for repo in target.get("repositories") or []:
            for pkg in repo.get("packageNames") or [package]:
                out.append((str(repo["name"]), str(pkg), {"repo": repo["name"], "package": pkg}))
        if selector := target.get("repositorySelector"):
            for name in sorted(repos):
                labels = (repos[name].get("metadata") or {}).get("labels") or {}
                if selector_matches(selector, labels):
                    out.append((name, package, _exposed(repos[name])))
        if sel := target.get("objectSelector"):
            plural = SELECTABLE[(sel["apiVersion"], sel["kind"])]
            api = "/apis/" + str(sel["apiVersion"])
            for obj in self._client.list_objects(api, plural, namespace=ns):
                meta = obj.get("metadata") or {}
                if sel.get("name") and meta.get("name") != sel["name"]:
                    continue
                if selector_matches(
                    {"matchLabels": sel.get("labels") or {}}, meta.get("labels") or {}
                ):
                    out.append((str(meta.get("name")), package, _exposed(obj)))
        return out

    # --- making the variants match ---------------------------------------------------------

    def _apply(
        self,
        pvs: dict[str, Any],
        ns: str,
        desired: dict[str, dict[str, Any]],
        existing: list[dict[str, Any]],
    ) -> bool:
        meta = pvs["metadata"]
        uid = str(meta.get("uid") or "")
        wrote = False
        have = {str(pv["metadata"]["name"]): pv for pv in existing}
        for name, pv in sorted(have.items()):
            if name not in desired and not pv["metadata"].get("deletionTimestamp"):
                try:
                    self._client.delete_object(CONFIG, "packagevariants", name, namespace=ns)
                except NotFound:
                    pass
                wrote = True
        owner = {
            "apiVersion": CONFIG_API_VERSION_V1ALPHA2,
            "kind": PVS_KIND,
            "name": meta.get("name"),
            "uid": uid,
            "controller": True,
        }
        for name, spec in sorted(desired.items()):
            current = have.get(name)
            if current is None:
                body = {
                    "apiVersion": CONFIG_API_VERSION,
                    "kind": PV_KIND,
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "labels": {PVS_LABEL: uid},
                        "ownerReferences": [owner],
                        "finalizers": [PV_FINALIZER],
                    },
                    "spec": spec,
                }
                self._client.create_object(CONFIG, "packagevariants", body)
                wrote = True
            elif current.get("spec") != spec and not current["metadata"].get("deletionTimestamp"):
                current["spec"] = spec
                self._client.update_object(CONFIG, "packagevariants", current)
                wrote = True
        return wrote

    def _finalize(self, pvs: dict[str, Any], existing: list[dict[str, Any]]) -> Outcome:
        meta = pvs["metadata"]
        name = str(meta.get("name"))
        if PVS_FINALIZER not in (meta.get("finalizers") or []):
            return Outcome(name)
        for pv in existing:
            if not pv["metadata"].get("deletionTimestamp"):
                try:
                    self._client.delete_object(
                        CONFIG,
                        "packagevariants",
                        pv["metadata"]["name"],
                        namespace=pv["metadata"].get("namespace"),
                    )
                except NotFound:
                    pass
        meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != PVS_FINALIZER]
        self._client.update_object(CONFIG_V1ALPHA2, "packagevariantsets", pvs)
        return Outcome(name, wrote=True)

    def _write_status(self, pvs: dict[str, Any], conditions: list[dict[str, str]]) -> bool:
        old = pvs.get("status") or {}
        new = {
            **old,
            "conditions": merge_conditions(old.get("conditions") or [], conditions, self._clock()),
        }
        if new == old:
            return False
        pvs["status"] = new
        try:
            self._client.update_object(CONFIG_V1ALPHA2, "packagevariantsets", pvs, sub="status")
        except NotFound:
            return False
        return True


# --- template rendering ------------------------------------------------------------------------


def _pick(section: Mapping[str, Any], key: str, variables: Mapping[str, Any]) -> str:
    if section.get(key):
        return str(section[key])
    expr = section.get(f"{key}Expr")
    return cel.evaluate(str(expr), variables) if expr else ""


def _map(
    plain: Mapping[str, Any] | None, exprs: Sequence[Mapping[str, Any]] | None, variables: Any
) -> dict[str, str]:
    out = {str(k): str(v) for k, v in (plain or {}).items()}
    for m in exprs or []:
        out[_pick(m, "key", variables)] = _pick(m, "value", variables)
    return out


def _render(
    upstream: Mapping[str, Any],
    template: Mapping[str, Any],
    repo: str,
    package: str,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "upstream": {
            k: upstream[k]
            for k in ("repo", "package", "revision", "workspaceName")
            if upstream.get(k)
        },
        "downstream": {"repo": repo, "package": package},
    }
    for key in ("adoptionPolicy", "deletionPolicy"):
        if template.get(key):
            spec[key] = template[key]
    labels = _map(template.get("labels"), template.get("labelExprs"), variables)
    if labels:
        spec["labels"] = labels
    annotations = _map(template.get("annotations"), template.get("annotationExprs"), variables)
    if annotations:
        spec["annotations"] = annotations
    ctx = template.get("packageContext") or {}
    data = _map(ctx.get("data"), ctx.get("dataExprs"), variables)
    remove = [str(k) for k in ctx.get("removeKeys") or []]
    remove += [cel.evaluate(str(e), variables) for e in ctx.get("removeKeyExprs") or []]
    if data or remove:
        spec["packageContext"] = {
            **({"data": data} if data else {}),
            **({"removeKeys": remove} if remove else {}),
        }
    pipeline = template.get("pipeline") or {}
    rendered: dict[str, Any] = {}
    for section in ("mutators", "validators"):
        fns = []
        for fn in pipeline.get(section) or []:
            body = {k: v for k, v in fn.items() if k != "configMapExprs"}
            extra = _map(None, fn.get("configMapExprs"), variables)
            if extra:
                body["configMap"] = {**(body.get("configMap") or {}), **extra}
            fns.append(body)
        if fns:
            rendered[section] = fns
    if rendered:
        spec["pipeline"] = rendered
    injectors = []
    for inj in template.get("injectors") or []:
        out = {k: inj[k] for k in ("group", "version", "kind") if inj.get(k)}
        out["name"] = _pick(inj, "name", variables)
        injectors.append(out)
    if injectors:
        spec["injectors"] = injectors
    return spec
