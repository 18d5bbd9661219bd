import { describe, expect, it } from 'vitest';
import type { ComputationRecord, HistoryEntry } from '../protocol/control.js';
import { previousVersion } from '../runtime/controller/swap.js';

const entry = (action: HistoryEntry['action'], version: number, fromVersion?: number, result: HistoryEntry['result'] = 'ok'): HistoryEntry => ({
  name: 'c', version, sha: `sha${version}`, action, at: version, result, ...(fromVersion !== undefined ? { fromVersion } : {}),
});
const running = (version: number): ComputationRecord => ({ name: 'c', version } as ComputationRecord);

describe('the version a rollback goes back to', () => {
  it('is the one the current code was swapped from', () => {
    const h = [entry('deploy', 1), entry('swap', 2, 1), entry('swap', 3, 2, 'rolled-back')];
    expect(previousVersion(running(2), h)).toBe(1);
  });

  // Placement changes keep the version and record it as their own fromVersion; they are not where the code came from.
  for (const action of ['fuse', 'split', 'scale', 'move'] as const) {
    it(`skips a ${action} of the running version made after the swap`, () => {
      const h = [entry('deploy', 1), entry('swap', 2, 1), entry(action, 2, 2), entry('swap', 3, 2, 'rolled-back'), entry(action, 2, 2)];
      expect(previousVersion(running(2), h)).toBe(1);
    });
  }

  it('after a rollback, goes back to the version rolled back from', () => {
    const h = [entry('deploy', 1), entry('swap', 2, 1), entry('fuse', 2, 2), entry('rollback', 3, 2)];
    expect(previousVersion(running(3), h)).toBe(2);
  });

  it('without a fromVersion, is the highest earlier version that ran', () => {
    const h = [entry('deploy', 1), entry('deploy', 2), entry('fuse', 3, 3), entry('deploy', 3)];
    expect(previousVersion(running(3), h)).toBe(2);
    expect(previousVersion(running(1), [entry('deploy', 1), entry('fuse', 1, 1)])).toBeUndefined();
  });
});
