// Makes text someone else wrote (a tenant's experiment location, a tag value) safe to print to a terminal or into a
// script's comment line: control characters, line and paragraph separators and bidirectional overrides become visible
// escapes, so the text can neither drive the terminal, hide or reorder what follows, nor end a `--` comment.

/** The C0 controls (ESC, CR, LF, BEL…), as a regular-expression character range. */
export const C0_CONTROLS = '\\u0000-\\u001f';
/**
 * What else a terminal acts on instead of showing, as a character range: DEL, the C1 controls (CSI and OSC as single
 * characters), the bidirectional overrides, embeddings, isolates and marks, and the Unicode line and paragraph separators.
 * The one definition: doctor's report escapes these too.
 */
export const BEYOND_C0 = '\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069';

/** Those, and the backslash that starts an escape. */
const UNSAFE = new RegExp(`[${C0_CONTROLS}${BEYOND_C0}\\\\]`, 'g');

/** The text with every unsafe character written as \xHH or \u{HHHH} (and "\" as "\\"), so that the escape is unambiguous. */
export function printable(text: string): string {
  return text.replace(UNSAFE, (ch) => {
    if (ch === '\\') return '\\\\';
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/** printable() in single quotes, at most `max` characters of the original (then "…" and how long it was). */
export function quotedPrintable(text: string, max = 200): string {
  const shown = text.length > max ? `${printable(text.slice(0, max))}…(${text.length} characters)` : printable(text);
  return `'${shown}'`;
}
