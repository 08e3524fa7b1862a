// The HealthAggregator objects' merge (aggregator/, Rust): loaded by js/index.js on an
// aggregator's first request, so that the routing module every SDK request loads stays
// small. Instantiated once per isolate.
import aggregatorWasm from "./aggregator/aggregator_bg.wasm";
import { initSync, aggregate, forward, settle, retry_in, config_ask, config_learn, config_known } from "./aggregator/aggregator.js";

initSync({ module: aggregatorWasm });

export { aggregate, forward, settle, retry_in, config_ask, config_learn, config_known };
