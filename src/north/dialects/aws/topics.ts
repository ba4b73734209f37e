/**
 * AWS IoT Device Shadow topics (shadow-protocol.md 3.1): per shadow a prefix,
 * `$aws/things/{thing}/shadow` (classic) or `.../shadow/name/{shadow}` (named), with `/get`,
 * `/update` and `/delete` requests and the service's `/accepted`, `/rejected`, `/update/delta`
 * and `/update/documents` beside them.
 *
 * The gateway knows a shadow by its thing and its local name (core/shadow-identity.ts).
 */

/** The shadow a local name stands for; the named shadow's part is after the thing's dot. */
export function shadowOf(
  thingName: string,
  localName: string,
): { thingName: string; shadowName?: string } {
  const named = localName.startsWith(`${thingName}.`);
  return named ? { thingName, shadowName: localName.slice(thingName.length + 1) } : { thingName };
}

export const shadowPrefix = (thingName: string, shadowName?: string): string =>
  shadowName === undefined
    ? `$aws/things/${thingName}/shadow`
    : `$aws/things/${thingName}/shadow/name/${shadowName}`;

export type Operation = "get" | "update" | "delete";
export type ReplyStub = "accepted" | "rejected" | "delta" | "documents";

/**
 * The filters a shadow's replies and pushes arrive on: three, not the six topics one by one,
 * and not `/shadow/#`, which would bring `/update/documents` (previous and current document
 * after every update: twice the traffic for nothing the gateway uses) and the gateway's own
 * requests back. `+/accepted` also brings `/delete/accepted`: the shadow was deleted.
 */
export function replyFilters(thingName: string, shadowName?: string): string[] {
  const p = shadowPrefix(thingName, shadowName);
  return [`${p}/+/accepted`, `${p}/+/rejected`, `${p}/update/delta`];
}

const TOPIC =
  /^\$aws\/things\/([a-zA-Z0-9:_-]{1,128})\/shadow(?:\/name\/([a-zA-Z0-9:_-]{1,64}))?\/(get|update|delete)(?:\/(accepted|rejected|delta|documents))?$/;

/** The parts of a shadow topic, or undefined when it is not one. */
export function parseShadowTopic(topic: string):
  | {
      thingName: string;
      shadowName?: string;
      operation: Operation;
      stub?: ReplyStub;
    }
  | undefined {
  const m = TOPIC.exec(topic);
  if (!m) return undefined;
  const [, thingName = "", shadowName, operation, stub] = m;
  if (stub === "delta" || stub === "documents") {
    if (operation !== "update") return undefined;
  }
  return {
    thingName,
    ...(shadowName !== undefined && { shadowName }),
    operation: operation as Operation,
    ...(stub !== undefined && { stub: stub as ReplyStub }),
  };
}
