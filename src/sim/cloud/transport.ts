import { SHADOW_UPDATE_WILDCARD } from "../../north/dialects/alibaba/topics.js";
import { GATEWAY_REQUEST_FILTERS } from "./gateway-requests.js";
import type { MessageOrigin } from "./sessions.js";

/** What a transport delivers to the service: shadow requests and the gateways' requests. */
export const SERVICE_FILTERS: readonly string[] = [
  SHADOW_UPDATE_WILDCARD,
  ...GATEWAY_REQUEST_FILTERS,
];

/**
 * How the service meets MQTT: an embedded broker or a client of an external one. The service
 * neither knows nor cares which, like an MQTT.js client and its stream.
 */
export interface ShadowTransport {
  /**
   * Delivers every message published to SERVICE_FILTERS, in arrival order, until stop, with
   * its publisher when the transport can tell (the embedded broker); `onClosed` hears of each
   * connection that ends (only a transport that can see connections calls it).
   */
  start(
    onRequest: (topic: string, payload: Buffer, origin?: MessageOrigin) => void,
    onClosed?: (connection: string) => void,
  ): Promise<void>;
  /** Publishes at QoS 1; resolves once the broker has the message. */
  publish(topic: string, payload: string): Promise<void>;
  /**
   * Whether a connected client listens on the device's /shadow/get topic; undefined when the
   * transport cannot see subscriptions (an external broker).
   */
  isOnline(productKey: string, deviceName: string): boolean | undefined;
  stop(): Promise<void>;
}
