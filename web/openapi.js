// Reading an OpenAPI 3.x document: operations grouped by tag, local `$ref`s resolved,
// schemas described as text, example bodies, and requests built from form values.
// No DOM here, so it runs (and is tested) under Node as well.

export const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const MAX_DEPTH = 8;

/** Follows local `$ref`s (`#/components/...`); anything else is returned unchanged. */
export function deref(doc, value, depth = 0) {
  if (!value || typeof value !== 'object' || typeof value.$ref !== 'string' || depth > MAX_DEPTH) return value;
  const ref = value.$ref;
  if (!ref.startsWith('#/')) return value;
  let target = doc;
  for (const token of ref.slice(2).split('/')) {
    const key = decodeURIComponent(token).replaceAll('~1', '/').replaceAll('~0', '~');
    target = target?.[key];
  }
  return target === undefined ? value : deref(doc, target, depth + 1);
}

/** The name a `$ref` points at (`#/components/schemas/Job` → `Job`). */
function refName(value) {
  return typeof value?.$ref === 'string' ? value.$ref.split('/').pop() : null;
}

function mergeParameters(doc, pathLevel = [], operationLevel = []) {
  const byKey = new Map();
  for (const raw of [...pathLevel, ...operationLevel]) {
    const parameter = deref(doc, raw);
    if (parameter?.name && parameter?.in) byKey.set(`${parameter.in}:${parameter.name}`, parameter);
  }
  return [...byKey.values()];
}

/** Whether the operation asks for credentials (an empty requirement `{}` means optional). */
function requiresAuth(doc, operation) {
  const requirements = operation.security ?? doc.security ?? [];
  return requirements.length > 0 && requirements.every((requirement) => Object.keys(requirement).length > 0);
}

/**
 * `[{ name, description, operations: [{ method, path, summary, description, parameters,
 * requestBody, responses, secured, deprecated, operationId }] }]`, tags in the document's
 * order, then in order of appearance; an operation with several tags is under each.
 */
export function groupOperations(doc) {
  const groups = new Map();
  for (const tag of doc.tags ?? []) {
    if (tag?.name) groups.set(tag.name, { name: tag.name, description: tag.description ?? '', operations: [] });
  }
  for (const [path, rawItem] of Object.entries(doc.paths ?? {})) {
    const item = deref(doc, rawItem) ?? {};
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation || typeof operation !== 'object') continue;
      const entry = {
        method,
        path,
        operationId: operation.operationId ?? null,
        summary: operation.summary ?? '',
        description: operation.description ?? item.description ?? '',
        parameters: mergeParameters(doc, item.parameters, operation.parameters),
        requestBody: deref(doc, operation.requestBody) ?? null,
        responses: operation.responses ?? {},
        secured: requiresAuth(doc, operation),
        deprecated: Boolean(operation.deprecated),
      };
      const tags = operation.tags?.length ? operation.tags : ['default'];
      for (const tag of tags) {
        if (!groups.has(tag)) groups.set(tag, { name: tag, description: '', operations: [] });
        groups.get(tag).operations.push(entry);
      }
    }
  }
  return [...groups.values()].filter((group) => group.operations.length > 0);
}

function typeOf(schema) {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum)) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const label = types.join(' | ') || (schema.properties ? 'object' : 'any');
  return schema.format ? `${label} (${schema.format})` : label;
}

/** A readable, indented outline of a schema (`{ job_id: string, progress: integer … }`). */
export function describeSchema(doc, schema, indent = '', depth = 0) {
  const name = refName(schema);
  const resolved = deref(doc, schema);
  if (!resolved || typeof resolved !== 'object') return 'any';
  if (depth > MAX_DEPTH) return name ?? '…';
  for (const combinator of ['oneOf', 'anyOf', 'allOf']) {
    if (Array.isArray(resolved[combinator])) {
      const joiner = combinator === 'allOf' ? ' & ' : ' | ';
      return resolved[combinator].map((part) => describeSchema(doc, part, indent, depth + 1)).join(joiner);
    }
  }
  const types = Array.isArray(resolved.type) ? resolved.type : [resolved.type];
  if (types.includes('array') || resolved.items) {
    return `[${describeSchema(doc, resolved.items ?? {}, indent, depth + 1)}]`;
  }
  if (resolved.properties) {
    const required = new Set(resolved.required ?? []);
    const inner = `${indent}  `;
    const lines = Object.entries(resolved.properties).map(([key, value]) => {
      const property = deref(doc, value) ?? {};
      const mark = required.has(key) ? '' : '?';
      const note = property.description ? `  // ${property.description.split('\n')[0]}` : '';
      return `${inner}${key}${mark}: ${describeSchema(doc, value, inner, depth + 1)}${note}`;
    });
    return `${name ? `${name} ` : ''}{\n${lines.join('\n')}\n${indent}}`;
  }
  return typeOf(resolved);
}

/** A plausible example value: the schema's own example or default, else one by type. */
export function exampleValue(doc, schema, depth = 0) {
  const resolved = deref(doc, schema);
  if (!resolved || typeof resolved !== 'object' || depth > MAX_DEPTH) return null;
  if (resolved.example !== undefined) return resolved.example;
  if (Array.isArray(resolved.examples) && resolved.examples.length) return resolved.examples[0];
  if (resolved.default !== undefined) return resolved.default;
  if (resolved.const !== undefined) return resolved.const;
  if (Array.isArray(resolved.enum) && resolved.enum.length) return resolved.enum[0];
  const parts = resolved.oneOf ?? resolved.anyOf;
  if (Array.isArray(parts) && parts.length) return exampleValue(doc, parts[0], depth + 1);
  if (Array.isArray(resolved.allOf)) {
    return Object.assign({}, ...resolved.allOf.map((part) => exampleValue(doc, part, depth + 1) ?? {}));
  }
  const types = Array.isArray(resolved.type) ? resolved.type.filter((type) => type !== 'null') : [resolved.type];
  const type = types[0] ?? (resolved.properties ? 'object' : undefined);
  switch (type) {
    case 'object': {
      const required = resolved.required ?? Object.keys(resolved.properties ?? {});
      return Object.fromEntries(
        Object.entries(resolved.properties ?? {})
          .filter(([key]) => required.includes(key))
          .map(([key, value]) => [key, exampleValue(doc, value, depth + 1)]),
      );
    }
    case 'array': return [];
    case 'integer': return resolved.minimum ?? 0;
    case 'number': return resolved.minimum ?? 0;
    case 'boolean': return false;
    case 'string': return resolved.format === 'email' ? 'user@example.com' : '';
    default: return null;
  }
}

/** The example body for a request body's media type (the first example it gives, if any). */
export function exampleBody(doc, media) {
  if (media?.example !== undefined) return media.example;
  const examples = Object.values(media?.examples ?? {}).map((example) => deref(doc, example));
  if (examples.length && examples[0]?.value !== undefined) return examples[0].value;
  return exampleValue(doc, media?.schema);
}

/**
 * `{ url, method, headers }` for `operation` with `values` (parameter name → string).
 * Throws an Error naming the required parameters left empty.
 */
export function buildRequest(operation, values) {
  const missing = operation.parameters
    .filter((parameter) => (parameter.required || parameter.in === 'path') && !values[parameter.name])
    .map((parameter) => parameter.name);
  if (missing.length) throw new Error(`Required: ${missing.join(', ')}`);
  let path = operation.path;
  const query = new URLSearchParams();
  const headers = {};
  for (const parameter of operation.parameters) {
    const value = values[parameter.name];
    if (value === undefined || value === '') continue;
    if (parameter.in === 'path') path = path.replaceAll(`{${parameter.name}}`, encodeURIComponent(value));
    else if (parameter.in === 'query') query.append(parameter.name, value);
    else if (parameter.in === 'header') headers[parameter.name] = value;
  }
  const search = query.toString();
  return { url: search ? `${path}?${search}` : path, method: operation.method.toUpperCase(), headers };
}
