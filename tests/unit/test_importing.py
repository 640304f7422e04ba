"""`stackward import`'s conversion: registrations as read from a ZenML store to spec documents
and the files holding them. Pure: no store, no zenml (a small catalog made by hand)."""

from __future__ import annotations

import pytest
import yaml

from stackward.errors import UsageError
from stackward.spec.importing import (
    Skipped,
    held_secret_keys,
    import_specs,
    next_step,
    render,
    secret_probes,
)
from stackward.zenml.catalog import AuthMethodInfo, Catalog, ConnectorTypeInfo, FlavorInfo
from stackward.zenml.registrations import ENVIRONMENT, MANAGED_BY, SPEC_HASH, Registration

ENV = "prod"
CATALOG = Catalog(
    "0.98.0",
    ("artifact_store", "orchestrator", "experiment_tracker"),
    {
        "artifact_store": {
            "gcp": FlavorInfo("artifact_store", "gcp", {}, (), "gcp", "gcs-bucket"),
            "local": FlavorInfo("artifact_store", "local", {}, (), None, None),
        },
        "orchestrator": {"local": FlavorInfo("orchestrator", "local", {}, (), None, None)},
        "experiment_tracker": {
            "mlflow": FlavorInfo(
                "experiment_tracker", "mlflow", {}, ("tracking_password", "tracking_username"), None, None
            )
        },
    },
    {
        "gcp": ConnectorTypeInfo(
            "gcp",
            ("gcs-bucket", "gcp-generic"),
            {
                "service-account": AuthMethodInfo("service-account", {}, ("service_account_json",)),
                "implicit": AuthMethodInfo("implicit", {}, ()),
            },
        ),
        "github": ConnectorTypeInfo("github", ("repo",), {"token": AuthMethodInfo("token", {}, ("token",))}),
    },
)


def owned_by(env: str) -> dict[str, str]:
    return {MANAGED_BY: "stackward", ENVIRONMENT: env, SPEC_HASH: "abc"}


def connector(name: str, auth: str = "service-account", labels: dict | None = None, **fields) -> Registration:
    base = {
        "type": fields.pop("type", "gcp"),
        "auth_method": auth,
        "resource_type": None,
        "resource_id": None,
        "configuration": {"project_id": "acme-ml-prod"},
        "expiration_seconds": None,
        "description": "",
    }
    return Registration("ServiceConnector", name, {**base, **fields}, labels or {}, id=f"id-{name}")


def component(
    name: str, type_: str = "orchestrator", flavor: str = "local", labels: dict | None = None, **fields
) -> Registration:
    base = {
        "type": type_,
        "flavor": flavor,
        "configuration": {},
        "connector": None,
        "connector_resource_id": None,
        "environment": {},
        "secrets": [],
    }
    return Registration("StackComponent", name, {**base, **fields}, labels or {}, id=f"id-{name}")


def stack(name: str, components: dict, labels: dict | None = None, **fields) -> Registration:
    base = {"components": components, "description": "", "environment": {}, "secrets": []}
    return Registration("Stack", name, {**base, **fields}, labels or {}, id=f"id-{name}")


def secret(name: str, keys: list[str], labels: dict | None = None, private: bool = False) -> Registration:
    return Registration("Secret", name, {"private": private, "keys": keys}, labels or {}, id=f"id-{name}")


DEFAULTS = [
    component("default", "orchestrator"),
    component("default", "artifact_store", flavor="local", configuration={"path": "/tmp/default"}),
    stack("default", {"orchestrator": "default", "artifact_store": "default"}),
]
HAND_MADE = [
    connector("prod-gcp", labels={"team": "ml", "tier": "gold"}, description="GCP access"),
    component(
        "prod-artifacts",
        "artifact_store",
        "gcp",
        configuration={"path": "gs://acme-prod/artifacts"},
        connector="prod-gcp",
        connector_resource_id="acme-prod",
        labels={"team": "ml"},
    ),
    component("prod-orchestrator", environment={"LOG_LEVEL": "debug"}),
    stack(
        "prod-stack",
        {"artifact_store": "prod-artifacts", "orchestrator": "prod-orchestrator"},
        labels={"team": "ml", "purpose": "training"},
        description="the training stack",
    ),
]


def by_name(documents: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents}


def test_a_hand_made_stack_becomes_specs_named_after_the_environment_with_secrets_as_references():
    imported = import_specs(
        [*DEFAULTS, *HAND_MADE],
        CATALOG,
        env=ENV,
        env_labels={"team": "ml"},
        connector_secrets={"prod-gcp": {"service_account_json"}},
    )
    (gcp,) = imported.documents["ServiceConnector"]
    assert gcp == {
        "apiVersion": "stackward.dev/v1alpha1",
        "kind": "ServiceConnector",
        "metadata": {"name": "${env.name}-gcp", "labels": {"tier": "gold"}, "description": "GCP access"},
        "spec": {
            "type": "gcp",
            "authMethod": "service-account",
            "configuration": {"project_id": "acme-ml-prod"},
            "secrets": {"service_account_json": {"fromEnv": "PROD_GCP_SERVICE_ACCOUNT_JSON"}},
        },
    }
    components = by_name(imported.documents["StackComponent"])
    assert components["${env.name}-artifacts"]["spec"] == {
        "type": "artifact_store",
        "flavor": "gcp",
        "configuration": {"path": "gs://acme-prod/artifacts"},
        "connector": "${env.name}-gcp",
        "connectorResourceId": "acme-prod",
    }
    assert "labels" not in components["${env.name}-artifacts"]["metadata"]  # the environment stamps team: ml
    assert components["${env.name}-orchestrator"]["spec"]["environment"] == {"LOG_LEVEL": "debug"}
    (training,) = imported.documents["Stack"]
    assert training["metadata"] == {
        "name": "${env.name}-stack",
        "labels": {"purpose": "training"},
        "description": "the training stack",
    }
    assert training["spec"] == {
        "components": {"artifact_store": "${env.name}-artifacts", "orchestrator": "${env.name}-orchestrator"}
    }
    assert [(v.name, v.resource, v.key) for v in imported.variables] == [
        ("PROD_GCP_SERVICE_ACCOUNT_JSON", "prod-gcp", "service_account_json")
    ]
    assert {(s.kind, s.name) for s in imported.skipped} == {
        ("StackComponent", "default"),
        ("Stack", "default"),
    }


def test_with_adopt_each_resource_registered_by_hand_is_adopted_and_the_note_says_what_the_plan_shows():
    mine = component("prod-owned", labels=owned_by(ENV))
    imported = import_specs([*HAND_MADE, mine], CATALOG, env=ENV, include_owned=True, adopt=True)
    adopting = {
        d["metadata"]["name"]: d["metadata"].get("adopt")
        for documents in imported.documents.values()
        for d in documents
    }
    assert adopting == {
        "${env.name}-gcp": True,
        "${env.name}-artifacts": True,
        "${env.name}-orchestrator": True,
        "${env.name}-stack": True,
        "${env.name}-owned": None,  # stackward's already: nothing to adopt
    }
    note = render(imported, origin="o", when="w", command="stackward import prod --adopt")["README.md"]
    assert next_step(ENV, adopt=True) in note
    assert "each imported resource as adopted (⇐)" in next_step(ENV, adopt=True)
    assert "each imported resource as a conflict" in next_step(ENV, adopt=False)


def test_names_that_do_not_start_with_the_environment_stay_as_they_are():
    imported = import_specs([component("shared-orchestrator"), component("prod-")], CATALOG, env=ENV)
    assert sorted(d["metadata"]["name"] for d in imported.documents["StackComponent"]) == [
        "prod-",
        "shared-orchestrator",
    ]


def test_ownership_labels_never_reach_a_spec_and_owned_resources_are_imported_only_when_asked():
    mine = component("prod-orchestrator", labels={**owned_by(ENV), "tier": "gold"})
    theirs = component("dev-orchestrator", labels=owned_by("dev"))
    imported = import_specs([mine, theirs], CATALOG, env=ENV)
    assert imported.documents == {}
    assert {s.name: s.reason for s in imported.skipped} == {
        "dev-orchestrator": "environment dev owns it",
        "prod-orchestrator": "stackward already owns it in prod (--include-owned imports it all the same)",
    }
    imported = import_specs([mine, theirs], CATALOG, env=ENV, include_owned=True)
    (document,) = imported.documents["StackComponent"]
    assert document["metadata"] == {"name": "${env.name}-orchestrator", "labels": {"tier": "gold"}}
    assert [s.name for s in imported.skipped] == ["dev-orchestrator"]


def test_what_the_specs_already_declare_is_left_out_and_what_uses_it_still_imported():
    imported = import_specs(HAND_MADE, CATALOG, env=ENV, declared={("ServiceConnector", "prod-gcp")})
    assert "ServiceConnector" not in imported.documents
    assert imported.skipped == [Skipped("ServiceConnector", "prod-gcp", "prod's specs already declare it")]
    assert len(imported.documents["StackComponent"]) == 2 and len(imported.documents["Stack"]) == 1


def test_a_stack_on_a_left_out_component_is_left_out_and_one_on_an_owned_component_is_not():
    on_default = stack("prod-quick", {"orchestrator": "default", "artifact_store": "prod-artifacts"})
    on_owned = stack("prod-managed", {"orchestrator": "prod-owned", "artifact_store": "prod-artifacts"})
    elsewhere = stack("prod-shared", {"orchestrator": "dev-orchestrator", "artifact_store": "prod-artifacts"})
    registrations = [
        *DEFAULTS,
        *HAND_MADE,
        component("prod-owned", labels=owned_by(ENV)),
        component("dev-orchestrator", labels=owned_by("dev")),
        on_default,
        on_owned,
        elsewhere,
    ]
    imported = import_specs(registrations, CATALOG, env=ENV)
    assert sorted(by_name(imported.documents["Stack"])) == ["${env.name}-managed", "${env.name}-stack"]
    reasons = {s.name: s.reason for s in imported.skipped if s.kind == "Stack"}
    assert reasons["prod-quick"] == (
        "it uses ZenML's default orchestrator, which is left out: give the stack its own orchestrator"
    )
    assert reasons["prod-shared"] == (
        "it uses orchestrator dev-orchestrator, which is not imported: environment dev owns it"
    )


def test_only_the_stacks_asked_for_and_what_they_use():
    other = [
        connector("prod-aws", type="gcp", auth="implicit"),
        component("prod-local-store", "artifact_store", configuration={"path": "/data"}),
        stack("prod-local", {"artifact_store": "prod-local-store", "orchestrator": "prod-orchestrator"}),
        secret("prod-unrelated", ["k"], labels=owned_by(ENV)),
    ]
    imported = import_specs([*HAND_MADE, *other], CATALOG, env=ENV, stacks=["prod-stack"], include_owned=True)
    names = {kind: sorted(by_name(docs)) for kind, docs in imported.documents.items()}
    assert names == {
        "ServiceConnector": ["${env.name}-gcp"],
        "StackComponent": ["${env.name}-artifacts", "${env.name}-orchestrator"],
        "Stack": ["${env.name}-stack"],
    }
    with pytest.raises(UsageError, match=r"no stack named 'prod-stak' .*did you mean 'prod-stack'\?"):
        import_specs(HAND_MADE, CATALOG, env=ENV, stacks=["prod-stak"])


def test_a_plain_value_in_a_secret_field_is_never_written_and_its_component_and_stack_are_left_out():
    tracker = component(
        "prod-tracker",
        "experiment_tracker",
        "mlflow",
        configuration={"tracking_uri": "https://mlflow", "tracking_password": "canary-hunter2"},
    )
    on_it = stack(
        "prod-tracked",
        {
            "artifact_store": "prod-artifacts",
            "orchestrator": "prod-orchestrator",
            "experiment_tracker": "prod-tracker",
        },
    )
    imported = import_specs([*HAND_MADE, tracker, on_it], CATALOG, env=ENV)
    reasons = {s.name: s.reason for s in imported.skipped}
    assert reasons["prod-tracker"].startswith(
        "it holds a plain value in tracking_password, which its flavor marks"
    )
    assert reasons["prod-tracked"].startswith(
        "it uses experiment_tracker prod-tracker, which is not imported"
    )
    text = "".join(render(imported, origin="the store", when="now", command="stackward import prod").values())
    assert "canary-hunter2" not in text


def test_secret_references_stay_and_text_that_would_read_as_a_reference_is_escaped():
    tracker = component(
        "prod-tracker",
        "experiment_tracker",
        "mlflow",
        configuration={
            "tracking_uri": "https://mlflow/${HOME}",
            "tracking_password": "{{prod-mlflow.password}}",
        },
        environment={"GREETING": "${USER} says hi"},
        secrets=["prod-mlflow"],
    )
    imported = import_specs([tracker], CATALOG, env=ENV)
    (document,) = imported.documents["StackComponent"]
    assert document["spec"]["configuration"] == {
        "tracking_uri": "https://mlflow/$${HOME}",
        "tracking_password": "{{prod-mlflow.password}}",
    }
    assert document["spec"]["environment"] == {"GREETING": "$${USER} says hi"}
    assert document["spec"]["secrets"] == ["${env.name}-mlflow"]


def test_a_secret_is_imported_only_with_its_keys_known_each_a_reference():
    used = component(
        "prod-tracker", "experiment_tracker", "mlflow", configuration={"tracking_username": "{{hand.user}}"}
    )
    registrations = [
        used,
        secret("hand", []),
        secret("prod-owned", ["password", "user"], owned_by(ENV), private=True),
    ]
    imported = import_specs(registrations, CATALOG, env=ENV, include_owned=True)
    (document,) = imported.documents["Secret"]
    assert document["metadata"] == {"name": "${env.name}-owned"}
    assert document["spec"] == {
        "values": {"password": {"fromEnv": "PROD_OWNED_PASSWORD"}, "user": {"fromEnv": "PROD_OWNED_USER"}},
        "private": True,
    }
    (hand,) = [s for s in imported.skipped if s.name == "hand"]
    assert hand.reason == (
        "stackward reads the key names only of the secrets it owns, so its keys are not known "
        "(its components use user): specs may use it as it is, or declare it by hand"
    )


def test_variable_names_avoid_the_runners_tokens_and_each_other():
    registrations = [
        connector("github", type="github", auth="token", configuration={}),
        connector("a-b", labels=owned_by(ENV)),
        connector("a", labels=owned_by(ENV)),
    ]
    imported = import_specs(
        registrations,
        CATALOG,
        env=ENV,
        include_owned=True,
        connector_secrets={
            "github": {"token"},
            "a-b": {"service_account_json"},
            "a": {"b_service_account_json"},
        },
    )
    assert [(v.name, v.resource, v.key) for v in imported.variables] == [
        ("A_B_SERVICE_ACCOUNT_JSON", "a", "b_service_account_json"),
        ("A_B_SERVICE_ACCOUNT_JSON_2", "a-b", "service_account_json"),
        ("SECRET_GITHUB_TOKEN", "github", "token"),
    ]


def test_components_of_several_types_under_one_name_are_left_out():
    registrations = [component("prod-gcp", "artifact_store", "local"), component("prod-gcp", "orchestrator")]
    imported = import_specs(registrations, CATALOG, env=ENV)
    assert imported.documents == {}
    assert {s.reason for s in imported.skipped} == {
        "components of several types are named prod-gcp (artifact_store, orchestrator); names are unique per "
        "kind in specs: rename all but one in ZenML and import again"
    }


def test_what_the_installed_zenml_does_not_know_and_names_specs_cannot_hold_are_left_out():
    registrations = [
        component("prod-custom", "orchestrator", "acme"),
        connector("prod-odd", auth="oauth9"),
        component("prod orchestrator"),
    ]
    reasons = {s.name: s.reason for s in import_specs(registrations, CATALOG, env=ENV).skipped}
    assert reasons["prod-custom"] == "the installed zenml has no orchestrator flavor acme"
    assert reasons["prod-odd"] == "the installed zenml has no gcp connector with auth method oauth9"
    assert reasons["prod orchestrator"].startswith("specs cannot name it so (use letters, digits")


def test_the_files_say_where_they_come_from_list_the_variables_and_load_back_as_written():
    imported = import_specs(
        [*DEFAULTS, *HAND_MADE], CATALOG, env=ENV, connector_secrets={"prod-gcp": {"service_account_json"}}
    )
    files = render(
        imported,
        origin="the ZenML server https://zenml.example\n(environment prod)",
        when="2026-01-02T03:04:05+00:00",
        command="stackward import prod",
    )
    assert sorted(files) == ["README.md", "components.yaml", "connectors.yaml", "stacks.yaml"]
    header = files["stacks.yaml"].splitlines()[:3]
    assert header == [
        "# Imported by `stackward import prod` on 2026-01-02T03:04:05+00:00",
        "# from the ZenML server https://zenml.example (environment prod).",
        "# Secret values are not here: each is a fromEnv reference; README.md lists the variables to set.",
    ]
    for name, kind in [("connectors.yaml", "ServiceConnector"), ("components.yaml", "StackComponent")]:
        assert list(yaml.safe_load_all(files[name])) == imported.documents[kind]
    note = files["README.md"]
    assert (
        "| `PROD_GCP_SERVICE_ACCOUNT_JSON` | ServiceConnector `prod-gcp`, key `service_account_json` |"
        in note
    )
    assert "- Stack `default`: ZenML's own default stack" in note
    assert next_step(ENV, adopt=False) in note
    assert render(import_specs(DEFAULTS, CATALOG, env=ENV), origin="o", when="w", command="c") == {}


def test_the_secret_keys_a_connector_holds_are_asked_without_values():
    probes = secret_probes(
        [connector("prod-gcp"), connector("prod-implicit", auth="implicit"), *HAND_MADE[1:]], CATALOG
    )
    assert probes == [
        {
            "kind": "ServiceConnector",
            "name": "prod-gcp",
            "id": "id-prod-gcp",
            "secrets": {"service_account_json": {"fromEnv": "STACKWARD_IMPORT_PROBE_0"}},
            "values": {},
        }
    ]
    status = {("ServiceConnector", "prod-gcp"): {"service_account_json": "not compared: not set"}}
    assert held_secret_keys(status) == {"prod-gcp": frozenset({"service_account_json"})}
