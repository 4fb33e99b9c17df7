"""A real validating FHIR server (Medplum's router and repository in a local Node process), started
once for the transport tests that send to it; each test starts from an empty server."""

from __future__ import annotations

import pytest

from tests.fhir_server import MedplumServer


@pytest.fixture(scope="session")
def medplum():
    server = MedplumServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(medplum):
    medplum.reset()
    return medplum
