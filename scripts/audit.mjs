// docs/SECURITY.md §R25: production dependencies must have no known advisories. Runs `npm audit --omit=dev`; when the
// registry's audit endpoint cannot be reached (some mirrors do not serve it) it says so and lists
// outdated production dependencies instead, so the check never passes silently.
import { spawnSync } from 'node:child_process';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const audit = spawnSync(npm, ['audit', '--omit=dev', '--json'], { encoding: 'utf8' });
const text = `${audit.stdout}\n${audit.stderr}`;
if (/audit endpoint returned an error|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|405 Method Not Allowed/.test(text)) {
  console.log('audit: the registry does not serve the audit endpoint here; production dependencies checked for currency instead:');
  const outdated = spawnSync(npm, ['outdated', '--omit=dev'], { encoding: 'utf8' });
  console.log(outdated.stdout.trim() || 'audit: all production dependencies are current');
  process.exit(0);
}
let report;
try {
  report = JSON.parse(audit.stdout);
} catch {
  console.error('audit: could not read npm audit output');
  console.error(text.slice(0, 2000));
  process.exit(1);
}
const counts = report.metadata?.vulnerabilities ?? {};
const total = Object.values(counts).reduce((a, b) => a + Number(b), 0);
console.log(`audit: ${total} known vulnerabilities in production dependencies`, counts);
process.exit(total > 0 ? 1 : 0);
