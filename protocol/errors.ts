/**
 * One error class per failure mode. Each has a stable `code` that travels in
 * error replies over NATS; `fromWire` rebuilds the right class on the other
 * side, since `instanceof` does not survive a process boundary.
 */
export interface WireError {
  code: string;
  message: string;
  /** Optional structured detail, e.g. the zod issues of invalid metadata. */
  detail?: unknown;
}

export class TopoError extends Error {
  readonly code: string = 'TOPO_ERROR';
  readonly detail: unknown;
  constructor(message: string, options?: { cause?: unknown; detail?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.detail = options?.detail;
  }
  toWire(): WireError {
    return this.detail === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Computation metadata failed validation; detail lists each bad field. */
export class InvalidMetadataError extends TopoError { override readonly code = 'INVALID_METADATA'; }
/** Bytes on a stream subject are not a valid v1 batch. */
export class MalformedBatchError extends TopoError { override readonly code = 'MALFORMED_BATCH'; }
/** A computation module could not be bundled or imported, or has no computation export. */
export class ModuleLoadError extends TopoError { override readonly code = 'MODULE_LOAD_FAILED'; }
/** A computation's init threw or timed out. */
export class InitFailedError extends TopoError { override readonly code = 'INIT_FAILED'; }
/** A named computation, worker or artifact does not exist. */
export class NotFoundError extends TopoError { override readonly code = 'NOT_FOUND'; }
/** The request conflicts with current state (e.g. deploying a name that is running). */
export class ConflictError extends TopoError { override readonly code = 'CONFLICT'; }
/** No live worker can take the work. */
export class NoWorkersError extends TopoError { override readonly code = 'NO_WORKERS'; }
/** A request to the controller or a worker got no answer in time. */
export class TimeoutError extends TopoError { override readonly code = 'TIMEOUT'; }
/** A swap was rolled back: the new version failed its health gate. detail: the SwapReply. */
export class SwapRolledBackError extends TopoError { override readonly code = 'SWAP_ROLLED_BACK'; }
/** The request itself is malformed (bad JSON, missing field). */
export class BadRequestError extends TopoError { override readonly code = 'BAD_REQUEST'; }

const registry: Record<string, new (message: string, options?: { cause?: unknown; detail?: unknown }) => TopoError> = {
  INVALID_METADATA: InvalidMetadataError,
  MALFORMED_BATCH: MalformedBatchError,
  MODULE_LOAD_FAILED: ModuleLoadError,
  INIT_FAILED: InitFailedError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  NO_WORKERS: NoWorkersError,
  TIMEOUT: TimeoutError,
  BAD_REQUEST: BadRequestError,
  SWAP_ROLLED_BACK: SwapRolledBackError,
};

/** All error codes of protocol v1 (PROTOCOL.md lists the same set; a test checks it). */
export const ERROR_CODES = ['TOPO_ERROR', ...Object.keys(registry)] as const;

export function toWireError(err: unknown): WireError {
  if (err instanceof TopoError) return err.toWire();
  if (err instanceof Error) return { code: 'TOPO_ERROR', message: err.message };
  return { code: 'TOPO_ERROR', message: String(err) };
}

export function fromWireError(w: WireError): TopoError {
  const Ctor = registry[w.code] ?? TopoError;
  return new Ctor(w.message, { detail: w.detail });
}
