/** chooseMove with fused units: instance i of a fused group weighs its member count and moves only when that narrows the gap. */
import { describe, expect, it } from 'vitest';
import { chooseMove, type RebalancePlacement } from '../runtime/controller/rebalance.js';

const unit = (index: number, workerId: string, weight: number): RebalancePlacement => ({
  computation: 'head', instanceId: `head-${index}`, index, workerId, movable: true, weight, chain: Array.from({ length: weight }, (_, k) => (k === 0 ? 'head' : `m${k}`)),
});
const single = (name: string, index: number, workerId: string): RebalancePlacement => ({ computation: name, instanceId: `${name}-${index}`, index, workerId, movable: true });

describe('chooseMove with fused units', () => {
  it('leaves a single fused unit heavier than the gap where it is', () => {
    const c = chooseMove({ workers: ['a', 'b'], placements: [unit(0, 'a', 3)] });
    expect(c.move).toBeUndefined();
    expect(c.uneven).toBe(true);
  });

  it('moves one of two fused units, with its chain, to even the load', () => {
    const c = chooseMove({ workers: ['a', 'b'], placements: [unit(0, 'a', 2), unit(1, 'a', 2)] });
    expect(c.move).toMatchObject({ computation: 'head', from: 'a', to: 'b', fromLoad: 4, toLoad: 0, chain: ['head', 'm1'] });
    // Once moved, loads are 2 and 2: nothing more.
    expect(chooseMove({ workers: ['a', 'b'], placements: [unit(0, 'a', 2), unit(1, 'b', 2)] }).move).toBeUndefined();
  });

  it('counts a unit by its weight next to single instances', () => {
    // a: unit of 3 + x = 4; b: y = 1. Moving the unit (3) would not narrow the gap of 3; moving x does.
    const c = chooseMove({ workers: ['a', 'b'], placements: [unit(0, 'a', 3), single('x', 0, 'a'), single('y', 0, 'b')] });
    expect(c.move).toMatchObject({ computation: 'x', from: 'a', to: 'b', fromLoad: 4, toLoad: 1 });
    expect(c.move?.chain).toBeUndefined();
  });
});
