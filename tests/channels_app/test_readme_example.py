"""The README's "send a message" example works from a fresh clone: its sample file ships in the
repository, and the command, run as written (port aside), gets an AA and a delivered Bundle."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import REPO, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def readme_example() -> str:
    block = re.search(
        r"```sh\n(\.venv/bin/python -c .*?)\n```", (REPO / "README.md").read_text(), re.S
    )
    assert block, "the README has no send example"
    return block.group(1).replace("\\\n", "")


def test_the_readme_example_sends_the_shipped_sample(hub, mllp_port, fhir_sink):
    command = readme_example()
    sample = re.search(r"Path\('([^']+)'\)", command).group(1)
    assert (REPO / sample).is_file() and not sample.startswith(".."), sample
    code = re.search(r'-c "(.*)"$', command.strip(), re.S).group(1)
    run = subprocess.run(
        [sys.executable, "-c", code.replace("2575", str(mllp_port))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "MSA|AA|SAMPLE-0001" in run.stdout
    wait_for(lambda: fhir_sink.bundles(), timeout=30, what="the Bundle at the FHIR server")
    patient = next(
        e["resource"]
        for e in fhir_sink.bundles()[0]["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["name"][0]["family"] == "Lindqvist"
