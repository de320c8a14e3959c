// Validate ServiceMonitor objects against the Prometheus Operator CRD schema
// shipped by @kubernetes-models/prometheus-operator.
// Usage: node validate_servicemonitor.mjs NPM_DIR < objects.json
// where objects.json is a JSON list of ServiceMonitor objects. Prints one
// line per object and exits 1 when any is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const module = join(
  process.argv[2],
  "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
);
const { ServiceMonitor } = await import(pathToFileURL(module).href);
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const object of objects) {
  try {
    new ServiceMonitor(object).validate();
    console.log(`valid: ${object.metadata.name}`);
  } catch (error) {
    console.log(`invalid: ${object.metadata.name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
