// --backfill: the rule applied to experiments that carried the tag before the install, in short batches after it has
// committed; its SQL (also doctor's drift count and --dry-run's) is built on ruleSql, so it cannot disagree with the trigger.
import type pg from 'pg';
import type { Config } from '../config/config.js';
import type { Logger } from '../log.js';
import { transaction } from './connect.js';
import { BACKFILL_BATCH_SIZE, RULED_TAG_ROW, lit, refusalMessageSql, ruleSql, triggerSql } from './sql.js';

export interface BackfillSql {
  /** one row: tagged, due (accepted value, location differs from the rule's), refused */
  readonly survey: string;
  /** the refused experiments, at most `limit` ($1): experiment_id, message */
  readonly refused: string;
  /** the due experiments, at most `limit` ($1): experiment_id, artifact_location (as stored), location (the rule's) */
  readonly due: string;
  /**
   * One batch: re-sets the next BACKFILL_BATCH_SIZE due tag rows after experiment id $1 to their own value, so that our trigger
   * applies the rule to each at COMMIT, reading the tag as it stands then. Returns `changed` and the `last` experiment id it
   * handled, which is $1 of the next batch; run each in its own transaction, from -1 until changed is 0.
   */
  readonly batch: string;
}

/** The --backfill statements (and doctor's drift count), built on ruleSql so neither can disagree with the trigger. */
export function backfillSql(config: Config): BackfillSql {
  const s = triggerSql(config);
  const rule = ruleSql(config, 't.value');
  // each tagged experiment with the rule's verdict on its tag value (r.refusal) and the location it gives (r.location)
  const judged = [
    `${s.tagsTable} t JOIN ${s.experimentsTable} e ON e.experiment_id = t.experiment_id`,
    `  CROSS JOIN LATERAL (SELECT ${rule.refusal.replace(/\n/g, '\n    ')} AS refusal,`,
    `    ${rule.location} AS location) r`,
    ` WHERE t.key = ${lit(s.tag)} AND ${RULED_TAG_ROW}`,
  ].join('\n');
  const due = 'r.refusal IS NULL AND e.artifact_location IS DISTINCT FROM r.location';
  return {
    survey: `SELECT count(*)::int AS tagged, count(*) FILTER (WHERE ${due})::int AS due, count(r.refusal)::int AS refused\n  FROM ${judged}`,
    refused: `SELECT t.experiment_id, ${refusalMessageSql(lit(s.tag), 't.value', 'r.refusal')} AS message\n  FROM ${judged}\n   AND r.refusal IS NOT NULL\n ORDER BY t.experiment_id LIMIT $1`,
    due: `SELECT t.experiment_id, e.artifact_location, r.location\n  FROM ${judged}\n   AND ${due}\n ORDER BY t.experiment_id LIMIT $1`,
    // keyset on the (key, experiment_id) primary key: each batch reads only the rows after the previous one
    batch: [
      `WITH due AS (SELECT t.experiment_id FROM ${judged.replace(/\n/g, '\n  ')}`,
      `     AND t.experiment_id > $1 AND ${due}`,
      `   ORDER BY t.experiment_id LIMIT ${BACKFILL_BATCH_SIZE}),`,
      `touched AS (UPDATE ${s.tagsTable} AS tag SET value = tag.value FROM due`,
      `   WHERE tag.key = ${lit(s.tag)} AND tag.experiment_id = due.experiment_id RETURNING tag.experiment_id)`,
      'SELECT count(*)::int AS changed, max(experiment_id) AS last FROM touched',
    ].join('\n'),
  };
}

export interface Backfill {
  /** experiments that carry the mode's tag */
  readonly tagged: number;
  /** of those, how many had a location other than the rule's when the backfill started */
  readonly due: number;
  /** tag rows re-set in batches, each of which our trigger gave the rule's location */
  readonly changed: number;
  readonly batches: number;
  /** the longest batch transaction, in milliseconds */
  readonly slowestBatchMs: number;
  /** experiments still differing from the rule at the end (a concurrent change, or our trigger disabled) */
  readonly remaining: number;
  /** how many tag values the rule refuses; those experiments were left as they were */
  readonly refusedCount: number;
  /** the first REFUSED_SHOWN of them */
  readonly refused: ReadonlyArray<{ readonly experimentId: number; readonly reason: string }>;
}

/** Refused experiments listed by --backfill; the rest are counted. */
export const REFUSED_SHOWN = 100;

async function survey(client: pg.Client, sql: string): Promise<{ tagged: number; due: number; refused: number }> {
  return (await transaction(client, { lock: false }, () => client.query<{ tagged: number; due: number; refused: number }>(sql))).rows[0];
}

/**
 * Applies the rule to experiments that already carried the tag before the install. Runs after the install committed, in
 * batches of BACKFILL_BATCH_SIZE, each its own short transaction, so MLflow's own writes never wait on more than one batch.
 * Each batch re-sets due tag rows to their own value and our trigger sets the locations at its COMMIT: the rule lives in
 * the trigger alone, and a refused value is never selected. Idempotent: a rerun (or a retry after a lost connection) picks
 * up what is still due.
 */
export async function backfill(client: pg.Client, config: Config, logger: Logger): Promise<Backfill> {
  const sql = backfillSql(config);
  const start = await survey(client, sql.survey);
  const refused = await transaction(client, { lock: false }, () => client.query<{ experiment_id: number; message: string }>(sql.refused, [REFUSED_SHOWN]));
  logger.info({ tagged: start.tagged, due: start.due, refused: start.refused, batchSize: BACKFILL_BATCH_SIZE }, 'backfill: applying the rule to experiments that already carry the tag');
  for (const r of refused.rows) logger.warn({ experimentId: r.experiment_id, reason: r.message }, 'backfill leaves an experiment unchanged: its tag value is refused');
  if (start.refused > refused.rows.length) logger.warn({ notListed: start.refused - refused.rows.length }, 'backfill: more refused tag values than listed');
  let changed = 0;
  let batches = 0;
  let slowestBatchMs = 0;
  // Experiment ids only grow from batch to batch, so the loop ends after at most due / batch size batches.
  for (let after = -1; ;) {
    const began = process.hrtime.bigint();
    const { rows: [done] } = await transaction(client, { lock: false }, () => client.query<{ changed: number; last: number | null }>(sql.batch, [after]));
    const ms = Number(process.hrtime.bigint() - began) / 1e6;
    if (done.changed === 0 || done.last === null) break;
    batches++;
    changed += done.changed;
    after = done.last;
    slowestBatchMs = Math.max(slowestBatchMs, ms);
    logger.info({ batch: batches, changed: done.changed, done: changed, of: start.due, lastExperimentId: after, ms: Math.round(ms) }, 'backfill progress');
  }
  const end = await survey(client, sql.survey);
  if (end.due > 0) {
    logger.warn({ remaining: end.due }, 'backfill: experiments still differ from the rule (changed concurrently, or our trigger is disabled); rerun --backfill');
  }
  return {
    tagged: start.tagged, due: start.due, changed, batches, slowestBatchMs, remaining: end.due, refusedCount: start.refused,
    refused: refused.rows.map((r) => ({ experimentId: r.experiment_id, reason: r.message })),
  };
}

