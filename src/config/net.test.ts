import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHostPort } from './index.ts';

test('parseHostPort splits validated addresses for listen()', () => {
  assert.deepEqual(parseHostPort('0.0.0.0:8080'), { host: '0.0.0.0', port: 8080 });
  assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseHostPort('localhost:65535'), { host: 'localhost', port: 65535 });
  assert.throws(() => parseHostPort('[::]'), /missing ":port"; expected host:port/);
});
