// Check email HTML against caniemail's data for Gmail, Outlook and Apple Mail.
//
//   python scripts/check_caniemail.py        (renders the sample emails, installs caniemail, runs this)
//   CANIEMAIL_MODULE=.../caniemail/dist/index.js node scripts/check_caniemail.mjs FILE.html...
//
// Prints, per feature the HTML uses, the clients that do not (or only partly) support it, and
// exits 0: what remains is a judgement (docs/email.md says why each is kept). Exits 2 when a
// feature from UNEXPECTED shows up, e.g. someone added an <img> or a flexbox layout.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// The package lives outside the repository (build/caniemail), so it is loaded by path.
const modulePath = process.env.CANIEMAIL_MODULE;
const { caniemail } = await import(modulePath ? pathToFileURL(modulePath).href : 'caniemail');

const CLIENTS = ['gmail.*', 'outlook.*', 'apple-mail.*'];
// Features that must never appear in our emails, whatever their support.
const UNEXPECTED = ['display:flex', 'display:grid', '<img> element', 'position', '<form> element'];

const entries = (x) => (x instanceof Map ? [...x] : Object.entries(x || {}));

let unexpected = 0;
for (const file of process.argv.slice(2)) {
  const html = readFileSync(file, 'utf8');
  const { issues } = caniemail({ clients: CLIENTS, html });
  const byFeature = new Map();
  for (const [kind, perClient] of entries(issues)) {
    for (const [client, list] of entries(perClient)) {
      for (const issue of list) {
        const key = `${issue.title}`;
        if (!byFeature.has(key)) byFeature.set(key, { none: new Set(), partial: new Set(), notes: new Set() });
        const entry = byFeature.get(key);
        (kind === 'errors' ? entry.none : entry.partial).add(client);
        for (const note of issue.notes || []) entry.notes.add(note);
      }
    }
  }
  console.log(`${file}: ${byFeature.size} feature(s) not supported everywhere`);
  for (const [feature, entry] of [...byFeature].sort()) {
    const parts = [];
    if (entry.none.size) parts.push(`unsupported: ${[...entry.none].sort().join(', ')}`);
    if (entry.partial.size) parts.push(`partial: ${[...entry.partial].sort().join(', ')}`);
    console.log(`  ${feature.padEnd(28)} ${parts.join('; ')}`);
    if (UNEXPECTED.includes(feature)) unexpected += 1;
  }
}
if (unexpected) {
  console.error(`${unexpected} feature(s) that our emails must not use`);
  process.exit(2);
}
