// Rewrites the README's config reference table from the schema (run after `npm run build`): `npm run docs`.
import { readFileSync, writeFileSync } from 'node:fs';
import { configReferenceTable } from '../dist/config-reference.js';

const file = new URL('../README.md', import.meta.url);
const start = '<!-- config-reference:start -->';
const end = '<!-- config-reference:end -->';
const text = readFileSync(file, 'utf8');
const a = text.indexOf(start);
const b = text.indexOf(end);
if (a < 0 || b < a) throw new Error(`README.md lacks the ${start} … ${end} markers`);
writeFileSync(file, `${text.slice(0, a + start.length)}\n${configReferenceTable()}\n${text.slice(b)}`);
