// An RFC 6902 applier as strict as the API server's (evanphx/json-patch): written apart from fast-json-patch on
// purpose, so the library that makes our patches is not also the judge of them.
type J = any;

export class PatchError extends Error {}

function unescape(token: string): string {
  if (/~[^01]|~$/.test(token)) throw new PatchError(`bad escape in pointer token "${token}"`);
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

function tokens(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new PatchError(`pointer "${pointer}" must start with /`);
  return pointer.slice(1).split('/').map(unescape);
}

function arrayIndex(token: string, length: number, forAdd: boolean, path: string): number {
  if (forAdd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`${path}: "${token}" is not an array index`);
  const i = Number(token);
  if (i > length || (!forAdd && i === length)) throw new PatchError(`${path}: index ${i} out of range (length ${length})`);
  return i;
}

/** The container of the last token; throws when any step is missing (no implicit parent creation). */
function parentOf(doc: J, path: string): { parent: J; key: string } {
  const t = tokens(path);
  if (t.length === 0) throw new PatchError('operations on the whole document are not used by webhooks');
  let cur = doc;
  for (const tok of t.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(tok, cur.length, false, path)];
    else if (cur !== null && typeof cur === 'object' && Object.prototype.hasOwnProperty.call(cur, tok)) cur = cur[tok];
    else throw new PatchError(`${path}: parent "${tok}" does not exist`);
    if (cur === null || typeof cur !== 'object') throw new PatchError(`${path}: parent is not a container`);
  }
  return { parent: cur, key: t[t.length - 1] };
}

function get(doc: J, path: string): J {
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) return parent[arrayIndex(key, parent.length, false, path)];
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw new PatchError(`${path}: does not exist`);
  return parent[key];
}

function remove(doc: J, path: string): J {
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(key, parent.length, false, path), 1)[0];
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw new PatchError(`remove ${path}: does not exist`);
  const old = parent[key];
  delete parent[key];
  return old;
}

function add(doc: J, path: string, value: J): void {
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(key, parent.length, true, path), 0, value);
  else parent[key] = value;
}

/** Applies ops in order to a deep copy of doc; throws PatchError at the first op that a strict server would refuse. */
export function applyStrict(doc: J, ops: J[]): J {
  if (!Array.isArray(ops)) throw new PatchError('a JSON patch is an array of operations');
  const out = structuredClone(doc);
  ops.forEach((op, n) => {
    const at = `op ${n} (${op?.op} ${op?.path})`;
    if (op === null || typeof op !== 'object' || typeof op.path !== 'string') throw new PatchError(`${at}: malformed`);
    try {
      switch (op.op) {
        case 'add': if (!('value' in op)) throw new PatchError('missing value'); add(out, op.path, structuredClone(op.value)); break;
        case 'remove': remove(out, op.path); break;
        case 'replace': if (!('value' in op)) throw new PatchError('missing value'); get(out, op.path); remove(out, op.path); add(out, op.path, structuredClone(op.value)); break;
        case 'move': { const v = remove(out, op.from); add(out, op.path, v); break; }
        case 'copy': add(out, op.path, structuredClone(get(out, op.from))); break;
        case 'test': if (JSON.stringify(get(out, op.path)) !== JSON.stringify(op.value)) throw new PatchError('test failed'); break;
        default: throw new PatchError(`unknown op "${op.op}"`);
      }
    } catch (err) {
      throw new PatchError(`${at}: ${(err as Error).message}`);
    }
  });
  return out;
}
