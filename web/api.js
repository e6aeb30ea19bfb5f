// The spinmesh API as the web UI uses it: JSON in and out, the session's bearer token
// (kept in sessionStorage, so it ends with the tab), one silent refresh when the access
// token expires, and the app's error shape turned into ApiError.

const SESSION_KEY = 'spinmesh.session';

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY));
    } catch {
      return null;
    }
  },
  save(login, username) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({
      token: login.token,
      refreshToken: login.refresh_token ?? null,
      username: username ?? session.get()?.username,
    }));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

async function readBody(response) {
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return response.text();
}

function errorFrom(response, body) {
  const message = (body && typeof body === 'object' && body.message) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, message, body?.code);
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function refreshSession() {
  const refreshToken = session.get()?.refreshToken;
  if (!refreshToken) return false;
  const response = await fetch('/api/token/refresh', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  if (!response.ok) return false;
  session.save(await response.json());
  return true;
}

const connectionLost = () => new ApiError(0, 'The connection to the server was lost');

/**
 * Sends an authenticated request (when signed in), retrying once after a refresh. A
 * request that got no answer is an ApiError with status 0 (unless it was aborted).
 */
async function send(path, init = {}, retry = true) {
  const headers = { Accept: 'application/json', ...authHeaders(session.get()?.token), ...init.headers };
  let response;
  try {
    response = await fetch(path, { ...init, headers });
  } catch (error) {
    throw error.name === 'AbortError' ? error : connectionLost();
  }
  if (response.status === 401 && retry && (await refreshSession())) {
    return send(path, init, false);
  }
  return response;
}

/** JSON request → `{ data, headers }`; throws ApiError for any non-2xx answer. */
export async function request(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const data = await readBody(response);
  if (!response.ok) throw errorFrom(response, data);
  return { data, headers: response.headers };
}

export async function signIn(username, password) {
  const { data } = await request('/api/login', { method: 'POST', body: { username, password } });
  session.save(data, username);
}

export async function signOut() {
  try {
    await request('/api/logout', { method: 'POST' });
  } finally {
    session.clear();
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => {
    clearTimeout(timer);
    resolve();
  }, { once: true });
});

/** The signed-in user's id, the token's `sub` (its payload is base64url JSON). */
function userId() {
  const token = session.get()?.token;
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return String(JSON.parse(atob(payload)).sub);
  } catch {
    return session.get()?.username ?? '';
  }
}

// --- resumable uploads (tus 1.0) -------------------------------------------------------

const TUS = { 'Tus-Resumable': '1.0.0' };
/** Bytes per PATCH: what a dropped connection can cost at most. */
const CHUNK_BYTES = 5 * 1024 * 1024;
/** The waits before each new attempt after a failure in a row; then the upload stops (and resumes when started again). */
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
/** localStorage keys of the uploads not finished yet, so a reload or a new tab resumes them. */
const UPLOAD_KEY_PREFIX = 'spinmesh.upload:';

/** The same file chosen again by the same user: the key its upload's URL is kept under. */
function uploadKey(file) {
  return `${UPLOAD_KEY_PREFIX}${JSON.stringify([userId(), file.name, file.size, file.lastModified])}`;
}

function rememberedUpload(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

/** The names of the signed-in user's unfinished uploads, to offer resuming them. */
export function unfinishedUploads() {
  const prefix = `${UPLOAD_KEY_PREFIX}${JSON.stringify([userId()]).slice(0, -1)},`;
  return Object.keys(localStorage)
    .filter((key) => key.startsWith(prefix))
    .map((key) => rememberedUpload(key)?.name)
    .filter(Boolean);
}

/**
 * `send` for a body whose upload progress matters: XMLHttpRequest, as fetch cannot report
 * it. `onProgress(bytes)` as the body leaves. Answers like fetch's Response where used
 * here (`status`, `ok`, `headers.get`, `body`); a network failure rejects (status 0).
 */
function sendWithProgress(path, { method, headers, body }, onProgress, retry = true) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.responseType = 'json';
    for (const [name, value] of Object.entries({ Accept: 'application/json', ...authHeaders(session.get()?.token), ...headers })) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener('progress', (event) => onProgress(event.loaded));
    xhr.addEventListener('load', () => resolve({
      status: xhr.status,
      statusText: xhr.statusText,
      ok: xhr.status >= 200 && xhr.status < 300,
      headers: { get: (name) => xhr.getResponseHeader(name) },
      body: xhr.response,
    }));
    xhr.addEventListener('error', () => reject(connectionLost()));
    xhr.send(body);
  }).then(async (response) => {
    if (response.status === 401 && retry && (await refreshSession())) {
      return sendWithProgress(path, { method, headers, body }, onProgress, false);
    }
    return response;
  });
}

/** Whether trying again later may succeed: the connection, a clash with another append, an overloaded or restarting server. */
function worthRetrying(error) {
  return error instanceof ApiError && (error.status === 0 || [404, 409, 423, 429].includes(error.status) || error.status >= 500);
}

/**
 * Uploads `file` resumably with tus 1.0 (`/api/uploads`) and answers the job it became:
 * `{ jobId }`. The upload's URL is kept in localStorage under the file's fingerprint
 * (user, name, size, last change), so choosing the same file after a reload or a dropped
 * connection continues from the server's offset (`HEAD`) instead of starting over.
 * Failures are retried with backoff, each from the server's offset; the entry goes when
 * the job exists, or when the server no longer knows the upload (expired: start over).
 *
 * `onProgress(sent, total)`: bytes the server has plus those on their way.
 * `onResume(offset, total)`: the server already had `offset` bytes of an earlier attempt.
 * `onRetry(error, delayMs)`: a failure, tried again after `delayMs`.
 */
export async function uploadResumable(file, { onProgress = () => {}, onResume = () => {}, onRetry = () => {} } = {}) {
  const key = uploadKey(file);
  // Failures in a row: any progress starts the count again.
  let failures = 0;
  const onAppended = () => { failures = 0; };
  for (;;) {
    try {
      return await continueUpload(file, key, { onProgress, onResume, onAppended });
    } catch (error) {
      if (!worthRetrying(error) || failures === RETRY_DELAYS_MS.length) throw error;
      // The server no longer has it: start over.
      if (error.status === 404) localStorage.removeItem(key);
      const delay = RETRY_DELAYS_MS[failures++];
      onRetry(error, delay);
      await sleep(delay);
    }
  }
}

/** One attempt: find (`HEAD`) or create the upload, then `PATCH` chunks from its offset. */
async function continueUpload(file, key, { onProgress, onResume, onAppended }) {
  let url = rememberedUpload(key)?.url;
  let offset = 0;
  if (url) {
    const response = await send(url, { method: 'HEAD', headers: TUS });
    if (response.status === 404) {
      localStorage.removeItem(key);
      url = null;
    } else if (!response.ok) {
      throw errorFrom(response, null);
    } else {
      offset = Number(response.headers.get('Upload-Offset'));
      // The last answer was lost, but the upload was complete.
      const jobId = response.headers.get('Job-Id');
      if (jobId) {
        localStorage.removeItem(key);
        return { jobId };
      }
      if (offset > 0) onResume(offset, file.size);
    }
  }
  if (!url) {
    const response = await send('/api/uploads', {
      method: 'POST',
      headers: {
        ...TUS,
        'Upload-Length': String(file.size),
        'Upload-Metadata': `filename ${base64(file.name)}`,
      },
    });
    if (!response.ok) throw errorFrom(response, await readBody(response));
    url = response.headers.get('Location');
    localStorage.setItem(key, JSON.stringify({ url, name: file.name }));
  }
  onProgress(offset, file.size);
  for (;;) {
    const chunk = file.slice(offset, offset + CHUNK_BYTES);
    let response;
    try {
      response = await sendWithProgress(url, {
        method: 'PATCH',
        headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) },
        body: chunk,
      }, (sent) => onProgress(offset + Math.min(sent, chunk.size), file.size));
      if (!response.ok) throw errorFrom(response, response.body);
    } catch (error) {
      // Only what the server confirmed is certain.
      onProgress(offset, file.size);
      throw error;
    }
    offset = Number(response.headers.get('Upload-Offset'));
    onProgress(offset, file.size);
    onAppended();
    const jobId = response.headers.get('Job-Id');
    if (jobId) {
      localStorage.removeItem(key);
      return { jobId };
    }
  }
}

/** Base64 of `text`'s UTF-8 bytes, as tus metadata values are written. */
function base64(text) {
  return btoa(Array.from(new TextEncoder().encode(text), (byte) => String.fromCharCode(byte)).join(''));
}

// --- following a job ---------------------------------------------------------------

/** The events after which a job does not change any more. */
const FINAL_EVENTS = new Set(['completed', 'failed', 'cancelled']);

/**
 * A parser of server-sent events (the W3C rules, which EventSource implements; it
 * cannot send an Authorization header, so streams are read with fetch). `push(text)`
 * answers the events complete in what arrived so far, each `{ id, event, data }`:
 * lines end with CRLF, LF or CR; `field: value` splits at the first colon and drops one
 * space; `data` lines are joined with newlines; a blank line ends an event (one without
 * data is not dispatched); comments (`:`) and unknown fields are skipped. `retryMs` is
 * the server's `retry:` wish, `lastEventId` the id to resume from.
 */
export class EventStreamParser {
  constructor() {
    this.buffer = '';
    this.lastEventId = '';
    this.retryMs = null;
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const events = [];
    let end;
    while ((end = this.buffer.search(/[\r\n]/)) !== -1) {
      // A CR at the very end may be the first half of a CRLF.
      if (this.buffer[end] === '\r' && end === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(this.buffer.startsWith('\r\n', end) ? end + 2 : end + 1);
      const event = this.line(line);
      if (event) events.push(event);
    }
    return events;
  }

  line(line) {
    if (line === '') {
      const event = this.data.length ? { id: this.lastEventId, event: this.event || 'message', data: this.data.join('\n') } : null;
      this.reset();
      return event;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    return null;
  }
}

/** How long to wait before reconnecting when the server did not say. */
const RECONNECT_MS = 1000;
/** Failed connections in a row after which following gives up. */
const MAX_RECONNECTS = 5;

/**
 * Follows job `jobId` live over its event stream (`GET /api/jobs/:id/events`), calling
 * `onEvent(name, job)` for each event (`progress`, then `completed`, `failed` or
 * `cancelled`), and answers the job as it ended. The server ends a stream after a while;
 * it is reopened with `Last-Event-ID`, so nothing is seen twice. When the user has too
 * many streams open, one long poll (`?wait=`) stands in for the stream. Stops quietly,
 * answering null, when `signal` aborts.
 */
export async function followJob(jobId, onEvent, { signal } = {}) {
  const path = `/api/jobs/${encodeURIComponent(jobId)}`;
  const parser = new EventStreamParser();
  let failures = 0;
  while (!signal?.aborted) {
    try {
      const response = await send(`${path}/events`, {
        headers: { Accept: 'text/event-stream', ...(parser.lastEventId && { 'Last-Event-ID': parser.lastEventId }) },
        signal,
      });
      if (response.status === 429) {
        const { data: job } = await request(`${path}?wait=30`, { signal });
        onEvent(FINAL_EVENTS.has(job.status) ? job.status : 'progress', job);
        if (FINAL_EVENTS.has(job.status)) return job;
        continue;
      }
      if (!response.ok) throw errorFrom(response, await readBody(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (let read = await reader.read(); !read.done; read = await reader.read()) {
        for (const { event, data } of parser.push(read.value)) {
          failures = 0;
          const job = JSON.parse(data);
          onEvent(event, job);
          if (FINAL_EVENTS.has(event)) {
            reader.cancel();
            return job;
          }
        }
      }
    } catch (error) {
      if (signal?.aborted) break;
      const refused = error instanceof ApiError && error.status >= 400 && error.status < 500;
      if (refused || ++failures > MAX_RECONNECTS) throw error;
    }
    await sleep(parser.retryMs ?? RECONNECT_MS, signal);
  }
  return null;
}

/** Queues a failed or cancelled job again; answers the job (queued). */
export async function retryJob(jobId) {
  const { data } = await request(`/api/jobs/${encodeURIComponent(jobId)}/retry`, { method: 'POST' });
  return data;
}

/** The finished MP3 as `{ blob, filename }` (the link needs the bearer token, so fetch it). */
export async function downloadJob(jobId) {
  const response = await send(`/api/jobs/${encodeURIComponent(jobId)}/download`, {
    headers: { Accept: 'audio/mpeg' },
  });
  if (!response.ok) throw errorFrom(response, await readBody(response));
  const disposition = response.headers.get('content-disposition') ?? '';
  return { blob: await response.blob(), filename: attachmentName(disposition) ?? `${jobId}.mp3` };
}

/** RFC 6266: the UTF-8 `filename*` when given, else the plain `filename`. */
function attachmentName(disposition) {
  const extended = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (extended) {
    try {
      return decodeURIComponent(extended[1].trim());
    } catch {
      // Malformed percent-encoding: fall back to the plain name.
    }
  }
  return /filename="([^"]+)"/i.exec(disposition)?.[1] ?? null;
}
