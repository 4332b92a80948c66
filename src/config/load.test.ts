import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, parseConfig } from './index.ts';
import { assertIssue, configErrorFrom } from './testing.ts';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-config-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('loadConfig', () => {
  test('reads a YAML file and resolves data_dir against cwd', () => {
    writeConfig(
      'weft.yaml',
      'listen_addr: 127.0.0.1:0\ndata_dir: state\nderp:\n  server:\n    enabled: false\n',
    );
    const config = loadConfig({ file: 'weft.yaml', cwd: dir, env: {} });
    assert.equal(config.listen_addr, '127.0.0.1:0');
    assert.equal(config.derp.server.enabled, false);
    assert.equal(config.data_dir, join(dir, 'state'));
  });

  test('takes the file from WEFT_CONFIG when no file option is given', () => {
    const path = writeConfig('from-env.yaml', 'server_url: https://hs.example.com\n');
    assert.equal(loadConfig({ env: { WEFT_CONFIG: path }, cwd: dir }).server_url, 'https://hs.example.com');
  });

  test('the file option wins over WEFT_CONFIG', () => {
    const path = writeConfig('option.yaml', 'server_url: https://option.example.com\n');
    const config = loadConfig({ file: path, env: { WEFT_CONFIG: join(dir, 'missing.yaml') }, cwd: dir });
    assert.equal(config.server_url, 'https://option.example.com');
  });

  test('no file at all gives defaults plus the environment', () => {
    const config = loadConfig({ env: { WEFT_LISTEN_ADDR: '127.0.0.1:1' }, cwd: dir });
    assert.equal(config.listen_addr, '127.0.0.1:1');
    assert.equal(config.server_url, 'http://127.0.0.1:8080');
  });

  test('an empty file, or one with only comments, means all defaults', () => {
    const empty = loadConfig({ file: writeConfig('empty.yaml', ''), cwd: dir, env: {} });
    const comments = loadConfig({ file: writeConfig('comments.yaml', '# nothing\n'), cwd: dir, env: {} });
    assert.deepEqual(empty, parseConfig({}, { cwd: dir }));
    assert.deepEqual(comments, empty);
  });

  test('a missing file is reported by name', () => {
    const error = configErrorFrom(() => loadConfig({ file: 'nope.yaml', cwd: dir, env: {} }));
    assert.equal(error.message, 'config file nope.yaml does not exist');
  });

  test('an unreadable path is reported', () => {
    mkdirSync(join(dir, 'a-directory'));
    const error = configErrorFrom(() => loadConfig({ file: 'a-directory', cwd: dir, env: {} }));
    assert.match(error.message, /^cannot read config file a-directory: /);
  });

  test('YAML syntax errors give line and column', () => {
    writeConfig(
      'broken.yaml',
      'server_url: https://hs.example.com\nderp:\n  server:\n    region_id: [1,\n  urls: x\n',
    );
    const error = configErrorFrom(() => loadConfig({ file: 'broken.yaml', cwd: dir, env: {} }));
    assert.match(error.message, /^broken\.yaml: YAML syntax error at line 5, column 3: /);
  });

  test('duplicate keys are a syntax error', () => {
    writeConfig('dup.yaml', 'listen_addr: 0.0.0.0:1\nlisten_addr: 0.0.0.0:2\n');
    const error = configErrorFrom(() => loadConfig({ file: 'dup.yaml', cwd: dir, env: {} }));
    assert.match(error.message, /line 2, column 1: Map keys must be unique/);
  });

  test('the top level must be a mapping', () => {
    writeConfig('list.yaml', '- listen_addr: 0.0.0.0:1\n');
    const error = configErrorFrom(() => loadConfig({ file: 'list.yaml', cwd: dir, env: {} }));
    assert.equal(error.message, 'list.yaml: the top level must be a mapping of config keys, got a list');
  });

  test('validation errors name the file and the key path', () => {
    writeConfig('invalid.yaml', 'prefixes:\n  v4: 10.0.0.0/8\nlog:\n  levle: debug\n');
    const error = configErrorFrom(() => loadConfig({ file: 'invalid.yaml', cwd: dir, env: {} }));
    assertIssue(error, 'prefixes.v4', /outside 100\.64\.0\.0\/10/);
    assert.equal(
      error.message,
      [
        'invalid.yaml: prefixes.v4: 10.0.0.0/8 is outside 100.64.0.0/10, the range Tailscale clients use for node addresses',
        'invalid.yaml: log: unknown key "levle" (did you mean "level"?)',
      ].join('\n'),
    );
  });

  test('YAML 1.1 booleans such as "yes" are strings, and so a type error', () => {
    writeConfig('yes.yaml', 'dns:\n  magic_dns: yes\n');
    const error = configErrorFrom(() => loadConfig({ file: 'yes.yaml', cwd: dir, env: {} }));
    assertIssue(error, 'dns.magic_dns', /expected true or false, got the string "yes"/);
  });
});
