import { describe, expect, it } from 'vitest';
import { IMAGE_STATUSES, type ImageStatus } from '#core/images/image';
import {
  assertDeletable,
  assertDownloadable,
  assertTransition,
  canTransition,
  deactivateImage,
  deleteImage,
  reactivateImage,
  requireFormatsForData,
  transitionImage,
  VALID_TRANSITIONS,
} from '#core/images/status';
import { admin, alice, errorOf, LATER, makeActiveImage, makeImage } from './fixtures.ts';

const ALLOWED: Array<[ImageStatus, ImageStatus]> = [
  ['queued', 'saving'],
  ['queued', 'uploading'],
  ['queued', 'importing'],
  ['queued', 'active'],
  ['queued', 'deleted'],
  ['saving', 'active'],
  ['saving', 'killed'],
  ['saving', 'deleted'],
  ['saving', 'queued'],
  ['uploading', 'importing'],
  ['uploading', 'queued'],
  ['uploading', 'deleted'],
  ['importing', 'active'],
  ['importing', 'deleted'],
  ['importing', 'queued'],
  ['active', 'pending_delete'],
  ['active', 'deleted'],
  ['active', 'deactivated'],
  ['deactivated', 'active'],
  ['deactivated', 'deleted'],
  ['pending_delete', 'deleted'],
  ['pending_delete', 'active'],
  ['killed', 'deleted'],
];

describe('the status state machine', () => {
  it('allows exactly the transitions of Glance section 3.3', () => {
    // Prepare
    const allowed = new Set(ALLOWED.map(([from, to]) => `${from}>${to}`));

    // Act
    const actual = IMAGE_STATUSES.flatMap((from) =>
      IMAGE_STATUSES.filter((to) => canTransition(from, to)).map((to) => `${from}>${to}`),
    );

    // Assess
    expect(new Set(actual)).toEqual(allowed);
    expect(VALID_TRANSITIONS.deleted).toEqual([]);
  });

  it.each([
    ['active', 'saving'],
    ['active', 'uploading'],
    ['uploading', 'uploading'],
    ['uploading', 'saving'],
    ['deleted', 'active'],
    ['killed', 'active'],
  ] as Array<[ImageStatus, ImageStatus]>)('refuses %s -> %s with 409', (from, to) => {
    // Act
    const error = errorOf(() => assertTransition(from, to));

    // Assess
    expect(error).toEqual({
      kind: 'conflict',
      message: `Image status transition from ${from} to ${to} is not allowed`,
    });
  });

  it('lets an allowed transition through', () => {
    // Act
    const act = () => assertTransition('queued', 'saving');

    // Assess
    expect(act).not.toThrow();
  });
});

describe('requireFormatsForData', () => {
  it('answers 400 naming both formats when both are missing', () => {
    // Act
    const error = errorOf(() => requireFormatsForData({ disk_format: null, container_format: null }));

    // Assess
    expect(error).toEqual({
      kind: 'bad_request',
      message: 'Properties disk_format, container_format must be set prior to saving data.',
    });
  });

  it.each([
    [
      { disk_format: null, container_format: 'bare' },
      'Property disk_format must be set prior to saving data.',
    ],
    [
      { disk_format: 'raw', container_format: null },
      'Property container_format must be set prior to saving data.',
    ],
  ])('answers 400 naming the one missing format', (formats, message) => {
    // Act
    const error = errorOf(() => requireFormatsForData(formats));

    // Assess
    expect(error).toEqual({ kind: 'bad_request', message });
  });

  it('accepts an image with both formats', () => {
    // Act
    const act = () => requireFormatsForData({ disk_format: 'raw', container_format: 'bare' });

    // Assess
    expect(act).not.toThrow();
  });
});

describe('transitionImage', () => {
  it('moves to the new status, stamps updated_at and keeps the version for the caller to bump', () => {
    // Prepare
    const image = makeImage();

    // Act
    const next = transitionImage(image, 'saving', LATER);

    // Assess
    expect(next).toMatchObject({
      status: 'saving',
      updated_at: '2026-11-22T03:00:00Z',
      version: image.version,
    });
    expect(image.status).toBe('queued');
  });

  it.each([
    ['queued', 'saving'],
    ['queued', 'active'],
    ['queued', 'importing'],
    ['uploading', 'importing'],
  ] as Array<[ImageStatus, ImageStatus]>)('needs formats for %s -> %s', (from, to) => {
    // Act
    const error = errorOf(() =>
      transitionImage(makeImage({ status: from, disk_format: null, container_format: null }), to, LATER),
    );

    // Assess
    expect(error).toEqual({
      kind: 'bad_request',
      message: 'Properties disk_format, container_format must be set prior to saving data.',
    });
  });

  it('checks the transition before the formats (re-upload to an active image is a 409)', () => {
    // Act
    const error = errorOf(() =>
      transitionImage(makeActiveImage({ disk_format: null, container_format: null }), 'saving', LATER),
    );

    // Assess
    expect(error).toEqual({
      kind: 'conflict',
      message: 'Image status transition from active to saving is not allowed',
    });
  });

  it('needs no formats to go to uploading or deleted', () => {
    // Prepare
    const image = makeImage({ disk_format: null, container_format: null });

    // Act
    const staged = transitionImage(image, 'uploading', LATER);
    const deleted = transitionImage(image, 'deleted', LATER);

    // Assess
    expect(staged.status).toBe('uploading');
    expect(deleted.status).toBe('deleted');
  });

  it('forgets the sizes when an image goes back to queued', () => {
    // Prepare
    const image = makeImage({ status: 'saving', size: 10, virtual_size: 20 });

    // Act
    const next = transitionImage(image, 'queued', LATER);

    // Assess
    expect(next).toMatchObject({ status: 'queued', size: null, virtual_size: null });
  });
});

describe('deactivateImage / reactivateImage', () => {
  it('deactivates an active image', () => {
    // Act
    const result = deactivateImage(makeActiveImage(), LATER);

    // Assess
    expect(result.changed).toBe(true);
    expect(result.image).toMatchObject({ status: 'deactivated', updated_at: '2026-11-22T03:00:00Z' });
  });

  it('treats deactivating a deactivated image as a no-op', () => {
    // Prepare
    const image = makeActiveImage({ status: 'deactivated' });

    // Act
    const result = deactivateImage(image, LATER);

    // Assess
    expect(result).toEqual({ image, changed: false });
  });

  it('reactivates a deactivated image', () => {
    // Act
    const result = reactivateImage(makeActiveImage({ status: 'deactivated' }), LATER);

    // Assess
    expect(result.changed).toBe(true);
    expect(result.image.status).toBe('active');
  });

  it('treats reactivating an active image as a no-op', () => {
    // Prepare
    const image = makeActiveImage();

    // Act
    const result = reactivateImage(image, LATER);

    // Assess
    expect(result).toEqual({ image, changed: false });
  });

  it.each([
    'queued',
    'saving',
    'uploading',
    'importing',
    'killed',
    'pending_delete',
    'deleted',
  ] as ImageStatus[])('refuses both actions with 403 in status %s', (status) => {
    // Act
    const deactivate = errorOf(() => deactivateImage(makeImage({ status }), LATER));
    const reactivate = errorOf(() => reactivateImage(makeImage({ status }), LATER));

    // Assess
    expect(deactivate).toEqual({
      kind: 'forbidden',
      message: `Not allowed to deactivate image in status '${status}'`,
    });
    expect(reactivate).toEqual({
      kind: 'forbidden',
      message: `Not allowed to reactivate image in status '${status}'`,
    });
  });
});

describe('assertDeletable / deleteImage', () => {
  it('refuses a protected image with 403, even for admins', () => {
    // Prepare
    const image = makeActiveImage({ protected: true, id: '8ff11387-6010-48e8-a9a7-0ec28f8df6d5' });

    // Act
    const error = errorOf(() => deleteImage(image, LATER));

    // Assess
    expect(error).toEqual({
      kind: 'forbidden',
      message: 'Image 8ff11387-6010-48e8-a9a7-0ec28f8df6d5 is protected and cannot be deleted.',
    });
  });

  it('answers 404 for an image that is already deleted', () => {
    // Prepare
    const image = makeImage({ status: 'deleted', id: '8ff11387-6010-48e8-a9a7-0ec28f8df6d5' });

    // Act
    const error = errorOf(() => assertDeletable(image));

    // Assess
    expect(error).toEqual({
      kind: 'not_found',
      message: 'Failed to find image 8ff11387-6010-48e8-a9a7-0ec28f8df6d5 to delete',
    });
  });

  it.each([
    'queued',
    'saving',
    'uploading',
    'importing',
    'active',
    'deactivated',
    'killed',
    'pending_delete',
  ] as ImageStatus[])('deletes an unprotected image in status %s', (status) => {
    // Act
    const next = deleteImage(makeImage({ status }), LATER);

    // Assess
    expect(next).toMatchObject({ status: 'deleted', updated_at: '2026-11-22T03:00:00Z' });
  });

  it('goes to pending_delete with delayed delete when the image has data', () => {
    // Act
    const next = deleteImage(makeActiveImage(), LATER, { delayed: true });

    // Assess
    expect(next.status).toBe('pending_delete');
  });

  it('goes straight to deleted with delayed delete when there is no data', () => {
    // Act
    const next = deleteImage(makeImage(), LATER, { delayed: true });

    // Assess
    expect(next.status).toBe('deleted');
  });
});

describe('assertDownloadable', () => {
  it('refuses the data of a deactivated image to a non-admin', () => {
    // Act
    const error = errorOf(() => assertDownloadable(makeActiveImage({ status: 'deactivated' }), alice));

    // Assess
    expect(error).toEqual({
      kind: 'forbidden',
      message: 'The requested image has been deactivated. Image data download is forbidden.',
    });
  });

  it('lets an admin download a deactivated image, and anyone an active one', () => {
    // Act
    const asAdmin = () => assertDownloadable(makeActiveImage({ status: 'deactivated' }), admin);
    const active = () => assertDownloadable(makeActiveImage(), alice);

    // Assess
    expect(asAdmin).not.toThrow();
    expect(active).not.toThrow();
  });
});
