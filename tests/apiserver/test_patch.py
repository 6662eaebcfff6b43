"""RFC 7386 and RFC 6902 examples, plus the apply approximation."""

from __future__ import annotations

import pytest

from porch.apiserver.patch import apply_patch, json_patch, merge_patch, strategic_as_merge
from porch.errors import BadRequest, Invalid, UnsupportedMediaType


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc_examples(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


def test_json_patch_operations() -> None:
    doc = {"foo": ["bar", "baz"], "obj": {"x": 1}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "remove", "path": "/obj/x"},
            {"op": "replace", "path": "/obj", "value": {"y": 2}},
            {"op": "copy", "from": "/obj", "path": "/copy"},
            {"op": "move", "from": "/foo/0", "path": "/first"},
            {"op": "test", "path": "/first", "value": "bar"},
            {"op": "add", "path": "/a~1b", "value": 1},
        ],
    )
    assert out == {
        "foo": ["qux", "baz", "end"],
        "obj": {"y": 2},
        "copy": {"y": 2},
        "first": "bar",
        "a/b": 1,
    }
    assert doc == {"foo": ["bar", "baz"], "obj": {"x": 1}}  # the input is untouched


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ({"op": "add"}, BadRequest),
        ([{"op": "frob", "path": "/a"}], BadRequest),
        ([{"op": "add", "path": "/a"}], BadRequest),
        ([{"op": "remove", "path": "/missing"}], Invalid),
        ([{"op": "replace", "path": "/missing", "value": 1}], Invalid),
        ([{"op": "test", "path": "/a", "value": 2}], Invalid),
        ([{"op": "add", "path": "/l/9", "value": 1}], Invalid),
        ([{"op": "add", "path": "/l/01", "value": 1}], Invalid),
        ([{"op": "move", "from": "/m", "path": "/m/n"}], Invalid),
        ([{"op": "add", "path": "a", "value": 1}], BadRequest),
    ],
)
def test_json_patch_errors(ops: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        json_patch({"a": 1, "l": [0], "m": {}}, ops)


def test_apply_treats_null_as_no_opinion_and_drops_managed_fields() -> None:
    current = {"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1, "y": 2}}
    applied = {"metadata": {"managedFields": [{}], "labels": None}, "spec": {"x": 5}}
    assert apply_patch(current, applied) == {
        "metadata": {"labels": {"a": "1"}},
        "spec": {"x": 5, "y": 2},
    }
    assert apply_patch(None, {"spec": {}}) == {"spec": {}}
    with pytest.raises(BadRequest):
        apply_patch(current, ["not an object"])


def test_strategic_patch_only_without_directives() -> None:
    assert strategic_as_merge({"$setElementOrder/finalizers": [], "data": {"a": "b"}}) == {
        "data": {"a": "b"}
    }
    with pytest.raises(UnsupportedMediaType):
        strategic_as_merge({"metadata": {"$patch": "replace"}})
