// The web UI: sign up / sign in, resumable upload with progress, live conversion
// progress, retry, the past conversions, and the shop. Plain DOM; every answer is
// rendered as text.

import {
  ApiError, downloadJob, followJob, request, retryJob, session, signIn, signOut, unfinishedUploads, uploadResumable,
} from './api.js';
import { listOrders, listProducts, orderSummary, ordersTable, placeOrder, productOptions, productsTable } from './catalog.js';

/** What a job may be retried from. */
const RETRYABLE = new Set(['failed', 'cancelled']);
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
  stopFollowing();
  showSession(false);
}

function showSignedIn() {
  $('account-name').textContent = session.get()?.username ?? '';
  showSession(true);
  showUnfinishedUploads();
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

/** Stops following the job followed live, if any. */
let stopFollowing = () => {};

function setMeter(progress, label, percent) {
  const value = Math.max(0, Math.min(100, Math.round(percent)));
  $(progress).value = value;
  $(label).textContent = `${value}%`;
}

function byteSize(bytes) {
  if (bytes < 1e3) return `${bytes} B`;
  return bytes < 1e6 ? `${Math.round(bytes / 1e3)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

const percentOf = (part, total) => `${total ? Math.floor((part / total) * 100) : 100}%`;

function showUploadProgress(sent, total) {
  setMeter('upload-progress', 'upload-percent', total ? (sent / total) * 100 : 100);
  $('upload-bytes').textContent = `${byteSize(sent)} of ${byteSize(total)}`;
}

/** Names the uploads a reload or a lost connection left unfinished: choosing one again resumes it. */
function showUnfinishedUploads() {
  const names = unfinishedUploads();
  $('unfinished-uploads').hidden = names.length === 0;
  $('unfinished-uploads').textContent = `Unfinished: ${names.join(', ')}. Choose the same file again to resume where it stopped.`;
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

/** Queues the job again and follows it as the current one. */
async function retry(jobId, button) {
  await busy(button, async () => {
    const job = await retryJob(jobId);
    notify(`${job.filename}: converting again.`);
    showJob(job);
    refreshJobs();
    follow(job.job_id);
  });
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
  $('job-retry').hidden = !RETRYABLE.has(job.status);
}

/** Shows job `jobId` live from its event stream until it ends (or another is followed). */
async function follow(jobId) {
  stopFollowing();
  const following = new AbortController();
  stopFollowing = () => following.abort();
  try {
    const job = await followJob(jobId, (_event, job) => {
      showJob(job);
      $('jobs-body').querySelector(`tr[data-job-id="${CSS.escape(job.job_id)}"]`)?.replaceWith(jobRow(job));
    }, { signal: following.signal });
    if (!job) return;
    if (job.status === 'completed') notify(`${job.filename} is ready to download.`, 'success');
    else if (job.status === 'failed') notify(`${job.filename}: the conversion failed. Retry to convert it again.`, 'error');
    else notify(`${job.filename}: ${STATUS_TEXT[job.status].toLowerCase()}.`);
    refreshJobs();
  } catch (error) {
    explain(error);
  }
}

/** Uploads `file` resumably, showing its progress; answers the job id, or null when it stopped. */
async function upload(file) {
  showUploadProgress(0, file.size);
  notify(`Uploading ${file.name}…`);
  try {
    return (await uploadResumable(file, {
      onProgress: showUploadProgress,
      onResume: (offset, total) => notify(`Resuming ${file.name} from ${percentOf(offset, total)}…`),
      onRetry: (error, delayMs) => notify(`${error.message}; trying again in ${delayMs / 1000} s…`, 'error'),
    })).jobId;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 0) throw error;
    notify(`${error.message}: the upload of ${file.name} stopped at ${$('upload-percent').textContent}. `
      + 'Choose the same file again to resume it.', 'error');
    return null;
  } finally {
    showUnfinishedUploads();
  }
}

$('upload-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const file = $('upload-file').files[0];
  if (!file) return;
  busy($('upload-button'), async () => {
    stopFollowing();
    $('current-job').hidden = true;
    const jobId = await upload(file);
    if (!jobId) return;
    notify(`${file.name} uploaded; converting.`, 'success');
    refreshJobs();
    follow(jobId);
  });
});

$('job-download').addEventListener('click', (event) => download($('current-job').dataset.jobId, event.currentTarget));
$('job-retry').addEventListener('click', (event) => retry($('current-job').dataset.jobId, event.currentTarget));

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
  if (job.status === 'completed') actions.append(rowButton('Download', job, download));
  if (RETRYABLE.has(job.status)) actions.append(rowButton('Retry', job, retry));
  return row;
}

/** A row's `action` button, labelled with the job's file for screen readers. */
function rowButton(text, job, action) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'secondary';
  button.textContent = text;
  button.setAttribute('aria-label', `${text} ${job.filename}`);
  button.addEventListener('click', () => action(job.job_id, button));
  return button;
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
