/** Metadefs request validation (Glance's schema wording) and the route table's agreement with the handler. */
import { describe, expect, it } from 'vitest';
import { BadRequestError, ForbiddenError } from '#core/kernel/errors';
import { parseNamespaceBody, parsePropertyBody, parseTagsBody } from '#core/metadefs/validation';
import { METADEF_ROUTE_KEYS } from '../../../functions/api/metadefs.ts';
import { ROUTES, routeKey } from '../../../functions/api/routes.ts';

describe('metadefs validation', () => {
  it("words refusals as Glance's jsonschema does", () => {
    const message = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        return error instanceof BadRequestError || error instanceof ForbiddenError ? error.message : 'other';
      }
      return 'accepted';
    };
    const prefix = "Provided object does not match schema 'namespace': ";
    expect(message(() => parseNamespaceBody({}))).toBe(`${prefix}'namespace' is a required property`);
    expect(message(() => parseNamespaceBody({ namespace: 5 }))).toBe(`${prefix}5 is not of type 'string'`);
    expect(message(() => parseNamespaceBody({ namespace: 'a', visibility: 'shared' }))).toBe(
      `${prefix}'shared' is not one of ['public', 'private']`,
    );
    expect(message(() => parseNamespaceBody({ namespace: 'a', extra: 1 }))).toBe(
      `${prefix}Additional properties are not allowed ('extra' was unexpected)`,
    );
    expect(message(() => parseNamespaceBody({ namespace: 'a'.repeat(81) }))).toBe(
      `${prefix}'${'a'.repeat(81)}' is too long`,
    );
    expect(message(() => parseNamespaceBody({ namespace: 'a', self: '/x' }))).toBe(
      "Attribute 'self' is read-only.",
    );
    expect(message(() => parseNamespaceBody(null))).toBe(`${prefix}None is not of type 'object'`);
    expect(message(() => parsePropertyBody({ name: 'p', title: 'P', type: 'string', pattern: '(' }))).toBe(
      "Provided object does not match schema 'property': '(' is not a regex",
    );
    expect(message(() => parseTagsBody({ tags: [{ name: 'a' }] }))).toBe('accepted');
  });
});

describe('metadefs routes', () => {
  it('lists in routes.ts exactly the routes the metadefs handler serves', () => {
    const listed = ROUTES.filter((route) => route.fn === 'metadefs').map(routeKey);
    expect([...listed].sort()).toEqual([...METADEF_ROUTE_KEYS].sort());
  });
});
