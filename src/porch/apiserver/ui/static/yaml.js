// A line-oriented YAML highlighter: keys, scalars by type, comments, anchors, tags, block
// scalars. It never fails: anything it does not recognise stays plain text.

const NUMBER = /^[-+]?(\d[\d_]*(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|0x[\da-fA-F]+|0o[0-7]+|\.inf|\.Inf|\.nan|\.NaN)$/;
const CONSTANT = /^(true|false|True|False|TRUE|FALSE|null|Null|NULL|~|yes|no|on|off)$/;

function scalarClass(text) {
  const t = text.trim();
  if (t === "") return null;
  if (NUMBER.test(t)) return "number";
  if (CONSTANT.test(t)) return "constant";
  return "string";
}

// Index of a comment start (" #" or a leading "#") outside quotes, or -1.
function commentStart(line) {
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s:,[{-]/.test(line[i - 1])) quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) {
      return i;
    }
  }
  return -1;
}

// Index of the colon ending a mapping key ("key: value" or "key:" at the end), or -1.
function keyEnd(text) {
  let quote = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = "";
    } else if ((c === '"' || c === "'") && i === 0) {
      quote = c;
    } else if (c === ":" && (i + 1 === text.length || text[i + 1] === " " || text[i + 1] === "\t")) {
      return i;
    } else if (c === "{" || c === "[") {
      return -1;
    }
  }
  return -1;
}

// Tokens of a value: a leading anchor/alias/tag, a block indicator, or a scalar.
function valueTokens(text, out) {
  let rest = text;
  const lead = rest.match(/^\s*/)[0];
  if (lead) out.push(["", lead]);
  rest = rest.slice(lead.length);
  for (;;) {
    const m = rest.match(/^([&*][^\s,\]}]+|![^\s]*)(\s*)/);
    if (!m) break;
    out.push([m[1][0] === "!" ? "tag" : "anchor", m[1]]);
    if (m[2]) out.push(["", m[2]]);
    rest = rest.slice(m[0].length);
  }
  if (/^[|>][-+0-9]*\s*$/.test(rest)) {
    out.push(["indicator", rest]);
    return true; // a block scalar starts on the next line
  }
  if (rest) out.push([rest[0] === '"' || rest[0] === "'" ? "string" : scalarClass(rest) || "", rest]);
  return false;
}

// [[class, text], ...] for each line; class "" is plain text.
export function tokenize(source) {
  const lines = source.split("\n");
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop(); // the final newline
  const result = [];
  let blockIndent = -1; // inside a block scalar: lines indented more than this are content
  for (const line of lines) {
    const tokens = [];
    const indent = line.match(/^ */)[0].length;
    if (blockIndent >= 0) {
      if (line.trim() === "" || indent > blockIndent) {
        tokens.push(["string", line]);
        result.push(tokens);
        continue;
      }
      blockIndent = -1;
    }
    if (/^(---|\.\.\.)(\s|$)/.test(line)) {
      tokens.push(["document", line.slice(0, 3)]);
      const rest = line.slice(3);
      const c = commentStart(rest);
      if (c >= 0) tokens.push(["", rest.slice(0, c)], ["comment", rest.slice(c)]);
      else if (rest) tokens.push(["", rest]);
      result.push(tokens);
      continue;
    }
    let body = line;
    let comment = "";
    const c = commentStart(line);
    if (c >= 0) {
      body = line.slice(0, c);
      comment = line.slice(c);
    }
    let pos = indent;
    if (indent) tokens.push(["", line.slice(0, indent)]);
    let itemIndent = indent;
    // list item dashes, possibly several: "- - a"
    while (/^-( |$)/.test(body.slice(pos))) {
      tokens.push(["indicator", "-"]);
      pos += 1;
      const space = body.slice(pos).match(/^ */)[0];
      if (space) tokens.push(["", space]);
      pos += space.length;
      itemIndent = pos;
    }
    const rest = body.slice(pos);
    const k = keyEnd(rest);
    let opensBlock = false;
    if (k >= 0) {
      tokens.push(["key", rest.slice(0, k)]);
      tokens.push(["punct", ":"]);
      opensBlock = valueTokens(rest.slice(k + 1), tokens);
    } else if (rest) {
      opensBlock = valueTokens(rest, tokens);
    }
    if (opensBlock) blockIndent = k >= 0 ? itemIndent : indent;
    if (comment) tokens.push(["comment", comment]);
    result.push(tokens);
  }
  return result;
}

// A <code> element with one .line span per source line and a .tok-* span per token.
export function highlight(source) {
  const code = document.createElement("code");
  code.className = "yaml";
  tokenize(source).forEach((tokens, i) => {
    const line = document.createElement("span");
    line.className = "line";
    line.dataset.n = String(i + 1);
    for (const [cls, text] of tokens) {
      if (!cls) {
        line.append(document.createTextNode(text));
        continue;
      }
      const span = document.createElement("span");
      span.className = `tok-${cls}`;
      span.textContent = text;
      line.append(span);
    }
    line.append(document.createTextNode("\n"));
    code.append(line);
  });
  return code;
}
