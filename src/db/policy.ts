// The location policy an install puts in place: its mode from the config, MLflow's default root from the config or from
// experiment 0 alone (never from newer experiments, which any MLflow user can shape), and the survey of experiments
// whose location it refuses, each with the setting that would admit it.
import type pg from 'pg';
import { MAX_LOCATION_LENGTH, mlflowDefaultPrefix } from '../config/artifact-location.js';
import { ConfigError, parseConfig, type Config } from '../config/config.js';
import { printable, quotedPrintable } from '../printable.js';
import { DEFAULT_EXPERIMENT_ID, POLICY_OFF, configuredPrefix, policyOf, policySurveySql, triggerSql, type JudgingPolicy, type Policy } from './sql.js';

/** The location policy an install would put in place now, and where MLflow's default root came from. */
export interface ResolvedPolicy {
  /** undefined when the configured mode cannot be installed (enforce without MLflow's default root): `refused` says why */
  readonly policy?: Policy;
  /** trigger.defaultArtifactRoot, or experiment 0 and its location */
  readonly source?: string;
  /** audit without MLflow's default root: why it is unknown */
  readonly unknownRoot?: string;
  /** why an install of this config fails, naming the key to set */
  readonly refused?: string;
  /** what the config said to get this mode: the key and value */
  readonly from: string;
}

/** Where the config's policy mode came from, for messages: trigger.locationPolicy, the deprecated key, or the default. */
export function policySetting(config: Config): string {
  const t = config.trigger;
  if (t.enforceLocations !== undefined) return `trigger.enforceLocations: ${t.enforceLocations} (deprecated; it means trigger.locationPolicy: ${t.locationPolicy})`;
  return `trigger.locationPolicy: ${t.locationPolicy}`;
}

/** MLflow's default prefix from its Default experiment, which MLflow creates as <root>/0 on its first start; or why not. */
async function fromExperimentZero(client: pg.Client, config: Config): Promise<{ prefix: string; source: string } | { problem: string }> {
  const { rows: [zero] } = await client.query<{ artifact_location: string | null }>(
    `SELECT artifact_location FROM ${triggerSql(config).experimentsTable} WHERE experiment_id = ${DEFAULT_EXPERIMENT_ID}`,
  );
  const location = zero?.artifact_location;
  if (!location || !/[/:]0$/.test(location)) {
    return { problem: `the Default experiment (id 0) ${zero ? `has the location ${quotedPrintable(location ?? '')}, which does not end in "/0"` : 'is not in the database'}` };
  }
  return { prefix: location.slice(0, -1), source: `experiment 0 (Default), location ${quotedPrintable(location)}` };
}

/**
 * The policy of this config: off; or audit or enforce with MLflow's default root from trigger.defaultArtifactRoot, else
 * from experiment 0 alone. Without a root, audit judges what it can and enforce is refused: a guessed root would refuse
 * every new experiment, and a policy turned off quietly protects nothing. Only reads (doctor asks it too, read-only);
 * `client` undefined (--dry-run without a connection) reads nothing.
 */
export async function resolvePolicy(client: pg.Client | undefined, config: Config): Promise<ResolvedPolicy> {
  const from = policySetting(config);
  const mode = config.trigger.locationPolicy;
  if (mode === 'off') return { policy: POLICY_OFF, from };
  const configured = configuredPrefix(config);
  if (configured !== undefined) return { policy: policyOf(mode, configured), source: 'trigger.defaultArtifactRoot', from };
  const zero = client ? await fromExperimentZero(client, config) : { problem: 'experiment 0 was not read (no connection)' };
  if ('prefix' in zero) return { policy: policyOf(mode, zero.prefix), source: zero.source, from };
  if (mode === 'audit') return { policy: { mode }, unknownRoot: `MLflow's default artifact root is unknown: ${zero.problem}`, from };
  return {
    from,
    refused: `${from}, but MLflow's default artifact root is unknown: ${zero.problem}; set trigger.defaultArtifactRoot to MLflow's `
      + '--default-artifact-root (or trigger.locationPolicy: audit until it is known)',
  };
}

/** One experiment whose location the policy refuses, ready to print. */
export interface SurveyEntry {
  readonly experimentId: number;
  /** quoted and escaped (printable.ts): tenant bytes, never raw */
  readonly location: string;
  readonly reason: string;
  /** the setting that would admit it */
  readonly admitWith: string;
}

export interface PolicySurvey {
  /** how many experiments hold a location the policy refuses */
  readonly held: number;
  /** the first of them, by id */
  readonly shown: readonly SurveyEntry[];
}

/** Experiments the survey lists; the rest are counted. */
export const SURVEY_SHOWN = 20;

/**
 * The experiments whose location the policy refuses (with `audited`, only those our audit table recorded), the first
 * `limit` listed. Runs in the caller's transaction (the installer's, or doctor's read-only one).
 */
export async function surveyPolicy(client: pg.Client, config: Config, policy: JudgingPolicy, opts: { audited: boolean; limit?: number }): Promise<PolicySurvey> {
  const sql = policySurveySql(config, policy, opts);
  const { rows: [{ held }] } = await client.query<{ held: number }>(sql.count);
  const { rows } = await client.query<{ experiment_id: number; location: string | null; reason: string }>(sql.list, [opts.limit ?? SURVEY_SHOWN]);
  return {
    held,
    shown: rows.map((r) => ({
      experimentId: r.experiment_id,
      location: quotedPrintable(r.location ?? ''),
      reason: printable(r.reason),
      admitWith: admission(config, r.location ?? '', r.experiment_id),
    })),
  };
}

/**
 * The setting that would admit a refused location: trigger.defaultArtifactRoot when it is spelled like MLflow's default
 * <root>/<id>; in custom-location mode an allowedLocationPrefixes entry of its parent, when that entry is valid and the
 * custom rule then accepts the location; otherwise audit (or the tag, whose rule then decides the location).
 */
export function admission(config: Config, location: string, experimentId: number): string {
  const id = String(experimentId);
  const root = location.slice(0, -id.length);
  if ((root.endsWith('/') || root.endsWith(':')) && location.endsWith(id) && mlflowDefaultPrefix(root) === root) {
    return `trigger.defaultArtifactRoot: ${quotedPrintable(root)}, if that is MLflow's --default-artifact-root`;
  }
  const parent = location.slice(0, location.lastIndexOf('/') + 1);
  const leaf = location.slice(parent.length);
  if (config.trigger.mode === 'custom-location' && /^[A-Za-z0-9._-]+$/.test(leaf) && leaf !== '.' && leaf !== '..'
    && location.length <= MAX_LOCATION_LENGTH && validPrefix(config, parent)) {
    return `a trigger.allowedLocationPrefixes entry holding it, such as ${quotedPrintable(parent)}`;
  }
  const tag = triggerSql(config).tag;
  return `trigger.locationPolicy: audit (or the tag ${tag} on the experiment, whose rule then decides its location)`;
}

/** True when the config takes `prefix` as one more allowed location prefix (the config's own rules decide, not a copy of them). */
function validPrefix(config: Config, prefix: string): boolean {
  try {
    parseConfig({ ...config, trigger: { ...config.trigger, allowedLocationPrefixes: [...config.trigger.allowedLocationPrefixes, prefix] } });
    return true;
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}
