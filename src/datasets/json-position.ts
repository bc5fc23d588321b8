/**
 * Where a JSON text first breaks. V8's JSON.parse names the position for some mistakes and
 * not for others ("Unexpected token ','"), so after a failed parse this scanner finds the
 * offset itself. It only checks syntax, never builds values, and keeps nesting on an explicit
 * stack: a 100,000-deep truncated file must not overflow the call stack.
 */

// biome-ignore lint/suspicious/noConstEnum: inlined in the hot loop of a 100 MB JSON scan; tsc compiles whole files, so there is no isolated-module trap
const enum Next {
  Value,
  ValueOrArrayEnd,
  KeyOrObjectEnd,
  Key,
  Colon,
  CommaOrEnd,
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /[0-9a-fA-F]{4}/y;

/** The offset of the first syntax error (`text.length` when the text ends early), or undefined when the text is valid JSON. */
export function jsonSyntaxErrorOffset(text: string): number | undefined {
  const stack: string[] = [];
  let next = Next.Value;
  let i = 0;
  const n = text.length;
  for (;;) {
    while (i < n && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++;
    if (i >= n) return stack.length === 0 && next === Next.CommaOrEnd ? undefined : n;
    const c = text[i];
    switch (next) {
      case Next.Value:
      case Next.ValueOrArrayEnd:
        if (c === ']' && next === Next.ValueOrArrayEnd) {
          stack.pop();
          next = Next.CommaOrEnd;
          i++;
        } else if (c === '{') {
          stack.push('{');
          next = Next.KeyOrObjectEnd;
          i++;
        } else if (c === '[') {
          stack.push('[');
          next = Next.ValueOrArrayEnd;
          i++;
        } else {
          const end = scanScalar(text, i);
          if (end < 0) return -end - 1;
          i = end;
          next = Next.CommaOrEnd;
        }
        break;
      case Next.KeyOrObjectEnd:
      case Next.Key:
        if (c === '}' && next === Next.KeyOrObjectEnd) {
          stack.pop();
          next = Next.CommaOrEnd;
          i++;
        } else if (c === '"') {
          const end = scanString(text, i);
          if (end < 0) return -end - 1;
          i = end;
          next = Next.Colon;
        } else return i;
        break;
      case Next.Colon:
        if (c !== ':') return i;
        next = Next.Value;
        i++;
        break;
      case Next.CommaOrEnd: {
        const open = stack[stack.length - 1];
        if (open === undefined) return i; // text after the document
        if (c === ',') next = open === '{' ? Next.Key : Next.Value;
        else if ((c === '}' && open === '{') || (c === ']' && open === '[')) stack.pop();
        else return i;
        i++;
        break;
      }
    }
  }
}

/** End offset of a string, number or literal at `i`, or `-(errorOffset + 1)`. */
function scanScalar(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return scanString(text, i);
  for (const literal of ['true', 'false', 'null']) if (text.startsWith(literal, i)) return i + literal.length;
  NUMBER.lastIndex = i;
  const match = NUMBER.exec(text);
  return match ? i + match[0].length : -(i + 1);
}

function scanString(text: string, start: number): number {
  let j = start + 1;
  while (j < text.length) {
    const code = text.charCodeAt(j);
    if (code === 0x22) return j + 1;
    if (code < 0x20) return -(j + 1);
    if (code === 0x5c) {
      const escaped = text[j + 1];
      if (escaped === 'u') {
        HEX4.lastIndex = j + 2;
        if (!HEX4.test(text)) return -(j + 1);
        j += 6;
      } else if (escaped !== undefined && '"\\/bfnrt'.includes(escaped)) j += 2;
      else return -(j + 1);
    } else j++;
  }
  return -(text.length + 1);
}
