/**
 * Enforces the dependency direction of docs/stack.md §3.5: every `src/` folder sits on a layer and may
 * import only from layers below it. Like tailscale's depaware/deptest, it fails the build on a
 * forbidden import instead of leaving the architecture to review.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';

const SRC = resolve(import.meta.dirname, '../src');

/** Layer of every folder under src/. A new folder must be placed here before it can hold code. */
const LAYERS: Record<string, number> = {
  types: 0,
  util: 0,
  observe: 0,
  config: 0,
  tailcfg: 1,
  netaddr: 1,
  crypto: 1,
  noise: 2,
  derp: 2,
  stun: 2,
  policy: 2,
  db: 3,
  state: 4,
  mapper: 5,
  control: 6,
  auth: 6,
  api: 6,
  server: 7,
  cli: 8,
};

/** The CLI is a client of the API: it never reaches into the database or the protocol plane. */
const CLI_MAY_IMPORT = new Set(['types', 'util', 'observe', 'config', 'api', 'server', 'policy']);

/** Folders whose code must stay pure (no files, sockets, processes, databases): fuzzable and testable. */
const PURE = new Set(['types', 'util', 'tailcfg', 'netaddr', 'crypto', 'policy']);
const IO_MODULES =
  /^(node:)?(fs|fs\/promises|net|dgram|http|https|http2|child_process|cluster|worker_threads|sqlite)$|^(pg|kysely)(\/|$)/;

interface Violation {
  file: string;
  specifier: string;
  reason: string;
}

/** The specifiers of static imports, re-exports and dynamic imports in a module's text. */
export function importSpecifiers(text: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"]+)['"]/gms,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  const found = new Set<string>();
  for (const pattern of patterns)
    for (const match of text.matchAll(pattern)) if (match[1]) found.add(match[1]);
  return [...found];
}

/** Why `fromFolder` may not import `specifier` (resolved to `target` when relative), or undefined if it may. */
export function checkImport(
  fromFolder: string,
  specifier: string,
  targetFolder: string | null,
): string | undefined {
  const fromLayer = LAYERS[fromFolder];
  if (fromLayer === undefined) return `src/${fromFolder} has no layer in test/layers.test.ts`;
  if (targetFolder === null) {
    if (specifier.startsWith('.')) return 'imports a file outside src/';
    if (PURE.has(fromFolder) && IO_MODULES.test(specifier)) return `src/${fromFolder} must stay free of I/O`;
    return undefined;
  }
  if (targetFolder === fromFolder) return undefined;
  const targetLayer = LAYERS[targetFolder];
  if (targetLayer === undefined) return `src/${targetFolder} has no layer in test/layers.test.ts`;
  if (fromLayer === 0) return `src/${fromFolder} is a leaf and imports nothing from src/`;
  if (targetLayer >= fromLayer) {
    return `layer ${fromLayer} (${fromFolder}) may only import lower layers, not layer ${targetLayer} (${targetFolder})`;
  }
  if (fromFolder === 'cli' && !CLI_MAY_IMPORT.has(targetFolder))
    return `the CLI may not import src/${targetFolder}`;
  return undefined;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

function folderOf(file: string): string | null {
  const rel = relative(SRC, file);
  if (rel.startsWith('..')) return null;
  const [folder] = rel.split(sep);
  return folder !== undefined && rel.includes(sep) ? folder : '';
}

async function violations(): Promise<Violation[]> {
  const found: Violation[] = [];
  for (const file of await sourceFiles(SRC)) {
    const from = folderOf(file) ?? '';
    for (const specifier of importSpecifiers(await readFile(file, 'utf8'))) {
      const target = specifier.startsWith('.') ? folderOf(resolve(dirname(file), specifier)) : null;
      const reason = checkImport(from, specifier, target);
      if (reason) found.push({ file: relative(SRC, file), specifier, reason });
    }
  }
  return found;
}

describe('layer rule', () => {
  test('every import under src/ follows the dependency direction', async () => {
    const found = await violations();
    assert.deepEqual(
      found.map((v) => `src/${v.file}: import "${v.specifier}": ${v.reason}`),
      [],
    );
  });

  test('the checker itself catches upward, sibling-free and impure imports', () => {
    assert.match(checkImport('db', '../api/x.ts', 'api') ?? '', /may only import lower layers/);
    assert.match(checkImport('control', '../api/x.ts', 'api') ?? '', /may only import lower layers/);
    assert.match(checkImport('config', '../types/x.ts', 'types') ?? '', /leaf/);
    assert.match(checkImport('cli', '../db/x.ts', 'db') ?? '', /CLI may not import/);
    assert.match(checkImport('policy', 'node:fs', null) ?? '', /free of I\/O/);
    assert.match(checkImport('tailcfg', '../../test/x.ts', null) ?? '', /outside src/);
    assert.match(checkImport('newthing', 'zod', null) ?? '', /no layer/);
    assert.equal(checkImport('api', '../db/x.ts', 'db'), undefined);
    assert.equal(checkImport('db', '../types/x.ts', 'types'), undefined);
    assert.equal(checkImport('db', 'kysely', null), undefined);
  });

  test('import parsing sees static, multi-line, side-effect and dynamic imports', () => {
    const text = [
      "import { a } from './a.ts';",
      'import type {',
      '  B,',
      "} from '../b/b.ts';",
      "export * from './c.ts';",
      "import './d.ts';",
      "const e = await import('../e/e.ts');",
    ].join('\n');
    assert.deepEqual(importSpecifiers(text).sort(), ['../b/b.ts', '../e/e.ts', './a.ts', './c.ts', './d.ts']);
  });
});
