/**
 * The metadef schema documents against a snapshot taken from Glance's api-ref samples as first
 * written out in full: building the collections from their items must not change what is served.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isMetadefSchemaName, METADEF_SCHEMAS } from '#core/metadefs/schemas';

const FIXTURE = new URL('../../fixtures/metadefs/schemas.json', import.meta.url);
const saved = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, unknown>;

describe('METADEF_SCHEMAS', () => {
  it('serves the ten documents of the snapshot', () => {
    // Act
    const names = Object.keys(METADEF_SCHEMAS);

    // Assess
    expect(names).toEqual(Object.keys(saved));
    for (const name of names) expect(isMetadefSchemaName(name)).toBe(true);
    expect(isMetadefSchemaName('toString')).toBe(false);
  });

  it.each(Object.keys(saved))('serves %s as in the snapshot', (name) => {
    // Act
    const document = METADEF_SCHEMAS[name];

    // Assess
    expect(document).toEqual(saved[name]);
  });

  it('serialises to the same bytes, key order included', () => {
    // Act
    const served = JSON.stringify(METADEF_SCHEMAS, null, 2);

    // Assess
    expect(served).toBe(JSON.stringify(saved, null, 2));
  });
});
