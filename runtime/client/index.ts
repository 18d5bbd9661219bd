/** The topo client library: deploy, swap, kill, inspect and watch a topology; start a local one. */
export { TopoClient, isMalformed } from './client.js';
export type {
  TapRecord, TapMalformed, TapItem, DeadLetterEntry, DeadLetterMalformed, LogEntry, DeployOptions, StreamReadOptions,
} from './client.js';
export { swapReplyOf, checkSwapTarget, SWAP_API_TIMEOUT_MS } from './swap.js';
export type { ScaleOutcome, SwapOptions, SwapOutcome, CanarySummary, ComputationStatusView, StatusView } from './swap.js';
export { bundleComputation, bundleFile, importBundle } from './bundle.js';
export { bundleCommand, bundlePython, bundleSource, isPythonSpec } from './hostedBundle.js';
export type { BundledComputation } from './bundle.js';
export type { OnProgress } from './progress.js';
export { BridgeProducer, BridgeConsumer } from './bridge.js';
export type { BridgeProducerOptions, BridgeProducerStats, BridgeConsumerOptions, BridgeRecord, BridgeConsumerStats } from './bridge.js';
export { resolveNatsUrl, resolveNatsCreds, findTopologyDir, readRunInfo, writeRunInfo, removeRunInfo, runFilePath, DEFAULT_DIR, NO_TOPOLOGY_MESSAGE } from './runInfo.js';
export type { RunInfo } from './runInfo.js';
export { startLocalTopology, stopLocalTopology, topologyState, workerId } from './launcher.js';
export type { LocalTopology, LocalTopologyOptions, StopResult } from './launcher.js';
export { isAlive, terminatePid, tailFile } from './processes.js';
export { upSupervised, downSupervised, readSupervisedRun } from './supervised.js';
export type { UpResult, SupervisedRunInfo } from './supervised.js';
export { packageRoot, distFile, buildRuntime } from './paths.js';
