// The program's version, read from package.json at run time: the one place it is written. The image ships
// package.json beside dist/; a test keeps the chart's appVersion and the Dockerfile's version label equal to it.
import { readFileSync } from 'node:fs';

export const version: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
