// doctor's checks of the tracking-database trigger: connection, installed objects, location policy, drift.
import { installedDifferences, type Aspect } from '../db/install.js';
import { expectedFingerprints } from '../db/fingerprint.js';
import { AUDIT_TABLE_NAME, POLICY_TRIGGER_NAME } from '../db/sql.js';
import { shellQuote } from '../iam-policy.js';
import { CLI, type DatabaseFacts, type DoctorContext, type DoctorFacts, type Verdict, fail, list, pass, plural, sh, skip, warn } from './facts.js';

// ---- the trigger -------------------------------------------------------------------------------------------------

const installCommand = (c: DoctorContext, extra = '') => sh`${CLI} install-trigger --config ${c.configFile}` + extra;
const db = (f: DoctorFacts) => (f.database as { value: DatabaseFacts }).value;

export function judgeConnection(f: DoctorFacts, c: DoctorContext): Verdict {
  if (!f.database) return skip('no database given (--database-url, or PGHOST and the other libpq variables)');
  if (!f.database.ok) return fail(`could not read the tracking database: ${f.database.error}`, 'psql -c \'SELECT current_user, current_database()\'  # with the same PG* variables or URL');
  const d = f.database.value;
  if (d.missingTables.length > 0) {
    return fail(`database "${d.database}" lacks MLflow's tables ${d.missingTables.join(', ')}: not MLflow's tracking database, or trigger.schema is wrong`, 'psql -c \'\\dt *.experiment*\'');
  }
  return pass(`connected to database "${d.database}", which has MLflow's tables in schema ${c.config.trigger.schema}`);
}

/** How the installed trigger differs from what install-trigger would install now, in the given aspects (install.ts decides). */
function differences(f: DoctorFacts, c: DoctorContext, ...aspects: Aspect[]): string[] {
  const d = db(f);
  return installedDifferences(d.installed, c.config, d.policy!.policy).filter((x) => aspects.includes(x.aspect)).map((x) => x.problem);
}

export function judgeInstalled(f: DoctorFacts, c: DoctorContext): Verdict {
  const { installed } = db(f);
  const problems = differences(f, c, 'present', 'enabled');
  if (problems.length > 0) return fail(problems.join('; '), installCommand(c));
  return pass(`trigger on ${installed.trigger!.table}, function ${installed.function!.signature}, table ${installed.auditTable!.name}, mode ${installed.mode ?? '?'} on tag ${installed.tag ?? '?'}`);
}

export function judgeFunction(f: DoctorFacts, c: DoctorContext): Verdict {
  const { installed, policy } = db(f);
  const problems = differences(f, c, 'function');
  if (problems.length > 0) return fail(`the installed function is not what this config installs: ${problems.join('; ')}`, installCommand(c));
  if (!policy!.policy) return skip('this config\'s location policy cannot be installed (trigger.location-policy says why), so there is no function to compare with');
  return pass(`the installed function is what this config installs: mode ${installed.mode} on tag ${installed.tag}, location style ${installed.style}, `
    + `location policy ${installed.policy} (fingerprint ${expectedFingerprints(c.config, policy!.policy).function})`);
}

export function judgeDeferred(f: DoctorFacts, c: DoctorContext): Verdict {
  const problems = differences(f, c, 'deferred');
  if (problems.length > 0) {
    return fail(`${problems.join('; ')}: it would run before MLflow's own UPDATE of artifact_location, which then overwrites it`, installCommand(c));
  }
  return pass('the trigger is DEFERRABLE INITIALLY DEFERRED (it runs at commit, after MLflow\'s own UPDATE)');
}

export function judgeLocationPolicy(f: DoctorFacts, c: DoctorContext): Verdict {
  const d = db(f);
  const resolved = d.policy!;
  const { policy } = resolved;
  if (!policy) return fail(resolved.refused!, `${installCommand(c)}  # after setting trigger.defaultArtifactRoot to MLflow's --default-artifact-root`);
  const root = policy.mode !== 'off' && policy.defaultPrefix !== undefined ? `MLflow's default ${policy.defaultPrefix}<experiment id> (from ${resolved.source})` : undefined;
  const problems = differences(f, c, 'policy');
  if (problems.length > 0) return fail(`${problems.join('; ')}; install-trigger installs ${policy.mode}${root ? ` with ${root}` : ''} (${resolved.from})`, installCommand(c));
  if (policy.mode === 'off') return pass(`off (${resolved.from}): explicit artifact locations are not checked`);
  if (policy.mode === 'enforce') {
    const custom = c.config.trigger.mode === 'custom-location' ? ', an allowed custom location' : '';
    return pass(`enforce: trigger ${POLICY_TRIGGER_NAME} on experiments refuses a location written without the tag unless empty${custom} or ${root}`);
  }
  const unknown = resolved.unknownRoot ? `; ${resolved.unknownRoot}, so a location ending in the experiment's own id is not judged (set trigger.defaultArtifactRoot)` : '';
  const audit = d.audit!;
  if (audit.held === 0) {
    return pass(`audit: no experiment written since the audit began holds a location enforce would refuse${root ? ` (${root})` : ''}${unknown}`);
  }
  const e = audit.shown[0];
  const schema = c.config.trigger.schema;
  const list = `SELECT a.experiment_id, e.artifact_location, a.writes, a.last_written FROM ${schema}.${AUDIT_TABLE_NAME} a JOIN ${schema}.experiments e USING (experiment_id) ORDER BY 1`;
  return warn(
    `audit: ${plural(audit.held, 'experiment')} written since the audit began hold a location enforce would refuse (let through and recorded; `
      + `e.g. experiment ${e.experimentId} at ${e.location}, admitted by ${e.admitWith})${unknown}`,
    `psql -c ${shellQuote(list)}; ${installCommand(c, ' --dry-run')}  # lists each with the setting that admits it `
      + '(trigger.allowedLocationPrefixes, trigger.defaultArtifactRoot or the tag); keep trigger.locationPolicy: audit until none is left',
  );
}

export function judgeLegacy(f: DoctorFacts): Verdict {
  const { legacy } = db(f);
  if (!legacy) return pass('no leftover trigger of the manual procedure');
  return fail(`the manual procedure's trigger is still installed (${[...legacy.triggers.map((t) => `trigger on ${t.table}`), ...legacy.functions].join(', ')}): it rewrites locations by its own rules`,
    sh`psql -c ${legacy.removal}`);
}

export function judgeDrift(f: DoctorFacts, c: DoctorContext): Verdict {
  const { tagged, due, refused, example } = db(f).drift!;
  const refusedNote = refused > 0 ? `; ${plural(refused, 'experiment')} carry a tag value the rule refuses and keep their location` : '';
  if (due > 0) {
    const e = example ? ` (e.g. experiment ${example.experimentId} is at ${example.location ?? 'NULL'}, the rule gives ${example.expected})` : '';
    return warn(`${due} of ${plural(tagged, 'tagged experiment')} are not where their tag puts them${e}${refusedNote}`, installCommand(c, ' --backfill'));
  }
  return pass(`${plural(tagged, 'tagged experiment')}, all where their tag puts them${refusedNote}`);
}
