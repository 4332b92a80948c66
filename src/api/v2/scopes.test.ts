import assert from 'node:assert/strict';
import { test } from 'node:test';
import { grants, isScope, KNOWN_SCOPES, scopesNeedTags } from './scopes.ts';

test('a write scope covers its :read subset, never the other way round', () => {
  assert.equal(grants(['devices:core'], 'devices:core:read'), true);
  assert.equal(grants(['devices:core:read'], 'devices:core'), false);
  assert.equal(grants(['devices:core'], 'devices:routes'), false);
  assert.equal(grants(['devices:core'], 'devices:routes:read'), false);
});

test('all covers every scope; all:read every :read scope only', () => {
  for (const scope of KNOWN_SCOPES) {
    assert.equal(grants(['all'], scope), true, scope);
    assert.equal(grants(['all:read'], scope), scope.endsWith(':read'), scope);
  }
  assert.equal(grants([], 'dns:read'), false);
  assert.equal(grants(['unknown'], 'dns:read'), false);
});

test('scope names and the tag rule follow Tailscale', () => {
  assert.equal(isScope('policy_file:read'), true);
  assert.equal(isScope('devices'), false);
  assert.equal(scopesNeedTags(['auth_keys']), true);
  assert.equal(scopesNeedTags(['devices:core', 'dns']), true);
  assert.equal(scopesNeedTags(['devices:core:read', 'all']), false);
});
