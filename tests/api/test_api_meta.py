"""Shared metadata helpers: selectors, conditions, Status, quantities."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from kcore.api import (
    Condition,
    LabelSelector,
    ObjectMeta,
    OwnerReference,
    Status,
    encode_json,
    find_condition,
    set_condition,
)
from kcore.api.core_v1 import PodCondition
from kcore.api.meta import LabelSelectorRequirement, is_condition_true
from kcore.api.quantity import parse_quantity
from kcore.errors import FieldError, Invalid, NotFound, TemporaryError


def _selector(**kw) -> LabelSelector:
    return LabelSelector(
        match_labels=kw.get("labels", {}),
        match_expressions=[
            LabelSelectorRequirement(key=k, operator=op, values=v)
            for k, op, v in kw.get("exprs", [])
        ],
    )


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (_selector(), {}, True),
        (_selector(), {"a": "b"}, True),
        (_selector(labels={"app": "x"}), {"app": "x", "tier": "y"}, True),
        (_selector(labels={"app": "x"}), {"app": "y"}, False),
        (_selector(exprs=[("tier", "In", ["a", "b"])]), {"tier": "b"}, True),
        (_selector(exprs=[("tier", "In", ["a", "b"])]), {}, False),
        (_selector(exprs=[("tier", "NotIn", ["a"])]), {}, True),
        (_selector(exprs=[("tier", "NotIn", ["a"])]), {"tier": "a"}, False),
        (_selector(exprs=[("tier", "Exists", [])]), {"tier": ""}, True),
        (_selector(exprs=[("tier", "DoesNotExist", [])]), {"tier": ""}, False),
        (_selector(exprs=[("tier", "Bogus", [])]), {"tier": ""}, False),
    ],
)
def test_label_selector_matches(selector, labels, matches):
    assert selector.matches(labels) is matches


def test_label_selector_query_string():
    sel = _selector(
        labels={"b": "2", "a": "1"},
        exprs=[
            ("tier", "In", ["y", "x"]),
            ("env", "NotIn", ["prod"]),
            ("ready", "Exists", []),
            ("old", "DoesNotExist", []),
        ],
    )
    assert sel.to_string() == "a=1,b=2,tier in (x,y),env notin (prod),ready,!old"


def test_set_condition_moves_the_transition_time_only_when_status_changes():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    conds: list[PodCondition] = []
    assert set_condition(conds, PodCondition(type="Ready", status="False", last_transition_time=t0))
    assert not set_condition(
        conds, PodCondition(type="Ready", status="False", last_transition_time=t1)
    )
    assert conds[0].last_transition_time == t0
    assert set_condition(
        conds, PodCondition(type="Ready", status="False", reason="Probe", last_transition_time=t1)
    )
    assert conds[0].last_transition_time == t0
    assert conds[0].reason == "Probe"
    assert set_condition(conds, PodCondition(type="Ready", status="True", last_transition_time=t1))
    assert conds[0].last_transition_time == t1
    assert len(conds) == 1
    assert is_condition_true(conds, "Ready")
    assert find_condition(conds, "Initialized") is None


def test_new_conditions_get_a_transition_time():
    conds: list[Condition] = []
    set_condition(conds, Condition(type="Available", status="True"))
    stamp = conds[0].last_transition_time
    assert stamp is not None and stamp.tzinfo is UTC and stamp.microsecond == 0


def test_status_from_an_invalid_error_carries_the_causes():
    err = Invalid(
        'Pod "p" is invalid: spec.containers[0].image: Required value',
        [FieldError("spec.containers[0].image", "Required value", "FieldValueRequired")],
    )
    status = Status.from_error(err, name="p", kind="pods")
    assert encode_json(status) == (
        b'{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure",'
        b'"message":"Pod \\"p\\" is invalid: spec.containers[0].image: Required value","reason":"Invalid",'
        b'"details":{"name":"p","kind":"pods","causes":[{"reason":"FieldValueRequired","message":"Required value",'
        b'"field":"spec.containers[0].image"}]},"code":422}'
    )


def test_status_from_other_errors():
    assert encode_json(
        Status.from_error(NotFound('pods "x" not found'), name="x", kind="pods")
    ) == (
        b'{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","message":"pods \\"x\\" not found",'
        b'"reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}'
    )
    busy = Status.from_error(TemporaryError("try later", retry_after=3))
    assert busy.details.retry_after_seconds == 3
    assert busy.code == 503


def test_controller_ref():
    meta = ObjectMeta(
        owner_references=[
            OwnerReference(kind="ConfigMap", name="a", uid="1"),
            OwnerReference(kind="ReplicaSet", name="rs", uid="2", controller=True),
        ]
    )
    assert meta.controller_ref().name == "rs"
    assert ObjectMeta().controller_ref() is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100m", Decimal("0.1")),
        ("1", Decimal(1)),
        (2, Decimal(2)),
        (0.5, Decimal("0.5")),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(1610612736)),
        ("128Mi", Decimal(134217728)),
        ("1k", Decimal(1000)),
        ("1M", Decimal(1000000)),
        ("1e3", Decimal(1000)),
        ("250u", Decimal("0.00025")),
    ],
)
def test_parse_quantity(value, expected):
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "abc", "1x", "1Kii", "Gi", True])
def test_parse_quantity_rejects_garbage(value):
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity(value)
