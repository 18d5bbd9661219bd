/**
 * Credit an instance owes its producers (PROTOCOL.md, flow control): counted
 * per producer and consumer group, returned once CREDIT_EVERY records add up
 * and whenever the instance's queue runs dry (flush), so a producer is never
 * left waiting on a consumer with nothing to do.
 */
export const CREDIT_EVERY = 4096;

export class CreditBook {
  private readonly owed = new Map<string, { producer: string; group: string; n: number }>();

  constructor(
    /** The consumer group the instance credits under, per istream. */
    private readonly groupOf: (stream: string) => string,
    private readonly send: (producer: string, group: string, n: number) => void,
  ) {}

  owe(producer: string, stream: string, n: number): void {
    const group = this.groupOf(stream);
    const k = `${producer} ${group}`;
    let o = this.owed.get(k);
    if (!o) this.owed.set(k, (o = { producer, group, n: 0 }));
    o.n += n;
    if (o.n >= CREDIT_EVERY) {
      this.owed.delete(k);
      this.send(o.producer, o.group, o.n);
    }
  }

  flush(): void {
    if (this.owed.size === 0) return;
    for (const o of this.owed.values()) this.send(o.producer, o.group, o.n);
    this.owed.clear();
  }
}
