"""The Train tab's browser-side snippets: the form's merge into the settings box, and the log's scroll."""

import json
from typing import Any

from studio.training import FieldInfo

# Runs in the browser when a form widget changes: puts the value into the settings box, or drops it when it is
# the default. In the browser, so that quick edits of two widgets cannot race each other through the server.
MERGE_JS = """(text, value, method) => {
  const name = %(name)s, kind = %(kind)s, dflt = (%(defaults)s)[method];
  let v = value;
  if (v === null || v === undefined || (v === "" && (kind === "int" || kind === "float"))) v = null;
  else if (kind === "int") v = Math.round(Number(v));
  else if (kind === "float") v = Number(v);
  else if (kind === "bool") v = Boolean(v);
  else v = String(v);
  const src = (text || "").trim();
  if (src && !src.startsWith("{")) {
    const kept = src.split("\\n").filter((l) => l.split("=")[0].trim() !== name);
    if (v !== null && v !== dflt) kept.push(name + "=" + JSON.stringify(v));
    return kept.join("\\n");
  }
  let s;
  try { s = src ? JSON.parse(src) : {}; } catch (e) { return text; }
  if (typeof s !== "object" || s === null || Array.isArray(s)) return text;
  if (v === null || v === dflt) delete s[name]; else s[name] = v;
  return Object.keys(s).length ? JSON.stringify(s) : "{}";
}"""


def merge_js(f: FieldInfo, defaults: dict[str, Any]) -> str:
    """The browser-side merge for one setting; ``defaults`` maps each method to its default (methods differ:
    the reward model's learning rate, say). A key=value box keeps its format; broken JSON is left for
    Preview and Start to explain."""
    values = {"name": json.dumps(f.name), "kind": json.dumps(f.type), "defaults": json.dumps(defaults)}
    return MERGE_JS % values


# gradio's own autoscroll only follows a textbox while the page is scrolled to its bottom; a log should always
# show its newest lines, unless the reader has scrolled up in it. A log filled while its tab was hidden has no
# height to scroll, so this also runs when the tab opens, a few times while the tab lays itself out.
SCROLL_LOG_JS = """() => [50, 300, 1000].forEach((ms) => setTimeout(() => {
  const t = document.querySelector("#train-log textarea");
  if (t && (t.scrollTop === 0 || t.scrollHeight - t.scrollTop - t.clientHeight < 80)) t.scrollTop = t.scrollHeight;
}, ms))"""
