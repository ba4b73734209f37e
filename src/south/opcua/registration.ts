/**
 * One monitor() call and what it delivered.
 *
 * **Replays.** For every monitored key the driver keeps the signature (status code, value as
 * JSON) of the sample it last delivered and drops a notification with the same signature: a value
 * the server sends again (the initial value of a recreated item, a republished notification) is
 * never reported as a new change. When the connection is lost every monitored key gets one bad
 * sample (SG_OPCUA_DISCONNECTED; SG_OPCUA_UNTRUSTED while the server is not trusted), once per
 * outage and reason, not once per failed attempt, so the shadow marks it stale. After the
 * reconnect the first good value of each key is therefore delivered exactly once, even when equal
 * to the last good one (its quality changed), and a value that changed during the outage arrives
 * once, as that first value. Keys whose node cannot be monitored (BadNodeIdUnknown, a browse
 * path without a match) get one bad sample naming the status code.
 */
import type { ClientMonitoredItemGroup } from "node-opcua";
import type { Logger } from "../../core/logger.js";
import type { ValueSample } from "../../core/samples.js";
import type { MonitorGroup } from "../driver.js";
import { badSample } from "./samples.js";
import type { Down, LiveSession } from "./session.js";

/** Where a registration reports what it cannot hand to its caller. */
export interface DeliveryContext {
  readonly sourceId: string;
  readonly log: Logger;
  /** A notification was dropped as a replay. */
  readonly suppressed: () => void;
}

/** A monitor() call: kept across reconnects, its items recreated on every new session. */
export class Registration {
  /** Per node of the group: the signature of what was last delivered (see the file comment). */
  private readonly delivered: (string | undefined)[];
  private pending: ValueSample[] = [];
  private flushScheduled = false;
  /** The session its items live on, when they do. */
  createdOn: LiveSession | undefined;
  itemGroups: { readonly group: ClientMonitoredItemGroup; readonly interval: number }[] = [];
  itemCount = 0;
  stopped = false;

  constructor(
    readonly group: MonitorGroup,
    private readonly onSamples: (samples: ValueSample[]) => void,
    private readonly context: DeliveryContext,
  ) {
    this.delivered = group.nodes.map(() => undefined);
  }

  /** Its items are gone with their session. */
  detach(): void {
    this.createdOn = undefined;
    this.itemGroups = [];
    this.itemCount = 0;
  }

  /** Queues a sample unless it repeats what was last delivered for the key; flushes per turn. */
  deliver(index: number, sample: ValueSample, signature: string): void {
    if (this.stopped) return;
    if (this.delivered[index] === signature) {
      this.context.suppressed();
      return;
    }
    this.delivered[index] = signature;
    this.pending.push(sample);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // One Publish response is dispatched in one turn of the loop: it reaches onSamples as one batch.
    setImmediate(() => {
      this.flushScheduled = false;
      const batch = this.pending;
      this.pending = [];
      if (this.stopped || batch.length === 0) return;
      try {
        this.onSamples(batch);
      } catch (err) {
        this.context.log.error(
          { source: this.context.sourceId, group: this.group.id, err: (err as Error).message },
          "onSamples threw",
        );
      }
    });
  }

  /** One bad sample per key for this reason of unavailability (not one per attempt). */
  markDown(down: Down, at: number): void {
    this.group.nodes.forEach((ref, i) => {
      this.deliver(i, badSample(ref.key, down.code, down.message, at), `down:${down.code}`);
    });
  }
}
