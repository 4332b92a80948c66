// docs/config.md is the user's reference: these tests keep its key and environment tables in step with
// the schema and ENV_TABLE, so a key added in code but not in the docs (or the reverse) fails CI.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { ENV_TABLE } from './index.ts';
import { configSchema } from './schema.ts';
import { knownKeysAt } from './suggest.ts';

const DOC = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');

/** The first column of every table row under `## heading`, backticks removed. */
function tableRows(heading: string): string[][] {
  const section = DOC.split(/^## /m).find((part) => part.startsWith(`${heading}\n`)) ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim().replace(/^`(.*)`$/, '$1')),
    );
}

function isSchemaKey(path: string): boolean {
  const segments = path.split('.');
  const leaf = segments.pop() ?? '';
  return knownKeysAt(configSchema, segments).includes(leaf);
}

describe('docs/config.md', () => {
  test('every documented key exists and every key is documented', () => {
    const documented = new Set(tableRows('Keys').map(([key]) => key ?? ''));
    assert.ok(documented.size > 20, 'the Keys table was not found');
    for (const key of documented) assert.ok(isSchemaKey(key), `documented key ${key} is not in the schema`);

    const undocumented: string[] = [];
    const walk = (path: string[]): void => {
      for (const key of knownKeysAt(configSchema, path)) {
        const child = [...path, key];
        const name = child.join('.');
        const documentsChildren = [...documented].some((entry) => entry.startsWith(`${name}.`));
        if (documented.has(name) && !documentsChildren) continue;
        if (knownKeysAt(configSchema, child).length > 0) walk(child);
        else if (!documented.has(name)) undocumented.push(name);
      }
    };
    walk([]);
    assert.deepEqual(undocumented, []);
  });

  test('the environment table matches ENV_TABLE', () => {
    const documented = tableRows('Environment variables').map(([variable, path, kind]) => [
      variable,
      path,
      kind?.split(' ')[0],
    ]);
    const actual = Object.entries(ENV_TABLE).map(([variable, binding]) => [
      variable,
      binding.path,
      binding.kind,
    ]);
    assert.deepEqual(documented, actual);
  });
});
