"""Diffing ZenML registrations: a pure function of (desired, actual), no ZenML store."""

from __future__ import annotations

from dataclasses import replace

from stackward.plan.changes import SENSITIVE, UNKNOWN, Action, FieldChange
from stackward.zenml.diff import ROTATED, operations, plan_registrations
from stackward.zenml.registrations import ENVIRONMENT, MANAGED_BY, SPEC_HASH, Registration

ENV = "dev"


def owned(kind: str, name: str, fields: dict, spec_hash: str = "h", env: str = ENV, **kw) -> Registration:
    labels = {MANAGED_BY: "stackward", ENVIRONMENT: env, SPEC_HASH: spec_hash, **kw.pop("labels", {})}
    return Registration(kind, name, fields, labels, **kw)


def component(name: str, flavor: str = "local", type_: str = "orchestrator", **kw) -> Registration:
    fields = {
        "type": type_,
        "flavor": flavor,
        "configuration": {},
        "connector": None,
        "connector_resource_id": None,
    }
    return owned("StackComponent", name, fields, **kw)


def stack(name: str, components: dict, **kw) -> Registration:
    return owned("Stack", name, {"components": components}, **kw)


def by_address(changes):
    return {c.address: c for c in changes}


def test_a_new_registration_is_created_with_its_fields_and_without_ownership_labels():
    (change,) = plan_registrations(ENV, [component("orch", labels={"team": "ml"})], [])
    assert change.action is Action.CREATE and change.address == "zenml.StackComponent.orch"
    fields = {f.path: f.after for f in change.fields}
    assert fields["flavor"] == "local" and fields["labels"] == {"team": "ml"}
    assert not any(MANAGED_BY in path or SPEC_HASH in path for path in fields)


def test_the_same_registration_is_no_change_and_a_changed_field_an_exact_update():
    have = component("orch")
    assert plan_registrations(ENV, [component("orch")], [have])[0].action is Action.NO_OP
    want = component("orch", spec_hash="h2")
    want.fields["configuration"]["synchronous"] = True
    (change,) = plan_registrations(ENV, [want], [have])
    assert change.action is Action.UPDATE
    assert change.fields == (FieldChange("configuration.synchronous", None, True),)


def test_a_name_taken_by_an_unowned_registration_is_a_conflict_naming_the_owner():
    hand_made = Registration("StackComponent", "orch", component("orch").fields, {})
    (change,) = plan_registrations(ENV, [component("orch")], [hand_made])
    assert change.action is Action.CONFLICT
    assert "registered by hand" in change.reason
    other_env = component("orch", env="prod")
    (change,) = plan_registrations(ENV, [component("orch")], [other_env])
    assert change.action is Action.CONFLICT and "environment prod" in change.reason


def test_owned_registrations_gone_from_the_specs_are_pruned_and_others_left_alone():
    gone, foreign = component("old"), component("theirs", env="prod")
    changes = plan_registrations(ENV, [], [gone, foreign])
    assert [(c.address, c.action) for c in changes] == [("zenml.StackComponent.old", Action.DELETE)]


def test_a_flavor_change_replaces_the_component_and_updates_its_stack_in_place():
    have = [component("orch"), stack("s", {"orchestrator": "orch"})]
    want = [component("orch", flavor="local_docker", spec_hash="h2"), stack("s", {"orchestrator": "orch"})]
    changes = by_address(plan_registrations(ENV, want, have))
    assert changes["zenml.StackComponent.orch"].action is Action.REPLACE
    assert "flavor changes from local to local_docker" in changes["zenml.StackComponent.orch"].reason
    assert changes["zenml.Stack.s"].action is Action.UPDATE
    assert changes["zenml.Stack.s"].fields == (
        FieldChange("components.orchestrator", "orch", "orch (re-created)"),
    )
    assert "keeps its id" in changes["zenml.Stack.s"].reason
    ops = operations(list(changes.values()), want, have, ENV)
    # the replacement is made first, the stack moved to it, and only then the old one deleted
    assert [(o["op"], o["kind"], o.get("replacing", False)) for o in ops] == [
        ("create", "StackComponent", True),
        ("update", "Stack", False),
        ("finish_replace", "StackComponent", False),
    ]


def test_an_unowned_stack_using_a_component_makes_its_replace_a_conflict():
    have = [component("orch"), Registration("Stack", "hand", {"components": {"orchestrator": "orch"}}, {})]
    want = [component("orch", flavor="local_docker", spec_hash="h2")]
    (change,) = plan_registrations(ENV, want, have)
    assert change.action is Action.CONFLICT and "stack hand (not managed by stackward)" in change.reason


def test_a_component_of_another_type_with_the_same_name_is_another_registration():
    have = [component("shared", type_="image_builder", env="prod")]
    (change,) = plan_registrations(ENV, [component("shared")], have)
    assert change.action is Action.CREATE


def connector(secrets: dict, spec_hash: str = "h", **kw) -> Registration:
    fields = {"type": "gcp", "auth_method": "service-account", "configuration": {}}
    return owned(
        "ServiceConnector", "gcp", fields, spec_hash, secret_keys=frozenset(secrets), secrets=secrets, **kw
    )


def test_a_rotated_secret_value_shows_only_that_it_changed():
    have = connector({"service_account_json": {"fromEnv": "KEY"}})
    want = connector({"service_account_json": {"fromEnv": "KEY"}})
    rotated = {("ServiceConnector", "gcp"): {"service_account_json": "changed"}}
    (change,) = plan_registrations(ENV, [want], [have], rotated)
    assert change.action is Action.UPDATE
    assert change.fields == (FieldChange("secrets.service_account_json", SENSITIVE, ROTATED),)
    same = {("ServiceConnector", "gcp"): {"service_account_json": "same"}}
    assert plan_registrations(ENV, [want], [have], same)[0].action is Action.NO_OP


def test_a_new_reference_to_the_same_value_is_no_change():
    have = connector({"service_account_json": {"fromEnv": "OLD_NAME"}})
    want = connector({"service_account_json": {"fromEnv": "NEW_NAME"}}, spec_hash="h2")
    same = {("ServiceConnector", "gcp"): {"service_account_json": "same"}}
    assert plan_registrations(ENV, [want], [have], same)[0].action is Action.NO_OP


def test_a_secret_value_terraform_gives_only_after_apply_is_an_update_of_unknown_value():
    have = connector({"service_account_json": {"fromInfra": {"module": "base", "output": "key"}}})
    want = connector(
        {"service_account_json": {"fromInfra": {"module": "base", "output": "key"}}},
        unknown_secrets=frozenset({"service_account_json"}),
    )
    (change,) = plan_registrations(ENV, [want], [have])
    assert change.fields == (FieldChange("secrets.service_account_json", SENSITIVE, UNKNOWN),)


def zenml_secret(name: str, keys: list[str], env: str | None = ENV) -> Registration:
    labels = {MANAGED_BY: "stackward", ENVIRONMENT: env} if env else {}
    refs = {k: {"fromEnv": k.upper()} for k in keys}
    return Registration("Secret", name, {"private": False, "keys": keys}, labels, frozenset(keys), refs)


def test_secrets_are_created_updated_pruned_and_never_taken_over():
    (created,) = plan_registrations(ENV, [zenml_secret("mlflow", ["password"])], [])
    assert created.action is Action.CREATE
    assert {f.path: f.after for f in created.fields}["values"] == {"password": SENSITIVE}
    have, want = zenml_secret("mlflow", ["password"]), zenml_secret("mlflow", ["password", "username"])
    (updated,) = plan_registrations(ENV, [want], [have])
    assert updated.fields == (FieldChange("keys", ["password"], ["password", "username"]),)
    (pruned,) = plan_registrations(ENV, [], [have])
    assert pruned.action is Action.DELETE
    (taken,) = plan_registrations(ENV, [want], [zenml_secret("mlflow", [], env=None)])
    assert taken.action is Action.CONFLICT and "registered by hand" in taken.reason


def test_secrets_are_made_before_what_uses_them_and_deleted_after():
    have = [zenml_secret("old", ["k"]), component("gone")]
    want = [zenml_secret("new", ["k"]), component("orch")]
    changes = plan_registrations(ENV, want, have)
    ops = [(o["op"], o["kind"], o["name"]) for o in operations(changes, want, have, ENV)]
    assert ops == [
        ("create", "Secret", "new"),
        ("create", "StackComponent", "orch"),
        ("delete", "StackComponent", "gone"),
        ("delete", "Secret", "old"),
    ]


def test_values_zenml_fills_in_are_not_a_change_but_a_key_taken_out_of_the_spec_is():
    have = component("orch")
    have.fields["configuration"]["instance_type"] = "ml.m5.xlarge"  # set by ZenML's validator
    assert plan_registrations(ENV, [component("orch")], [have])[0].action is Action.NO_OP
    (change,) = plan_registrations(ENV, [component("orch", spec_hash="h2")], [have])
    assert change.fields == (FieldChange("configuration.instance_type", "ml.m5.xlarge", None),)


def adopting(reg: Registration) -> Registration:
    return replace(reg, adopt=True)


def test_adopting_a_hand_made_registration_shows_what_changes_and_updates_it():
    hand_made = Registration(
        "StackComponent",
        "orch",
        {**component("orch").fields, "configuration": {"synchronous": False}},
        {"team": "old"},
        id="c1",
    )
    want = adopting(component("orch", labels={"team": "ml"}))
    (change,) = plan_registrations(ENV, [want], [hand_made])
    assert change.action is Action.ADOPT and "adopted" in change.reason
    fields = {f.path: (f.before, f.after) for f in change.fields}
    assert fields["labels.team"] == ("old", "ml")
    assert fields[f"labels.{MANAGED_BY}"] == (None, "stackward")  # the stamp is shown
    assert fields[f"labels.{ENVIRONMENT}"] == (None, ENV)
    assert fields["configuration.synchronous"] == (False, None)  # converges to the spec
    (op,) = operations([change], [want], [hand_made], ENV)
    assert op["op"] == "update" and op["adopt"] is True and op["labels"][MANAGED_BY] == "stackward"


def test_adopting_never_takes_what_another_environment_owns_nor_replaces():
    want = adopting(component("orch"))
    (change,) = plan_registrations(ENV, [want], [component("orch", env="prod")])
    assert change.action is Action.CONFLICT and "environment prod" in change.reason
    other_flavor = Registration("StackComponent", "orch", component("orch", flavor="kubernetes").fields, {})
    (change,) = plan_registrations(ENV, [want], [other_flavor])
    assert change.action is Action.CONFLICT and "cannot be adopted" in change.reason
    hand_made = Registration("StackComponent", "orch", component("orch").fields, {})
    (change,) = plan_registrations(ENV, [component("orch")], [hand_made])  # no adopt: true
    assert change.action is Action.CONFLICT and "adopt: true" in change.reason
