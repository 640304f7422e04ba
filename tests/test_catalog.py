"""The ZenML catalog: built from the installed zenml, cached per zenml version."""

from __future__ import annotations

import os
from pathlib import Path

from stackward.settings import Settings
from stackward.zenml.catalog import catalog_path, load_catalog, zenml_version


def test_catalog_is_cached_on_disk_keyed_by_zenml_version(catalog):
    cache_dir = Settings.load().cache_dir
    path = catalog_path(cache_dir)
    assert path.parent == Path(os.environ["STACKWARD_CACHE_DIR"])
    assert zenml_version() in path.name
    assert path.exists()
    assert catalog.zenml_version == zenml_version()
    before = path.stat().st_mtime_ns
    load_catalog.cache_clear()
    assert load_catalog(cache_dir) == catalog
    assert path.stat().st_mtime_ns == before  # read back, not rebuilt


def test_catalog_holds_what_the_examples_use(catalog):
    assert {"orchestrator", "artifact_store", "container_registry"} <= set(catalog.component_types)
    gcp_store = catalog.flavors["artifact_store"]["gcp"]
    assert gcp_store.resource_type == "gcs-bucket"
    assert gcp_store.schema["properties"]["path"]["pattern"] == "^(gs://)"
    assert "vertex" in catalog.flavors["orchestrator"]
    gcp = catalog.connectors["gcp"]
    assert {"service-account", "implicit", "external-account"} <= set(gcp.auth_methods)
    assert gcp.auth_methods["service-account"].secret_fields == ("service_account_json",)
    assert "tracking_password" in catalog.flavors["experiment_tracker"]["mlflow"].secret_fields
