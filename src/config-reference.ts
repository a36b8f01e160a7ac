// Renders the config reference table for the README from the one schema, so the docs cannot drift from the code.
import { configSchema } from './config-schema.js';

interface Prop {
  type?: string | readonly string[];
  default?: unknown;
  description?: string;
  properties?: Record<string, Prop>;
  items?: Prop;
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function rows(props: Record<string, Prop>, required: readonly string[], prefix: string): string[] {
  const out: string[] = [];
  for (const [key, p] of Object.entries(props)) {
    const name = `${prefix}${key}`;
    if (p.type === 'object' && p.properties) {
      out.push(...rows(p.properties, [], `${name}.`));
      continue;
    }
    const def = required.includes(key) ? '**required**' : p.default === undefined ? '(unset)' : `\`${JSON.stringify(p.default)}\``;
    const type = p.enum ? p.enum.map((e) => `\`${e}\``).join(' \\| ') : p.type === 'array' ? `list of ${p.items?.type ?? 'any'}` : [p.type ?? 'any'].flat().join(' \\| ');
    out.push(`| \`${name}\` | ${type} | ${def} | ${cell(p.description ?? '')} |`);
  }
  return out;
}

export function configReferenceTable(): string {
  return ['| key | type | default | meaning |', '|---|---|---|---|', ...rows(configSchema.properties as Record<string, Prop>, configSchema.required, '')].join('\n');
}
