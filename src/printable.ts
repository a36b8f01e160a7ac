// Makes text someone else wrote (a tenant's experiment location, a tag value) safe to print to a terminal or into a
// script's comment line: control characters, line and paragraph separators and bidirectional overrides become visible
// escapes, so the text can neither drive the terminal, hide or reorder what follows, nor end a `--` comment.

/** C0 and C1 controls, DEL, U+2028/U+2029, the bidirectional marks and overrides, and the backslash that starts an escape. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\\]/g;

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
