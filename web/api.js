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

/** Sends an authenticated request (when signed in), retrying once after a refresh. */
async function send(path, init = {}, retry = true) {
  const headers = { Accept: 'application/json', ...authHeaders(session.get()?.token), ...init.headers };
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401 && retry && (await refreshSession())) {
    return send(path, init, false);
  }
  return response;
}

/** JSON request → `{ data, headers }`; throws ApiError for any non-2xx answer. */
export async function request(path, { method = 'GET', body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
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

/**
 * Uploads `file` as multipart field `file`; XMLHttpRequest because fetch cannot report
 * upload progress. `onProgress(fraction)` gets 0..1 as bytes leave the browser.
 */
export function uploadVideo(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/upload');
    xhr.responseType = 'json';
    xhr.setRequestHeader('Accept', 'application/json');
    const token = session.get()?.token;
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        reject(new ApiError(xhr.status, body?.message || `Upload failed (${xhr.status})`, body?.code));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'The upload could not reach the server')));
    const form = new FormData();
    form.append('file', file);
    xhr.send(form);
  });
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
