/**
 * Listing with sharing stays index-driven: 50,000 images of one producer project, 10,000 of them
 * shared with a consumer project that accepted them. The consumer's default list (its own, public
 * and accepted-shared partitions merged) is timed against the producer's own default list (a
 * project owning all 50,000 images, nothing shared with it). Target: consumer/producer median
 * page latency ≤ 1.5.
 *
 * Seeding writes the items straight to DynamoDB with BatchWriteItem, built by the repository's
 * own item builders (imageItems, imageMemberItem): the same record, listing rows and member item
 * as POST /v2/images plus POST .../members plus PUT .../members/{m} {"status": "accepted"} would
 * leave, in a fraction of the time. Runnable alone: `npx tsx bench/list-sharing.ts`.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  BatchWriteCommand,
  type BatchWriteCommandOutput,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { TokenFile } from '#adapters/auth/token-file';
import { imageItems, imageMemberItem } from '#adapters/dynamo/image-repository';
import { parseCreateRequest } from '#core/images/create';
import { makePrincipal } from '#core/kernel/principal';
import { serviceConfig } from '#platform/config';
import { type BenchBackend, round, type Stats, startBenchBackend, stats, timed } from './lib.ts';

const PRODUCER = 'bench-producer';
const CONSUMER = 'bench-consumer';

export interface ListSharingResult {
  images: number;
  sharedWithConsumer: number;
  seedSeconds: number;
  /** The producer's own list: the single-project case. */
  producer: Stats;
  /** The consumer's default list: own + public + accepted shared images. */
  consumer: Stats;
  /** The consumer's `visibility=shared&member_status=all` list: three member partitions. */
  consumerAllStatuses: Stats;
  ratioMedian: number;
  ratioP99: number;
  withinTarget: boolean;
}

/** Adds tokens to the backend's token file (re-read on change); returns them. */
function addTokens(b: BenchBackend, projects: string[]): Record<string, string> {
  const path = b.backend.tokensFile;
  if (!path) throw new Error('the bench backend runs in tokens mode, with a token file');
  const file = JSON.parse(readFileSync(path, 'utf8')) as TokenFile;
  const tokens: Record<string, string> = {};
  for (const project of projects) {
    const token = randomBytes(16).toString('hex');
    file.tokens[token] = { project, user: project, roles: ['member'] };
    tokens[project] = token;
  }
  writeFileSync(path, JSON.stringify(file));
  return tokens;
}

async function batchWrite(client: DynamoDBDocumentClient, items: Record<string, unknown>[]): Promise<void> {
  const table = serviceConfig().tableName;
  let pending = items.map((Item) => ({ PutRequest: { Item } }));
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 20 * attempt)));
    const out: BatchWriteCommandOutput = await client.send(
      new BatchWriteCommand({ RequestItems: { [table]: pending } }),
    );
    pending = (out.UnprocessedItems?.[table] ?? []) as typeof pending;
  }
}

/** `count` images of the producer, every `shareEvery`-th shared with the consumer and accepted. */
async function seed(client: DynamoDBDocumentClient, count: number, shareEvery: number): Promise<number> {
  const producer = makePrincipal(PRODUCER, 'seed', ['member']);
  const quotas = { properties: 128, tags: 128 };
  let shared = 0;
  let next = 0;
  const worker = async () => {
    let batch: Record<string, unknown>[] = [];
    while (next < count) {
      const i = next++;
      const when = new Date(Date.UTC(2026, 0, 1) + i * 1000);
      const image = parseCreateRequest(
        { name: `share-${i}`, disk_format: 'qcow2', container_format: 'bare' },
        producer,
        quotas,
        when,
      );
      if (i % shareEvery === 0) {
        shared++;
        image.member_statuses = [[CONSUMER, 'accepted']];
        batch.push(
          imageMemberItem({
            image_id: image.id,
            member_id: CONSUMER,
            status: 'accepted',
            created_at: image.created_at,
            updated_at: image.created_at,
          }),
        );
      }
      batch.push(...imageItems(image));
      // BatchWriteItem takes 25 items; an image is at most five.
      if (batch.length > 20) {
        await batchWrite(client, batch);
        batch = [];
      }
    }
    if (batch.length > 0) await batchWrite(client, batch);
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return shared;
}

async function page(b: BenchBackend, token: string, query: string): Promise<string[]> {
  const response = await fetch(`${b.url}/v2/images?${query}`, { headers: { 'x-auth-token': token } });
  const body = (await response.json()) as { images?: Array<{ id: string }> };
  if (response.status !== 200 || !body.images) throw new Error(`list ${query} -> ${response.status}`);
  return body.images.map((image) => image.id);
}

/**
 * Seeds `total` images (every fifth shared: 10,000 of 50,000 by default) and times list pages,
 * alternating the cases so machine noise hits them alike. Give it a backend of its own, or none
 * (it then starts and stops one): other benchmarks' images would not change the partitions it
 * reads, but would share the machine.
 */
export async function benchListSharing(
  backend?: BenchBackend,
  options: { total?: number; shareEvery?: number; samples?: number } = {},
): Promise<ListSharingResult> {
  const total = options.total ?? 50_000;
  const shareEvery = options.shareEvery ?? 5;
  const samples = options.samples ?? 200;
  const b = backend ?? (await startBenchBackend());
  try {
    const tokens = addTokens(b, [PRODUCER, CONSUMER]);
    const producerToken = tokens[PRODUCER] ?? '';
    const consumerToken = tokens[CONSUMER] ?? '';
    const seedStart = performance.now();
    const shared = await seed(b.backend.clients.dynamo, total, shareEvery);
    const seedSeconds = (performance.now() - seedStart) / 1000;

    // Sanity: the consumer sees exactly the shared images, newest first, 25 to a page.
    const first = await page(b, consumerToken, 'limit=25');
    if (first.length !== 25) throw new Error(`consumer page has ${first.length} images`);
    const markers = {
      producer: (await page(b, producerToken, 'limit=25')).at(-1) ?? '',
      consumer: first.at(-1) ?? '',
    };
    const producer: number[] = [];
    const consumer: number[] = [];
    const allStatuses: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      // Every other sample continues from a marker, to cover that path too.
      const at = (name: keyof typeof markers) => (i % 2 ? `&marker=${markers[name]}` : '');
      const p = await timed(() => page(b, producerToken, `limit=25${at('producer')}`));
      const c = await timed(() => page(b, consumerToken, `limit=25${at('consumer')}`));
      const a = await timed(() =>
        page(b, consumerToken, `limit=25&visibility=shared&member_status=all${at('consumer')}`),
      );
      // The first rounds warm the JIT and DynamoDB Local up.
      if (i < 20) continue;
      producer.push(p.ms);
      consumer.push(c.ms);
      allStatuses.push(a.ms);
    }
    const producerStats = stats(producer);
    const consumerStats = stats(consumer);
    const ratioMedian = round(consumerStats.medianMs / producerStats.medianMs);
    return {
      images: total,
      sharedWithConsumer: shared,
      seedSeconds: round(seedSeconds, 1),
      producer: producerStats,
      consumer: consumerStats,
      consumerAllStatuses: stats(allStatuses),
      ratioMedian,
      ratioP99: round(consumerStats.p99Ms / producerStats.p99Ms),
      withinTarget: ratioMedian <= 1.5,
    };
  } finally {
    if (!backend) await b.stop();
  }
}

// Run alone: `npx tsx bench/list-sharing.ts`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await benchListSharing();
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `list page median/p99 ms: producer (50,000 own) ${result.producer.medianMs}/${result.producer.p99Ms}, consumer (10,000 shared) ${result.consumer.medianMs}/${result.consumer.p99Ms}; ratio ${result.ratioMedian} (target ≤ 1.5)`,
  );
}
