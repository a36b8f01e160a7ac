// Placeholder until its issue lands: the command exists so the CLI's table is complete, and says so when run.
import type { CommandArgs } from './command.js';

export const usage = '--config FILE';
export const options = {};

export async function run(_args: CommandArgs): Promise<number> {
  process.stderr.write('iam-policy is not implemented yet\n');
  return 1;
}
