import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit } from "yaml";
import type { Document, Node } from "yaml";
import type { SourcePosition } from "../mapping/types.js";

/** A parsed YAML file that can answer "where is key path X" for error messages. */
export interface YamlSource {
  readonly file: string;
  readonly doc: Document.Parsed;
  /** Syntax errors, already positioned. */
  readonly syntaxErrors: ReadonlyArray<{ position: SourcePosition; message: string }>;
  /** Position of the value at `path`, or of the nearest ancestor that exists. */
  positionOf(path: readonly (string | number)[], key?: boolean): SourcePosition;
  positionOfOffset(offset: number): SourcePosition;
}

export function parseYamlSource(file: string, text: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col };
  };
  const syntaxErrors = [...doc.errors].map((e) => ({
    position: at(e.pos[0]),
    // The yaml library's messages end with a code frame; the first line is the message.
    message: (e.message.split("\n")[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, ""),
  }));

  return {
    file,
    doc,
    syntaxErrors,
    positionOfOffset: at,
    positionOf(path, key = false) {
      let node: unknown = doc.contents;
      let keyOffset: number | undefined;
      let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
      for (const seg of path) {
        if (isMap(node)) {
          const pair = node.items.find(
            (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
          );
          if (!pair) break;
          keyOffset = (pair.key as Node).range?.[0];
          node = pair.value;
          offset = (pair.value as Node | null)?.range?.[0] ?? keyOffset ?? offset;
        } else if (isSeq(node) && typeof seg === "number") {
          const item = node.items[seg];
          if (!item) break;
          keyOffset = undefined;
          node = item;
          offset = (item as Node).range?.[0] ?? offset;
        } else break;
      }
      return at(key && keyOffset !== undefined ? keyOffset : offset);
    },
  };
}

/**
 * `${NAME}` and `${NAME:-default}` in string scalars are replaced from the environment, so that
 * secrets stay out of the files. A plain (unquoted) scalar that was only a reference takes the
 * type of its value (`port: ${PLC_PORT}` is a number). Returns the names that were missing.
 */
export function interpolateEnv(
  src: YamlSource,
  env: NodeJS.ProcessEnv,
): Array<{ position: SourcePosition; message: string }> {
  const missing: Array<{ position: SourcePosition; message: string }> = [];
  const { file } = src;
  visit(src.doc, {
    Scalar(_key, node) {
      if (typeof node.value !== "string" || !node.value.includes("${")) return;
      const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(node.value);
      const replaced = node.value.replace(
        /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
        (_m, name: string, fallback: string | undefined) => {
          const v = env[name];
          if (v !== undefined && v !== "") return v;
          if (fallback !== undefined) return fallback;
          const pos = node.range ? src.positionOfOffset(node.range[0]) : { file, line: 1, col: 1 };
          missing.push({
            position: pos,
            message: `environment variable ${name} is not set (write \${${name}:-default} for a default)`,
          });
          return "";
        },
      );
      if (whole && node.type === "PLAIN") {
        const typed = parseDocument(replaced).toJS() as unknown;
        node.value = typeof typed === "number" || typeof typed === "boolean" ? typed : replaced;
      } else {
        node.value = replaced;
      }
    },
  });
  return missing;
}
