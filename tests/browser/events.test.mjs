// The web UI's server-sent events parser (web/api.js) under Node's test runner: the
// stream of `GET /api/jobs/:id/events` however the network cuts it.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EventStreamParser } from '../../web/api.js';

const job = (progress) => JSON.stringify({ job_id: 'job_1', status: 'running', progress });

test('events, ids and the retry wish, whatever the chunks', () => {
  const stream = `retry: 1000\n\nid: 7\nevent: progress\ndata: ${job(37)}\n\n: keep-alive\n\n`
    + `id: 8\r\nevent: completed\r\ndata: ${job(100)}\r\n\r\n`;
  for (const cut of [1, 2, 3, 5, 64, stream.length]) {
    const parser = new EventStreamParser();
    const events = [];
    for (let at = 0; at < stream.length; at += cut) events.push(...parser.push(stream.slice(at, at + cut)));
    assert.deepEqual(events, [
      { id: '7', event: 'progress', data: job(37) },
      { id: '8', event: 'completed', data: job(100) },
    ], `chunks of ${cut}`);
    assert.equal(parser.lastEventId, '8');
    assert.equal(parser.retryMs, 1000);
  }
});

test('data lines join, one space is dropped, CR ends a line, unknown fields are skipped', () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push('data:a\ndata:  b\rfoo: bar\ndata\n\n'), [{ id: '', event: 'message', data: 'a\n b\n' }]);
});

test('an event without data is not dispatched, but its id counts', () => {
  const parser = new EventStreamParser();
  assert.deepEqual(parser.push('id: 3\nevent: progress\n\n'), []);
  assert.equal(parser.lastEventId, '3');
  assert.deepEqual(parser.push('data: x\n\n'), [{ id: '3', event: 'message', data: 'x' }]);
});
