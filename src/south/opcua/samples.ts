/**
 * OPC UA data values as the samples a driver hands back.
 *
 * **Quality.** Good -> good. Uncertain -> good with the value: the core Quality type has no
 * "uncertain", and the shadow carries a value only with good quality, so reporting it bad or
 * stale would freeze the shadow at an older value, which is more wrong than an uncertain current
 * one (OPC UA Part 4: an uncertain value may be used). A Good <-> Uncertain change is still
 * delivered (the status code is part of the replay signature). Bad -> bad, SG_OPCUA_BAD, reason
 * the status code's name. NaN/Infinity -> bad, SG_CODEC_NOT_FINITE.
 */
import type { DataValue } from "node-opcua";
import type { ValueSample } from "../../core/samples.js";
import type { Quality } from "../../core/types.js";
import { type Converted, convertDataValue } from "./values.js";

export function toSample(key: string, c: Converted, ts: number): ValueSample {
  return {
    key,
    quality: c.quality,
    ...(c.value !== undefined && { value: c.value }),
    ...(c.sourceTs !== undefined && { sourceTs: c.sourceTs }),
    ts,
  };
}

export function dataValueSample(key: string, dv: DataValue, ts: number): ValueSample {
  return toSample(key, convertDataValue(dv), ts);
}

export function badSample(key: string, code: string, reason: string, ts: number): ValueSample {
  const quality: Quality = { status: "bad", code, reason };
  return { key, quality, ts };
}
