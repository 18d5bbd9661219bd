/**
 * The secret material of a local topology's NATS server (decentralized JWT
 * auth, "operator mode"): an operator, a system account, the `topo` account
 * (JetStream on) and user credentials, all under `<topo dir>/auth/` (dir
 * 0700, files 0600). Made once and reused, so a restarted or adopted
 * nats-server, controller or worker keeps its identity.
 *
 * nats-server reads `nats-server.conf` (operator JWT, system account, a
 * MEMORY resolver preloaded with both account JWTs); clients connect with a
 * `.creds` file (user JWT + seed). Admin (CLI, controller) may use the whole
 * account; each worker gets its own user with the allow lists of
 * protocol/permissions.ts.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, fromSeed, type KeyPair,
} from '@nats-io/jwt';
import { workerPermissions, type SubjectPermissions } from '../../protocol/permissions.js';

export const AUTH_DIR = 'auth';
const KEYS_FILE = 'keys.json';
export const SERVER_CONFIG_FILE = 'nats-server.conf';
export const ADMIN_CREDS_FILE = 'admin.creds';
export const TOPO_ACCOUNT = 'topo';

interface StoredKeys {
  operator: string;
  system: string;
  account: string;
}

export interface LocalAuth {
  /** `<topo dir>/auth`. */
  dir: string;
  /** The nats-server config file (pass with `-c`). */
  serverConfig: string;
  /** Credentials of the admin identity (CLI, controller). */
  adminCreds: string;
  /** Credentials of worker `workerId` (made on first use). */
  workerCreds(workerId: string): Promise<string>;
  /** Public key of the topo account. */
  accountKey: string;
}

/** Mode 0600 from the start, and whole: written aside, then renamed (a reader never sees half a file). */
function writeSecret(file: string, content: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

const seedText = (kp: KeyPair): string => new TextDecoder().decode(kp.getSeed());

function loadOrMakeKeys(dir: string): { operator: KeyPair; system: KeyPair; account: KeyPair } {
  const file = join(dir, KEYS_FILE);
  if (existsSync(file)) {
    let k: StoredKeys;
    try {
      k = JSON.parse(readFileSync(file, 'utf8')) as StoredKeys;
    } catch (err) {
      throw new Error(`${file} is not readable JSON (${(err as Error).message}); delete ${dir} to make new credentials`, { cause: err });
    }
    const enc = new TextEncoder();
    return { operator: fromSeed(enc.encode(k.operator)), system: fromSeed(enc.encode(k.system)), account: fromSeed(enc.encode(k.account)) };
  }
  const keys = { operator: createOperator(), system: createAccount(), account: createAccount() };
  writeSecret(file, JSON.stringify({ operator: seedText(keys.operator), system: seedText(keys.system), account: seedText(keys.account) }, null, 2) + '\n');
  return keys;
}

/** In nats-server.conf since its system account takes connections (the controller's revocations). */
const CONFIG_MARK = '# topo auth config 2';

/** The three keys of a local topology's auth folder. */
export interface AuthKeys {
  operator: KeyPair;
  system: KeyPair;
  account: KeyPair;
}

/** Users revoked in the topo account: user public key -> unix seconds (JWTs issued up to then no longer work). */
export type Revocations = Record<string, number>;

/** The topo account's JWT (JetStream on, no limits), signed by the operator, with these revocations. */
const UNLIMITED = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };

async function topoAccountJwt(keys: AuthKeys, revocations: Revocations): Promise<string> {
  const unlimited = UNLIMITED;
  const jetstream = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1, max_ack_pending: -1, mem_max_stream_bytes: -1, disk_max_stream_bytes: -1 };
  const claims = { limits: { ...unlimited, ...jetstream }, ...(Object.keys(revocations).length ? { revocations } : {}) };
  return encodeAccount(TOPO_ACCOUNT, keys.account, claims, { signer: keys.operator });
}

/**
 * Writes nats-server.conf (operator JWT, system account, a MEMORY resolver preloaded with both account JWTs)
 * and returns the topo account's JWT: what a running server is sent as a claims update, and what a restarted
 * one reads, so a revocation outlives a server restart.
 */
async function writeServerConfig(dir: string, keys: AuthKeys, revocations: Revocations): Promise<string> {
  const { operator, system, account } = keys;
  const operatorJwt = await encodeOperator('topo-operator', operator, { system_account: system.getPublicKey() });
  // Connections of its own: the controller sends revocations as a system-account user (an account JWT without limits allows none).
  const systemJwt = await encodeAccount('SYS', system, { limits: UNLIMITED }, { signer: operator });
  const accountJwt = await topoAccountJwt(keys, revocations);
  writeSecret(
    join(dir, SERVER_CONFIG_FILE),
    [
      '# Made by topo up: decentralized JWT auth. Secrets (seeds) are in keys.json and *.creds, never here.',
      CONFIG_MARK,
      `operator: ${operatorJwt}`,
      `system_account: ${system.getPublicKey()}`,
      'resolver: MEMORY',
      'resolver_preload: {',
      `  ${system.getPublicKey()}: ${systemJwt}`,
      `  ${account.getPublicKey()}: ${accountJwt}`,
      '}',
      '',
    ].join('\n'),
  );
  return accountJwt;
}

/** The revocations in the topo account's JWT of dir's nats-server.conf (none when it has none or cannot be read). */
function revocationsInConfig(dir: string, accountKey: string): Revocations {
  try {
    const line = readFileSync(join(dir, SERVER_CONFIG_FILE), 'utf8').split('\n').find((l) => l.trim().startsWith(`${accountKey}:`));
    const payload = line?.split(':')[1]?.trim().split('.')[1];
    if (!payload) return {};
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { nats?: { revocations?: Revocations } };
    return { ...(claims.nats?.revocations ?? {}) };
  } catch {
    return {};
  }
}

/**
 * Revokes users of the topo account of a local topology (its auth folder `dir`): the account JWT is
 * re-signed with them in its revocation list and written to nats-server.conf; `publish` sends it to
 * the running server (a claims update from a system-account user), which closes their connections
 * and refuses them from then on. Keeps the newest `max` revocations.
 */
export class AccountRevocations {
  private readonly revoked: Revocations;

  private constructor(private readonly dir: string, private readonly keys: AuthKeys, private readonly max: number) {
    this.revoked = revocationsInConfig(dir, keys.account.getPublicKey());
  }

  /** For the auth folder `dir`, when it holds the keys (`topo up` made it), else undefined. */
  static of(dir: string, max = 10_000): AccountRevocations | undefined {
    if (!existsSync(join(dir, KEYS_FILE))) return undefined;
    return new AccountRevocations(dir, loadOrMakeKeys(dir), max);
  }

  get accountKey(): string {
    return this.keys.account.getPublicKey();
  }

  /** Subject of the claims update the server listens to for the topo account. */
  get updateSubject(): string {
    return `$SYS.REQ.ACCOUNT.${this.accountKey}.CLAIMS.UPDATE`;
  }

  /** A system-account user, in memory: what sends the claims update. */
  async systemUser(): Promise<UserCredential> {
    const user = createUser();
    const jwt = await encodeUser('topo-controller revocations', user, this.keys.system);
    return { jwt, seed: seedText(user) };
  }

  /** How many users are revoked. */
  get size(): number {
    return Object.keys(this.revoked).length;
  }

  has(userKey: string): boolean {
    return userKey in this.revoked;
  }

  /** Adds `userKeys` and returns the new account JWT (already in nats-server.conf) for the caller to send. */
  async revoke(userKeys: string[]): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    for (const k of userKeys) this.revoked[k] = now;
    const keys = Object.keys(this.revoked);
    if (keys.length > this.max) {
      keys.sort((a, b) => this.revoked[a]! - this.revoked[b]!);
      for (const k of keys.slice(0, keys.length - this.max)) delete this.revoked[k];
    }
    return writeServerConfig(this.dir, this.keys, this.revoked);
  }
}

/** A user of the topo account with these allow lists (none: the whole account), as a creds file's content. */
export async function userCreds(account: KeyPair, name: string, perms?: SubjectPermissions, opts: { expiresAt?: number } = {}): Promise<Uint8Array> {
  const user = createUser();
  const claims = perms
    ? { pub: { allow: perms.publish }, sub: { allow: perms.subscribe }, resp: { max: 1, ttl: 0 } }
    : {};
  const jwt = await encodeUser(name, user, account, claims, opts.expiresAt ? { exp: Math.floor(opts.expiresAt / 1000) } : {});
  return fmtCreds(jwt, user);
}

/** A user JWT and its seed, as text: what a `.creds` file holds, for a connection opened in memory. */
export interface UserCredential {
  jwt: string;
  seed: string;
}

/** A new user of the topo account with these allow lists, in memory (nothing written). */
export async function mintUser(account: KeyPair, name: string, perms: SubjectPermissions): Promise<UserCredential & { publicKey: string }> {
  const user = createUser();
  const jwt = await encodeUser(name, user, account, { pub: { allow: perms.publish }, sub: { allow: perms.subscribe }, resp: { max: 1, ttl: 0 } });
  return { jwt, seed: seedText(user), publicKey: user.getPublicKey() };
}

/**
 * The key that signs users of the topo account, when `dir` holds the auth material `topo up` made
 * (keys.json), else undefined: how a controller whose admin creds live there mints instance credentials.
 */
export function accountSigner(dir: string): KeyPair | undefined {
  if (!existsSync(join(dir, KEYS_FILE))) return undefined;
  return loadOrMakeKeys(dir).account;
}

/** Where a topology keeps its auth material: `<topo dir>/auth`. */
export const authDirOf = (topoDir: string): string => join(topoDir, AUTH_DIR);

/** The auth material in `dir` when it was made (by `topo up`), else undefined; creates nothing new but missing worker creds. */
export async function openLocalAuth(dir: string): Promise<LocalAuth | undefined> {
  return existsSync(join(dir, KEYS_FILE)) && existsSync(join(dir, SERVER_CONFIG_FILE)) ? ensureLocalAuth(dir) : undefined;
}

/** Makes (once) and returns the auth material kept in `dir` (see authDirOf). */
export async function ensureLocalAuth(dir: string): Promise<LocalAuth> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const { operator, system, account } = loadOrMakeKeys(dir);
  const serverConfig = join(dir, SERVER_CONFIG_FILE);
  // Made anew when missing or made by an older topo (its system account took no connections), keeping its revocations.
  if (!existsSync(serverConfig) || !readFileSync(serverConfig, 'utf8').includes(CONFIG_MARK)) {
    await writeServerConfig(dir, { operator, system, account }, revocationsInConfig(dir, account.getPublicKey()));
  }
  const adminCreds = join(dir, ADMIN_CREDS_FILE);
  if (!existsSync(adminCreds)) writeSecret(adminCreds, await userCreds(account, 'topo-admin'));
  return {
    dir,
    serverConfig,
    adminCreds,
    accountKey: account.getPublicKey(),
    async workerCreds(workerId) {
      const file = join(dir, `worker-${workerId}.creds`);
      if (!existsSync(file)) writeSecret(file, await userCreds(account, `topo-worker ${workerId}`, workerPermissions(workerId)));
      return file;
    },
  };
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(text: string): Uint8Array {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error('not base32');
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

/**
 * The user JWT and the raw 32-byte ed25519 seed of a `.creds` file's text,
 * for code that speaks the NATS protocol by hand (the worker's watchdog
 * thread signs the server's nonce with node:crypto).
 */
export function credsParts(text: string): { jwt: string; seed: Uint8Array } {
  const blocks = [...text.matchAll(/-{3,}[^\n]*-{3,}\n\s*([^\s-][^\n]*)\n\s*-{3,}/g)].map((m) => (m[1] ?? '').trim());
  const jwt = blocks[0];
  const seedText = blocks[1];
  if (!jwt || !seedText?.startsWith('SU')) throw new Error('not a NATS user .creds file (a JWT block, then a user seed block)');
  // A seed is base32 of: 2 prefix bytes, the 32-byte ed25519 seed, a 2-byte CRC.
  return { jwt, seed: base32Decode(seedText).slice(2, 34) };
}
