// Validate GLB files with the Khronos glTF validator; prints one JSON report per file.
// Usage: node validate-gltf.mjs FILE.glb [...]
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const reports = [];
for (const path of process.argv.slice(2)) {
  const data = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(data, { maxIssues: 50 });
  reports.push({
    path,
    errors: report.issues.numErrors,
    warnings: report.issues.numWarnings,
    messages: report.issues.messages.filter((m) => m.severity <= 1).map((m) => `${m.code} ${m.pointer ?? ""}: ${m.message}`),
    nodes: report.info?.nodeCount ?? null,
  });
}
console.log(JSON.stringify(reports));
