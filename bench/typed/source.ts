/** bench-source (bench/topo/source.ts) with its output typed: bench-a carries bench.BenchValue. */
import { defineComputation } from '../../sdk/index.js';
import { protoType } from '../../sdk/typed.js';
import plain from '../topo/source.js';
import { BENCH_STREAMS } from '../topo/streams.js';
import proto from './bench-value.proto';

export default defineComputation({ ...plain, processRecord: plain.processRecord!, types: { [BENCH_STREAMS.first]: protoType(proto, 'bench.BenchValue') } });
