import { afterEach, describe, expect, it } from 'vitest';
import { CONTAINER_FORMATS, DISK_FORMATS } from '#core/images/image';
import { resetServiceConfig, serviceConfig } from '#platform/config';

const VARIABLES = [
  'HANGAR_REQUIRE_IMAGE_FORMAT_MATCH',
  'HANGAR_DISK_FORMATS',
  'HANGAR_CONTAINER_FORMATS',
] as const;
const saved = Object.fromEntries(VARIABLES.map((name) => [name, process.env[name]]));

function configWith(env: Partial<Record<(typeof VARIABLES)[number], string>>) {
  for (const name of VARIABLES) delete process.env[name];
  Object.assign(process.env, env);
  resetServiceConfig();
  return serviceConfig().imageFormats;
}

afterEach(() => {
  for (const name of VARIABLES) {
    const value = saved[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  resetServiceConfig();
});

describe('image format settings', () => {
  it("defaults to Glance's: the match required, Glance's disk and container formats", () => {
    expect(configWith({})).toEqual({
      requireMatch: true,
      disk: [...DISK_FORMATS],
      container: [...CONTAINER_FORMATS],
    });
  });

  it('reads the switch as a boolean and the lists as comma-separated names', () => {
    expect(
      configWith({
        HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'false',
        HANGAR_DISK_FORMATS: ' raw, qcow2 ,,iso',
        HANGAR_CONTAINER_FORMATS: 'bare',
      }),
    ).toEqual({ requireMatch: false, disk: ['raw', 'qcow2', 'iso'], container: ['bare'] });
    expect(configWith({ HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'true' }).requireMatch).toBe(true);
  });

  it('refuses a switch that is not a boolean, an empty list and odd names', () => {
    expect(() => configWith({ HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'sometimes' })).toThrow();
    expect(() => configWith({ HANGAR_DISK_FORMATS: ' , ' })).toThrow();
    expect(() => configWith({ HANGAR_CONTAINER_FORMATS: 'bare,o v f' })).toThrow();
  });
});
