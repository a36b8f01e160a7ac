// Property tests with honest luck: each property runs on a fixed seed (the same inputs every run, so CI reproduces) and
// on one random seed per process (printed), so new inputs keep being tried. A failure prints its seed and the command
// that replays it: FC_SEED=<seed> runs every property of the file on that seed alone; FC_PATH=<path> (with --grep for
// the failing test) goes straight to the shrunk counterexample. FC_SEED=fixed runs the fixed seed alone (what
// `npm run mutants` does, so that whether a break is caught never depends on luck).
import fc from 'fast-check';
import type { Test } from 'tap';

/** The seed every run tries first. Any constant will do; changing it changes which inputs CI always sees. */
export const FIXED_SEED = 27;

function replaySeed(): number | undefined {
  const text = process.env.FC_SEED;
  if (text === undefined || text === '') return undefined;
  const seed = text === 'fixed' ? FIXED_SEED : Number(text);
  if (!Number.isSafeInteger(seed)) throw new Error(`FC_SEED must be an integer (the seed a failure printed) or "fixed", got ${JSON.stringify(text)}`);
  return seed;
}

const replay = replaySeed();
/** One random seed per process: the file's properties share it, so one FC_SEED replays all of them. */
const RANDOM_SEED = (Math.random() * 0x7fffffff) | 0;

export interface PropertySeed {
  readonly seed: number;
  readonly path?: string;
  /** what the seed is, for messages: "fixed seed 27", "random seed 123", "seed 123 from FC_SEED" */
  readonly label: string;
}

/** The seeds this run tries: the fixed one and a random one, or only FC_SEED's when replaying. */
export function propertySeeds(): PropertySeed[] {
  if (replay !== undefined) return [{ seed: replay, path: process.env.FC_PATH || undefined, label: `seed ${replay} from FC_SEED` }];
  return [{ seed: FIXED_SEED, label: `fixed seed ${FIXED_SEED}` }, { seed: RANDOM_SEED, label: `random seed ${RANDOM_SEED}` }];
}

const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
const regexQuote = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The command that replays a failure of the test `t` on `seed`, straight to the counterexample at `path`. */
export function replayCommand(t: Test, seed: number, path?: string): string {
  // fullname is "<file> > TAP > <test> > <subtest>...": the file, then one --grep per level
  const [file, , ...names] = t.fullname.split(' > ');
  const grep = names.map((n) => ` --grep=${shellQuote(`^${regexQuote(n)}$`)}`).join('');
  return `FC_SEED=${seed}${path ? ` FC_PATH=${path}` : ''} npx tap --disable-coverage ${file}${path ? grep : ''}`;
}

/**
 * Checks the property on each seed of propertySeeds(), one tap assertion per seed that names the seed; a failure
 * carries fast-check's report (counterexample, shrinking, error) and the replay command. Returns the runs made.
 */
export async function checkProperty<Ts>(t: Test, property: fc.IRawProperty<Ts>, params: fc.Parameters<Ts> = {}): Promise<number> {
  let runs = 0;
  for (const s of propertySeeds()) {
    const details = await fc.check(property, { ...params, seed: s.seed, ...(s.path ? { path: s.path } : {}) });
    runs += details.numRuns;
    if (details.failed) {
      const error = details.errorInstance instanceof Error ? details.errorInstance.stack ?? details.errorInstance.message : String(details.errorInstance);
      const replayIt = replayCommand(t, s.seed, details.counterexamplePath ?? undefined);
      t.fail(`property failed on the ${s.label}; replay: ${replayIt}`, { report: fc.defaultReportMessage(details), error });
    } else {
      t.pass(`${details.numRuns} runs on the ${s.label}${s.label.startsWith('random') ? ` (replay: ${replayCommand(t, s.seed)})` : ''}`);
    }
  }
  return runs;
}
