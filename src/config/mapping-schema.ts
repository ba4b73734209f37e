import { z } from "zod";
import { duration } from "../core/duration.js";
import { NARROW_BYTE_ORDERS, POINT_TYPES, WIDE_BYTE_ORDERS } from "../mapping/types.js";
import { SHADOW_NAME, THING_NAME } from "../core/shadow-identity.js";

/**
 * The mapping file schema: the single source of the TypeScript type, the runtime validation and
 * the JSON Schema in config/schemas/mapping.schema.json. Rules that span several keys of one point
 * live in `checkPoint` so they are reported at the offending key.
 */

const pointName = /^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)*$/;

export const pointSchema = z
  .object({
    node: z
      .string()
      .min(1)
      .describe(
        "OPC UA: a NodeId (ns=2;s=Boiler.Temperature) or a browse path from Objects (/2:Boiler/2:Temperature)",
      )
      .optional(),
    samplingInterval: duration("OPC UA: how often the server samples the node").optional(),
    register: z
      .number()
      .int()
      .describe("Modicon register number: 40001.. holding, 30001.. input (6-digit 400001 too)")
      .optional(),
    coil: z.number().int().describe("1-based coil number").optional(),
    discreteInput: z.number().int().describe("1-based discrete input number").optional(),
    table: z
      .enum(["holding", "input", "coil", "discreteInput"])
      .describe("With offset: the 0-based PDU address form")
      .optional(),
    offset: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .describe("0-based PDU address inside `table`")
      .optional(),
    type: z.enum(POINT_TYPES).describe("Data type; uint16 for registers, bool for bits").optional(),
    byteOrder: z
      .enum([...WIDE_BYTE_ORDERS, ...NARROW_BYTE_ORDERS])
      .describe("ABCD CDAB BADC DCBA for 32/64-bit types, AB or BA for 16-bit types and strings")
      .optional(),
    scale: z.number().describe("value = raw * scale + valueOffset").optional(),
    valueOffset: z.number().describe("value = raw * scale + valueOffset").optional(),
    length: z.number().int().min(1).max(125).describe("Registers of a string point").optional(),
    bit: z.number().int().min(0).max(15).describe("Bit 0-15 of a 16-bit register").optional(),
    enum: z
      .record(z.string().regex(/^-?\d+$/, "enum keys are raw integers"), z.string().min(1))
      .describe("Raw integer -> label")
      .optional(),
    writable: z.boolean().describe("The cloud may write this point").optional(),
    min: z.number().describe("Lowest value a write may set").optional(),
    max: z.number().describe("Highest value a write may set").optional(),
    deadband: z.number().min(0).describe("Report only changes at least this large").optional(),
    onChange: z
      .boolean()
      .describe("Report on change (default); false: only on heartbeat")
      .optional(),
    heartbeat: duration("Maximum silence before the value is reported again").optional(),
    unit: z.string().describe("Engineering unit, for people").optional(),
    description: z.string().optional(),
  })
  .strict();

export const mappingFileSchema = z
  .object({
    version: z.literal(1).describe("Mapping file format version"),
    device: z
      .object({
        productKey: z.string().min(1).describe("Alibaba: the device's productKey").optional(),
        deviceName: z.string().min(1).describe("Alibaba: the device's deviceName").optional(),
        deviceSecret: z
          .string()
          .min(1)
          .describe(
            "Alibaba sub-device: signs its topology entry and login; write ${ENV_NAME}, never the secret itself",
          )
          .optional(),
        thingName: z
          .string()
          .regex(THING_NAME, "a thing name is 1-128 of a-z A-Z 0-9 : _ -")
          .describe("AWS: the thing whose shadow this device is")
          .optional(),
        shadowName: z
          .string()
          .regex(SHADOW_NAME, "a shadow name is 1-64 of a-z A-Z 0-9 : _ -")
          .describe("AWS: a named shadow of the thing (the classic shadow without it)")
          .optional(),
      })
      .strict()
      .superRefine((d, ctx) => {
        const alibaba = d.productKey !== undefined || d.deviceName !== undefined;
        const aws = d.thingName !== undefined || d.shadowName !== undefined;
        if (alibaba && aws) {
          ctx.addIssue({
            code: "custom",
            message:
              "name either an Alibaba device (productKey, deviceName) or an AWS thing (thingName, shadowName), not both",
          });
        } else if (aws) {
          if (d.thingName === undefined)
            ctx.addIssue({
              code: "custom",
              path: ["thingName"],
              message: "shadowName needs thingName",
            });
          if (d.deviceSecret !== undefined)
            ctx.addIssue({
              code: "custom",
              path: ["deviceSecret"],
              message: "an AWS thing logs in by certificate; deviceSecret is Alibaba's",
            });
        } else {
          for (const key of ["productKey", "deviceName"] as const) {
            if (d[key] === undefined)
              ctx.addIssue({
                code: "custom",
                path: [key],
                message: `${key} is required (or thingName, for AWS)`,
              });
          }
        }
      })
      .describe("The shadow this file describes: an Alibaba device or an AWS thing"),
    source: z.string().min(1).describe("A source id from the gateway config"),
    unitId: z.number().int().min(0).max(255).default(1).describe("Modbus unit (slave) id"),
    pollInterval: duration(
      "How often the points are read (OPC UA: the subscription's publishing interval)",
    ).default(1000),
    mode: z
      .enum(["subscribe", "poll"])
      .describe("OPC UA: monitored items (default), or a batched Read every pollInterval")
      .optional(),
    defaults: z
      .object({
        byteOrder: z
          .enum(WIDE_BYTE_ORDERS)
          .describe("Byte order of 32/64-bit points that name none")
          .optional(),
        heartbeat: duration("Heartbeat of points that name none").optional(),
      })
      .strict()
      .optional(),
    points: z
      .record(z.string().regex(pointName, "point names are words joined by dots"), pointSchema)
      .describe("Point name (dotted: nested in state.reported) -> where and how to read it"),
  })
  .strict();

export type MappingFile = z.output<typeof mappingFileSchema>;
export type PointInput = z.output<typeof pointSchema>;
