/**
 * The embedded backend's stand-ins are closed (issue 11, items 2 and 3): every socket it listens on
 * is a loopback one (read from the kernel's socket table, no traffic sent anywhere), and only the
 * data directory's own key pair reads or writes DynamoDB Local and s3rver.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateTableCommand, DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceConfig } from '#platform/config';
import {
  dynamoDbLocalDir,
  freePort,
  LOCAL_REGION,
  type LocalCredentials,
  loadOrCreateCredentials,
  startStandIns,
} from '../../local/stand-ins.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface ListeningSocket {
  inode: string;
  address: Buffer;
  port: number;
  family: 4 | 6;
}

/** /proc/net/tcp{,6} addresses are hex, in 32-bit words of host (little-endian) byte order. */
function parseProcAddress(hex: string): Buffer {
  const bytes: number[] = [];
  for (let word = 0; word < hex.length; word += 8) {
    const w = hex.slice(word, word + 8);
    for (let b = 6; b >= 0; b -= 2) bytes.push(Number.parseInt(w.slice(b, b + 2), 16));
  }
  return Buffer.from(bytes);
}

function listeningSockets(): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  for (const [file, family] of [
    ['/proc/net/tcp', 4],
    ['/proc/net/tcp6', 6],
  ] as const) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '0A') continue; // 0A: TCP_LISTEN
      const [addressHex = '', portHex = ''] = (fields[1] ?? '').split(':');
      sockets.push({
        inode: fields[9] ?? '',
        address: parseProcAddress(addressHex),
        port: Number.parseInt(portHex, 16),
        family,
      });
    }
  }
  return sockets;
}

/** 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104 (how Java shows a v4 loopback bind on a v6 socket). */
function isLoopback(socket: ListeningSocket): boolean {
  const a = socket.address;
  if (socket.family === 4) return a[0] === 127;
  const zeros = (from: number, to: number) => a.subarray(from, to).every((b) => b === 0);
  if (zeros(0, 15) && a[15] === 1) return true;
  return zeros(0, 10) && a[10] === 0xff && a[11] === 0xff && a[12] === 127;
}

function formatAddress(socket: ListeningSocket): string {
  return socket.family === 4
    ? `${[...socket.address].join('.')}:${socket.port}`
    : `[${socket.address.toString('hex').replace(/(.{4})(?!$)/g, '$1:')}]:${socket.port}`;
}

/** The socket inodes a process holds open, from its fd table. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

function listeningSocketsOf(pid: number): ListeningSocket[] {
  const inodes = socketInodes(pid);
  return listeningSockets().filter((s) => inodes.has(s.inode));
}

async function s3Status(send: () => Promise<unknown>): Promise<{ status: number; code: string | undefined }> {
  try {
    await send();
    return { status: 200, code: undefined };
  } catch (error) {
    if (!(error instanceof S3ServiceException)) throw error;
    return { status: error.$metadata.httpStatusCode ?? 0, code: error.name };
  }
}

describe('embedded stand-ins: loopback only, own key only', () => {
  let t: TestBackend;
  let credentials: LocalCredentials;
  const clients: Array<{ destroy(): void }> = [];
  const s3With = (c: LocalCredentials) => {
    const client = new S3Client({
      endpoint: t.backend.endpoints.s3,
      region: LOCAL_REGION,
      credentials: c,
      forcePathStyle: true,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    clients.push(client);
    return client;
  };
  const dynamoWith = (c: LocalCredentials) => {
    const client = new DynamoDBClient({
      endpoint: t.backend.endpoints.dynamodb,
      region: LOCAL_REGION,
      credentials: c,
      maxAttempts: 1,
    });
    clients.push(client);
    return client;
  };

  const awsSettings = () => Object.entries(process.env).filter(([key]) => key.startsWith('AWS_'));
  let awsBefore: Array<[string, string | undefined]>;

  beforeAll(async () => {
    awsBefore = awsSettings();
    t = await startTestBackend();
    credentials = loadOrCreateCredentials(t.backend.stateDir).credentials;
  });
  afterAll(async () => {
    for (const client of clients) client.destroy();
    await t?.stop();
  });

  it('listens only on loopback: the gateway, DynamoDB Local and s3rver', () => {
    const owners = {
      gateway: process.pid,
      dynamodb: t.backend.pids.dynamodb,
      s3: t.backend.pids.s3,
    };
    const found: Record<string, ListeningSocket[]> = {};
    for (const [name, pid] of Object.entries(owners)) found[name] = listeningSocketsOf(pid);
    // Not vacuous: each one's own port is among its listening sockets.
    expect(found.gateway?.map((s) => s.port)).toContain(t.backend.port);
    expect(found.dynamodb?.map((s) => s.port)).toContain(Number(new URL(t.backend.endpoints.dynamodb).port));
    expect(found.s3?.map((s) => s.port)).toContain(Number(new URL(t.backend.endpoints.s3).port));
    const exposed = Object.entries(found).flatMap(([name, sockets]) =>
      sockets.filter((s) => !isLoopback(s)).map((s) => `${name}: ${formatAddress(s)}`),
    );
    expect(exposed).toEqual([]);
  });

  it('uses a random key pair from a 0600 file in the state directory, not the fixed S3RVER key', () => {
    const file = t.backend.credentialsFile;
    expect(file).toBe(join(t.backend.stateDir, 'aws-credentials'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(credentials.accessKeyId).toMatch(/^HANGAR[A-Z2-7]{14}$/);
    expect(credentials.accessKeyId).not.toBe('S3RVER');
    expect(credentials.secretAccessKey).not.toBe('S3RVER');
    expect(credentials.secretAccessKey.length).toBeGreaterThanOrEqual(40);
  });

  it('the service signs with that key pair, handed to its clients, not through process.env', async () => {
    // Assess: the clients the service was composed with resolve to the file's key pair...
    for (const client of [t.backend.clients.dynamo, t.backend.clients.s3]) {
      const used = await client.config.credentials();
      expect({ accessKeyId: used.accessKeyId, secretAccessKey: used.secretAccessKey }).toEqual(credentials);
    }
    // ...and the runner left the process's AWS_* settings as they were before it started.
    expect(awsSettings()).toEqual(awsBefore);
  });

  it('DynamoDB Local shows the table to the key pair only: another key sees an empty database', async () => {
    const table = serviceConfig().tableName;
    const own = await dynamoWith(credentials).send(new ListTablesCommand({}));
    expect(own.TableNames).toContain(table);
    for (const other of [
      { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      { accessKeyId: 'HANGARAAAAAAAAAAAAAA', secretAccessKey: credentials.secretAccessKey },
    ]) {
      const seen = await dynamoWith(other).send(new ListTablesCommand({}));
      expect(seen.TableNames ?? []).toEqual([]);
    }
  });

  it('s3rver refuses writes and reads signed with a wrong key, a wrong secret or the fixed S3RVER key', async () => {
    const { uploads, images } = serviceConfig().buckets;
    const ok = s3With(credentials);
    await ok.send(new PutObjectCommand({ Bucket: images, Key: 'probe/own', Body: 'own' }));

    const wrong: Array<[LocalCredentials, string]> = [
      [{ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, 'InvalidAccessKeyId'],
      [
        { accessKeyId: 'HANGARAAAAAAAAAAAAAA', secretAccessKey: credentials.secretAccessKey },
        'InvalidAccessKeyId',
      ],
      [
        { accessKeyId: credentials.accessKeyId, secretAccessKey: `${credentials.secretAccessKey}x` },
        'SignatureDoesNotMatch',
      ],
    ];
    for (const [c, code] of wrong) {
      const client = s3With(c);
      const put = await s3Status(() =>
        client.send(
          new PutObjectCommand({
            Bucket: uploads,
            Key: 'new/forged.raw',
            Body: 'forged',
            Metadata: { owner: 'projA', visibility: 'public', 'disk-format': 'raw' },
          }),
        ),
      );
      expect(put, `put with ${c.accessKeyId}`).toEqual({ status: 403, code });
      const overwrite = await s3Status(() =>
        client.send(new PutObjectCommand({ Bucket: images, Key: 'probe/own', Body: 'forged' })),
      );
      expect(overwrite).toEqual({ status: 403, code });
      const get = await s3Status(() =>
        client.send(new GetObjectCommand({ Bucket: images, Key: 'probe/own' })),
      );
      expect(get.status).toBe(403);
      const list = await s3Status(() => client.send(new ListObjectsV2Command({ Bucket: images })));
      expect(list.status).toBe(403);
    }
    // Nothing was written: no forged upload, and the blob is the backend's own.
    expect(
      (await s3Status(() => ok.send(new HeadObjectCommand({ Bucket: uploads, Key: 'new/forged.raw' }))))
        .status,
    ).toBe(404);
    const own = await ok.send(new GetObjectCommand({ Bucket: images, Key: 'probe/own' }));
    expect(await own.Body?.transformToString()).toBe('own');
  });

  it('s3rver refuses anonymous requests, and presigned URLs that were altered', async () => {
    const { uploads, images } = serviceConfig().buckets;
    const base = t.backend.endpoints.s3;
    const anonymousPut = await fetch(`${base}/${uploads}/new/anonymous.raw`, {
      method: 'PUT',
      body: 'anonymous',
      headers: { 'x-amz-meta-owner': 'projA' },
    });
    expect(anonymousPut.status).toBe(403);
    expect(await anonymousPut.text()).toContain('AccessDenied');
    expect((await fetch(`${base}/${images}/probe/own`)).status).toBe(403);
    expect((await fetch(`${base}/${images}?list-type=2`)).status).toBe(403);
    expect((await fetch(`${base}/`)).status).toBe(403);

    const ok = s3With(credentials);
    const url = await getSignedUrl(ok, new GetObjectCommand({ Bucket: images, Key: 'probe/own' }), {
      expiresIn: 60,
    });
    const good = await fetch(url);
    expect(good.status).toBe(200);
    expect(await good.text()).toBe('own');
    // The same signature for another key, or with the signature changed, is refused.
    expect((await fetch(url.replace('/probe/own', '/probe/other'))).status).toBe(403);
    const tampered = url.replace(
      /X-Amz-Signature=([0-9a-f])/,
      (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`,
    );
    expect(tampered).not.toBe(url);
    expect((await fetch(tampered)).status).toBe(403);
    // A presigned PUT made with a wrong secret writes nothing.
    const forger = s3With({ accessKeyId: credentials.accessKeyId, secretAccessKey: 'not-the-secret' });
    const forged = await getSignedUrl(
      forger,
      new PutObjectCommand({ Bucket: uploads, Key: 'new/presigned.raw' }),
      {
        expiresIn: 60,
      },
    );
    expect((await fetch(forged, { method: 'PUT', body: 'forged' })).status).toBe(403);
    expect(
      (await s3Status(() => ok.send(new HeadObjectCommand({ Bucket: uploads, Key: 'new/presigned.raw' }))))
        .status,
    ).toBe(404);
  });
});

describe('embedded stand-ins: disk data directories', () => {
  let dir: string;
  let legacy: ChildProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hangar-standins-'));
  });
  afterAll(() => {
    legacy?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves a -sharedDb database to the data directory key once, and keeps the key across restarts', async () => {
    // A data directory as earlier versions left it: DynamoDB Local with -sharedDb (run here
    // through the loopback launcher, which passes DynamoDB Local's flags through).
    const dbDir = join(dir, 'dynamodb');
    const emulator = dynamoDbLocalDir();
    const port = await freePort();
    mkdirSync(dbDir, { recursive: true });
    legacy = spawn(
      'java',
      [
        '-XX:TieredStopAtLevel=1',
        '-XX:+UseSerialGC',
        `-Djava.library.path=${join(emulator, 'DynamoDBLocal_lib')}`,
        '-cp',
        `${join(emulator, 'DynamoDBLocal.jar')}${delimiter}${join(emulator, 'DynamoDBLocal_lib', '*')}`,
        join(ROOT, 'local', 'dynamodb', 'LoopbackDynamoDbLocal.java'),
        '-sharedDb',
        '-disableTelemetry',
        '-port',
        String(port),
        '-dbPath',
        dbDir,
      ],
      // DynamoDB Local writes a metadata file into its working directory.
      { cwd: dir, stdio: 'ignore' },
    );
    const old = new DynamoDBClient({
      endpoint: `http://127.0.0.1:${port}`,
      region: LOCAL_REGION,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      maxAttempts: 1,
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await old.send(
          new CreateTableCommand({
            TableName: 'legacy',
            KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
            AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
            BillingMode: 'PAY_PER_REQUEST',
          }),
        );
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    old.destroy();
    const exited = new Promise((resolve) => legacy?.once('exit', resolve));
    legacy.kill('SIGTERM');
    await exited;
    legacy = undefined;
    expect(existsSync(join(dbDir, 'shared-local-instance.db'))).toBe(true);

    const keys: string[] = [];
    for (let run = 0; run < 2; run++) {
      const standIns = await startStandIns({ directory: dir, storage: 'disk' });
      try {
        keys.push(standIns.credentials.accessKeyId);
        const client = new DynamoDBClient({
          endpoint: standIns.dynamodb.endpoint,
          region: LOCAL_REGION,
          credentials: standIns.credentials,
          maxAttempts: 1,
        });
        try {
          expect((await client.send(new ListTablesCommand({}))).TableNames).toContain('legacy');
        } finally {
          client.destroy();
        }
      } finally {
        await standIns.stop();
      }
    }
    expect(keys[1]).toBe(keys[0]);
    expect(existsSync(join(dbDir, 'shared-local-instance.db'))).toBe(false);
    expect(existsSync(join(dbDir, `${keys[0]}_${LOCAL_REGION}.db`))).toBe(true);
    // The database's file name holds the key id, and s3/ holds the image bytes: ours alone.
    expect(statSync(dbDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 's3')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'aws-credentials')).mode & 0o777).toBe(0o600);
  });
});
