/** The Tailscale policy language: parse, validate, compile per node, test. Pure. */
export * from './api.ts';
export { checkPolicy, compilePolicy, electPrimaries } from './compile.ts';
export { autoApprovedRoutes, deniedTags } from './owners.ts';
export { type Policy, parsePolicy } from './parse.ts';
export { EXIT_ROUTES, isExitRoute } from './ranges.ts';
