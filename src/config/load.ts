/**
 * Loading: YAML file → plain document → environment overlay → schema → Config.
 *
 * All problems are collected and thrown together as one ConfigError (YAML syntax errors stop early,
 * since there is no document to check). In a mapping, a key with no value (`oidc:` or `urls:` with
 * everything under it commented out) counts as absent, the way YAML writers expect.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { isMapping, overlayEnv } from './env.ts';
import { ConfigError, type ConfigIssue, describeZodIssue, fromZodIssue } from './errors.ts';
import { type Config, configSchema } from './schema.ts';
import { knownKeysAt } from './suggest.ts';

export interface ParseOptions {
  /** Variables to overlay; parseConfig applies none unless given (loadConfig passes process.env). */
  env?: NodeJS.ProcessEnv;
  /** Base for a relative data_dir; defaults to process.cwd(). */
  cwd?: string;
  /** Names the input in error messages; defaults to "config". */
  source?: string;
}

export interface LoadOptions {
  /** Config file; defaults to env.WEFT_CONFIG. No file means built-in defaults plus the environment. */
  file?: string;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Base for a relative file name and data_dir; defaults to process.cwd(). */
  cwd?: string;
}

/** Reads, overlays and validates the config. Throws ConfigError listing every problem found. */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = options.file ?? env.WEFT_CONFIG;
  if (file === undefined || file === '') return parseConfig({}, { env, cwd });
  const document = parseYaml(readConfigFile(resolve(cwd, file), file), file);
  return parseConfig(document, { env, cwd, source: file });
}

/** Validates an in-memory document (as YAML would produce it). Throws ConfigError. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): Config {
  const source = options.source ?? 'config';
  const overlay = overlayEnv(withoutNullValues(topLevelMapping(raw, source)), options.env ?? {});
  const result = configSchema.safeParse(overlay.document, { error: describeZodIssue });
  const schemaIssues = (result.error?.issues ?? []).flatMap((issue) =>
    fromZodIssue(issue, (path) => knownKeysAt(configSchema, path)),
  );
  const issues = [...overlay.issues, ...schemaIssues.map((issue) => blame(issue, source, overlay.setBy))];
  if (!result.success || issues.length > 0) throw new ConfigError(issues);
  return { ...result.data, data_dir: resolve(options.cwd ?? process.cwd(), result.data.data_dir) };
}

/** An empty document means all defaults; anything but a mapping cannot be a config. */
function topLevelMapping(raw: unknown, source: string): Record<string, unknown> {
  if (raw === null || raw === undefined) return {};
  if (isMapping(raw)) return raw;
  const got = Array.isArray(raw) ? 'a list' : `a ${typeof raw}`;
  throw new ConfigError([
    { path: '', message: `the top level must be a mapping of config keys, got ${got}`, source },
  ]);
}

/** A copy in which `key:` with no value (null) is the same as no key, in mappings at any depth. */
function withoutNullValues(mapping: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(mapping)) {
    if (value !== null) result[key] = withoutNullMappingValues(value);
  }
  return result;
}

function withoutNullMappingValues(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNullMappingValues);
  return isMapping(value) ? withoutNullValues(value) : value;
}

/** Attributes an issue to the variable that set its key (or a parent of it), else to the file. */
function blame(
  { path, message }: { path: string; message: string },
  source: string,
  setBy: ReadonlyMap<string, string>,
): ConfigIssue {
  for (const [setPath, variable] of setBy) {
    if (path === setPath || path.startsWith(`${setPath}.`))
      return { path, message, source: 'environment', variable };
  }
  return { path, message, source };
}

function readConfigFile(absolutePath: string, name: string): string {
  try {
    return readFileSync(absolutePath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? `config file ${name} does not exist`
        : `cannot read config file ${name}: ${(error as Error).message}`;
    throw new ConfigError([{ path: '', message, source: '' }]);
  }
}

/** Parses one YAML document into plain data; syntax errors carry line:column. */
function parseYaml(text: string, name: string): unknown {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      document.errors.map((error) => {
        const { line, col } = lineCounter.linePos(error.pos[0]);
        return {
          path: '',
          message: `YAML syntax error at line ${line}, column ${col}: ${error.message}`,
          source: name,
        };
      }),
    );
  }
  try {
    return document.toJS();
  } catch (error) {
    throw new ConfigError([
      { path: '', message: `cannot read YAML: ${(error as Error).message}`, source: name },
    ]);
  }
}
