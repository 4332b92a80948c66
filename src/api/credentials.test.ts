import assert from 'node:assert/strict';
import { test } from 'node:test';
import { presentedSecret } from './credentials.ts';

const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

test('Bearer and Basic (key as user name) present the same secret', () => {
  assert.deepEqual(presentedSecret('Bearer weft-api-abc'), { ok: true, secret: 'weft-api-abc' });
  assert.deepEqual(presentedSecret('bearer  weft-api-abc '), { ok: true, secret: 'weft-api-abc' });
  assert.deepEqual(presentedSecret(basic('weft-api-abc:')), { ok: true, secret: 'weft-api-abc' });
  assert.deepEqual(presentedSecret(basic('weft-api-abc:ignored')), { ok: true, secret: 'weft-api-abc' });
  assert.deepEqual(presentedSecret(basic('weft-api-abc')), { ok: true, secret: 'weft-api-abc' });
});

test('missing, empty or odd headers are refused with the reason', () => {
  assert.deepEqual(presentedSecret(undefined), { ok: false, reason: 'missing' });
  assert.deepEqual(presentedSecret('  '), { ok: false, reason: 'missing' });
  assert.deepEqual(presentedSecret('Token abc'), { ok: false, reason: 'malformed' });
  assert.deepEqual(presentedSecret('Bearer a b'), { ok: false, reason: 'malformed' });
  assert.deepEqual(presentedSecret(basic(':password')), { ok: false, reason: 'malformed' });
  assert.deepEqual(presentedSecret(`Bearer ${'a'.repeat(5000)}`), { ok: false, reason: 'malformed' });
});

test('request URLs are logged without secret query values', async () => {
  const { loggableUrl } = await import('./app.ts');
  assert.equal(loggableUrl('/api/v1/node?user=alice'), '/api/v1/node?user=alice');
  assert.equal(
    loggableUrl('/oidc/callback?code=abc123&state=xyz&iss=https%3A%2F%2Fidp'),
    '/oidc/callback?code=[redacted]&state=[redacted]&iss=https%3A%2F%2Fidp',
  );
  assert.equal(
    loggableUrl('/api/v1/node/register?user=a&key=weft-login-1'),
    '/api/v1/node/register?user=a&key=[redacted]',
  );
  assert.equal(
    loggableUrl('/x?access_token=t&pageToken=p'),
    '/x?access_token=[redacted]&pageToken=[redacted]',
  );
  assert.equal(loggableUrl('/register/weft-login-0123456789abcdef01234567'), '/register/[redacted]');
  assert.equal(loggableUrl('/register/confirm/weft-login-0123?x=1'), '/register/confirm/[redacted]?x=1');
  assert.equal(loggableUrl('/api/v1/node/3'), '/api/v1/node/3');
});
