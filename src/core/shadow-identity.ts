/**
 * How a mapping file names an AWS IoT shadow, shared by the mapping compiler, the config schema
 * and the AWS dialect: a thing, and optionally one of its named shadows. The gateway knows the
 * shadow by a local name (logs, API, CLI, store): the thing name for the classic shadow,
 * `thing.shadow` for a named one (a dot is allowed in neither name, so they cannot be confused).
 */

/** Thing names: 1-128 of these (the AWS API reference). */
export const THING_NAME = /^[a-zA-Z0-9:_-]{1,128}$/;
/** Shadow names: 1-64 of these. */
export const SHADOW_NAME = /^[a-zA-Z0-9:_-]{1,64}$/;

export const localShadowName = (thingName: string, shadowName?: string): string =>
  shadowName === undefined ? thingName : `${thingName}.${shadowName}`;

/**
 * The thing and named shadow of a device the gateway knows by its local name: a device plan
 * keeps the thing's name as its productKey and the local name as its deviceName
 * (mapping/types.ts).
 */
export function awsShadowOf(d: { readonly productKey: string; readonly deviceName: string }): {
  thingName: string;
  shadowName?: string;
} {
  return d.deviceName === d.productKey
    ? { thingName: d.productKey }
    : { thingName: d.productKey, shadowName: d.deviceName.slice(d.productKey.length + 1) };
}
