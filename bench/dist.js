// Loads a module of a build (this one's dist/, or an earlier build's for an A/B) by its name, wherever the build's
// layout put it: src/ was grouped into folders (webhook/, config/), and earlier builds keep the flat names.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const FOLDER = {
  'admission.js': 'webhook', 'server.js': 'webhook', 'decision.js': 'webhook', 'json-body.js': 'webhook', 'metrics.js': 'webhook',
  'patch.js': 'webhook', 'tls.js': 'webhook', 'config.js': 'config',
};

export function loadModule(dist, name) {
  const grouped = FOLDER[name] ? join(dist, FOLDER[name], name) : undefined;
  const file = grouped && existsSync(grouped) ? grouped : join(dist, name);
  return import(pathToFileURL(file).href);
}
