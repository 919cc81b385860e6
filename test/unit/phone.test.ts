import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { formatPhoneNumber, PHONE_REGIONS } from "../../src/core/phone.js";

describe("formatPhoneNumber", () => {
  it("US numbers: international form, from any way of writing them", () => {
    assert.equal(formatPhoneNumber("+15551234567"), "+1 555 123 4567");
    assert.equal(formatPhoneNumber("+1 (555) 123-4567"), "+1 555 123 4567");
    assert.equal(formatPhoneNumber("2015550123", "US"), "+1 201 555 0123");
    assert.equal(formatPhoneNumber("(201) 555-0123", "US"), "+1 201 555 0123");
    assert.equal(formatPhoneNumber("201.555.0123", "US"), "+1 201 555 0123");
    // A national number must be a real one: 555 is no area code (a + number need only be possible).
    assert.equal(formatPhoneNumber("5551234567", "US"), "5551234567");
    assert.equal(formatPhoneNumber("0000000", "DE"), "0000000");
  });

  it("DE numbers: national ones read in the region, 00 as the international prefix", () => {
    assert.equal(formatPhoneNumber("+49301234567"), "+49 30 1234567");
    assert.equal(formatPhoneNumber("030 1234567", "DE"), "+49 30 1234567");
    assert.equal(formatPhoneNumber("0049 30 12345678", "DE"), "+49 30 12345678");
    assert.equal(formatPhoneNumber("089/9876543", "DE"), "+49 89 9876543");
  });

  it("GB numbers, landline and mobile", () => {
    assert.equal(formatPhoneNumber("+442079460958"), "+44 20 7946 0958");
    assert.equal(formatPhoneNumber("020 7946 0958", "GB"), "+44 20 7946 0958");
    assert.equal(formatPhoneNumber("07911 123456", "GB"), "+44 7911 123456");
  });

  it("a number of another country keeps its own country whatever the region", () => {
    assert.equal(formatPhoneNumber("+442079460958", "US"), "+44 20 7946 0958");
  });

  it("extensions and short numbers are shown as given", () => {
    for (const region of [undefined, "US", "DE", "GB"] as const) {
      assert.equal(formatPhoneNumber("2001", region), "2001");
      assert.equal(formatPhoneNumber("100", region), "100");
      assert.equal(formatPhoneNumber("911", region), "911");
      assert.equal(formatPhoneNumber("12345", region), "12345");
    }
    // Without its area code a German number is local, not national: not given a country code.
    assert.equal(formatPhoneNumber("1234567", "DE"), "1234567");
    assert.equal(formatPhoneNumber("123 4567", "US"), "123 4567");
  });

  it("US numbers with the trunk 1 or the 011 prefix", () => {
    assert.equal(formatPhoneNumber("1 201 555 0123", "US"), "+1 201 555 0123");
    assert.equal(formatPhoneNumber("011 49 30 1234567", "US"), "+49 30 1234567");
  });

  it("a national number without a region is shown as given: nothing is guessed", () => {
    assert.equal(formatPhoneNumber("5551234567"), "5551234567");
    assert.equal(formatPhoneNumber("030 1234567"), "030 1234567");
  });

  it("SIP users, words and junk are shown as given; a number inside text is not pulled out", () => {
    const asGiven = [
      "sip:alice@example.org",
      "alice",
      "anonymous",
      "Restricted",
      "",
      "+",
      "+1",
      "++15551234567",
      "+1555123456789012345",
      "Call 555 123 4567 now",
      "555 123 4567 <script>",
      "+15551234567;ext=12",
      "*86",
      "#31#5551234567",
      "\u202e5551234567",
      "１５５５１２３４５６７",
    ];
    for (const value of asGiven) {
      assert.equal(formatPhoneNumber(value), value, JSON.stringify(value));
      assert.equal(formatPhoneNumber(value, "US"), value, `${JSON.stringify(value)} in US`);
    }
  });

  it("knows the regions a config may name", () => {
    assert.ok(PHONE_REGIONS.includes("US") && PHONE_REGIONS.includes("DE") && PHONE_REGIONS.includes("GB"));
    assert.ok(!PHONE_REGIONS.includes("XX" as never));
  });

  it("every region's numbering plan can be read (no region throws)", () => {
    for (const region of PHONE_REGIONS) {
      for (const value of ["0301234567", "00493012345678", "2001", "+15551234567"]) assert.equal(typeof formatPhoneNumber(value, region), "string");
    }
  });
});
