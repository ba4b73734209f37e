import { describe, expect, it } from "vitest";
import { ProfileRuntime } from "../../../src/sim/modbus/dynamics.js";
import { UnitMemory } from "../../../src/sim/modbus/memory.js";
import { defaultProfile, parseProfile } from "../../../src/sim/modbus/profile.js";

function runtimeFor(yaml: string, random?: () => number) {
  const profile = parseProfile(yaml, "t.yaml");
  const units = new Map(profile.units.map((u) => [u.unitId, new UnitMemory(u)]));
  const runtime = new ProfileRuntime(profile, (id) => units.get(id)!, { random });
  return { runtime, unit: (id: number) => units.get(id)! };
}

describe("ProfileRuntime", () => {
  it("writes typed initial values into memory with the project's codec", () => {
    const { runtime, unit } = runtimeFor(`
units:
  - unitId: 1
    points:
      t: { register: 40001, type: float32, byteOrder: ABCD, value: 21.5 }
      sp: { register: 40010, type: int16, scale: 0.1, value: -60 }
      st: { register: 40020, type: uint16, enum: { 0: idle, 1: heating }, value: heating }
      a1: { register: 40021, type: uint16, bit: 3, value: true }
      a2: { register: 40021, type: uint16, bit: 0, value: true }
      run: { coil: 1, value: true }
      flow: { table: input, offset: 12, value: 120 }
      big: { register: 40030, type: uint32, byteOrder: CDAB, value: 65536 }
`);
    const mem = unit(1);
    expect([mem.holding[0], mem.holding[1]]).toEqual([0x41ac, 0x0000]);
    expect(mem.holding[9]).toBe(0x10000 - 600);
    expect(mem.holding[19]).toBe(1);
    expect(mem.holding[20]).toBe(0b1001);
    expect(mem.coil[0]).toBe(1);
    expect(mem.input[12]).toBe(120);
    expect([mem.holding[29], mem.holding[30]]).toEqual([0, 1]);
    expect(runtime.get("t")).toBe(21.5);
    expect(runtime.get("sp")).toBe(-60);
    expect(runtime.get("st")).toBe("heating");
    expect(runtime.get("run")).toBe(true);
    runtime.set("st", "idle");
    runtime.set("a1", false);
    expect(mem.holding[19]).toBe(0);
    expect(mem.holding[20]).toBe(0b0001);
    expect(() => runtime.set("sp", 1.23)).toThrow(/resolution/);
    expect(() => runtime.get("nope")).toThrow(RangeError);
  });

  it("approach: first-order lag toward the set point while `when` holds, else to ambient", () => {
    const { runtime } = runtimeFor(`
units:
  - unitId: 1
    points:
      t: { register: 40001, type: float32, value: 20 }
      sp: { register: 40010, type: int16, scale: 0.1, value: 60 }
      run: { coil: 1, value: true }
    dynamics:
      - { kind: approach, point: t, target: sp, tau: 10s, when: run, ambient: 15 }
`);
    runtime.step(10_000);
    // One time constant covers 1 - 1/e of the gap.
    expect(runtime.get("t") as number).toBeCloseTo(60 - 40 / Math.E, 3);
    for (let i = 0; i < 100; i++) runtime.step(1000);
    expect(runtime.get("t") as number).toBeCloseTo(60, 2);
    runtime.set("run", false);
    for (let i = 0; i < 100; i++) runtime.step(1000);
    expect(runtime.get("t") as number).toBeCloseTo(15, 2);
  });

  it("approach keeps moving on a coarse integer point and restarts from a value written by others", () => {
    const { runtime } = runtimeFor(`
units:
  - unitId: 1
    points:
      level: { register: 40001, type: int16, value: 0 }
    dynamics:
      - { kind: approach, point: level, target: 100, tau: 1000s }
`);
    // Each 1 s step moves 0.1 units: rounding alone would leave the point at 0 for ever.
    for (let i = 0; i < 30; i++) runtime.step(1000);
    expect(runtime.get("level")).toBe(3);
    runtime.set("level", 90);
    runtime.step(1000);
    expect(runtime.get("level")).toBe(90);
  });

  it("threshold: state enum and overheat bit of the default boiler", () => {
    const profile = defaultProfile();
    const units = new Map(profile.units.map((u) => [u.unitId, new UnitMemory(u)]));
    const runtime = new ProfileRuntime(profile, (id) => units.get(id)!, { random: () => 0.5 });
    expect(runtime.get("state")).toBe("idle");
    runtime.step(200);
    expect(runtime.get("state")).toBe("heating");
    expect(runtime.get("alarm.overheat")).toBe(false);
    runtime.set("running", false);
    runtime.step(200);
    expect(runtime.get("state")).toBe("idle");
    runtime.set("targetTemperature", 120);
    runtime.set("running", true);
    for (let i = 0; i < 60 && (runtime.get("temperature") as number) <= 110; i++) {
      runtime.step(10_000);
    }
    expect(runtime.get("temperature") as number).toBeGreaterThan(110);
    expect(runtime.get("state")).toBe("fault");
    expect(runtime.get("alarm.overheat")).toBe(true);
    // Other bits of the alarm word survive the read-modify-write.
    units.get(1)!.write("holding", 20, [units.get(1)!.read("holding", 20, 1)[0]! | 1]);
    runtime.set("targetTemperature", 20);
    for (let i = 0; i < 60 && (runtime.get("temperature") as number) > 110; i++) {
      runtime.step(10_000);
    }
    expect(runtime.get("alarm.overheat")).toBe(false);
    expect(units.get(1)!.holding[20]).toBe(1);
  });

  it("noise stays within amplitude of its center; counter wraps past max", () => {
    let seed = 0;
    const random = () => (seed = (seed * 9301 + 49297) % 233280) / 233280;
    const { runtime } = runtimeFor(
      `
units:
  - unitId: 1
    points:
      flow: { table: input, offset: 12, value: 120 }
      n: { register: 40001, type: uint16, value: 8 }
    dynamics:
      - { kind: noise, point: flow, amplitude: 5 }
      - { kind: counter, point: n, step: 1, min: 5, max: 9 }
`,
      random,
    );
    const seen = new Set<number>();
    const counts: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      runtime.step(200);
      const v = runtime.get("flow") as number;
      expect(v).toBeGreaterThanOrEqual(115);
      expect(v).toBeLessThanOrEqual(125);
      seen.add(v);
      if (i < 4) counts.push(runtime.get("n"));
    }
    expect(seen.size).toBeGreaterThan(3);
    expect(counts).toEqual([9, 5, 6, 7]);
  });

  it("counter wraps at the type's range when no max is given", () => {
    const { runtime } = runtimeFor(`
units:
  - unitId: 1
    points:
      n: { register: 40001, type: int16, value: 32766 }
    dynamics:
      - { kind: counter, point: n }
`);
    runtime.step(1);
    expect(runtime.get("n")).toBe(32767);
    runtime.step(1);
    expect(runtime.get("n")).toBe(0);
  });

  it("start() runs the dynamics on a timer and stop() clears it", async () => {
    const { runtime } = runtimeFor(`
tick: 10ms
units:
  - unitId: 1
    points:
      n: { register: 40001, value: 0 }
    dynamics:
      - { kind: counter, point: n }
`);
    runtime.start();
    expect(runtime.running).toBe(true);
    for (let i = 0; i < 500 && runtime.get("n") === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    runtime.stop();
    expect(runtime.running).toBe(false);
    expect(runtime.get("n") as number).toBeGreaterThan(0);
  });
});
