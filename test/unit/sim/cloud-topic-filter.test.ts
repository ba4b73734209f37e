import { describe, expect, it } from "vitest";
import { topicMatches } from "../../../src/sim/cloud/topic-filter.js";

describe("topicMatches", () => {
  it.each([
    ["/shadow/get/pk/dn", "/shadow/get/pk/dn", true],
    ["/shadow/get/+/+", "/shadow/get/pk/dn", true],
    ["/shadow/get/pk/+", "/shadow/get/pk/dn", true],
    ["/shadow/get/other/+", "/shadow/get/pk/dn", false],
    ["/shadow/get/#", "/shadow/get/pk/dn", true],
    ["/shadow/#", "/shadow/get/pk/dn", true],
    ["#", "/shadow/get/pk/dn", true],
    ["+/shadow/get/+/+", "/shadow/get/pk/dn", true],
    ["/shadow/get/+", "/shadow/get/pk/dn", false],
    ["/shadow/get/pk/dn/#", "/shadow/get/pk/dn", true],
    ["/shadow/get/pk/dn/+", "/shadow/get/pk/dn", false],
    ["/shadow/update/+/+", "/shadow/get/pk/dn", false],
    ["/shadow/get/pk/dnx", "/shadow/get/pk/dn", false],
    ["#", "$SYS/broker/load", false],
    ["+/broker/load", "$SYS/broker/load", false],
    ["$SYS/#", "$SYS/broker/load", true],
  ])("%s matches %s: %s", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});
