import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ErrorCodes, ShadowgateError } from "../../../../../src/core/errors.js";
import {
  alibabaCredentials,
  alibabaHost,
  alibabaPort,
  parseAlibabaClientId,
  verifyAlibabaPassword,
  type AlibabaCredentialInput,
  type SignMethod,
} from "../../../../../src/north/dialects/alibaba/sign.js";

const PK = "a1Boiler";
const DN = "boiler-01";
const SECRET = "s3cr3t-DeviceSecret-0123456789ab";

/** The HMAC written out by hand, independent of the code under test. */
const hmacHex = (alg: "sha256" | "sha1" | "md5", key: string, content: string): string =>
  createHmac(alg, key).update(content).digest("hex");

const thrown = (fn: () => unknown): ShadowgateError => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowgateError) return e;
    throw e;
  }
  throw new Error("did not throw");
};

describe("alibabaCredentials", () => {
  it("matches the worked example circulated from Alibaba's developer community", () => {
    // productKey a14Xib5kdYd, clientId SN1928339, hmacsha1, securemode=3; the published password.
    const c = alibabaCredentials({
      productKey: "a14Xib5kdYd",
      deviceName: "light1983432",
      deviceSecret: "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq",
      clientId: "SN1928339",
      signMethod: "hmacsha1",
      secureMode: 3,
      timestamp: "1539421321846",
    });
    expect(c).toEqual({
      clientId: "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
      username: "light1983432&a14Xib5kdYd",
      password: "b2488041f64f425016b467ee1c94959ebd592ad1",
    });
  });

  const methods: Array<[SignMethod, "sha256" | "sha1" | "md5", number]> = [
    ["hmacsha256", "sha256", 64],
    ["hmacsha1", "sha1", 40],
    ["hmacmd5", "md5", 32],
  ];
  for (const [signMethod, alg, hexLength] of methods) {
    it(`${signMethod}: content is clientId, deviceName, productKey, timestamp, name+value`, () => {
      const content = `clientIdSN-42deviceName${DN}productKey${PK}timestamp1700000000123`;
      const c = alibabaCredentials({
        productKey: PK,
        deviceName: DN,
        deviceSecret: SECRET,
        clientId: "SN-42",
        signMethod,
        secureMode: 2,
        timestamp: 1700000000123,
      });
      expect(c.password).toBe(hmacHex(alg, SECRET, content));
      expect(c.password).toMatch(new RegExp(`^[0-9a-f]{${hexLength}}$`));
      expect(c.clientId).toBe(
        `SN-42|securemode=2,signmethod=${signMethod},timestamp=1700000000123|`,
      );
      expect(c.username).toBe(`${DN}&${PK}`);
    });
  }

  it("defaults to hmacsha256 and clientId productKey.deviceName; no timestamp anywhere", () => {
    const c = alibabaCredentials({
      productKey: PK,
      deviceName: DN,
      deviceSecret: SECRET,
      secureMode: 3,
    });
    expect(c.clientId).toBe(`${PK}.${DN}|securemode=3,signmethod=hmacsha256|`);
    expect(c.password).toBe(
      hmacHex("sha256", SECRET, `clientId${PK}.${DN}deviceName${DN}productKey${PK}`),
    );
  });

  it("gives the same password for a timestamp as number or string", () => {
    const base = { productKey: PK, deviceName: DN, deviceSecret: SECRET, secureMode: 2 as const };
    expect(alibabaCredentials({ ...base, timestamp: 2524608000000 })).toEqual(
      alibabaCredentials({ ...base, timestamp: "2524608000000" }),
    );
  });

  it("reproduces iotkit-embedded's password, except for the hex case", () => {
    // dev_sign_mqtt.c: cid = pk.dn, fixed timestamp 2524608000000, hmacsha256, upper-case hex.
    const iotkit = hmacHex(
      "sha256",
      SECRET,
      `clientId${PK}.${DN}deviceName${DN}productKey${PK}timestamp2524608000000`,
    ).toUpperCase();
    const c = alibabaCredentials({
      productKey: PK,
      deviceName: DN,
      deviceSecret: SECRET,
      secureMode: 2,
      timestamp: "2524608000000",
    });
    expect(c.password).toBe(iotkit.toLowerCase());
  });

  const base: AlibabaCredentialInput = {
    productKey: PK,
    deviceName: DN,
    deviceSecret: SECRET,
    secureMode: 2,
  };
  const rejects: Array<
    [string, Partial<AlibabaCredentialInput> | Record<string, unknown>, RegExp]
  > = [
    [
      "an unknown sign method",
      { signMethod: "sha256" },
      /unknown sign method "sha256".*hmacsha256/,
    ],
    ["an unknown secure mode", { secureMode: 1 }, /unknown secure mode "1"/],
    ["an empty productKey", { productKey: "" }, /productKey is empty/],
    ["an empty deviceSecret", { deviceSecret: "" }, /deviceSecret is empty/],
    ["an empty clientId", { clientId: "" }, /clientId is empty/],
    ["a clientId with |", { clientId: "a|b" }, /contains "\|"/],
    ["a clientId over 64 characters", { clientId: "x".repeat(65) }, /65 characters; at most 64/],
    ["a timestamp that is not digits", { timestamp: "12x" }, /"12x" is not a whole number/],
    ["a negative timestamp", { timestamp: -1 }, /-1 is not a whole, non-negative/],
    ["a fractional timestamp", { timestamp: 1.5 }, /1.5 is not a whole, non-negative/],
  ];
  for (const [what, patch, message] of rejects) {
    it(`rejects ${what} with SG_SIGN_INPUT`, () => {
      const e = thrown(() => alibabaCredentials({ ...base, ...patch } as AlibabaCredentialInput));
      expect(e.code).toBe(ErrorCodes.SIGN_INPUT);
      expect(e.message).toMatch(message);
      expect(e.message).not.toContain(SECRET);
    });
  }

  it("accepts a 64-character clientId", () => {
    expect(alibabaCredentials({ ...base, clientId: "x".repeat(64) }).clientId).toMatch(/^x{64}\|/);
  });
});

describe("alibabaHost and alibabaPort", () => {
  it("builds the public instance endpoint", () => {
    expect(alibabaHost("a1Boiler", "cn-shanghai")).toBe(
      "a1Boiler.iot-as-mqtt.cn-shanghai.aliyuncs.com",
    );
  });
  it("uses 443 for TLS (iotkit) and 1883 for plain TCP (doc)", () => {
    expect(alibabaPort(2)).toBe(443);
    expect(alibabaPort(3)).toBe(1883);
  });
});

describe("parseAlibabaClientId", () => {
  it("reads the bare id and every parameter, SDK extras included", () => {
    const r = parseAlibabaClientId(
      "a1Boiler.boiler-01|timestamp=2524608000000,securemode=2,signmethod=hmacsha256,gw=0,ext=0,a=sdk-c-3.2.0|",
    );
    expect(r).toEqual({
      ok: true,
      clientId: "a1Boiler.boiler-01",
      secureMode: 2,
      signMethod: "hmacsha256",
      timestamp: "2524608000000",
      params: {
        timestamp: "2524608000000",
        securemode: "2",
        signmethod: "hmacsha256",
        gw: "0",
        ext: "0",
        a: "sdk-c-3.2.0",
      },
    });
  });

  it("treats a missing timestamp as absent", () => {
    const r = parseAlibabaClientId("SN1|securemode=3,signmethod=hmacsha1|");
    expect(r.ok && r.timestamp).toBe(undefined);
    expect(r.ok && "timestamp" in r).toBe(false);
  });

  it("defaults a missing signmethod to hmacmd5, as the doc does", () => {
    const r = parseAlibabaClientId("SN1|securemode=3|");
    expect(r.ok && r.signMethod).toBe("hmacmd5");
  });

  it("tolerates a trailing comma", () => {
    expect(parseAlibabaClientId("SN1|securemode=3,signmethod=hmacsha1,|").ok).toBe(true);
  });

  const bad: Array<[string, string, RegExp]> = [
    ["no |…| part", "SN1", /no \|securemode=…,signmethod=…\| part/],
    ["no closing |", "SN1|securemode=3", /no \|securemode/],
    ["an empty |…| part at the end", "SN1|", /no \|securemode/],
    ["an empty id", "|securemode=3|", /empty before/],
    ["two |…| parts", "SN1|securemode=3|x|", /more than one/],
    ["a pair without =", "SN1|securemode=3,oops|", /"oops" is not key=value/],
    ["a pair with an empty key", "SN1|securemode=3,=1|", /"=1" is not key=value/],
    ["a duplicate key", "SN1|securemode=3,securemode=2|", /"securemode" appears twice/],
    ["no securemode", "SN1|signmethod=hmacsha1|", /no securemode/],
    ["an unsupported securemode", "SN1|securemode=-1|", /unsupported securemode "-1"/],
    ["a non-numeric securemode", "SN1|securemode=tls|", /unsupported securemode "tls"/],
    [
      "an unknown signmethod",
      "SN1|securemode=3,signmethod=sha256|",
      /unknown signmethod "sha256": expected hmacsha256, hmacsha1, hmacmd5/,
    ],
    ["a timestamp that is not digits", "SN1|securemode=3,timestamp=soon|", /"soon" is not/],
  ];
  for (const [what, input, reason] of bad) {
    it(`rejects ${what}`, () => {
      const r = parseAlibabaClientId(input);
      expect(r.ok).toBe(false);
      expect(!r.ok && r.reason).toMatch(reason);
    });
  }
});

describe("verifyAlibabaPassword", () => {
  const secrets = new Map([[`${PK}/${DN}`, SECRET]]);
  const secretOf = (pk: string, dn: string) => secrets.get(`${pk}/${dn}`);
  const connect = (clientId: string, password: string | Buffer | undefined, username?: string) =>
    verifyAlibabaPassword({ clientId, username: username ?? `${DN}&${PK}`, password }, secretOf);

  it("accepts what alibabaCredentials produced, for every sign method", () => {
    for (const signMethod of ["hmacsha256", "hmacsha1", "hmacmd5"] as const) {
      const c = alibabaCredentials({
        ...{ productKey: PK, deviceName: DN },
        deviceSecret: SECRET,
        signMethod,
        secureMode: 3,
        timestamp: 5,
      });
      const r = verifyAlibabaPassword(c, secretOf);
      expect(r).toMatchObject({
        ok: true,
        productKey: PK,
        deviceName: DN,
        clientId: `${PK}.${DN}`,
        signMethod,
        secureMode: 3,
        timestamp: "5",
      });
    }
  });

  it("accepts an independently computed password in upper case (iotkit) and as a Buffer", () => {
    const pw = hmacHex("sha256", SECRET, `clientIdSN9deviceName${DN}productKey${PK}timestamp77`);
    const id = "SN9|securemode=2,signmethod=hmacsha256,timestamp=77|";
    expect(connect(id, pw.toUpperCase()).ok).toBe(true);
    expect(connect(id, Buffer.from(pw)).ok).toBe(true);
  });

  it("checks a clientId without signmethod against hmacmd5 and without timestamp", () => {
    const pw = hmacHex("md5", SECRET, `clientIdSN9deviceName${DN}productKey${PK}`);
    expect(connect("SN9|securemode=3|", pw)).toMatchObject({ ok: true, signMethod: "hmacmd5" });
  });

  it("denies a wrong password without revealing the expected one", () => {
    const good = alibabaCredentials({
      productKey: PK,
      deviceName: DN,
      deviceSecret: SECRET,
      secureMode: 2,
    });
    const wrong = `${good.password.slice(0, -1)}${good.password.endsWith("0") ? "1" : "0"}`;
    const r = connect(good.clientId, wrong);
    expect(r).toMatchObject({ ok: false, code: ErrorCodes.AUTH_DENIED });
    expect(!r.ok && r.reason).toMatch(/wrong password for a1Boiler\/boiler-01/);
    expect(!r.ok && r.reason).not.toContain(good.password);
    expect(!r.ok && r.reason).not.toContain(SECRET);
  });

  it("denies a password signed over other parameters than the clientId claims", () => {
    // Signed with timestamp 1, presented with timestamp 2.
    const c = alibabaCredentials({
      productKey: PK,
      deviceName: DN,
      deviceSecret: SECRET,
      secureMode: 2,
      timestamp: 1,
    });
    const r = connect(c.clientId.replace("timestamp=1", "timestamp=2"), c.password);
    expect(r).toMatchObject({ ok: false, code: ErrorCodes.AUTH_DENIED });
  });

  it("denies a missing or truncated password", () => {
    const c = alibabaCredentials({
      productKey: PK,
      deviceName: DN,
      deviceSecret: SECRET,
      secureMode: 2,
    });
    expect(connect(c.clientId, undefined)).toMatchObject({
      ok: false,
      code: ErrorCodes.AUTH_DENIED,
    });
    expect(connect(c.clientId, c.password.slice(0, 10))).toMatchObject({
      ok: false,
      code: ErrorCodes.AUTH_DENIED,
    });
  });

  it("denies an unknown device", () => {
    const r = connect("SN1|securemode=3|", "00", `${DN}&otherPk`);
    expect(r).toEqual({
      ok: false,
      code: ErrorCodes.AUTH_DENIED,
      reason: `unknown device otherPk/${DN}`,
    });
  });

  for (const username of [undefined, "", "boiler", "&a1Boiler", "boiler-01&", "a&b&c"]) {
    it(`rejects username ${JSON.stringify(username)} as not deviceName&productKey`, () => {
      const r = verifyAlibabaPassword(
        { clientId: "SN1|securemode=3|", username, password: "00" },
        secretOf,
      );
      expect(r).toMatchObject({ ok: false, code: ErrorCodes.AUTH_CLIENT_ID });
      expect(!r.ok && r.reason).toMatch(/is not deviceName&productKey/);
    });
  }

  it("rejects an unparseable clientId before looking at the secret", () => {
    let asked = false;
    const r = verifyAlibabaPassword(
      { clientId: "SN1|securemode=3,signmethod=sha256|", username: `${DN}&${PK}`, password: "00" },
      () => {
        asked = true;
        return SECRET;
      },
    );
    expect(r).toMatchObject({ ok: false, code: ErrorCodes.AUTH_CLIENT_ID });
    expect(!r.ok && r.reason).toMatch(/unknown signmethod "sha256"/);
    expect(asked).toBe(false);
  });
});
