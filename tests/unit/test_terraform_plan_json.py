"""`terraform show -json` and `terraform output -json` read into the change model (no terraform run).

The documents are written by hand in Terraform's format_version 1.2 shape (as Terraform 1.11 emits it).
"""

from __future__ import annotations

from typing import Any

import pytest

from stackward.plan.changes import SENSITIVE, UNKNOWN, Action, Change, FieldChange
from stackward.terraform.plan_json import read_outputs, read_plan

INDEX = (("base", "bucket"), ("base", "id"), ("base", "password"), ("net", "cidrs"))


def resource_change(
    address: str,
    actions: list[str],
    before: dict | None,
    after: dict | None,
    mode: str = "managed",
    **change: Any,
) -> dict:
    kind, name = address.split(".")[-2:]
    rc = {
        "address": address,
        "mode": mode,
        "type": kind,
        "name": name,
        "provider_name": "registry.terraform.io/hashicorp/google",
        "change": {
            "actions": actions,
            "before": before,
            "after": after,
            "after_unknown": change.pop("after_unknown", {}),
            "before_sensitive": change.pop("before_sensitive", False if before is None else {}),
            "after_sensitive": change.pop("after_sensitive", False if after is None else {}),
        },
    }
    rc.update(change)  # action_reason
    return rc


def plan_of(*resource_changes: dict, outputs: dict | None = None, output_changes: dict | None = None) -> dict:
    return {
        "format_version": "1.2",
        "terraform_version": "1.11.4",
        "planned_values": {"outputs": outputs or {}, "root_module": {}},
        "resource_changes": list(resource_changes),
        "output_changes": output_changes or {},
    }


def only_change(raw: dict) -> Change:
    (change,) = read_plan(raw, ()).changes
    return change


BUCKET = "module.base.google_storage_bucket.artifacts"


def test_create_lists_every_attribute_with_unknowns_known_after_apply():
    rc = resource_change(
        BUCKET,
        ["create"],
        None,
        {"name": "acme-artifacts", "location": "EU", "labels": {"team": "ml"}},
        after_unknown={"id": True, "self_link": True, "labels": {}},
    )
    assert only_change(plan_of(rc)) == Change(
        "terraform",
        "google_storage_bucket",
        BUCKET,
        BUCKET,
        Action.CREATE,
        (
            FieldChange("id", None, UNKNOWN),
            FieldChange("labels", None, {"team": "ml"}),
            FieldChange("location", None, "EU"),
            FieldChange("name", None, "acme-artifacts"),
            FieldChange("self_link", None, UNKNOWN),
        ),
        "",
    )


def test_update_lists_only_the_attributes_that_change():
    before = {"id": "b-1", "name": "acme", "versioning": [{"enabled": False}], "labels": {"team": "ml"}}
    after = {"id": "b-1", "name": "acme", "versioning": [{"enabled": True}], "labels": {"team": "ml"}}
    change = only_change(plan_of(resource_change(BUCKET, ["update"], before, after)))
    assert change.action is Action.UPDATE
    assert change.fields == (FieldChange("versioning", [{"enabled": False}], [{"enabled": True}]),)
    assert change.reason == ""


def test_delete_has_no_fields_and_no_reason():
    rc = resource_change(
        BUCKET,
        ["delete"],
        {"id": "b-1", "name": "acme"},
        None,
        action_reason="delete_because_no_resource_config",
    )
    change = only_change(plan_of(rc))
    assert (change.action, change.fields, change.reason) == (Action.DELETE, (), "")


@pytest.mark.parametrize("actions", [["delete", "create"], ["create", "delete"]])
def test_replace_in_either_order_carries_the_reason(actions: list[str]):
    rc = resource_change(
        BUCKET,
        actions,
        {"id": "b-1", "name": "acme", "location": "EU"},
        {"name": "acme", "location": "US"},
        after_unknown={"id": True},
        action_reason="replace_because_cannot_update",
    )
    change = only_change(plan_of(rc))
    assert change.action is Action.REPLACE
    assert change.reason == "replace_because_cannot_update"
    assert change.fields == (FieldChange("id", "b-1", UNKNOWN), FieldChange("location", "EU", "US"))


def test_data_source_reads_are_not_changes():
    read = resource_change(
        "data.google_project.current",
        ["read"],
        None,
        {"project_id": "acme"},
        mode="data",
        after_unknown={"number": True},
    )
    bucket = resource_change(BUCKET, ["create"], None, {"name": "acme"})
    assert [c.address for c in read_plan(plan_of(read, bucket), ()).changes] == [BUCKET]


def test_no_op_is_a_change_without_fields():
    state = {"id": "b-1", "name": "acme"}
    change = only_change(plan_of(resource_change(BUCKET, ["no-op"], state, state)))
    assert (change.action, change.fields) == (Action.NO_OP, ())


def test_sensitive_values_are_masked_at_any_depth_in_dicts_and_lists():
    before = {
        "name": "db",
        "password": "old-pw",
        "settings": {"user": "admin", "auth": {"token": "old-token"}, "keys": ["public", "old-key"]},
    }
    after = {
        "name": "db",
        "password": "new-pw",
        "settings": {"user": "root", "auth": {"token": "new-token"}, "keys": ["public", "new-key"]},
    }
    shape = {"password": True, "settings": {"auth": {"token": True}, "keys": [False, True]}}
    rc = resource_change(
        "google_sql_user.app", ["update"], before, after, before_sensitive=shape, after_sensitive=shape
    )
    change = only_change(plan_of(rc))
    assert change.fields == (
        FieldChange(
            "settings",
            {"user": "admin", "auth": {"token": SENSITIVE}, "keys": ["public", SENSITIVE]},
            {"user": "root", "auth": {"token": SENSITIVE}, "keys": ["public", SENSITIVE]},
        ),
    )
    for secret in ("old-pw", "new-pw", "old-token", "new-token", "old-key", "new-key"):
        assert secret not in repr(change)


def test_a_sensitive_attribute_is_masked_whole_when_created():
    rc = resource_change(
        "google_sql_user.app",
        ["create"],
        None,
        {"name": "app", "password": {"value": "s3cr3t", "rotations": ["a", "b"]}},
        after_sensitive={"password": True},
    )
    change = only_change(plan_of(rc))
    assert FieldChange("password", None, SENSITIVE) in change.fields
    assert "s3cr3t" not in repr(change)


def test_unknown_values_inside_lists_and_dicts_are_known_after_apply():
    before = {"id": "n-1", "cidrs": ["10.0.0.0/24"], "meta": {"a": "1"}}
    after = {"id": "n-1", "cidrs": ["10.0.0.0/24", None], "meta": {"a": "1", "b": None}}
    rc = resource_change(
        "google_compute_network.net",
        ["update"],
        before,
        after,
        after_unknown={"cidrs": [False, True], "meta": {"b": True}},
    )
    assert only_change(plan_of(rc)).fields == (
        FieldChange("cidrs", ["10.0.0.0/24"], ["10.0.0.0/24", UNKNOWN]),
        FieldChange("meta", {"a": "1"}, {"a": "1", "b": UNKNOWN}),
    )


def test_outputs_known_before_apply_are_read_per_module():
    raw = plan_of(
        outputs={
            "stackward_0000": {"sensitive": False, "type": "string", "value": "acme-artifacts"},
            "stackward_0001": {"sensitive": False},  # unknown until the bucket exists
            "stackward_0002": {"sensitive": True, "type": "string", "value": "s3cr3t"},
            "stackward_0003": {"sensitive": False},  # partly unknown
        },
        output_changes={
            "stackward_0000": {
                "actions": ["no-op"],
                "before": "acme-artifacts",
                "after": "acme-artifacts",
                "after_unknown": False,
            },
            "stackward_0001": {"actions": ["create"], "before": None, "after_unknown": True},
            "stackward_0002": {
                "actions": ["create"],
                "before": None,
                "after": "s3cr3t",
                "after_unknown": False,
            },
            "stackward_0003": {
                "actions": ["create"],
                "before": None,
                "after": ["10.0.0.0/24", None],
                "after_unknown": [False, True],
            },
        },
    )
    plan = read_plan(raw, INDEX)
    assert plan.outputs == {"base": {"bucket": "acme-artifacts", "password": "s3cr3t"}}
    assert plan.sensitive == {("base", "password")}
    assert plan.raw is raw  # kept whole for the policies


def test_an_output_unknown_after_apply_is_left_out_even_with_a_planned_value():
    raw = plan_of(
        outputs={"stackward_0000": {"sensitive": False, "value": "stale"}},
        output_changes={"stackward_0000": {"actions": ["update"], "before": "stale", "after_unknown": True}},
    )
    assert read_plan(raw, INDEX).outputs == {}


def test_outputs_are_matched_by_position_in_the_index():
    raw = plan_of(outputs={"stackward_0000": {"sensitive": False, "value": "x"}})
    assert read_plan(raw, (("other", "name"),)).outputs == {"other": {"name": "x"}}
    assert read_plan(raw, ()).outputs == {}  # not one of ours: ignored


def test_an_empty_plan_reads_as_no_changes_and_no_outputs():
    plan = read_plan({"format_version": "1.2"}, INDEX)
    assert (plan.changes, plan.outputs, plan.sensitive) == ([], {}, set())


def test_terraform_output_values_are_read_per_module_with_sensitive_values_intact():
    values = {
        "stackward_0000": {"sensitive": False, "type": "string", "value": "acme-artifacts"},
        "stackward_0002": {"sensitive": True, "type": "string", "value": "s3cr3t"},
        "stackward_0003": {"sensitive": False, "type": ["list", "string"], "value": ["10.0.0.0/24"]},
        "stackward_0009": {"sensitive": False, "type": "string", "value": "not ours"},
    }
    outputs, sensitive = read_outputs(values, INDEX)
    assert outputs == {
        "base": {"bucket": "acme-artifacts", "password": "s3cr3t"},  # registrations need the real value
        "net": {"cidrs": ["10.0.0.0/24"]},
    }
    assert sensitive == ["s3cr3t"]  # and the scrubber learns it
    assert read_outputs({}, INDEX) == ({}, [])
