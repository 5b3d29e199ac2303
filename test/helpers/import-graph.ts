/**
 * The import graph of functions/**, read with the TypeScript compiler API (no type checking, no
 * module loading): every `import`/`export ... from`, `import type`, `import('...')` call and
 * `import('...')` type, resolved through relative paths and package.json's `#alias/*` imports.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

export interface ImportEdge {
  /** Repository-relative path of the importing file, e.g. functions/core/images/image.ts. */
  from: string;
  /** The specifier as written. */
  specifier: string;
  /** Repository-relative path of the imported file, or undefined for a package / node builtin. */
  to: string | undefined;
  /** true when only types are imported (erased at run time). */
  typeOnly: boolean;
}

export const ROOT = resolve(import.meta.dirname, '../..');

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listTs(full));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

const aliases: [prefix: string, target: string][] = Object.entries(
  (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { imports: Record<string, string> })
    .imports,
).map(([pattern, target]) => [pattern.replace(/\*$/, ''), target]);

function withExtension(path: string): string {
  for (const candidate of [path, `${path}.ts`, join(path, 'index.ts')])
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  return path;
}

function resolveSpecifier(fromFile: string, specifier: string): string | undefined {
  if (specifier.startsWith('.')) return withExtension(resolve(dirname(fromFile), specifier));
  for (const [prefix, target] of aliases)
    if (specifier.startsWith(prefix))
      return withExtension(resolve(ROOT, target.replace('*', specifier.slice(prefix.length))));
  return undefined;
}

function importsOf(file: string): Array<{ specifier: string; typeOnly: boolean }> {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: Array<{ specifier: string; typeOnly: boolean }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const everyNameTyped =
        !!clause &&
        !clause.name &&
        !!named &&
        ts.isNamedImports(named) &&
        named.elements.length > 0 &&
        named.elements.every((element) => element.isTypeOnly);
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: !!clause?.isTypeOnly || everyNameTyped });
    } else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      found.push({ specifier: node.arguments[0].text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const rel = (path: string) => relative(ROOT, path).split(sep).join('/');

/** Every import edge of every .ts file under `dir` (repository-relative, e.g. 'functions'). */
export function importGraph(dir: string): ImportEdge[] {
  return listTs(join(ROOT, dir)).flatMap((file) =>
    importsOf(file).map(({ specifier, typeOnly }) => {
      const target = resolveSpecifier(file, specifier);
      return { from: rel(file), specifier, to: target && rel(target), typeOnly };
    }),
  );
}

/**
 * Import cycles: one per strongly connected component with more than one file (or a file that
 * imports itself), given as a closed path `a -> b -> ... -> a`, starting from the component's
 * first file in sort order.
 */
export function importCycles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const edge of edges) {
    if (!edge.to) continue;
    if (!next.has(edge.from)) next.set(edge.from, new Set());
    next.get(edge.from)?.add(edge.to);
    if (!next.has(edge.to)) next.set(edge.to, new Set());
  }
  const nodes = [...next.keys()].sort();
  // Tarjan's strongly connected components.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const to of [...(next.get(node) ?? [])].sort()) {
      if (!index.has(to)) {
        connect(to);
        low.set(node, Math.min(low.get(node) as number, low.get(to) as number));
      } else if (onStack.has(to)) low.set(node, Math.min(low.get(node) as number, index.get(to) as number));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || next.get(node)?.has(node)) components.push(component.sort());
    }
  };
  for (const node of nodes) if (!index.has(node)) connect(node);
  // A shortest closed path through each component's first file (breadth-first inside it).
  return components.map((component) => {
    const members = new Set(component);
    const start = component[0] as string;
    const parent = new Map<string, string>();
    const queue = [start];
    let last: string | undefined;
    while (queue.length > 0 && !last) {
      const node = queue.shift() as string;
      for (const to of [...(next.get(node) ?? [])].sort()) {
        if (!members.has(to)) continue;
        if (to === start) {
          last = node;
          break;
        }
        if (!parent.has(to)) {
          parent.set(to, node);
          queue.push(to);
        }
      }
    }
    const path = [start];
    for (let node = last; node && node !== start; node = parent.get(node)) path.splice(1, 0, node);
    path.push(start);
    return path;
  });
}
