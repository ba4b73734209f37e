/**
 * What the simulator's transports (TCP connections, serial lines) and its transaction queue
 * share: a file of its own, so that the serial line and the simulator do not import each other.
 */

/** Serial line counters, all zero while no RTU link was started. */
export interface RtuStats {
  /** Frames with a good CRC, whichever unit they address (each is also one of `requests`). */
  readonly frames: number;
  /**
   * Frames dropped for a bad CRC (with whatever followed them up to the next silence), or for
   * running past 256 bytes without one.
   */
  readonly crcErrors: number;
  /** Bytes that never made a whole frame before a silence, dropped. */
  readonly partialFrames: number;
  /** Good frames for unit 0: writes are executed by every unit, nothing is answered. */
  readonly broadcasts: number;
}

/** One request as the simulator serves it, whatever carried it. */
export interface SimRequest {
  /**
   * The request ADU in MBAP form: unit id at byte 6, PDU from byte 7 (the shape serveRequest
   * takes; an RTU frame is rewrapped into it).
   */
  readonly adu: Buffer;
  /** performance.now() when its first byte arrived. */
  readonly receivedAt: number;
}

/** How one transport carries transactions: a TCP connection or a serial line. */
export interface TransactionChannel {
  /** Whether unit 0 addresses every unit and gets no answer (a serial line). */
  readonly broadcast: boolean;
  /** The policy for units the simulator does not host. */
  unknownUnit(): "ignore" | "exception";
  /** Line time from a request's first byte until the slave may act on it (0 on TCP). */
  requestMs(adu: Buffer): number;
  /** Line time of an answer (0 on TCP). */
  responseMs(adu: Buffer): number;
  /** Sends an answer (an ADU in MBAP form). */
  send(response: Buffer): void;
  /** Called once per request dealt with, answered or not, before the next one starts. */
  afterRequest?(): void;
  /** Around the answers sent from a timer, so TCP can batch them into one write. */
  cork?(): void;
  uncork?(): void;
}

/**
 * The transactions of one connection or line, served strictly one after another and in order,
 * like a real device or an RS-485 line: with a response delay, a pipelining client waits
 * delay x depth for its last answer.
 */
export interface TransactionQueue {
  push(request: SimRequest): void;
  /** Drops waiting requests and pending answers; later pushes are ignored. Idempotent. */
  close(): void;
  readonly closed: boolean;
}
