// Reads the Helm chart's values files into the program's Config exactly as the chart renders its config file: the files
// merged as `helm -f a -f b` merges them, coalesced over the chart's defaults, the config keys that are set, one validation.
//
// Helm itself is not needed (nor shipped in the image): its two merge rules are a few lines each, written after
// helm v3 pkg/cli/values (mergeMaps) and pkg/chartutil/coalesce.go, and a test renders the chart with the real helm
// binary and compares the config it writes with the one built here.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { cannotRead, ConfigError, parseConfig, type Config } from './config.js';
import { isObject as isTable } from '../mutators/json.js';
import { configSchema } from './schema.js';
import { chartConfigDefaults, chartValueKeys } from './chart-values.gen.js';

export type HelmValues = Record<string, unknown>;

/** A problem in the values files, worded for them (the keys are the values' keys, which the config keys are too). */
export class ValuesError extends ConfigError {
  constructor(source: string, problems: string[]) {
    super(source, problems, 'values');
  }
}

/**
 * `helm -f a -f b`: b over a, tables merged key by key, anything else (lists too) replaced. A null is kept here;
 * coalescing over the defaults then removes the key, so a later file can unset a default.
 */
export function mergeValues(a: HelmValues, b: HelmValues): HelmValues {
  const out: HelmValues = { ...a };
  for (const [key, value] of Object.entries(b)) {
    const prev = Object.hasOwn(out, key) ? out[key] : undefined;
    // defined, not assigned: `out.__proto__ = value` would set the prototype and drop the key, which must be refused
    // as unknown like any other (helm refuses it)
    Object.defineProperty(out, key, { value: isTable(value) && isTable(prev) ? mergeValues(prev, value) : value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * Helm's coalescing of the user's values over the chart's defaults (CoalesceValues, for a chart without subcharts):
 * the user's value wins; where both are tables they coalesce key by key; a user's null removes the key, default and
 * all; a default table the user replaced by a scalar (or the reverse) keeps the user's value, as Helm does (with a
 * warning there). Returns a new object; neither input is changed.
 */
export function coalesceValues(user: HelmValues, defaults: HelmValues): HelmValues {
  const out: HelmValues = { ...user };
  for (const [key, fallback] of Object.entries(defaults)) {
    if (!(key in out)) out[key] = structuredClone(fallback);
    else if (out[key] === null) delete out[key];
    else if (isTable(out[key]) && isTable(fallback)) out[key] = coalesceValues(out[key] as HelmValues, fallback);
  }
  return out;
}

/** The chart's config file (templates/_helpers.tpl "mlflow-irsa-webhook.config"): the config keys set and not null. */
export function renderedConfig(values: HelmValues): HelmValues {
  const config: HelmValues = {};
  for (const key of Object.keys(configSchema.properties)) {
    if (values[key] !== undefined && values[key] !== null) config[key] = values[key];
  }
  return config;
}

function readValuesFile(file: string): HelmValues {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ValuesError(file, [cannotRead(err)]);
  }
  let doc: unknown;
  try {
    // YAML 1.1, as Helm reads values files: `defaultMode: 0644` is 420 there, and must be here too
    doc = parseYaml(text, { version: '1.1' });
  } catch (err) {
    throw new ValuesError(file, [`(file): not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  if (doc === null || doc === undefined) return {};
  if (!isTable(doc)) throw new ValuesError(file, ['(top level): a values file must be a mapping of keys to values']);
  return doc;
}

/**
 * The config file the chart renders from these values files (in `helm -f` order), as a document: the merged values
 * coalesced over the chart's defaults, its config keys that are set. Refuses what Helm's schema check would refuse
 * before rendering: unknown top-level keys, and a null left where there was no default to remove.
 */
export function renderChartConfig(files: readonly string[]): HelmValues {
  const source = files.join(', ');
  const merged = files.map(readValuesFile).reduce(mergeValues, {});
  const unknown = Object.keys(merged).filter((k) => !chartValueKeys.includes(k));
  if (unknown.length > 0) {
    throw new ValuesError(source, unknown.map((k) => `${k}: unknown key; neither a config key nor one of the chart's values (charts/mlflow-irsa-webhook/values.yaml lists them)`));
  }
  const values = coalesceValues(merged, chartConfigDefaults);
  const nulls = Object.keys(configSchema.properties).filter((k) => values[k] === null);
  if (nulls.length > 0) {
    throw new ValuesError(source, nulls.map((k) => `${k}: null is not allowed here (null removes a chart default, and the chart has none for ${k}; leave the key out)`));
  }
  return renderedConfig(values);
}

/**
 * Whether a file given as the program's config is the chart's values file instead: a mapping whose top-level keys are
 * all the chart's, one of them a chart-only value (image, tls, jobs, ...). Never throws: the caller already has an error.
 */
export function looksLikeChartValues(file: string): boolean {
  let doc: unknown;
  try {
    doc = readValuesFile(file);
  } catch {
    return false;
  }
  const keys = Object.keys(doc as HelmValues);
  const chartOnly = keys.filter((k) => !(k in configSchema.properties));
  return chartOnly.length > 0 && chartOnly.every((k) => chartValueKeys.includes(k));
}

/** The Config the chart would render from these values files, validated like any config file. */
export function loadChartValues(files: readonly string[]): Config {
  const document = renderChartConfig(files);
  try {
    return parseConfig(document, files.join(', '));
  } catch (err) {
    if (err instanceof ConfigError) throw new ValuesError(files.join(', '), err.problems);
    throw err;
  }
}
