// The location the trigger's rule gives an experiment for its tag value, for doctor's count of experiments whose
// location disagrees with their tag. The rule that acts lives in the SQL (sql.ts); this says the same in TypeScript,
// and a test runs both on the same values against a real PostgreSQL so they cannot drift apart.
import type { Config } from '../config.js';
import { MAX_LOCATION_LENGTH, allowedPrefixes, projectBase } from './sql.js';

export type RuleOutcome = { readonly location: string } | { readonly refused: string };

/** Where the rule puts an experiment whose tag (the mode's tag) has this value, or why it refuses the value. */
export function ruleLocation(config: Config, value: string | null): RuleOutcome {
  let location: string;
  if (config.trigger.mode === 'project-id') {
    if (value === null || !/^[A-Za-z0-9._-]+$/.test(value) || value.includes('..') || value === '.') {
      return { refused: 'a project id must be one or more of the characters A-Z a-z 0-9 . _ - with no "/" and no ".."' };
    }
    location = projectBase(config) + value;
  } else {
    const prefixes = allowedPrefixes(config);
    if (value === null || !prefixes.some((p) => value.startsWith(p))) {
      return { refused: `a custom location must start with one of: ${prefixes.join(', ')}` };
    }
    if (/(^|\/)\.\.?(\/|$)/.test(value)) return { refused: 'a custom location must not contain "." or ".." path segments' };
    location = value;
  }
  if (location.length > MAX_LOCATION_LENGTH) {
    return { refused: `the resulting location is longer than ${MAX_LOCATION_LENGTH} characters (the size of experiments.artifact_location)` };
  }
  return { location };
}
