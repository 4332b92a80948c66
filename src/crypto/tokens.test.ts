import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hashSecret, mintToken, parseToken, prefixQuery, secretMatches, tokenLabel } from './tokens.ts';

describe('tokens', () => {
  test('minted tokens parse back and match their stored hash', () => {
    for (const kind of ['auth', 'api'] as const) {
      const token = mintToken(kind);
      assert.match(token.text, new RegExp(`^weft-${kind}-[0-9a-f]{12}-[0-9a-f]{64}$`));
      const parsed = parseToken(kind, token.text);
      assert.ok(parsed);
      assert.equal(parsed.prefix, token.prefix);
      assert.ok(secretMatches(parsed.secret, token.hash));
      assert.ok(!token.hash.includes(parsed.secret));
    }
  });

  test('two minted tokens differ', () => {
    assert.notEqual(mintToken('auth').text, mintToken('auth').text);
  });

  test('a token of the other kind or a damaged token does not parse', () => {
    const token = mintToken('auth');
    assert.equal(parseToken('api', token.text), undefined);
    assert.equal(parseToken('auth', token.text.slice(0, -1)), undefined);
    assert.equal(parseToken('auth', `${token.text}0`), undefined);
    assert.equal(parseToken('auth', token.text.toUpperCase()), undefined);
    assert.equal(parseToken('auth', ''), undefined);
  });

  test('a wrong secret does not match', () => {
    const token = mintToken('api');
    assert.ok(!secretMatches('0'.repeat(64), token.hash));
    assert.ok(!secretMatches('', token.hash));
    assert.equal(hashSecret('x').length, 64);
  });

  test('prefix queries accept the key, its label or a hex start', () => {
    const token = mintToken('auth');
    assert.equal(prefixQuery('auth', token.text), token.prefix);
    assert.equal(prefixQuery('auth', tokenLabel('auth', token.prefix)), token.prefix);
    assert.equal(prefixQuery('auth', token.prefix.slice(0, 4).toUpperCase()), token.prefix.slice(0, 4));
    assert.equal(prefixQuery('auth', 'weft-api-abc'), undefined);
    assert.equal(prefixQuery('auth', 'zz'), undefined);
    assert.equal(prefixQuery('auth', ''), undefined);
    assert.equal(prefixQuery('auth', '0123456789abc'), undefined);
  });
});
