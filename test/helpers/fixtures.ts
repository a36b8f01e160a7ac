// Loads the recorded AdmissionReview fixtures and their golden files: a case is a file, so adding one needs no code.
// test/fixtures/admission holds the cases for examples/config.yaml; each folder below it holds cases for its own
// config.yaml (pod-identity/: credentials pod-identity), so a new config is a new folder.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const exampleConfig = join(root, 'examples/config.yaml');
const dir = join(root, 'test/fixtures/admission');

export interface AdmissionFixture {
  name: string;
  review: any;
  /** the object after our patch; equal to request.object when no patch is expected; absent for DELETE */
  patched?: any;
  warnings: string[];
}

export interface FixtureFolder {
  /** '' for the top folder, else the folder's name */
  folder: string;
  /** the config the cases are answered with */
  configFile: string;
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

/** The top folder with examples/config.yaml, then every folder below it with its own config.yaml. */
export function fixtureFolders(): FixtureFolder[] {
  const below = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  return [{ folder: '', configFile: exampleConfig }, ...below.map((folder) => ({ folder, configFile: join(dir, folder, 'config.yaml') }))];
}

export function admissionFixtures(folder = ''): AdmissionFixture[] {
  const at = join(dir, folder);
  return readdirSync(at)
    .filter((f) => f.endsWith('.json') && !f.endsWith('.patched.json') && !f.endsWith('.warnings.json'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.json'.length);
      const patchedFile = join(at, `${name}.patched.json`);
      const warningsFile = join(at, `${name}.warnings.json`);
      return {
        name,
        review: readJson(join(at, f)),
        patched: existsSync(patchedFile) ? readJson(patchedFile) : undefined,
        warnings: existsSync(warningsFile) ? readJson(warningsFile) : [],
      };
    });
}

export function fixture(name: string, folder = ''): AdmissionFixture {
  const found = admissionFixtures(folder).find((f) => f.name === name);
  if (!found) throw new Error(`no fixture ${folder ? `${folder}/` : ''}${name}`);
  return found;
}
