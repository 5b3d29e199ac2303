import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { missingNodeFlags, PRIMARY_NODE_FLAGS } from '../../../local/node-flags.ts';

const scripts = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    scripts: Record<string, string>;
  }
).scripts;

/** The node flags a `tsx [flags] entry` script passes before its entry file. */
function tsxFlags(script: string, entry: string): string[] {
  const words = script.split(/\s+/);
  const tsx = words.indexOf('tsx');
  const file = words.indexOf(entry);
  if (tsx < 0 || file < tsx) throw new Error(`"${script}" does not run ${entry} through tsx`);
  return words.slice(tsx + 1, file);
}

describe('the primary heap flags', () => {
  it.each([
    ['start', 'local/main.ts'],
    ['bench', 'bench/run.ts'],
  ])('npm %s passes them to the process that runs imports', (name, entry) => {
    const flags = tsxFlags(scripts[name] ?? '', entry);
    expect(missingNodeFlags(PRIMARY_NODE_FLAGS, flags)).toEqual([]);
  });

  it('names what a process lacks', () => {
    expect(missingNodeFlags(['--a', '--b'], ['--import', 'x', '--b'])).toEqual(['--a']);
    expect(missingNodeFlags(['--a'], ['--a=1'])).toEqual(['--a']);
  });
});
