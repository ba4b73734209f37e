import path from "node:path";
import { ErrorCodes } from "../../../core/errors.js";
import type { Logger } from "../../../core/logger.js";
import {
  SessionRefusal,
  type DeviceSession,
  type SessionContext,
  type ShadowDevice,
} from "../../dialect.js";
import type { Link } from "../../link.js";
import { LogOnce } from "../../log-once.js";
import {
  isGatewayItself,
  subDeviceOptions,
  type AlibabaCloudConfig,
  type SubDeviceOptions,
} from "./config.js";
import { readRegisteredSecrets, readSecretsFile, saveRegisteredSecrets } from "./secrets.js";
import {
  MAX_BATCH_LOGIN,
  MAX_LOGINS_PER_MINUTE,
  MAX_TOPO_ADD,
  REFUSAL_CODES,
  SubDeviceCodes,
  TopoStatus,
  batchLoginParams,
  decodeExtError,
  decodeReply,
  decodeTopoChange,
  deviceKey,
  deviceList,
  encodeRequest,
  gatewaySubscriptions,
  loginParams,
  parseSubDeviceTopic,
  requestTopic,
  signedEntry,
  topoAddParams,
  type DeviceKey,
  type SubDeviceMethod,
  type SubDeviceReply,
} from "./subdevices.js";

const MINUTE_MS = 60_000;
/** Registration carries no documented cap; the login batch size keeps each message small. */
const MAX_REGISTER = MAX_BATCH_LOGIN;

/** The sub-device session step, when the cloud section makes the devices sub-devices. */
export function alibabaSession(ctx: SessionContext<AlibabaCloudConfig>): DeviceSession | undefined {
  const options = subDeviceOptions(ctx.cloud);
  return options && new SubDeviceSessions(ctx, options);
}

interface Waiter {
  readonly device: ShadowDevice;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * Alibaba sub-devices on the gateway's connection (shadow-protocol.md 2.3). Before the first
 * login of the process: secrets registered if missing (`register: dynamic`), `thing/topo/get`,
 * and `thing/topo/add` for the devices not in the topology yet (at most 30 a message, each
 * signed with the sub-device's own secret). Logins asked for together go out as one
 * `combine/batch_login` of at most 50 (QoS 0); the batch is all or nothing, so a refused batch
 * is tried again one device at a time to find the culprit. At most 5 logins per device per
 * minute (the platform answers 429 beyond). The gateway's own device needs no login. What the
 * cloud says unasked (/ext/error, topo/change) reaches the engine through SessionEvents.
 */
class SubDeviceSessions implements DeviceSession {
  readonly subscriptions: readonly string[];
  private readonly gw: DeviceKey;
  private readonly link: Link;
  private readonly log: Logger;
  private readonly once = new LogOnce();
  private readonly requests: SessionRequests;
  private readonly byKey = new Map<string, ShadowDevice>();
  private readonly secrets = new Map<string, string>();
  /** Devices whose topology entry the cloud refused, and why: their logins cannot succeed. */
  private readonly topoRefused = new Map<string, { code: number; message: string }>();
  private topology: Promise<void> | undefined;
  private queued: Waiter[] = [];
  private flushing = false;
  private readonly loginTimes = new Map<string, number[]>();
  private readonly logouts: ShadowDevice[] = [];
  private logoutFlush: Promise<void> | undefined;

  constructor(
    private readonly ctx: SessionContext<AlibabaCloudConfig>,
    private readonly options: SubDeviceOptions,
  ) {
    const { cloud } = ctx;
    this.gw = { productKey: cloud.productKey, deviceName: cloud.deviceName };
    this.link = ctx.link;
    this.log = ctx.log.child({ gateway: deviceKey(this.gw) });
    this.subscriptions = gatewaySubscriptions(cloud.productKey, cloud.deviceName);
    this.requests = new SessionRequests(this.link, this.gw, cloud.replyTimeout);
    for (const d of ctx.devices) {
      if (!isGatewayItself(cloud, d)) this.byKey.set(deviceKey(d), d);
    }
    this.loadSecrets();
  }

  handle(topic: string, payload: Buffer): boolean {
    const parsed = parseSubDeviceTopic(topic);
    if (!parsed) return false;
    if (parsed.gwPk !== this.gw.productKey || parsed.gwDn !== this.gw.deviceName)
      this.bad(topic, "for another gateway");
    else if (parsed.kind === "reply") this.requests.reply(topic, parsed.method, payload, this.bad);
    else if (parsed.kind === "error") this.onExtError(topic, payload);
    else if (parsed.kind === "change") this.onTopoChange(topic, payload);
    else this.bad(topic, "a request, not a reply");
    return true;
  }

  login(device: ShadowDevice): Promise<void> {
    if (isGatewayItself(this.ctx.cloud, device)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queued.push({ device, resolve, reject });
      // Every login asked for in this turn of the event loop goes in one batch.
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => {
          this.flushing = false;
          void this.flushLogins();
        });
      }
    });
  }

  logout(device: ShadowDevice): Promise<void> {
    if (isGatewayItself(this.ctx.cloud, device)) return Promise.resolve();
    this.logouts.push(device);
    // The engine logs every device out at once on stop: one batch_logout for them all.
    this.logoutFlush ??= new Promise<void>((r) => setImmediate(r)).then(() => this.flushLogouts());
    return this.logoutFlush;
  }

  offline(): void {
    this.requests.offline();
  }

  private loadSecrets(): void {
    const { cloud, dataDir, configDir } = this.ctx;
    for (const [k, v] of readRegisteredSecrets(dataDir)) this.secrets.set(k, v);
    if (this.options.secrets !== undefined) {
      // The config check read it already; a file broken since is said once, not fatal.
      const read = readSecretsFile(path.resolve(configDir, this.options.secrets));
      if (read.ok) for (const [k, v] of read.secrets) this.secrets.set(k, v);
      else this.log.error({ code: ErrorCodes.SESSION_LOGIN }, read.message);
    }
    for (const d of this.ctx.devices) {
      if (d.deviceSecret !== undefined && !isGatewayItself(cloud, d))
        this.secrets.set(deviceKey(d), d.deviceSecret);
    }
  }

  private async flushLogins(): Promise<void> {
    const waiters = this.queued.splice(0);
    try {
      this.topology ??= this.ensureTopology().catch((err: unknown) => {
        this.topology = undefined; // tried again with the next login
        throw err;
      });
      await this.topology;
    } catch (err) {
      for (const w of waiters) w.reject(err as Error);
      return;
    }
    const ready: Waiter[] = [];
    for (const w of waiters) {
      const key = deviceKey(w.device);
      const refused = this.topoRefused.get(key);
      if (refused) w.reject(new SessionRefusal(refused.code, `topology: ${refused.message}`));
      else if (!this.secrets.has(key))
        w.reject(new Error(`no deviceSecret for ${key}: it could not be registered`));
      else {
        const wait = this.rateLimitWait(key);
        if (wait > 0) setTimeout(() => this.requeue(w), wait);
        else ready.push(w);
      }
    }
    if (this.options.login === "single") {
      await Promise.all(ready.map((w) => this.singleLogin(w)));
      return;
    }
    const batches: Waiter[][] = [];
    for (let i = 0; i < ready.length; i += MAX_BATCH_LOGIN)
      batches.push(ready.slice(i, i + MAX_BATCH_LOGIN));
    await Promise.all(batches.map((b) => this.batchLogin(b)));
  }

  private requeue(w: Waiter): void {
    this.queued.push(w);
    void this.flushLogins();
  }

  /** How long the device must wait for its next login to stay within 5 a minute. */
  private rateLimitWait(key: string): number {
    const now = Date.now();
    const times = (this.loginTimes.get(key) ?? []).filter((t) => now - t < MINUTE_MS);
    this.loginTimes.set(key, times);
    if (times.length < MAX_LOGINS_PER_MINUTE) return 0;
    return (times[0] ?? now) + MINUTE_MS - now;
  }

  private counted(key: string): void {
    const times = this.loginTimes.get(key) ?? [];
    times.push(Date.now());
    this.loginTimes.set(key, times);
  }

  private entry(d: ShadowDevice) {
    const key = deviceKey(d);
    return signedEntry(
      {
        productKey: d.productKey,
        deviceName: d.deviceName,
        deviceSecret: this.secrets.get(key) ?? "",
      },
      this.ctx.cloud.signMethod,
      Date.now(),
    );
  }

  private async batchLogin(batch: readonly Waiter[]): Promise<void> {
    if (batch.length === 1 && batch[0]) return this.singleLogin(batch[0]);
    for (const w of batch) this.counted(deviceKey(w.device));
    let reply: SubDeviceReply;
    try {
      reply = await this.requests.send(
        "combine.batch_login",
        batchLoginParams(
          batch.map((w) => this.entry(w.device)),
          this.ctx.cloud.signMethod,
        ),
        0,
      );
    } catch (err) {
      for (const w of batch) w.reject(err as Error);
      return;
    }
    if (reply.code === SubDeviceCodes.SUCCESS) {
      this.log.info({ devices: batch.length }, "sub-devices logged in (batch)");
      for (const w of batch) w.resolve();
      return;
    }
    // All or nothing: one device spoiled the batch; one login each finds it.
    this.log.warn(
      { devices: batch.length, errorcode: reply.code, reason: reply.message },
      "the batch login was refused; logging the devices in one by one",
    );
    await Promise.all(batch.map((w) => this.singleLogin(w)));
  }

  private async singleLogin(w: Waiter): Promise<void> {
    const key = deviceKey(w.device);
    this.counted(key);
    let reply: SubDeviceReply;
    try {
      reply = await this.requests.send(
        "combine.login",
        loginParams(this.entry(w.device), this.ctx.cloud.signMethod),
        0,
      );
    } catch (err) {
      w.reject(err as Error);
      return;
    }
    if (reply.code === SubDeviceCodes.SUCCESS) w.resolve();
    else if (REFUSAL_CODES.has(reply.code)) w.reject(new SessionRefusal(reply.code, reply.message));
    else w.reject(new Error(`login refused: ${reply.code} ${reply.message}`));
  }

  private async flushLogouts(): Promise<void> {
    this.logoutFlush = undefined;
    const devices = this.logouts.splice(0);
    if (devices.length === 0 || !this.link.online) return;
    const list = devices.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName }));
    // QoS 0, and no wait for the reply: the gateway is going; the cloud ends the sessions with
    // the connection anyway.
    await this.requests.fire("combine.batch_logout", { deviceList: list }, 0);
    this.log.info({ devices: devices.length }, "sub-devices logged out");
  }

  /** Secrets registered if need be, then the topology completed: once per process. */
  private async ensureTopology(): Promise<void> {
    const devices = [...this.byKey.values()];
    const missing = devices.filter((d) => !this.secrets.has(deviceKey(d)));
    if (missing.length > 0 && this.options.register === "dynamic") await this.register(missing);
    const got = await this.requests.send("thing.topo.get", {}, 1);
    if (got.code !== SubDeviceCodes.SUCCESS)
      throw new Error(`topo/get refused: ${got.code} ${got.message}`);
    const listed = deviceList(got.data);
    if (!listed) throw new Error("topo/get reply's data is not a list of devices");
    const present = new Set(listed.map(deviceKey));
    const toAdd = devices.filter(
      (d) => !present.has(deviceKey(d)) && this.secrets.has(deviceKey(d)),
    );
    for (let i = 0; i < toAdd.length; i += MAX_TOPO_ADD)
      await this.topoAdd(toAdd.slice(i, i + MAX_TOPO_ADD));
    this.log.info(
      { present: present.size, added: toAdd.length - this.topoRefused.size },
      "topology ready",
    );
  }

  private async topoAdd(chunk: readonly ShadowDevice[]): Promise<void> {
    const { signMethod } = this.ctx.cloud;
    const reply = await this.requests.send(
      "thing.topo.add",
      topoAddParams(
        chunk.map((d) => this.entry(d)),
        signMethod,
      ),
      1,
    );
    if (reply.code === SubDeviceCodes.SUCCESS) return;
    if (chunk.length > 1) {
      // The whole request failed: one at a time tells which device the cloud refuses.
      for (const d of chunk) await this.topoAdd([d]);
      return;
    }
    const d = chunk[0];
    if (!d) return;
    if (!REFUSAL_CODES.has(reply.code) && reply.code !== SubDeviceCodes.CANNOT_ADD_SELF)
      throw new Error(`topo/add failed: ${reply.code} ${reply.message}`);
    this.topoRefused.set(deviceKey(d), { code: reply.code, message: reply.message });
  }

  private async register(missing: readonly ShadowDevice[]): Promise<void> {
    for (let i = 0; i < missing.length; i += MAX_REGISTER) {
      const chunk = missing.slice(i, i + MAX_REGISTER);
      const reply = await this.requests.send(
        "thing.sub.register",
        chunk.map((d) => ({ productKey: d.productKey, deviceName: d.deviceName })),
        1,
      );
      if (reply.code !== SubDeviceCodes.SUCCESS) {
        this.log.error(
          { devices: chunk.map((d) => d.deviceName), errorcode: reply.code, reason: reply.message },
          "dynamic registration refused: these sub-devices cannot log in",
        );
        continue;
      }
      const got = registered(reply.data).filter((r) => this.byKey.has(deviceKey(r)));
      for (const r of got) this.secrets.set(deviceKey(r), r.deviceSecret);
      saveRegisteredSecrets(this.ctx.dataDir, got);
      this.log.info({ devices: got.map((r) => r.deviceName) }, "sub-devices registered");
    }
  }

  private onExtError(topic: string, payload: Buffer): void {
    const notice = decodeExtError(payload);
    if (!notice.ok || notice.value.kind !== "error")
      return this.bad(topic, notice.ok ? "not an error" : notice.reason);
    const { code, message, device } = notice.value;
    const known = device && this.byKey.get(deviceKey(device));
    if (!known) return this.bad(topic, `error ${code} names no device of this gateway`);
    if (code === SubDeviceCodes.SESSION) this.ctx.events.lost(known);
    else if (REFUSAL_CODES.has(code)) this.ctx.events.refused(known, code, message);
    else this.bad(topic, `error ${code} (${message}) is not a session error`);
  }

  private onTopoChange(topic: string, payload: Buffer): void {
    const change = decodeTopoChange(payload);
    if (!change.ok || change.value.kind !== "change")
      return this.bad(topic, change.ok ? "not a change" : change.reason);
    const { status, devices } = change.value;
    for (const d of devices) {
      const known = this.byKey.get(deviceKey(d));
      if (!known) {
        this.bad(topic, `topo/change names ${deviceKey(d)}, not a device of this gateway`);
        continue;
      }
      if (status === TopoStatus.DISABLED)
        this.ctx.events.refused(known, SubDeviceCodes.DISABLED, "disabled (topo/change)");
      else if (status === TopoStatus.DELETED)
        this.ctx.events.refused(known, SubDeviceCodes.DELETED, "deleted (topo/change)");
      else if (status === TopoStatus.ENABLED || status === TopoStatus.CREATED) {
        this.topoRefused.delete(deviceKey(d));
        this.topology = undefined; // a re-created device may need its topology again
        this.ctx.events.resumed(known);
      } else this.bad(topic, `topo/change status ${status} is not known`);
    }
  }

  /** A message that is malformed, unasked or names an unknown device: one line, then ignored. */
  private readonly bad = (topic: string, reason: string): void => {
    this.once.run(`${topic}:${reason}`, () =>
      this.log.warn(
        { topic, reason, code: ErrorCodes.SESSION_BAD_MESSAGE },
        "ignored a session message",
      ),
    );
  };
}

/** `thing/sub/register` reply data: the secrets, or [] for anything malformed. */
function registered(data: unknown): Array<DeviceKey & { deviceSecret: string }> {
  if (!Array.isArray(data)) return [];
  return data.flatMap((e: unknown) => {
    if (typeof e !== "object" || e === null) return [];
    const { productKey, deviceName, deviceSecret } = e as Record<string, unknown>;
    return typeof productKey === "string" &&
      typeof deviceName === "string" &&
      typeof deviceSecret === "string" &&
      deviceSecret !== ""
      ? [{ productKey, deviceName, deviceSecret }]
      : [];
  });
}

/**
 * Requests on the gateway's session and topology topics, matched to their replies by id; a
 * request with no reply within the timeout, or cut by a lost connection, rejects.
 */
class SessionRequests {
  private seq = Math.floor(Math.random() * 1_000_000);
  private readonly pending = new Map<
    string,
    {
      method: SubDeviceMethod;
      resolve(r: SubDeviceReply): void;
      reject(e: Error): void;
      timer: NodeJS.Timeout;
    }
  >();

  constructor(
    private readonly link: Link,
    private readonly gw: DeviceKey,
    private readonly timeoutMs: number,
  ) {}

  /** Sends and awaits the reply. */
  send(method: SubDeviceMethod, params: unknown, qos: 0 | 1): Promise<SubDeviceReply> {
    const id = this.nextId();
    return new Promise<SubDeviceReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`no reply to ${method} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      this.link
        .publish(
          requestTopic(method, this.gw.productKey, this.gw.deviceName),
          encodeRequest(id, method, params),
          qos,
        )
        .catch((err: unknown) => {
          clearTimeout(timer);
          this.pending.delete(id);
          reject(err as Error);
        });
    });
  }

  /** Sends without waiting for a reply. */
  async fire(method: SubDeviceMethod, params: unknown, qos: 0 | 1): Promise<void> {
    const topic = requestTopic(method, this.gw.productKey, this.gw.deviceName);
    await this.link.publish(topic, encodeRequest(this.nextId(), method, params), qos);
  }

  reply(
    topic: string,
    method: SubDeviceMethod,
    payload: Buffer,
    bad: (topic: string, reason: string) => void,
  ): void {
    const decoded = decodeReply(payload);
    if (!decoded.ok) return bad(topic, decoded.reason);
    const waiting = this.pending.get(decoded.value.id);
    // A reply to a fire-and-forget request (logout) or one after its timeout: nothing waits.
    if (!waiting || waiting.method !== method) {
      if (method !== "combine.batch_logout" && method !== "combine.logout")
        bad(topic, `reply ${decoded.value.id} answers no request awaiting one`);
      return;
    }
    this.pending.delete(decoded.value.id);
    clearTimeout(waiting.timer);
    waiting.resolve(decoded.value);
  }

  offline(): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new Error(`the connection dropped before the reply to ${p.method}`));
    }
  }

  /** Decimal strings in 0..4294967295, as the Alink envelope requires. */
  private nextId(): string {
    this.seq = (this.seq + 1) % 4_294_967_296;
    return String(this.seq);
  }
}
