// Loads the recorded AdmissionReview fixtures and their golden files: a case is a file, so adding one needs no code.
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

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'));

export function admissionFixtures(): AdmissionFixture[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && !f.endsWith('.patched.json') && !f.endsWith('.warnings.json'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.json'.length);
      const patchedFile = join(dir, `${name}.patched.json`);
      const warningsFile = join(dir, `${name}.warnings.json`);
      return {
        name,
        review: readJson(join(dir, f)),
        patched: existsSync(patchedFile) ? readJson(patchedFile) : undefined,
        warnings: existsSync(warningsFile) ? readJson(warningsFile) : [],
      };
    });
}

export function fixture(name: string): AdmissionFixture {
  const found = admissionFixtures().find((f) => f.name === name);
  if (!found) throw new Error(`no fixture ${name}`);
  return found;
}
