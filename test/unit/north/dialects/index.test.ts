import { describe, expect, it } from "vitest";
import { alibabaDialect } from "../../../../src/north/dialects/alibaba/index.js";
import { alibabaCloudSchema } from "../../../../src/north/dialects/alibaba/config.js";
import { DIALECT_NAMES, cloudSchema, dialectFor } from "../../../../src/north/dialects/index.js";

const triple = { productKey: "a1Gateway", deviceName: "edge-01" };

describe("the dialect table", () => {
  it("names Alibaba, the default when the cloud section names no dialect", () => {
    expect(DIALECT_NAMES).toEqual(["alibaba", "aws"]);
    const cloud = cloudSchema.parse(triple);
    expect(cloud.dialect).toBe("alibaba");
    expect(dialectFor(cloud.dialect)).toBe(alibabaDialect);
    expect(alibabaDialect.limits).toEqual({ maxAttributes: 128 });
    expect(alibabaDialect.session).toBeTypeOf("function");
  });

  it("Alibaba asks for a deviceSecret only without a broker URL", () => {
    const check = (extra: object) =>
      alibabaDialect.check(alibabaCloudSchema.parse({ ...triple, ...extra }), {
        devices: [],
        configDir: ".",
      });
    expect(check({})).toEqual([
      {
        path: [],
        message:
          "Alibaba Cloud needs deviceSecret to log in (write ${DEVICE_SECRET}); for another broker give url",
      },
    ]);
    expect(check({ deviceSecret: "s" })).toEqual([]);
    expect(check({ url: "mqtt://localhost" })).toEqual([]);
  });

  it("Alibaba connects to its regional endpoint with signed credentials, or plainly to a given broker", () => {
    const signed = alibabaDialect.connection(
      alibabaCloudSchema.parse({ ...triple, deviceSecret: "s", region: "eu-central-1" }),
      1_700_000_000_000,
    );
    expect(signed).toMatchObject({
      url: "mqtts://a1Gateway.iot-as-mqtt.eu-central-1.aliyuncs.com:443",
      clientId: "a1Gateway.edge-01|securemode=2,signmethod=hmacsha256,timestamp=1700000000000|",
      username: "edge-01&a1Gateway",
    });
    expect(signed.password).toMatch(/^[0-9a-f]{64}$/);
    expect(
      alibabaDialect.connection(
        alibabaCloudSchema.parse({
          ...triple,
          url: "mqtt://broker:1883",
          username: "u",
          password: "p",
        }),
        0,
      ),
    ).toEqual({
      url: "mqtt://broker:1883",
      clientId: "a1Gateway.edge-01",
      username: "u",
      password: "p",
    });
  });

  it("Alibaba sends every request to /shadow/update and hears on /shadow/get", () => {
    expect(alibabaDialect.topics("pk", "dn")).toEqual({
      subscriptions: ["/shadow/get/pk/dn"],
      requests: {
        get: "/shadow/update/pk/dn",
        report: "/shadow/update/pk/dn",
        clear: "/shadow/update/pk/dn",
      },
    });
  });
});
