"""The OpenAPI document is valid, matches the report schema, and a schemathesis fuzz finds no 5xx."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from melcnn.registry import MODELS


@pytest.fixture(scope="module")
def openapi_doc(server) -> dict:
    resp = requests.get(server.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200
    return resp.json()


def test_openapi_document_is_valid(openapi_doc):
    validate(openapi_doc)
    paths = openapi_doc["paths"]
    assert set(paths) == {"/healthz", "/v1/analyze", "/v1/models", "/v1/artifacts/{artifact_id}"}
    body = paths["/v1/analyze"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["media"] and set(body["properties"]) == {"media", "model", "overlap", "plots"}
    # the bounds are the specs' (the one overlap rule), not numbers of their own
    assert body["properties"]["overlap"]["maximum"] == max(s.overlap_range[1] for s in MODELS.values())
    assert body["properties"]["model"]["enum"] == list(MODELS)
    responses = paths["/v1/analyze"]["post"]["responses"]
    assert {"200", "400", "408", "413", "415", "422", "503", "504"} <= set(responses)
    assert "securitySchemes" not in openapi_doc.get("components", {})  # no key configured on this server
    report = json.loads((resources.files("melcnn") / "report.schema.json").read_text())
    assert openapi_doc["components"]["schemas"]["Report"]["properties"] == report["properties"]
    assert "HTTPValidationError" not in json.dumps(openapi_doc)  # every error uses ErrorResponse


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
def test_fuzz_no_server_errors(case):
    """Generated requests (valid and invalid) never get a 5xx, and answers match the document."""
    case.call_and_validate(
        timeout=60,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
