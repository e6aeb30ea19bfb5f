// The explorer's document reading (web/openapi.js) against a fixture, under Node's test runner.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';

import { buildRequest, deref, describeSchema, exampleBody, exampleValue, groupOperations } from '../../web/openapi.js';

const doc = JSON.parse(await readFile(new URL('./fixtures/openapi.json', import.meta.url), 'utf8'));
const operation = (method, path) =>
  groupOperations(doc).flatMap((group) => group.operations).find((op) => op.method === method && op.path === path);

test('operations are grouped by tag in document order, untagged under default', () => {
  const groups = groupOperations(doc);
  assert.deepEqual(groups.map((group) => group.name), ['health', 'converter', 'auth', 'default']);
  assert.equal(groups[0].description, 'Liveness');
  assert.deepEqual(
    groups[1].operations.map((op) => `${op.method} ${op.path}`),
    ['get /api/jobs/{id}', 'delete /api/jobs/{id}', 'post /api/login'],
  );
  assert.deepEqual(groups[3].operations.map((op) => op.path), ['/api/upload']);
});

test('security: inherited, switched off, or optional', () => {
  assert.equal(operation('get', '/health').secured, false);
  assert.equal(operation('get', '/api/jobs/{id}').secured, true);
  assert.equal(operation('post', '/api/login').secured, false);
});

test('path-level parameters are merged and references resolved', () => {
  const parameters = operation('get', '/api/jobs/{id}').parameters;
  assert.deepEqual(parameters.map((p) => `${p.in}:${p.name}`), ['path:id', 'query:verbose']);
  assert.equal(parameters[0].description, 'The job id');
  assert.equal(deref(doc, { $ref: '#/components/schemas/Nope' }).$ref, '#/components/schemas/Nope');
  assert.equal(deref(doc, { $ref: 'https://elsewhere/x.json' }).$ref, 'https://elsewhere/x.json');
});

test('schemas are outlined with required marks, 3.1 type arrays, enums and consts', () => {
  const outline = describeSchema(doc, { $ref: '#/components/schemas/Job' });
  assert.match(outline, /^Job \{/);
  assert.match(outline, /job_id: string/);
  assert.match(outline, /status: "queued" \| "running" \| "completed"/);
  assert.match(outline, /completed_at\?: string \| null \(date-time\)/);
  assert.match(outline, /error\?: Error \{/);
  assert.match(outline, /message\?: string {2}\/\/ Human-readable$/m);
  assert.equal(describeSchema(doc, { type: 'array', items: { type: 'integer' } }), '[integer]');
  assert.equal(describeSchema(doc, { oneOf: [{ type: 'string' }, { type: 'integer' }] }), 'string | integer');
});

test('example bodies come from examples, then required properties by type', () => {
  const media = operation('post', '/api/login').requestBody.content['application/json'];
  assert.deepEqual(exampleBody(doc, media), { username: 'alice', password: '' });
  assert.deepEqual(exampleBody(doc, { example: { a: 1 } }), { a: 1 });
  assert.equal(exampleValue(doc, { $ref: '#/components/schemas/Health' }).status, 'healthy');
  assert.equal(exampleValue(doc, { type: ['integer', 'null'], minimum: 1 }), 1);
});

test('requests substitute path parameters, encode queries and require what is required', () => {
  const get = operation('get', '/api/jobs/{id}');
  assert.deepEqual(buildRequest(get, { id: 'job/1 2', verbose: 'true' }), {
    url: '/api/jobs/job%2F1%202?verbose=true',
    method: 'GET',
    headers: {},
  });
  assert.equal(buildRequest(get, { id: 'x', verbose: '' }).url, '/api/jobs/x');
  assert.throws(() => buildRequest(get, { id: '' }), /Required: id/);
});
