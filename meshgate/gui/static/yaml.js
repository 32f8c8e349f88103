// A JSON document as YAML, the way `meshgatectl get -o yaml` prints it: PyYAML's safe_dump(sort_keys=False,
// allow_unicode=True) for the values a JSON answer holds. The rules copied from PyYAML (emitter.py, resolver.py):
// block style with 2-space indents and sequences in a mapping not indented; a string is left plain unless it
// would read back as another type (YAML 1.1's implicit resolvers below) or holds an indicator, else it is
// single-quoted, or double-quoted when it holds a character YAML cannot print; plain and single-quoted strings
// fold at a space past column 80. A float keeps its ".0": `MG.yamlOfJson` parses the API's text itself, keeping
// which numbers were written as floats (JSON.parse's source text), and prints them as Python's repr does.
"use strict";

(() => {
  const WIDTH = 80;
  const IMPLICIT = [
    /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/,
    /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/,
    /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/,
    /^(?:<<)$/,
    /^(?:~|null|Null|NULL|)$/,
    /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/,
    /^(?:=)$/,
  ];
  const BREAKS = "\n\x85\u2028\u2029";
  const SPACE_OR_END = "\0 \t\r\n\x85\u2028\u2029";

  function printable(ch) {
    const c = ch.codePointAt(0);
    return (
      ch === "\n" ||
      (c >= 0x20 && c <= 0x7e) ||
      ((c === 0x85 || (c >= 0xa0 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || c >= 0x10000) && c !== 0xfeff)
    );
  }

  // PyYAML's analyze_scalar, reduced to what choosing a style needs: may it be plain, may it be single-quoted?
  function analyze(text) {
    if (!text) return { plain: false, single: true, multiline: false };
    let block = text.startsWith("---") || text.startsWith("...");
    let lineBreaks = false;
    let special = false;
    let spaceBreak = false;
    let leadingSpace = false;
    let trailingSpace = false;
    let leadingBreak = false;
    let trailingBreak = false;
    let previousSpace = false;
    let previousBreak = false;
    let precededByWhitespace = true;
    const chars = [...text];
    chars.forEach((ch, i) => {
      const next = chars[i + 1];
      const followedByWhitespace = next === undefined || SPACE_OR_END.includes(next);
      if (i === 0) {
        if ("#,[]{}&*!|>'\"%@`".includes(ch)) block = true;
        if ("?:".includes(ch) && followedByWhitespace) block = true;
        if (ch === "-" && followedByWhitespace) block = true;
      } else {
        if (ch === ":" && followedByWhitespace) block = true;
        if (ch === "#" && precededByWhitespace) block = true;
      }
      if (BREAKS.includes(ch)) lineBreaks = true;
      if (!printable(ch)) special = true;
      if (ch === " ") {
        if (i === 0) leadingSpace = true;
        if (i === chars.length - 1) trailingSpace = true;
        if (previousBreak) spaceBreak = true;
        previousSpace = true;
        previousBreak = false;
      } else if (BREAKS.includes(ch)) {
        if (i === 0) leadingBreak = true;
        if (i === chars.length - 1) trailingBreak = true;
        if (previousSpace) spaceBreak = true;
        previousSpace = false;
        previousBreak = true;
      } else {
        previousSpace = false;
        previousBreak = false;
      }
      precededByWhitespace = SPACE_OR_END.includes(ch);
    });
    let plain = !(leadingSpace || leadingBreak || trailingSpace || trailingBreak || lineBreaks || block);
    let single = true;
    if (spaceBreak || special) {
      plain = false;
      single = false;
    }
    return { plain, single, multiline: lineBreaks };
  }

  const pad = (n) => " ".repeat(n);

  // A number the JSON text wrote as a float (2048.0): Python reads it as a float, and PyYAML prints it so.
  class Float {
    constructor(value) {
      this.value = value;
    }
  }

  // PyYAML's represent_float: repr(), lower case, ".0" before an exponent without a point.
  function pythonFloat(v) {
    if (Number.isNaN(v)) return ".nan";
    if (!Number.isFinite(v)) return v > 0 ? ".inf" : "-.inf";
    const abs = Math.abs(v);
    if (abs !== 0 && (abs < 1e-4 || abs >= 1e16)) {
      let [mantissa, exponent] = v.toExponential().split("e");
      const sign = exponent.startsWith("-") ? "-" : "+";
      exponent = exponent.replace(/^[-+]/, "").padStart(2, "0");
      if (!mantissa.includes(".")) mantissa += ".0";
      return `${mantissa}e${sign}${exponent}`;
    }
    return Number.isInteger(v) ? `${v}.0` : String(v);
  }

  // Plain text from `column`, a single space past WIDTH folded onto a new line at `indent` (PyYAML's write_plain).
  function writePlain(text, column, indent) {
    let out = "";
    let start = 0;
    let spaces = false;
    for (let end = 0; end <= text.length; end++) {
      const ch = end < text.length ? text[end] : null;
      if (spaces) {
        if (ch !== " ") {
          if (start + 1 === end && column > WIDTH) {
            out += "\n" + pad(indent);
            column = indent;
          } else {
            out += text.slice(start, end);
            column += end - start;
          }
          start = end;
        }
      } else if (ch === null || ch === " ") {
        out += text.slice(start, end);
        column += end - start;
        start = end;
      }
      if (ch !== null) spaces = ch === " ";
    }
    return out;
  }

  // PyYAML's write_single_quoted: quotes doubled, a break written twice, a space past WIDTH folded.
  function writeSingle(text, column, indent, split) {
    let out = "'";
    column += 1;
    let start = 0;
    let spaces = false;
    let breaks = false;
    for (let end = 0; end <= text.length; end++) {
      const ch = end < text.length ? text[end] : null;
      if (spaces) {
        if (ch === null || ch !== " ") {
          if (start + 1 === end && column > WIDTH && split && start !== 0 && end !== text.length) {
            out += "\n" + pad(indent);
            column = indent;
          } else {
            out += text.slice(start, end);
            column += end - start;
          }
          start = end;
        }
      } else if (breaks) {
        if (ch === null || !BREAKS.includes(ch)) {
          if (text[start] === "\n") out += "\n";
          for (const br of text.slice(start, end)) out += br === "\n" ? "\n" : br;
          out += pad(indent);
          column = indent;
          start = end;
        }
      } else if (ch === null || " \n\x85\u2028\u2029".includes(ch) || ch === "'") {
        if (start < end) {
          out += text.slice(start, end);
          column += end - start;
          start = end;
        }
      }
      if (ch === "'") {
        out += "''";
        column += 2;
        start = end + 1;
      }
      if (ch !== null) {
        spaces = ch === " ";
        breaks = BREAKS.includes(ch);
      }
    }
    return out + "'";
  }

  function writeDouble(text) {
    return JSON.stringify(text);
  }

  // A scalar starting at `column`; `indent` is where a folded line continues; keys never fold.
  function scalar(value, column, indent, isKey) {
    if (value === null || value === undefined) return "null";
    if (value instanceof Float) return pythonFloat(value.value);
    if (typeof value === "boolean") return value ? "true" : "false";
    if (typeof value === "number") {
      if (Number.isNaN(value)) return ".nan";
      if (!Number.isFinite(value)) return value > 0 ? ".inf" : "-.inf";
      return String(value);
    }
    const text = String(value);
    const a = analyze(text);
    const implicit = IMPLICIT.some((re) => re.test(text));
    if (a.plain && !implicit && !(isKey && a.multiline)) return writePlain(text, column, indent);
    if (a.single && !(isKey && a.multiline)) return writeSingle(text, column, indent, !isKey);
    return writeDouble(text);
  }

  const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Float);
  const isEmpty = (v) => (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);
  const collection = (v) => (Array.isArray(v) || isMap(v)) && !isEmpty(v);
  const isScalar = (v) => !(Array.isArray(v) || isMap(v));
  const flow = (v) => (Array.isArray(v) ? "[]" : "{}");

  // `first` replaces the indentation of the first line (a sequence item's "- ").
  function mapping(doc, indent, first) {
    let out = "";
    let lead = first;
    for (const [key, value] of Object.entries(doc)) {
      const prefix = lead ?? pad(indent);
      lead = undefined;
      // PyYAML's check_simple_key: an empty, multi-line or long key is written as a complex key, "? key" (with a
      // scalar value; a collection under such a key, never seen in a resource, is not laid out as PyYAML would).
      if (key === "" || [...key].some((ch) => BREAKS.includes(ch)) || key.length >= 128) {
        out += `${prefix}? ${scalar(key, prefix.length + 2, indent + 2, false)}\n`;
        const line = `${pad(indent)}: `;
        out += line + (isScalar(value) ? scalar(value, line.length, indent + 2, false) : flow(value)) + "\n";
        continue;
      }
      const k = scalar(key, prefix.length, indent + 2, true);
      if (collection(value)) {
        out += `${prefix}${k}:\n`;
        out += isMap(value) ? mapping(value, indent + 2) : sequence(value, indent);
      } else {
        const line = `${prefix}${k}: `;
        out += line + (isScalar(value) ? scalar(value, line.length, indent + 2, false) : flow(value)) + "\n";
      }
    }
    return out;
  }

  function sequence(items, indent, first) {
    let out = "";
    let lead = first;
    for (const item of items) {
      const prefix = (lead ?? pad(indent)) + "- ";
      lead = undefined;
      if (collection(item)) {
        out += isMap(item) ? mapping(item, indent + 2, prefix) : sequence(item, indent + 2, prefix);
      } else {
        out += prefix + (isScalar(item) ? scalar(item, prefix.length, indent + 2, false) : flow(item)) + "\n";
      }
    }
    return out;
  }

  MG.yaml = (doc) => {
    if (collection(doc)) return isMap(doc) ? mapping(doc, 0) : sequence(doc, 0);
    return (isScalar(doc) ? scalar(doc, 0, 0, false) : flow(doc)) + "\n";
  };

  // The YAML of a JSON text, its floats kept as floats (the reviver's context.source is the number's text).
  MG.yamlOfJson = (text) =>
    MG.yaml(JSON.parse(text, (key, value, context) => (typeof value === "number" && context && /[.eE]/.test(context.source) ? new Float(value) : value)));
})();
