"""The fast validator follows fhir.resources: whatever it accepts, the R4B models accept; and it
names the resource and path of what it rejects."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mapping import MappingError, convert, validate
from adapters.mapping.validation import validate_full

from .conftest import PID, PV1, adt, oru

OBR = "OBR|1|PL-1^EHR|FL-9^LAB|24331-1^Lipid panel^LN|||20240301083000-0500|||||||||||||||20240301100000-0500|||F"
OBX = "OBX|1|NM|2093-3^Cholesterol^LN||212|mg/dL^^UCUM|<200|H|||F|||20240301083000-0500"


@pytest.fixture(scope="module")
def bundles() -> list[dict]:
    return [
        convert(adt("A01", PID, "PD1|||Clinic^^C77|88^Hippo^Harold", PV1)).bundle,
        convert(oru(PID, OBR, OBX, "NTE|1||note", "OBX|2|SN|1-8^T^LN||^1^:^2||||||F")).bundle,
    ]


def test_valid_bundles_pass_both(bundles):
    for bundle in bundles:
        validate(bundle)
        validate_full(bundle)


def _reject(bundle: dict) -> tuple[str | None, str | None]:
    out = []
    for check in (validate, validate_full):
        try:
            check(bundle)
            out.append(None)
        except MappingError as exc:
            assert exc.target, "a rejection names its path"
            out.append(exc.target)
    return out[0], out[1]


@pytest.mark.parametrize(
    ("mutate", "target"),
    [
        (lambda r: r.update(foo=1), "Patient.foo"),
        (lambda r: r.update(birthDate="1961-13-01"), "Patient.birthDate"),
        (lambda r: r.update(gender=["male"]), "Patient.gender"),
        (lambda r: r.update(name={"family": "X"}), "Patient.name"),
        (
            lambda r: r.update(deceasedBoolean=True, deceasedDateTime="2020"),
            "Patient.deceasedDateTime",
        ),
        (lambda r: r["identifier"][0].update(system=5), "Patient.identifier[0].system"),
    ],
)
def test_both_reject_and_name_the_path(bundles, mutate, target):
    bundle = copy.deepcopy(bundles[0])
    mutate(bundle["entry"][0]["resource"])
    fast, full = _reject(bundle)
    assert fast == target
    assert full is not None


def test_missing_required_element_is_named(bundles):
    bundle = copy.deepcopy(bundles[1])
    obs = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    del obs["status"]
    assert _reject(bundle) == ("Observation.status", "Observation.status")


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", " ", "x y", "final", "2024-13-01", "2024-01-01", "urn:uuid:1", "a|b", "1.5"]
    ),
    st.just({}),
    st.just([]),
    st.just({"foo": 1}),
    st.just([None]),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_what_the_fast_validator_accepts_fhir_resources_accepts(bundles, data):
    bundle = copy.deepcopy(data.draw(st.sampled_from(bundles)))
    paths = [p for p in _paths(bundle) if p]
    path = data.draw(st.sampled_from(paths))
    parent = _get(bundle, path[:-1])
    action = data.draw(st.sampled_from(["replace", "delete", "wrap", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "wrap":
        parent[path[-1]] = [parent[path[-1]]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["foo", "id", "extension", "text", "_status"]))] = (
            data.draw(VALUES)
        )
    else:
        parent[path[-1]] = data.draw(VALUES)
    fast, full = _reject(bundle)
    if fast is None:
        assert full is None, f"fast validator accepted what fhir.resources rejects at {full}"
