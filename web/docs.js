// The API explorer: renders /api/openapi.json as operations grouped by tag, each with
// its parameters, body and responses, and a form to try it against this app.
//
// Written here rather than using Swagger UI or Redoc: either would mean vendoring an npm
// bundle of a megabyte or more into a web/ that is now well under 100 KB and has no
// package manager, and Redoc injects inline styles that the app's `style-src 'self'`
// policy forbids. This page reuses the app's session and styles, and the browser tests
// (tests/browser/ui.mjs) drive it.

import { session } from './api.js';
import { buildRequest, deref, describeSchema, exampleBody, groupOperations } from './openapi.js';

const $ = (id) => document.getElementById(id);

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

let sequence = 0;
const uniqueId = (prefix) => `${prefix}-${++sequence}`;

function field(labelText, input, hint) {
  input.id ||= uniqueId('field');
  const hintNode = hint ? element('p', { className: 'hint', id: `${input.id}-hint` }, hint) : null;
  if (hintNode) input.setAttribute('aria-describedby', hintNode.id);
  return element('div', { className: 'field' }, element('label', { htmlFor: input.id }, labelText), input, hintNode);
}

function parameterInput(parameter) {
  const schema = parameter.schema ?? {};
  if (Array.isArray(schema.enum)) {
    const select = element('select', { name: parameter.name });
    if (!parameter.required) select.append(element('option', { value: '' }, '—'));
    for (const value of schema.enum) select.append(element('option', { value: String(value) }, String(value)));
    return select;
  }
  const numeric = schema.type === 'integer' || schema.type === 'number';
  const input = element('input', { name: parameter.name, type: numeric ? 'number' : 'text', required: Boolean(parameter.required || parameter.in === 'path') });
  if (parameter.example !== undefined) input.placeholder = String(parameter.example);
  else if (schema.default !== undefined) input.placeholder = String(schema.default);
  return input;
}

function parametersSection(doc, operation, form) {
  if (!operation.parameters.length) return null;
  const section = element('div', {}, element('h3', {}, 'Parameters'));
  for (const parameter of operation.parameters) {
    const required = parameter.required || parameter.in === 'path' ? ', required' : '';
    const type = parameter.schema ? describeSchema(doc, parameter.schema) : 'string';
    const input = parameterInput(parameter);
    input.dataset.parameter = parameter.name;
    section.append(field(`${parameter.name} (${parameter.in}, ${type}${required})`, input, parameter.description));
  }
  form.append(section);
  return section;
}

/** The request body editor: JSON in a textarea, multipart as one input per property. */
function bodySection(doc, operation, form) {
  const content = operation.requestBody?.content ?? {};
  const types = Object.keys(content);
  if (!types.length) return null;
  const type = types.find((candidate) => candidate.includes('json')) ?? types[0];
  const media = content[type] ?? {};
  const section = element('div', {}, element('h3', {}, `Request body (${type})`));
  if (media.schema) section.append(element('pre', { className: 'schema' }, describeSchema(doc, media.schema)));
  if (type === 'multipart/form-data' || type === 'application/x-www-form-urlencoded') {
    const schema = deref(doc, media.schema) ?? {};
    for (const [name, raw] of Object.entries(schema.properties ?? {})) {
      const property = deref(doc, raw) ?? {};
      const binary = property.format === 'binary' || property.contentMediaType !== undefined;
      section.append(field(name, element('input', { name, type: binary ? 'file' : 'text', dataset: { part: name } })));
    }
    form.dataset.bodyType = type;
  } else {
    const example = exampleBody(doc, media);
    const text = typeof example === 'string' ? example : JSON.stringify(example ?? {}, null, 2);
    section.append(field('Body', element('textarea', { name: 'body', spellcheck: false, value: text, dataset: { body: type } })));
    form.dataset.bodyType = type;
  }
  form.append(section);
  return section;
}

function responsesSection(doc, operation) {
  const list = element('dl', { className: 'responses' });
  for (const [status, raw] of Object.entries(operation.responses)) {
    const response = deref(doc, raw) ?? {};
    const json = Object.entries(response.content ?? {}).find(([type]) => type.includes('json'));
    list.append(
      element('dt', {}, element('code', {}, status), ' ', response.description ?? ''),
      element('dd', {}, json?.[1]?.schema ? element('pre', { className: 'schema' }, describeSchema(doc, json[1].schema)) : null),
    );
  }
  return element('div', {}, element('h3', {}, 'Responses'), list);
}

async function describeResponse(response) {
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    const text = await response.text();
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }
  if (type.startsWith('text/') || type === '') return response.text();
  const size = (await response.arrayBuffer()).byteLength;
  return `(${size} bytes of ${type})`;
}

function requestInit(form, built) {
  const headers = { Accept: 'application/json', ...built.headers };
  const token = $('bearer-token').value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method: built.method, headers };
  const type = form.dataset.bodyType;
  if (type === 'multipart/form-data' || type === 'application/x-www-form-urlencoded') {
    const data = new FormData();
    for (const input of form.querySelectorAll('[data-part]')) {
      if (input.type === 'file') {
        if (input.files[0]) data.append(input.dataset.part, input.files[0]);
      } else if (input.value) data.append(input.dataset.part, input.value);
    }
    init.body = type === 'multipart/form-data' ? data : new URLSearchParams(data);
  } else if (type) {
    const body = form.querySelector('[data-body]');
    if (body.value.trim()) {
      headers['Content-Type'] = type;
      init.body = body.value;
    }
  }
  return init;
}

async function tryIt(operation, form, output) {
  const values = Object.fromEntries(
    [...form.querySelectorAll('[data-parameter]')].map((input) => [input.dataset.parameter, input.value.trim()]),
  );
  const status = element('p', { className: 'status-line' });
  output.replaceChildren(status);
  let built;
  try {
    built = buildRequest(operation, values);
  } catch (error) {
    status.dataset.ok = 'false';
    status.textContent = error.message;
    return;
  }
  status.textContent = `${built.method} ${built.url} …`;
  try {
    const response = await fetch(built.url, requestInit(form, built));
    const headers = [...response.headers].map(([name, value]) => `${name}: ${value}`).join('\n');
    const body = await describeResponse(response);
    status.dataset.ok = String(response.ok);
    status.textContent = `${built.method} ${built.url} → ${response.status} ${response.statusText}`;
    output.append(
      element('h4', {}, 'Headers'), element('pre', { className: 'result' }, headers),
      element('h4', {}, 'Body'), element('pre', { className: 'result', dataset: { role: 'response-body' } }, body || '(empty)'),
    );
  } catch (error) {
    status.dataset.ok = 'false';
    status.textContent = `The request failed: ${error.message}`;
  }
}

function operationView(doc, operation) {
  const summary = element('summary', {},
    element('span', { className: `method method-${operation.method}` }, operation.method),
    element('span', { className: 'path' }, operation.path),
    element('span', { className: 'summary' }, operation.summary),
    operation.secured ? element('span', { className: 'lock' }, 'needs token') : null);
  const form = element('form', { className: 'try-it' });
  const output = element('div', { className: 'output', role: 'status', 'aria-live': 'polite' });
  parametersSection(doc, operation, form);
  bodySection(doc, operation, form);
  form.append(element('button', { type: 'submit' }, 'Send request'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    tryIt(operation, form, output).finally(() => { button.disabled = false; });
  });
  return element('details', { className: 'operation', dataset: { method: operation.method, path: operation.path } },
    summary,
    element('div', { className: 'op-body' },
      operation.deprecated ? element('p', { className: 'muted' }, 'Deprecated.') : null,
      operation.description ? element('p', {}, operation.description) : null,
      responsesSection(doc, operation),
      element('h3', {}, 'Try it'),
      form,
      output));
}

function render(doc) {
  const info = doc.info ?? {};
  $('doc-title').textContent = info.title ? `${info.title} — API explorer` : 'API explorer';
  $('doc-version').textContent = [info.version && `Version ${info.version}`, doc.openapi && `OpenAPI ${doc.openapi}`].filter(Boolean).join(' · ');
  $('doc-description').textContent = info.description ?? '';
  const groups = groupOperations(doc);
  $('operations').replaceChildren(...groups.map((group) => {
    const headingId = uniqueId('tag');
    return element('section', { className: 'card tag-group', 'aria-labelledby': headingId },
      element('h2', { id: headingId }, group.name),
      group.description ? element('p', { className: 'muted' }, group.description) : null,
      ...group.operations.map((operation) => operationView(doc, operation)));
  }));
  const count = groups.reduce((total, group) => total + group.operations.length, 0);
  $('doc-status').textContent = `${count} operations in ${groups.length} groups.`;
}

$('use-session').addEventListener('click', () => {
  const token = session.get()?.token;
  $('bearer-token').value = token ?? '';
  $('doc-status').textContent = token ? 'Using your web app session token.' : 'Not signed in to the web app in this tab.';
});
$('bearer-token').value = session.get()?.token ?? '';

try {
  const response = await fetch('/api/openapi.json', { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`/api/openapi.json answered ${response.status}`);
  render(await response.json());
} catch (error) {
  $('doc-status').dataset.kind = 'error';
  $('doc-status').textContent = `Cannot load the API description: ${error.message}`;
}
