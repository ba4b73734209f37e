import type { JsonObject } from "../../../core/types.js";

/**
 * The Alibaba shadow wire format (shadow-protocol.md 1.3), shared by the gateway's dialect and
 * the local cloud shadow service so the two cannot drift apart. The string "null" clears
 * desired and deletes reported attributes; a tolerant reader also accepts JSON null.
 */

/** Per-attribute metadata: Alibaba timestamps are whole seconds since the epoch. */
export type AttributeMetadata = { timestamp: number };
export type MetadataSection = { [attr: string]: AttributeMetadata | MetadataSection };

export interface ShadowState {
  desired?: JsonObject;
  reported?: JsonObject;
}

export interface ShadowMetadata {
  desired?: MetadataSection;
  reported?: MetadataSection;
}

/** Device (or application) -> service, on /shadow/update/{pk}/{dn}. */
export type ShadowRequest =
  | {
      method: "update";
      state: { reported?: JsonObject | "null"; desired?: JsonObject | "null" };
      version: number;
      clientToken?: string;
    }
  | { method: "get"; clientToken?: string; version?: number }
  | {
      method: "delete";
      state: { reported: JsonObject | "null" };
      version: number;
      clientToken?: string;
    };

/** Service -> device, on /shadow/get/{pk}/{dn}. */
export type ShadowReply =
  | {
      method: "reply";
      payload: {
        status: "success";
        version: number;
        state?: ShadowState;
        metadata?: ShadowMetadata;
      };
      version?: number;
      timestamp: number;
      clientToken?: string;
    }
  | {
      method: "reply";
      payload: { status: "error"; content: { errorcode: string; errormessage: string } };
      version?: number;
      timestamp: number;
      clientToken?: string;
    }
  | {
      method: "control";
      payload: { status: "success"; state: ShadowState; metadata: ShadowMetadata };
      version: number;
      timestamp: number;
    };

/** The documented error codes (1.4). 409 is a version conflict; 400-408 are permanent. */
export const ShadowErrorCodes = {
  FORMAT: 400,
  METHOD_MISSING: 401,
  STATE_MISSING: 402,
  VERSION_INVALID: 403,
  REPORTED_MISSING: 404,
  REPORTED_EMPTY: 405,
  METHOD_INVALID: 406,
  DOCUMENT_EMPTY: 407,
  TOO_MANY_ATTRIBUTES: 408,
  VERSION_CONFLICT: 409,
  SERVER: 500,
} as const;

/** The most attributes `reported` may hold (error 408 beyond). */
export const MAX_ATTRIBUTES = 128;
