/**
 * routes.ts (read by the embedded gateway and the CDK app) and the api modules (each dispatching
 * on `event.routeKey` and exporting the keys it serves as ROUTE_KEYS) declare the same routes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROUTES, routeKey } from '#api/routes';
import { ROOT } from '../helpers/import-graph.ts';

const API_DIR = join(ROOT, 'functions/api');
const MODULES = readdirSync(API_DIR)
  .filter((name) => name.endsWith('.ts') && name !== 'routes.ts')
  .map((name) => name.slice(0, -'.ts'.length))
  .sort();

/** Every string literal of the module that reads like a route key ('GET /v2/...'). */
function routeKeyLiterals(module: string): string[] {
  const file = join(API_DIR, `${module}.ts`);
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteralLike(node) && /^(GET|POST|PUT|PATCH|DELETE|HEAD) \//.test(node.text))
      found.push(node.text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const duplicates = (keys: readonly string[]) => keys.filter((key, i) => keys.indexOf(key) !== i);

describe('route declarations', () => {
  it('name every api module in routes.ts, and only those', () => {
    expect([...new Set(ROUTES.map((route) => route.fn))].sort()).toEqual(MODULES);
  });

  it('have no route twice in routes.ts', () => {
    expect(duplicates(ROUTES.map(routeKey))).toEqual([]);
  });

  it.each(MODULES)('agree exactly between routes.ts and functions/api/%s.ts', async (module) => {
    const loaded = (await import(join(API_DIR, `${module}.ts`))) as {
      handler?: unknown;
      ROUTE_KEYS?: readonly string[];
    };
    expect(typeof loaded.handler).toBe('function');
    const served = loaded.ROUTE_KEYS ?? [];
    expect(duplicates(served)).toEqual([]);
    const listed = ROUTES.filter((route) => route.fn === module).map(routeKey);
    expect([...served].sort(), `routes.ts vs ${module}.ts ROUTE_KEYS`).toEqual([...listed].sort());
    // A key the handler compares against or maps, but does not declare, would be missed above.
    const undeclared = routeKeyLiterals(module).filter((key) => !served.includes(key));
    expect(undeclared, `route keys in ${module}.ts missing from its ROUTE_KEYS`).toEqual([]);
  });

  it('leave unauthenticated exactly the routes of modules built with { auth: false }', () => {
    const open = MODULES.filter((module) =>
      /\{\s*auth:\s*false\s*\}/.test(readFileSync(join(API_DIR, `${module}.ts`), 'utf8')),
    );
    expect(open).toEqual(['versions']);
    for (const route of ROUTES) expect(route.auth !== false, routeKey(route)).toBe(!open.includes(route.fn));
  });
});
