import { readFile } from "node:fs/promises";
import type { z } from "zod";
import { parseYamlSource, plainValue } from "../config/yaml-source.js";
import { ErrorCodes, ShadowgateError } from "../core/errors.js";

/** A key path inside a profile, as YAML positions and messages name it. */
export type Path = readonly (string | number)[];

export interface Issue {
  readonly path: Path;
  readonly message: string;
}

/** How a simulator's profile files are read: the schema, then the simulator's own checks. */
export interface ProfileFormat<Parsed, Profile> {
  readonly schema: z.ZodType<Parsed>;
  /** Checks that span keys; pushes what is wrong to `issues` (the result is then unused). */
  compile(parsed: Parsed, source: string, issues: Issue[]): Profile;
  /** The message for an unknown dynamic `kind`, e.g. "kind must be one of approach, counter". */
  readonly kinds: string;
}

type Locate = (path: Path) => { line: number; col: number } | undefined;

const formatPath = (path: Path): string =>
  path.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");

function zodIssues(error: z.ZodError, kinds: string): Issue[] {
  const out: Issue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map((k) => (typeof k === "number" ? k : String(k)));
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push({ path: [...path, key], message: "unknown key" });
    } else if (issue.code === "invalid_union" && path[path.length - 1] === "kind") {
      out.push({ path, message: kinds });
    } else {
      out.push({ path, message: issue.message });
    }
  }
  return out;
}

/** Every problem at once, each as `file:line:col key.path: message`, in one ShadowgateError. */
function throwIssues(source: string, issues: readonly Issue[], locate?: Locate): never {
  const lines = issues.map((issue) => {
    const pos = locate?.(issue.path);
    const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
    const key = formatPath(issue.path);
    return `${where}${key ? ` ${key}` : ""}: ${issue.message}`;
  });
  throw new ShadowgateError(ErrorCodes.CONFIG_SCHEMA, lines.join("\n"), {
    file: source,
    issues: lines,
  });
}

/** Validates a profile given as an object; `source` names it in error messages. */
export function compileProfileInput<Parsed, Profile>(
  format: ProfileFormat<Parsed, Profile>,
  input: unknown,
  source: string,
  locate?: Locate,
): Profile {
  const result = format.schema.safeParse(input);
  if (!result.success) throwIssues(source, zodIssues(result.error, format.kinds), locate);
  const issues: Issue[] = [];
  const profile = format.compile(result.data, source, issues);
  if (issues.length > 0) throwIssues(source, issues, locate);
  return profile;
}

/** Validates a profile given as YAML text; errors name `source` and line:col. */
export function parseProfileText<Parsed, Profile>(
  format: ProfileFormat<Parsed, Profile>,
  text: string,
  source: string,
): Profile {
  const src = parseYamlSource(source, text);
  // Like the gateway's files: aliases, keys and depth are checked while the YAML becomes data.
  const plain = src.syntaxErrors.length > 0 ? undefined : plainValue(src);
  const problems = [
    ...src.syntaxErrors.map((e) => ({ ...e, path: [] as Path })),
    ...(plain?.problems ?? []),
  ];
  if (!plain || problems.length > 0) {
    const lines = problems.map((e) => {
      const key = formatPath(e.path);
      return `${source}:${e.position.line}:${e.position.col}${key ? ` ${key}` : ""}: ${e.message}`;
    });
    throw new ShadowgateError(ErrorCodes.CONFIG_YAML, lines.join("\n"), {
      file: source,
      issues: lines,
    });
  }
  return compileProfileInput(format, plain.value, source, (path) => src.positionOf(path));
}

/** Reads and validates a profile file. Errors name the file and line:col. */
export async function loadProfileFile<Parsed, Profile>(
  format: ProfileFormat<Parsed, Profile>,
  file: string,
): Promise<Profile> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new ShadowgateError(
      ErrorCodes.CONFIG_READ,
      `${file}: cannot read the profile: ${err instanceof Error ? err.message : String(err)}`,
      { file },
    );
  }
  return parseProfileText(format, text, file);
}
