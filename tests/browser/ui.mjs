// The web UI end to end in Debian's headless Chromium, driven by playwright-core:
// sign up, sign in; upload a video, cut the connection mid-way, reload the page and
// resume the upload from where the server has it (one more dropped connection on the
// way), watch it convert live, download the MP3, find it among past conversions; a
// conversion that fails, retried; order from the catalogue until a product runs out;
// then the API explorer, on a fixture document and on the app's own. Screenshots of
// each stage go to the output directory.
//
// node ui.mjs <app url> <long video> <short video> <output dir>
// The long video takes several PATCHes to upload and seconds to convert; the short one
// converts at once. CHROMIUM overrides /usr/bin/chromium.
// SHOP_PRODUCTS: the products the test created, as the API answered (a JSON array): a
// "Turntable" with 2 in stock and a "Vinyl sleeve" whose stock is not tracked.
// FAIL_SWITCH: while this file exists, the runner's conversions fail.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { chromium } from 'playwright-core';

const [appUrl, longVideoPath, shortVideoPath, outputDir] = process.argv.slice(2);
const failSwitch = process.env.FAIL_SWITCH;
if (!appUrl || !longVideoPath || !shortVideoPath || !outputDir || !process.env.SHOP_PRODUCTS || !failSwitch) {
  console.error('usage: SHOP_PRODUCTS=<json> FAIL_SWITCH=<file> node ui.mjs <app url> <long video> <short video> <output dir>');
  process.exit(2);
}
const shopProducts = JSON.parse(process.env.SHOP_PRODUCTS);
// Conversions share two busy cores with everything else: be patient, never time them.
const CONVERSION_TIMEOUT_MS = 300_000;
const STEP_TIMEOUT_MS = 60_000;

const step = (message) => console.log(`- ${message}`);

const userDataDir = await mkdtemp(join(tmpdir(), 'spinmesh-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Without the background-networking flags Chromium keeps calling home, which a
  // closed network refuses noisily.
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  acceptDownloads: true,
  viewport: { width: 1200, height: 900 },
  // Prices and dates are formatted for the locale.
  locale: 'en-US',
});
context.setDefaultTimeout(STEP_TIMEOUT_MS);

// Script errors and refused resources (a CSP violation is reported as a console error)
// fail the test; failed API calls are expected and shown in the page instead.
const pageErrors = [];
context.on('weberror', (error) => pageErrors.push(`uncaught: ${error.error().message}`));
context.on('console', (message) => {
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
    pageErrors.push(`console: ${message.text()}`);
  }
});

try {
  const page = context.pages()[0] ?? (await context.newPage());
  await signUpAndIn(page);
  await resumableUpload(page);
  await retryFailedConversion(page);
  await shop(page);
  await explorerOnFixture(page);
  await explorerOnAppDocument(page);
  await signOut(page);
  assert.deepEqual(pageErrors, [], 'the pages reported errors');
  console.log('browser test passed');
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}

async function signUpAndIn(page) {
  step('open the web UI');
  const response = await page.goto(`${appUrl}/`);
  assert.match(response.headers()['content-type'], /^text\/html/);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.screenshot({ path: join(outputDir, 'sign-in.png') });
  assert.ok(await page.getByRole('link', { name: 'Shop' }).isHidden(), 'no links to what needs a session');

  step('sign up');
  const username = `browser_${Date.now().toString(36)}`;
  const password = 'correct horse battery';
  const signUp = page.locator('#sign-up-form');
  await signUp.getByLabel('Username').fill(username);
  await signUp.getByLabel('Email').fill(`${username}@example.com`);
  await signUp.getByLabel('Password').fill(password);
  await signUp.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#notice', { hasText: `Account ${username} created` }).waitFor();

  step('sign in, from the keyboard');
  const signIn = page.locator('#sign-in-form');
  assert.equal(await signIn.getByLabel('Username or email').inputValue(), username);
  await signIn.getByLabel('Password').fill(password);
  await signIn.getByLabel('Password').press('Enter');
  await page.locator('#account-name', { hasText: username }).waitFor();
  await page.getByRole('link', { name: 'Shop' }).waitFor();
  assert.ok(await page.locator('#auth').isHidden());
}

/** The signed-in user's unfinished uploads the page keeps (tus upload URLs). */
function rememberedUploads(page) {
  return page.evaluate(() => Object.keys(localStorage)
    .filter((key) => key.startsWith('spinmesh.upload:'))
    .map((key) => JSON.parse(localStorage.getItem(key))));
}

function uploadBar(page) {
  return page.locator('#upload-progress').evaluate((bar) => bar.value);
}

/** A job is named after the MP3 it makes. */
function mp3Of(video) {
  return basename(video).replace(/\.[^.]+$/, '.mp3');
}

/**
 * The long video's upload, cut off after its first PATCH: the bar stops part-way, the
 * page retries, the page is reloaded. Choosing the same file again resumes from the
 * server's offset (HEAD), so fewer bytes than the whole are sent again; one more dropped
 * PATCH on the way is retried by itself. Then the conversion is followed live from its
 * event stream (no status polling) to the download.
 */
async function resumableUpload(page) {
  const size = (await stat(longVideoPath)).size;
  const mp3Name = mp3Of(longVideoPath);
  const uploads = '**/api/uploads/*';

  step('upload a video, and cut the connection after its first PATCH');
  let patches = 0;
  let cutOff = false;
  let holdingSecond;
  const secondHeld = new Promise((resolve) => { holdingSecond = resolve; });
  let endHold;
  const hold = new Promise((resolve) => { endHold = resolve; });
  await page.route(uploads, async (route) => {
    if (!cutOff && route.request().method() === 'PATCH' && ++patches === 2) {
      // Held until the mid-upload screenshot, then the connection is gone for good.
      holdingSecond();
      await hold;
      cutOff = true;
    }
    if (cutOff) await route.abort('internetdisconnected');
    else await route.continue();
  });
  await page.getByLabel('Video file (MP4, AVI or MOV)').setInputFiles(longVideoPath);
  await page.getByRole('button', { name: 'Upload and convert' }).click();
  await secondHeld;
  await page.waitForFunction(() => document.getElementById('upload-progress').value > 0);
  const midway = await uploadBar(page);
  assert.ok(midway > 0 && midway < 100, `the bar shows ${midway}%`);
  assert.match(await page.locator('#upload-bytes').textContent(), /^\d+\.\d MB of 30\.0 MB$/);
  await page.screenshot({ path: join(outputDir, 'upload-in-progress.png') });
  endHold();

  step('the page says the connection was lost and tries again');
  await page.locator('#notice', { hasText: 'The connection to the server was lost; trying again' }).waitFor();
  const stopped = await uploadBar(page);
  assert.ok(stopped > 0 && stopped < 100, `the bar stopped at ${stopped}%`);
  const [remembered] = await rememberedUploads(page);
  assert.equal(remembered.name, basename(longVideoPath));
  assert.match(remembered.url, /^\/api\/uploads\/upl_/);
  await page.screenshot({ path: join(outputDir, 'upload-interrupted.png') });

  step('reload the page: the upload is offered for resuming');
  // Still cut off until the page is gone, so no retry gets through in between.
  await page.reload();
  await page.unroute(uploads);
  await page.locator('#unfinished-uploads', { hasText: `Unfinished: ${basename(longVideoPath)}.` }).waitFor();
  const serverOffset = await page.evaluate(async (url) => {
    const { token } = JSON.parse(sessionStorage.getItem('spinmesh.session'));
    const response = await fetch(url, { method: 'HEAD', headers: { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0' } });
    return Number(response.headers.get('Upload-Offset'));
  }, remembered.url);
  assert.ok(serverOffset > 0 && serverOffset < size, `the server has ${serverOffset} of ${size} bytes`);
  assert.equal(Math.round((serverOffset / size) * 100), stopped, 'the bar stopped at what the server has');

  step('choose the same file again: it resumes from the server\'s offset');
  // What each accepted PATCH carried: its offset and its body's size.
  const appended = [];
  const onFinished = async (request) => {
    if (request.method() !== 'PATCH' || (await request.response())?.status() !== 204) return;
    appended.push({ offset: Number(await request.headerValue('upload-offset')), bytes: (await request.sizes()).requestBodySize });
  };
  page.on('requestfinished', onFinished);
  let patchesAfterReload = 0;
  await page.route(uploads, (route) => (route.request().method() === 'PATCH' && ++patchesAfterReload === 2
    ? route.abort('connectionreset')
    : route.continue()));
  // Job updates as the page shows them.
  await page.evaluate(() => {
    window.jobProgress = [];
    new MutationObserver(() => window.jobProgress.push(document.getElementById('job-progress').value))
      .observe(document.getElementById('job-percent'), { childList: true });
  });
  const statusRequests = [];
  const onRequest = (request) => {
    if (/^\/api\/jobs\/job_[^/]+$/.test(new URL(request.url()).pathname)) statusRequests.push(request.url());
  };
  page.on('request', onRequest);
  const events = page.waitForRequest((request) => /^\/api\/jobs\/job_[^/]+\/events$/.test(new URL(request.url()).pathname));
  await page.getByLabel('Video file (MP4, AVI or MOV)').setInputFiles(longVideoPath);
  await page.getByRole('button', { name: 'Upload and convert' }).click();

  step('watch the conversion live');
  const job = page.locator('#current-job');
  // Part-way, in the current job and in the list of conversions alike.
  await page.waitForFunction(() => {
    const job = document.getElementById('current-job');
    const percent = document.getElementById('job-progress').value;
    const row = document.querySelector(`#jobs-body tr[data-job-id="${job.dataset.jobId}"]`);
    return job.dataset.status === 'running' && percent > 0 && percent < 100
      && row?.cells[1].textContent === `Converting (${percent}%)`;
  }, null, { timeout: CONVERSION_TIMEOUT_MS, polling: 'raf' });
  assert.equal(await uploadBar(page), 100);
  assert.equal(await page.locator('#upload-percent').textContent(), '100%');
  await page.screenshot({ path: join(outputDir, 'converting.png') });
  await page.locator('#current-job[data-status="completed"]').waitFor({ timeout: CONVERSION_TIMEOUT_MS });
  page.off('requestfinished', onFinished);
  page.off('request', onRequest);
  await page.unroute(uploads);
  const jobId = await job.getAttribute('data-job-id');
  assert.match(jobId, /^job_/);
  assert.equal(await page.locator('#job-progress').evaluate((bar) => bar.value), 100);
  assert.equal(await page.locator('#job-status').textContent(), `${mp3Name} — Done`);

  step('only what the server lacked was sent again');
  assert.equal(patchesAfterReload, appended.length + 1, 'one PATCH was dropped, and retried');
  // From the server's offset to the end, each byte once.
  appended.sort((a, b) => a.offset - b.offset);
  let next = serverOffset;
  for (const patch of appended) {
    assert.equal(patch.offset, next, `PATCHes after the reload: ${JSON.stringify(appended)}`);
    next += patch.bytes;
  }
  assert.equal(next, size, 'the file was sent to its end');
  assert.deepEqual(await rememberedUploads(page), [], 'a finished upload is forgotten');
  assert.ok(await page.locator('#unfinished-uploads').isHidden());

  step('the progress came from the event stream');
  assert.equal(new URL((await events).url()).pathname, `/api/jobs/${jobId}/events`);
  assert.deepEqual(statusRequests, [], 'no status polling');
  const seen = await page.evaluate(() => window.jobProgress);
  assert.ok(seen.some((percent) => percent > 0 && percent < 100), `progress seen: ${seen}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `progress only grows: ${seen}`);

  step('download the MP3');
  const [download, mp3] = await Promise.all([
    page.waitForEvent('download'),
    page.waitForResponse((r) => r.url().endsWith(`/api/jobs/${jobId}/download`)),
    page.getByRole('button', { name: 'Download MP3' }).click(),
  ]);
  assert.equal(mp3.status(), 200);
  assert.equal(mp3.headers()['content-type'], 'audio/mpeg');
  assert.equal(download.suggestedFilename(), mp3Name);
  const saved = join(outputDir, 'download.mp3');
  await download.saveAs(saved);
  const audio = await readFile(saved);
  assert.ok(audio.length > 1000, `the MP3 has ${audio.length} bytes`);
  // An ID3 tag, or straight into an MPEG audio frame (11 sync bits).
  const mpeg = audio.subarray(0, 3).toString('latin1') === 'ID3' || (audio[0] === 0xff && (audio[1] & 0xe0) === 0xe0);
  assert.ok(mpeg, 'the download is MPEG audio');

  step('find it among past conversions');
  const row = page.locator(`#jobs-body tr[data-job-id="${jobId}"]`);
  await row.and(page.locator('[data-status="completed"]')).waitFor();
  assert.equal(await row.locator('td').first().textContent(), mp3Name);
  await row.getByRole('button', { name: `Download ${mp3Name}` }).waitFor();

  step('the shop section shows products, or says why not');
  await page.locator('#products > *').first().waitFor();

  const screenshot = join(outputDir, 'ui-after-conversion.png');
  await page.screenshot({ path: screenshot, fullPage: true });
  step(`screenshot: ${screenshot}`);
}

/** The short video's conversion fails (the runner's ffmpeg is switched to fail); Retry converts it. */
async function retryFailedConversion(page) {
  step('a conversion fails');
  const mp3Name = mp3Of(shortVideoPath);
  await writeFile(failSwitch, '');
  await page.getByLabel('Video file (MP4, AVI or MOV)').setInputFiles(shortVideoPath);
  await page.getByRole('button', { name: 'Upload and convert' }).click();
  const job = page.locator('#current-job');
  await page.locator('#current-job[data-status="failed"]').waitFor({ timeout: CONVERSION_TIMEOUT_MS });
  const jobId = await job.getAttribute('data-job-id');
  await page.locator('#notice[data-kind="error"]', { hasText: `${mp3Name}: the conversion failed. Retry to convert it again.` }).waitFor();
  const row = page.locator(`#jobs-body tr[data-job-id="${jobId}"]`);
  await row.and(page.locator('[data-status="failed"]')).waitFor();
  await row.getByRole('button', { name: `Retry ${mp3Name}` }).waitFor();
  await page.screenshot({ path: join(outputDir, 'conversion-failed.png') });

  step('retry it');
  await rm(failSwitch);
  const [retried] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/api/jobs/${jobId}/retry`)),
    job.getByRole('button', { name: 'Retry' }).click(),
  ]);
  assert.equal(retried.status(), 202);
  await page.locator('#current-job[data-status="completed"]').waitFor({ timeout: CONVERSION_TIMEOUT_MS });
  assert.equal(await job.getAttribute('data-job-id'), jobId, 'the same job, converted again');
  assert.ok(await job.getByRole('button', { name: 'Retry' }).isHidden());
  await job.getByRole('button', { name: 'Download MP3' }).waitFor();
  await row.and(page.locator('[data-status="completed"]')).waitFor();
}

/** Signing out forgets the session and revokes its token. */
async function signOut(page) {
  step('sign out');
  await page.goto(`${appUrl}/`);
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('spinmesh.session')).token);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  const status = await page.evaluate(async (bearer) =>
    (await fetch('/api/jobs', { headers: { Authorization: `Bearer ${bearer}` } })).status, token);
  assert.equal(status, 401, 'the token is revoked');
}

/**
 * Browsing and ordering from the real catalogue: two Turntables (all there are), then one
 * more, which the API refuses and the page says why. Requests are watched, not altered.
 */
async function shop(page) {
  step('shop: list the products');
  const turntable = shopProducts.find((product) => product.name === 'Turntable');
  assert.equal(turntable.stock, 2);
  const sent = [];
  const watch = (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/api/orders') sent.push(request);
  };
  page.on('request', watch);
  const shop = page.locator('#shop');
  const products = shop.locator('#products tbody tr');
  await shop.getByRole('button', { name: 'Refresh' }).click();
  await shop.getByRole('cell', { name: 'Turntable' }).waitFor();
  assert.deepEqual(await rows(products), [
    ['Turntable', 'audio', '199.00', '2'],
    ['Vinyl sleeve', 'accessories', '4.50', 'unlimited'],
  ]);
  assert.equal(await shop.locator('#orders').textContent(), 'No orders yet.');

  step('shop: order both Turntables');
  await shop.getByLabel('Product').selectOption({ label: 'Turntable (199.00)' });
  await shop.getByLabel('Quantity').fill('2');
  await shop.getByLabel('Name on the order (optional)').fill('Ada');
  const [placed] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/orders'),
    shop.getByRole('button', { name: 'Place order' }).click(),
  ]);
  assert.equal(placed.status(), 201);
  const order = await placed.json();
  const notice = shop.locator('#order-notice');
  await notice.and(page.locator('[data-kind="success"]'))
    .filter({ hasText: `Order ${order.id} placed: 2 × Turntable, 398.00 in total.` }).waitFor();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].postDataJSON(), { product_id: turntable.id, quantity: 2, customer_name: 'Ada' });
  const headers = await sent[0].allHeaders();
  assert.match(headers['authorization'], /^Bearer ./);
  assert.match(headers['idempotency-key'], /^[0-9a-f]{32}$/);
  const orders = shop.locator('#orders tbody tr');
  await orders.first().waitFor();
  assert.deepEqual(await rows(orders), [[String(order.id), 'Turntable', '2', '199.00', '398.00', 'Ada', 'confirmed']]);
  await shop.getByRole('cell', { name: 'sold out' }).waitFor();
  assert.equal(await shop.getByLabel('Product').inputValue(), String(turntable.id), 'the selection survives the refresh');

  step('shop: one more Turntable is refused');
  await shop.getByLabel('Quantity').fill('1');
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/orders'),
    shop.getByRole('button', { name: 'Place order' }).click(),
  ]);
  assert.equal(refused.status(), 409);
  assert.equal((await refused.json()).code, 'insufficient_stock');
  await notice.and(page.locator('[data-kind="error"]'))
    .filter({ hasText: 'Insufficient stock: 0 available' }).waitFor();
  assert.equal(sent.length, 2);
  assert.notEqual((await sent[1].allHeaders())['idempotency-key'], headers['idempotency-key'], 'a new order, a new key');
  assert.equal(await orders.count(), 1, 'no order was added');
  await shop.screenshot({ path: join(outputDir, 'shop.png') });
  page.off('request', watch);
}

/** The cells' text of each row. */
async function rows(locator) {
  return Promise.all((await locator.all()).map((row) => row.locator('td').allTextContents()));
}

/** The explorer on a known document (served in place of the app's). */
async function explorerOnFixture(page) {
  step('API explorer on the fixture document');
  const fixture = await readFile(new URL('./fixtures/openapi.json', import.meta.url), 'utf8');
  await page.route('**/api/openapi.json', (route) => route.fulfill({ contentType: 'application/json', body: fixture }));
  await page.goto(`${appUrl}/docs`);
  await page.locator('#doc-status', { hasText: '6 operations in 4 groups.' }).waitFor();
  assert.equal(await page.locator('#doc-title').textContent(), 'Explorer fixture — API explorer');
  const headings = await page.locator('.tag-group > h2').allTextContents();
  assert.deepEqual(headings, ['health', 'converter', 'auth', 'default']);

  // Required path parameters are checked before anything is sent.
  const status = page.locator('details[data-method="get"][data-path="/api/jobs/{id}"]').first();
  await status.locator('summary').click();
  await status.getByRole('button', { name: 'Send request' }).click();
  assert.equal(await status.locator('input[data-parameter="id"]').evaluate((input) => input.validity.valueMissing), true);

  const health = page.locator('details[data-method="get"][data-path="/health"]');
  await health.locator('summary').click();
  await health.getByRole('button', { name: 'Send request' }).click();
  await health.locator('.status-line', { hasText: 'GET /health → 200' }).waitFor();
  assert.match(await health.locator('[data-role="response-body"]').textContent(), /"status": "healthy"/);
  await page.unroute('**/api/openapi.json');
}

/** The explorer on the app's own OpenAPI document, trying a call with the UI's token. */
async function explorerOnAppDocument(page) {
  step('API explorer on /api/openapi.json');
  await page.goto(`${appUrl}/docs`);
  await page.waitForFunction(() => !document.getElementById('doc-status').textContent.startsWith('Loading'));
  assert.match(await page.locator('#doc-status').textContent(), /^\d+ operations in \d+ groups\.$/);
  await page.screenshot({ path: join(outputDir, 'docs.png') });
  const operations = page.locator('details.operation');
  assert.ok((await operations.count()) >= 10, 'the app documents its operations');
  for (const [method, path] of [['post', '/api/upload'], ['post', '/api/login'], ['get', '/health']]) {
    assert.ok(await operations.and(page.locator(`[data-method="${method}"][data-path="${path}"]`)).count(), `${method} ${path}`);
  }
  // The session from the web UI (same tab) is the default token.
  assert.ok((await page.getByLabel(/Bearer token/).inputValue()).length > 20);
  const jobs = operations.and(page.locator('[data-method="get"][data-path="/api/jobs"]')).first();
  await jobs.locator('summary').click();
  await jobs.getByRole('button', { name: 'Send request' }).click();
  await jobs.locator('.status-line', { hasText: /^GET \/api\/jobs → 200/ }).waitFor();
  assert.match(await jobs.locator('[data-role="response-body"]').textContent(), /"status": "completed"/);
}
