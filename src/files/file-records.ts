// Files' metadata in Redis, per tenant (a hash per file, an index by creation time), and the pool-wide expiry index
// the sweeper reads to delete the bytes of expired files. Every key has a TTL; the bytes never enter Redis.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import type { RedisKeys } from '../queue/keys.ts';
import { fileFields, storageKeyOf, toFileRecord, type FileRecord } from './file-object.ts';
import type { FileStorage } from './storage.ts';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function newFileId(): string {
  const bytes = randomBytes(24);
  let id = 'file-';
  // 256 % 62 leaves a slight bias: harmless for an identifier.
  for (const byte of bytes) id += BASE62[byte % 62];
  return id;
}

/** An index entry older than this belongs to a file that has expired for sure (files live 30 days at most). */
const INDEX_HORIZON_MS = 32 * 86_400_000;

interface FileCommands {
  spillwayFileDelete(file: string, index: string, fileId: string): Promise<number>;
}

let deleteScript: string | undefined;
const defined = new WeakSet<Redis | Cluster>();

function commands(redis: Redis | Cluster): FileCommands {
  if (!defined.has(redis)) {
    // Read on first use, not at import: `npm run build` copies the .lua file next to the compiled module.
    deleteScript ??= readFileSync(new URL('./file-delete.lua', import.meta.url), 'utf8');
    redis.defineCommand('spillwayFileDelete', { numberOfKeys: 2, lua: deleteScript });
    defined.add(redis);
  }
  return redis as unknown as FileCommands;
}

export type DeleteOutcome = 'deleted' | 'missing' | 'in_use';

export class FileRecords {
  private readonly redis: Redis | Cluster;
  private readonly keys: RedisKeys;

  constructor(redis: Redis | Cluster, keys: RedisKeys) {
    this.redis = redis;
    this.keys = keys;
  }

  /**
   * Records a file whose bytes are stored. The expiry entry goes first: a process dying between the two steps leaves
   * bytes the sweeper deletes, never bytes nobody knows about.
   */
  async create(record: FileRecord): Promise<void> {
    const tenant = this.keys.tenantKeys(record.tenant);
    await this.markExpiry(record.tenant, record.id, record.expiresAt);
    await this.redis
      .multi()
      .hset(tenant.file(record.id), ...fileFields(record))
      .pexpireat(tenant.file(record.id), record.expiresAt)
      .zadd(tenant.files, record.createdAt, record.id)
      .zremrangebyscore(tenant.files, '-inf', `(${record.createdAt - INDEX_HORIZON_MS}`)
      .pexpire(tenant.files, INDEX_HORIZON_MS)
      .exec();
  }

  async get(tenantId: string, fileId: string): Promise<FileRecord | undefined> {
    return toFileRecord(await this.redis.hgetall(this.keys.tenantKeys(tenantId).file(fileId)));
  }

  /**
   * The tenant's files after the cursor `after` (a file id of an earlier page), newest first (`desc`, OpenAI's default)
   * or oldest first. Entries whose metadata expired are skipped and dropped from the index.
   */
  async list(tenantId: string, options: { limit: number; after?: string; order: 'asc' | 'desc'; purpose?: string }): Promise<{ records: FileRecord[]; hasMore: boolean }> {
    const tenant = this.keys.tenantKeys(tenantId);
    let start = 0;
    if (options.after !== undefined) {
      const rank = options.order === 'desc' ? await this.redis.zrevrank(tenant.files, options.after) : await this.redis.zrank(tenant.files, options.after);
      if (rank === null) return { records: [], hasMore: false };
      start = rank + 1;
    }
    const records: FileRecord[] = [];
    for (;;) {
      const page = Math.max(options.limit + 1, 100);
      const ids = options.order === 'desc' ? await this.redis.zrevrange(tenant.files, start, start + page - 1) : await this.redis.zrange(tenant.files, start, start + page - 1);
      const pipeline = this.redis.pipeline();
      for (const id of ids) pipeline.hgetall(tenant.file(id));
      const replies = ids.length === 0 ? [] : ((await pipeline.exec()) ?? []);
      const gone: string[] = [];
      for (const [i, id] of ids.entries()) {
        const record = toFileRecord(replies[i]?.[1]);
        if (record === undefined) gone.push(id);
        if (record === undefined || (options.purpose !== undefined && record.purpose !== options.purpose)) continue;
        if (records.length === options.limit) return { records, hasMore: true };
        records.push(record);
      }
      if (gone.length > 0) await this.redis.zrem(tenant.files, ...gone);
      if (ids.length < page) return { records, hasMore: false };
      start += ids.length - gone.length;
    }
  }

  /** Deletes the metadata (refused while a batch reads the file), then the bytes; bytes a failure leaves are swept. */
  async delete(tenantId: string, fileId: string, storage: FileStorage): Promise<DeleteOutcome> {
    const tenant = this.keys.tenantKeys(tenantId);
    const code = await commands(this.redis).spillwayFileDelete(tenant.file(fileId), tenant.files, fileId);
    if (code === 0) return 'missing';
    if (code === -1) return 'in_use';
    // Due now in the expiry index first: if deleting the bytes fails, the sweeper deletes them later.
    await this.markExpiry(tenantId, fileId, 0);
    await storage.delete(storageKeyOf(fileId));
    await this.redis.zrem(this.keys.fileExpiry, expiryMember(tenantId, fileId));
    return 'deleted';
  }

  /**
   * Moves a file's entry in the expiry index later (never earlier). The metadata's own expiry is moved by whoever pins
   * the file, in the tenant's slot (src/batches/batch-create.lua): a HSET here could bring back an expired key.
   */
  async extendExpiry(tenantId: string, fileId: string, untilMs: number): Promise<void> {
    await this.redis.zadd(this.keys.fileExpiry, 'GT', untilMs, expiryMember(tenantId, fileId));
    // The index must outlive the moved entry as it outlives every other, or the bytes would never be swept.
    await this.keepIndexUntil(untilMs);
  }

  /**
   * Deletes the bytes of up to `limit` files whose expiry has passed (their metadata is gone or going: Redis expires
   * it). Returns how many were swept. Safe to run in several workers at once: deleting twice is harmless.
   */
  async sweep(storage: FileStorage, now = Date.now(), limit = 100): Promise<number> {
    const due = await this.redis.zrangebyscore(this.keys.fileExpiry, '-inf', now, 'LIMIT', 0, limit);
    let swept = 0;
    for (const member of due) {
      const [tenantId = '', fileId = ''] = member.split('\t');
      // Extended meanwhile (a batch pinned it): its entry has a later score now.
      const score = await this.redis.zscore(this.keys.fileExpiry, member);
      if (score === null || Number(score) > now) continue;
      await this.redis.unlink(this.keys.tenantKeys(tenantId).file(fileId));
      await storage.delete(storageKeyOf(fileId));
      await this.redis.zrem(this.keys.fileExpiry, member);
      swept++;
    }
    return swept;
  }

  private async markExpiry(tenantId: string, fileId: string, atMs: number): Promise<void> {
    const member = expiryMember(tenantId, fileId);
    await this.redis.zadd(this.keys.fileExpiry, atMs, member);
    await this.keepIndexUntil(atMs);
  }

  /** The index outlives its latest entry by a day, renewed by every add or move: it never grows without bound. */
  private async keepIndexUntil(atMs: number): Promise<void> {
    const ttl = await this.redis.pttl(this.keys.fileExpiry);
    const wanted = Math.max(atMs - Date.now(), 0) + 86_400_000;
    if (ttl < wanted) await this.redis.pexpire(this.keys.fileExpiry, wanted);
  }
}

function expiryMember(tenantId: string, fileId: string): string {
  return `${tenantId}\t${fileId}`;
}
