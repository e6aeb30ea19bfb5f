// The web UI: sign up / sign in, upload with progress, live conversion progress, the
// past conversions, and the shop. Plain DOM; every answer is rendered as text.

import { ApiError, downloadJob, request, session, signIn, signOut, uploadVideo } from './api.js';
import { listOrders, listProducts, orderSummary, ordersTable, placeOrder, productOptions, productsTable } from './catalog.js';

const POLL_MS = 1000;
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const STATUS_TEXT = {
  queued: 'Waiting for a converter',
  running: 'Converting',
  completed: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

const $ = (id) => document.getElementById(id);

/** Says `message` in the page's live region, or in `notice`, one next to a form. */
function notify(message, kind = 'info', notice = $('notice')) {
  notice.textContent = message;
  notice.dataset.kind = kind;
}

function explain(error, notice) {
  notify(error instanceof ApiError ? error.message : 'Something went wrong; please try again.', 'error', notice);
  if (error instanceof ApiError && error.status === 401) showSignedOut();
}

/** Runs `action` with `button` disabled, reporting any error (in `notice` when given). */
async function busy(button, action, notice) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    explain(error, notice);
  } finally {
    button.disabled = false;
  }
}

// --- session -----------------------------------------------------------------------

/** Shows what a signed-in (or signed-out) user can use, and hides the rest. */
function showSession(signedIn) {
  $('account').hidden = !signedIn;
  $('workspace').hidden = !signedIn;
  $('auth').hidden = signedIn;
  for (const item of document.querySelectorAll('[data-needs-session]')) item.hidden = !signedIn;
}

function showSignedOut() {
  session.clear();
  stopPolling();
  showSession(false);
}

function showSignedIn() {
  $('account-name').textContent = session.get()?.username ?? '';
  showSession(true);
  refreshJobs();
  refreshShop();
}

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  busy(form.querySelector('button'), async () => {
    await signIn(form.username.value.trim(), form.password.value);
    form.reset();
    notify(`Welcome, ${session.get().username}.`);
    showSignedIn();
    $('main').focus();
  });
});

$('sign-up-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  busy(form.querySelector('button'), async () => {
    const { data } = await request('/api/register', {
      method: 'POST',
      body: { username: form.username.value.trim(), email: form.email.value.trim(), password: form.password.value },
    });
    form.reset();
    $('sign-in-username').value = data.username;
    notify(`Account ${data.username} created. Sign in with your password.`, 'success');
    $('sign-in-password').focus();
  });
});

$('sign-out').addEventListener('click', (event) => {
  busy(event.currentTarget, async () => {
    try {
      await signOut();
    } finally {
      showSignedOut();
      notify('Signed out.');
    }
  });
});

// --- conversion ----------------------------------------------------------------------

let pollTimer = null;

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
}

function setMeter(progress, label, percent) {
  const value = Math.max(0, Math.min(100, Math.round(percent)));
  $(progress).value = value;
  $(label).textContent = `${value}%`;
}

function saveFile({ blob, filename }) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser time to start the download before the URL goes.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function download(jobId, button) {
  await busy(button, async () => saveFile(await downloadJob(jobId)));
}

function showJob(job) {
  const current = $('current-job');
  current.hidden = false;
  current.dataset.jobId = job.job_id;
  current.dataset.status = job.status;
  setMeter('job-progress', 'job-percent', job.status === 'completed' ? 100 : job.progress ?? 0);
  const status = STATUS_TEXT[job.status] ?? job.status;
  const detail = job.status === 'failed' && job.error ? `: ${job.error}` : '';
  const message = `${job.filename} — ${status}${detail}`;
  // Only changes are announced, not every percent.
  if ($('job-status').textContent !== message) $('job-status').textContent = message;
  $('job-download').hidden = job.status !== 'completed';
}

async function watchJob(jobId) {
  stopPolling();
  try {
    const { data: job } = await request(`/api/jobs/${encodeURIComponent(jobId)}`);
    showJob(job);
    if (FINISHED.has(job.status)) {
      if (job.status === 'completed') notify(`${job.filename} is ready to download.`, 'success');
      else notify(`${job.filename}: ${STATUS_TEXT[job.status].toLowerCase()}.`, job.status === 'failed' ? 'error' : 'info');
      refreshJobs();
      return;
    }
  } catch (error) {
    explain(error);
    if (error instanceof ApiError && error.status < 500) return;
  }
  pollTimer = setTimeout(() => watchJob(jobId), POLL_MS);
}

$('upload-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const file = $('upload-file').files[0];
  if (!file) return;
  busy($('upload-button'), async () => {
    stopPolling();
    $('current-job').hidden = true;
    setMeter('upload-progress', 'upload-percent', 0);
    notify(`Uploading ${file.name}…`);
    const accepted = await uploadVideo(file, (fraction) => setMeter('upload-progress', 'upload-percent', fraction * 100));
    notify(`${accepted.filename} uploaded; converting.`, 'success');
    showJob({ ...accepted, progress: 0 });
    refreshJobs();
    watchJob(accepted.job_id);
  });
});

$('job-download').addEventListener('click', (event) => download($('current-job').dataset.jobId, event.currentTarget));

// --- past conversions ----------------------------------------------------------------

function jobRow(job) {
  const row = document.createElement('tr');
  row.dataset.jobId = job.job_id;
  row.dataset.status = job.status;
  const started = job.created_at ? new Date(job.created_at) : null;
  const status = STATUS_TEXT[job.status] ?? job.status;
  for (const text of [
    job.filename,
    job.status === 'running' ? `${status} (${job.progress}%)` : status,
    started && !Number.isNaN(started.getTime()) ? started.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '—',
  ]) {
    row.insertCell().textContent = text;
  }
  const actions = row.insertCell();
  actions.className = 'actions';
  if (job.status === 'completed') {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary';
    button.textContent = 'Download';
    button.setAttribute('aria-label', `Download ${job.filename}`);
    button.addEventListener('click', () => download(job.job_id, button));
    actions.append(button);
  }
  return row;
}

async function refreshJobs() {
  try {
    const { data } = await request('/api/jobs?limit=50');
    const jobs = Array.isArray(data) ? data : [];
    $('jobs-body').replaceChildren(...jobs.map(jobRow));
    $('jobs-table').hidden = jobs.length === 0;
    $('jobs-empty').hidden = jobs.length > 0;
  } catch (error) {
    explain(error);
  }
}

$('jobs-refresh').addEventListener('click', (event) => busy(event.currentTarget, refreshJobs));

// --- shop ----------------------------------------------------------------------------

/** 128 random bits as hex (crypto.randomUUID needs a secure context; this does not). */
function randomKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

function showMessage(container, message) {
  const paragraph = document.createElement('p');
  paragraph.className = 'muted';
  paragraph.textContent = message;
  container.replaceChildren(paragraph);
}

/** `table`, and below it a note when the list has more than the page shown. */
function showList(container, table, note) {
  container.replaceChildren(table);
  if (!note) return;
  const paragraph = document.createElement('p');
  paragraph.className = 'muted';
  paragraph.textContent = note;
  container.append(paragraph);
}

async function refreshShop() {
  try {
    const { products, total } = await listProducts();
    if (products.length) {
      showList($('products'), productsTable(products),
        total > products.length && `Showing the first ${products.length} of ${total} products.`);
    } else {
      showMessage($('products'), 'No products yet.');
    }
    const selected = $('order-product').value;
    $('order-product').replaceChildren(...productOptions(products));
    if (products.some((product) => String(product.id) === selected)) $('order-product').value = selected;
    $('order-form').hidden = products.length === 0;
  } catch (error) {
    showMessage($('products'), error instanceof ApiError ? `Products are unavailable: ${error.message}` : 'Products are unavailable.');
    $('order-form').hidden = true;
  }
  try {
    const { orders, total } = await listOrders();
    if (orders.length) {
      showList($('orders'), ordersTable(orders),
        total > orders.length && `Showing your newest ${orders.length} of ${total} orders.`);
    } else {
      showMessage($('orders'), 'No orders yet.');
    }
  } catch (error) {
    showMessage($('orders'), error instanceof ApiError ? `Orders are unavailable: ${error.message}` : 'Orders are unavailable.');
  }
}

$('shop-refresh').addEventListener('click', (event) => busy(event.currentTarget, refreshShop));

/**
 * The order whose outcome is unknown (the request failed before any answer) and its key:
 * submitting the same order again reuses the key, so it is placed at most once.
 */
let unanswered = null;

$('order-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const order = { product_id: Number(form.product_id.value), quantity: Number(form.quantity.value) };
  const customer = form.customer_name.value.trim();
  if (customer) order.customer_name = customer;
  const body = JSON.stringify(order);
  const key = unanswered?.body === body ? unanswered.key : randomKey();
  const notice = $('order-notice');
  busy(form.querySelector('button[type=submit]'), async () => {
    unanswered = { body, key };
    try {
      notify(orderSummary(await placeOrder(order, key)), 'success', notice);
      unanswered = null;
    } catch (error) {
      // An answer, even a refusal, settles the key, unless its first use is still running.
      if (error instanceof ApiError && error.code !== 'idempotency_in_progress') unanswered = null;
      throw error;
    }
    await refreshShop();
  }, notice);
});

if (session.get()?.token) showSignedIn();
else showSignedOut();
