import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tagProblem, userNameProblem } from './names.ts';

test('user names', () => {
  for (const ok of ['alice', 'alice@example.com', 'a', 'bob.smith', 'ci_bot-2', 'jürgen', '1password']) {
    assert.equal(userNameProblem(ok), undefined, ok);
  }
  for (const bad of ['', ' alice', 'alice bob', '-alice', 'a@b@c', 'x'.repeat(65), 'al/ice', 'al\nice']) {
    assert.ok(userNameProblem(bad), JSON.stringify(bad));
  }
});

test('tags', () => {
  for (const ok of ['tag:server', 'tag:prod-db', 'tag:A1']) assert.equal(tagProblem(ok), undefined, ok);
  for (const bad of ['server', 'tag:', 'tag:1abc', 'tag:a_b', 'tag:a b', 'group:x']) {
    assert.ok(tagProblem(bad), bad);
  }
});
