/**
 * HuJSON (JSON with comments and trailing commas, as Tailscale's `hujson` standardiser accepts) into a
 * syntax tree that remembers where every value came from, so a policy error can point at the line and
 * column an admin has to fix.
 *
 * jsonc-parser recovers from errors and would hand back a partial value; any error it reports is fatal
 * here. It also tolerates duplicate object keys, which Tailscale rejects, so those are checked on the tree.
 */
import jsonc from 'jsonc-parser';
import { PolicyError, type PolicyLocation } from './api.ts';

export type JsonNode = jsonc.Node;

/** 1-based line and column of a character offset in `text`. */
export function locate(text: string, offset: number): PolicyLocation {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** Keyed by jsonc-parser's error names (its error codes are a const enum, which type stripping cannot read). */
const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'invalid character',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'expected a quoted property name',
  ValueExpected: 'expected a value',
  ColonExpected: "expected ':'",
  CommaExpected: "expected ',' or a closing bracket",
  CloseBraceExpected: "expected '}'",
  CloseBracketExpected: "expected ']'",
  EndOfFileExpected: 'unexpected text after the policy',
  InvalidCommentToken: 'invalid comment',
  UnexpectedEndOfComment: 'unterminated comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'invalid unicode escape',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character in string',
};

/** The syntax tree of a HuJSON document whose top level is an object; throws PolicyError otherwise. */
export function parseHujson(text: string): JsonNode {
  if (jsonc.stripComments(text).trim() === '')
    throw new PolicyError('the policy is empty: write {} for a policy that allows nothing');
  const errors: jsonc.ParseError[] = [];
  const tree = jsonc.parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  const first = errors[0];
  if (first !== undefined) {
    const name = jsonc.printParseErrorCode(first.error);
    const what = SYNTAX_MESSAGES[name] ?? name;
    throw new PolicyError(`invalid HuJSON: ${what}`, locate(text, first.offset));
  }
  if (tree === undefined)
    throw new PolicyError('the policy is empty: write {} for a policy that allows nothing');
  if (tree.type !== 'object')
    throw new PolicyError('the policy must be a JSON object', locate(text, tree.offset));
  rejectDuplicateKeys(text, tree);
  return tree;
}

function rejectDuplicateKeys(text: string, node: JsonNode): void {
  if (node.type === 'object') {
    const seen = new Set<string>();
    for (const property of node.children ?? []) {
      const key = property.children?.[0];
      if (key === undefined) continue;
      const name = String(key.value);
      if (seen.has(name)) throw new PolicyError(`duplicate key "${name}"`, locate(text, key.offset));
      seen.add(name);
    }
  }
  for (const child of node.children ?? []) rejectDuplicateKeys(text, child);
}
