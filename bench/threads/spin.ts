/** A fixed amount of CPU work: `iters` rounds of integer arithmetic (not optimizable away: the result is used). */
export function spin(iters: number): number {
  let x = 1;
  for (let i = 0; i < iters; i++) x = (Math.imul(x, 1_103_515_245) + 12_345) | 0;
  return x;
}
