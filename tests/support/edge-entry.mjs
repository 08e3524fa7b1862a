// Test-only entry of the edge Worker (tests/support/harness.mjs): the built edge
// (build/edge/index.js) behind the fault injector (tests/support/faults.mjs).
import Inner from "../../build/edge/index.js";
import { faultyFetch } from "./faults.mjs";

export default { fetch: faultyFetch(Inner) };
