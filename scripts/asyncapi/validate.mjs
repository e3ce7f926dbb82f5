// Validate an AsyncAPI document with the official parser (@asyncapi/parser).
// Usage: node validate.mjs <document>   (run from the directory holding node_modules; scripts/asyncapi.sh)
// Prints every diagnostic as JSON lines {severity, code, message, path}; exits 1 on any error
// (severity 0), 0 otherwise (warnings, infos and hints are printed, not fatal).
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const names = { 0: 'error', 1: 'warning', 2: 'info', 3: 'hint' };
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: names[d.severity] ?? String(d.severity), code: d.code,
                               message: d.message, path: d.path.join('/') }));
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length > 0 || !document) {
  console.error(`asyncapi: ${file}: ${errors.length} error(s)`);
  process.exit(1);
}
console.error(`asyncapi: ${file}: valid AsyncAPI ${document.version()}, ` +
              `${document.channels().length} channels, ${document.operations().length} operations, ` +
              `${diagnostics.length - errors.length} non-error diagnostic(s)`);
