/**
 * Per-instance NATS users (PROTOCOL.md, "Identities and permissions"): each
 * instance an assign or adopt starts gets a user of its own, signed with the
 * topo account's key, whose allow lists name only its streams
 * (protocol/permissions.ts instancePermissions). Minted when the request is
 * sent and carried in it only: never written to KV, the journal or disk.
 *
 * An instance that is gone (swapped out, rolled back, scaled away, killed,
 * lost with its worker) has its user revoked: a sweep compares the users
 * minted with the instances that still exist and revokes the others in the
 * account JWT (runtime/transport/auth.ts AccountRevocations), which the
 * server gets as a claims update and a restarted server reads from its config.
 *
 * The users' public keys (never their seeds) are kept in KV, so a restarted
 * controller still revokes the users its predecessor minted once their
 * instances end.
 */
import type { KeyPair } from '@nats-io/jwt';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { KV } from '@nats-io/kv';
import { checkInstanceUserEntry, kvKeys, type Assignment, type InstanceUserRecord, type UserCredential } from '../../protocol/index.js';
import { instancePermissions } from '../../protocol/permissions.js';
import { mintUser, type AccountRevocations } from '../transport/auth.js';

/** A user is revoked once its instance has been missing this long from what the controller knows. */
export const REVOKE_AFTER_MS = 5_000;
/** ... and not before this long after it was minted (a request on its way is covered by inFlight and swapping besides). */
export const MINT_GRACE_MS = 5_000;

interface Issued {
  userKey: string;
  computation: string;
  mintedAt: number;
  /** When the sweep first found its instance missing. */
  missingSince?: number;
}

/** Ledger entries read at most at start (as many revocations are kept: runtime/transport/auth.ts). */
const MAX_LEDGER = 10_000;

/**
 * The users minted and not yet revoked, in KV topo_state `user.<instanceId>` (InstanceUserRecord:
 * public key, computation, when minted). KV, not a file: the ledger belongs to the server whose
 * account JWT revokes them. An entry that does not match its schema is skipped with an error in the log.
 */
export class IssuedLedger {
  constructor(private readonly kv: KV, private readonly log: Logger) {}

  async load(): Promise<Map<string, Issued>> {
    const out = new Map<string, Issued>();
    const keys: string[] = [];
    for await (const k of await this.kv.keys(kvKeys.instanceUserList)) if (keys.length < MAX_LEDGER) keys.push(k);
    for (const key of keys) {
      const e = await this.kv.get(key).catch(() => null);
      if (!e || e.operation !== 'PUT') continue;
      let value: unknown;
      try {
        value = e.json();
      } catch {
        value = undefined;
      }
      const r = checkInstanceUserEntry(key, value);
      if (r.ok) out.set(r.instanceId, { userKey: r.record.userKey, computation: r.record.computation, mintedAt: r.record.mintedAt });
      else this.log.error({ key: key.slice(0, 200) }, `KV ${key.slice(0, 200)} is not a valid instance user entry (${r.problem.slice(0, 300)}); skipping it`);
    }
    return out;
  }

  async put(instanceId: string, i: Issued): Promise<void> {
    const record: InstanceUserRecord = { instanceId, userKey: i.userKey, computation: i.computation, mintedAt: i.mintedAt };
    await this.kv.put(kvKeys.instanceUser(instanceId), JSON.stringify(record)).catch((err: Error) =>
      this.log.error({ instanceId }, `could not record the NATS user of ${instanceId} in KV (a restarted controller will not revoke it): ${err.message}`));
  }

  async remove(instanceIds: string[]): Promise<void> {
    await Promise.all(instanceIds.map((id) => this.kv.purge(kvKeys.instanceUser(id)).catch(() => undefined)));
  }
}

export class InstanceCredentials {
  private issued = new Map<string, Issued>();
  private sweeping = false;
  private system: Promise<NatsConnection> | undefined;
  /** Users revoked by this controller. */
  revokedCount = 0;

  constructor(
    private readonly account: KeyPair,
    private readonly revocations: AccountRevocations | undefined,
    /** Opens a connection as this system-account user (same server as the controller). */
    private readonly connectSystem: (user: UserCredential) => Promise<NatsConnection>,
    private readonly log: Logger,
    private readonly ledger?: IssuedLedger,
    private readonly mintGraceMs = MINT_GRACE_MS,
  ) {}

  /** Reads the users earlier controllers minted and did not revoke (before the first mint or sweep). */
  async load(): Promise<void> {
    if (!this.ledger) return;
    const earlier = await this.ledger.load();
    for (const [id, i] of earlier) if (!this.issued.has(id)) this.issued.set(id, i);
    if (earlier.size) this.log.info({ users: earlier.size }, `${earlier.size} instance user(s) minted by an earlier controller: revoked once their instances are gone`);
  }

  async mint(a: Assignment): Promise<UserCredential> {
    const m = a.metadata;
    const { jwt, seed, publicKey } = await mintUser(this.account, `topo-instance ${a.instanceId}`, instancePermissions({
      instanceId: a.instanceId, computation: a.computation, index: a.index,
      istreams: m.istreams.map((i) => i.stream), ostreams: m.ostreams,
    }));
    // A second assign of the same instance (a retry) gets a new user; the one before is revoked with it.
    const before = this.issued.get(a.instanceId);
    if (before) void this.revoke([before.userKey], [a.instanceId]);
    const issued = { userKey: publicKey, computation: a.computation, mintedAt: Date.now() };
    this.issued.set(a.instanceId, issued);
    await this.ledger?.put(a.instanceId, issued);
    return { jwt, seed };
  }

  /** The user public key minted for `instanceId`, if this controller minted one. */
  userOf(instanceId: string): string | undefined {
    return this.issued.get(instanceId)?.userKey;
  }

  /**
   * Revokes the users of instances missing from `live` for REVOKE_AFTER_MS, but none of a computation in `busy`
   * (a swap, scale, fusion or move under way: its new instances are in no placement yet). One sweep at a time.
   */
  async sweep(live: ReadonlySet<string>, busy: ReadonlySet<string> = new Set(), now = Date.now()): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const gone: string[] = [];
      for (const [id, i] of this.issued) {
        if (live.has(id) || busy.has(i.computation)) {
          i.missingSince = undefined;
          continue;
        }
        i.missingSince ??= now;
        if (now - i.missingSince >= REVOKE_AFTER_MS && now - i.mintedAt >= this.mintGraceMs) gone.push(id);
      }
      if (gone.length === 0) return;
      const keys = gone.map((id) => this.issued.get(id)!.userKey);
      if (await this.revoke(keys, gone)) {
        for (const id of gone) this.issued.delete(id);
        await this.ledger?.remove(gone);
      } else {
        // Tried again after another REVOKE_AFTER_MS (not every tick: the failure is logged each time).
        for (const id of gone) this.issued.get(id)!.missingSince = now;
      }
    } finally {
      this.sweeping = false;
    }
  }

  /** True once revoked (or when there is nothing to revoke them in). */
  private async revoke(userKeys: string[], instanceIds: string[]): Promise<boolean> {
    if (!this.revocations) return true;
    try {
      const jwt = await this.revocations.revoke(userKeys);
      const nc = await (this.system ??= this.revocations.systemUser().then((u) => this.connectSystem(u)));
      nc.publish(this.revocations.updateSubject, jwt);
      await nc.flush();
      this.revokedCount += userKeys.length;
      this.log.info({ instances: instanceIds.slice(0, 20), users: userKeys.length, revoked: this.revocations.size },
        `revoked the NATS user(s) of ${instanceIds.length} instance(s) that ended`);
      return true;
    } catch (err) {
      this.system = undefined;
      this.log.error({ err: (err as Error).message, instances: instanceIds.slice(0, 20) }, `could not revoke the NATS users of ${instanceIds.length} ended instance(s): ${(err as Error).message}`);
      return false;
    }
  }

  async close(): Promise<void> {
    const nc = await this.system?.catch(() => undefined);
    await nc?.close().catch(() => undefined);
  }
}
