// Line diff by longest common subsequence, and its side-by-side layout.
//
// Common prefix and suffix are cut first, so the quadratic table only covers the changed
// middle. Past MAX_CELLS (a few MB of table) the middle is shown as one replaced block
// instead of freezing the page.

export const MAX_CELLS = 4_000_000;

// [{op: "same"|"del"|"add", a?: index in a, b?: index in b}]
export function diffLines(a, b) {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const ops = [];
  for (let i = 0; i < start; i++) ops.push({ op: "same", a: i, b: i });
  const n = endA - start;
  const m = endB - start;
  if (n * m > MAX_CELLS) {
    for (let i = 0; i < n; i++) ops.push({ op: "del", a: start + i });
    for (let j = 0; j < m; j++) ops.push({ op: "add", b: start + j });
  } else {
    // lcs[i][j] = LCS length of a[start+i..endA) and b[start+j..endB), row-major in one array
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] =
          a[start + i] === b[start + j]
            ? lcs[(i + 1) * w + j + 1] + 1
            : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (a[start + i] === b[start + j]) {
        ops.push({ op: "same", a: start + i, b: start + j });
        i++;
        j++;
      } else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
        ops.push({ op: "del", a: start + i });
        i++;
      } else {
        ops.push({ op: "add", b: start + j });
        j++;
      }
    }
    for (; i < n; i++) ops.push({ op: "del", a: start + i });
    for (; j < m; j++) ops.push({ op: "add", b: start + j });
  }
  for (let k = 0; k < a.length - endA; k++) ops.push({ op: "same", a: endA + k, b: endB + k });
  return ops;
}

// Rows of a side-by-side view: {kind: "same"|"change"|"del"|"add", left, right} where left and
// right are {n (1-based), text} or null. A run of deletions followed by additions is paired.
export function sideBySide(a, b) {
  const ops = diffLines(a, b);
  const rows = [];
  let i = 0;
  while (i < ops.length) {
    if (ops[i].op === "same") {
      const { a: x, b: y } = ops[i];
      rows.push({ kind: "same", left: { n: x + 1, text: a[x] }, right: { n: y + 1, text: b[y] } });
      i++;
      continue;
    }
    const dels = [];
    const adds = [];
    while (i < ops.length && ops[i].op !== "same") {
      if (ops[i].op === "del") dels.push(ops[i].a);
      else adds.push(ops[i].b);
      i++;
    }
    for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
      const left = k < dels.length ? { n: dels[k] + 1, text: a[dels[k]] } : null;
      const right = k < adds.length ? { n: adds[k] + 1, text: b[adds[k]] } : null;
      rows.push({ kind: left && right ? "change" : left ? "del" : "add", left, right });
    }
  }
  return rows;
}

export function splitLines(text) {
  if (text === undefined || text === null || text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

// Per file: {path, status: "added"|"removed"|"changed"|"same", rows, added, removed}
export function diffFiles(oldFiles, newFiles) {
  const paths = [...new Set([...Object.keys(oldFiles), ...Object.keys(newFiles)])].sort();
  return paths.map((path) => {
    const inOld = Object.hasOwn(oldFiles, path);
    const inNew = Object.hasOwn(newFiles, path);
    const rows = sideBySide(splitLines(oldFiles[path]), splitLines(newFiles[path]));
    const added = rows.filter((r) => r.right && r.kind !== "same").length;
    const removed = rows.filter((r) => r.left && r.kind !== "same").length;
    let status = "same";
    if (!inOld) status = "added";
    else if (!inNew) status = "removed";
    else if (oldFiles[path] !== newFiles[path]) status = "changed";
    return { path, status, rows, added, removed };
  });
}
