/** bench-sink (bench/topo/sink-one-hop.ts) reading bench-a typed as bench.BenchValue. */
import { defineComputation } from '../../sdk/index.js';
import { protoType } from '../../sdk/typed.js';
import { benchSink } from '../topo/sink.js';
import { BENCH_STREAMS } from '../topo/streams.js';
import proto from './bench-value.proto';

const plain = benchSink('bench-sink', BENCH_STREAMS.first);
export default defineComputation({ ...plain, processRecord: plain.processRecord!, types: { [BENCH_STREAMS.first]: protoType(proto, 'bench.BenchValue') } });
