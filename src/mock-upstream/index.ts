// The mock OpenAI-compatible upstream: tests, the benchmark and `spillway mock-upstream` start it from here.
// Re-exports only; nothing here may start a server or read the environment at import time.

export { startMockUpstream } from './server.ts';
export type { MockStats, MockUpstream, MockUpstreamOptions, Outage } from './server.ts';
