import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

import {
  DigestClient,
  buildAuthorization,
  parseChallenges,
  selectChallenge,
  type DigestChallenge,
} from "../../src/gateway/sip/digest.js";

const md5 = (s: string): string => createHash("md5").update(s).digest("hex");

/** Auth-params of a credentials header, unquoted. */
function params(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-z0-9-]+)=("([^"]*)"|[^,\s]+)/gi;
  for (let m = re.exec(header); m; m = re.exec(header)) out[m[1]!.toLowerCase()] = m[3] ?? m[2]!;
  return out;
}

describe("digest vectors", () => {
  it("RFC 2617 §3.5 (MD5, qop=auth)", () => {
    const challenge = selectChallenge(
      [
        'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
      ],
      false,
    )!;
    const header = buildAuthorization({
      challenge,
      username: "Mufasa",
      password: "Circle Of Life",
      method: "GET",
      uri: "/dir/index.html",
      cnonce: "0a4f113b",
      nc: 1,
    });
    const p = params(header);
    assert.equal(p["response"], "6629fae49393a05397450978507c4ef1");
    assert.equal(p["qop"], "auth");
    assert.equal(p["nc"], "00000001");
    assert.equal(p["opaque"], "5ccc069c403ebaf9f0171e9517f40e41");
    assert.match(header, /^Digest username="Mufasa", realm="testrealm@host.com"/);
  });

  const rfc7616 = (algorithm: string): string =>
    `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=${algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`;

  for (const [algorithm, response] of [
    ["MD5", "8ca523f5e9506fed4657c9700eebdbec"],
    ["SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"],
  ] as const) {
    it(`RFC 7616 §3.9.1 (${algorithm})`, () => {
      const challenge = selectChallenge([rfc7616(algorithm)], false)!;
      assert.equal(challenge.algorithm, algorithm);
      const p = params(
        buildAuthorization({
          challenge,
          username: "Mufasa",
          password: "Circle of Life",
          method: "GET",
          uri: "/dir/index.html",
          cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
          nc: 1,
        }),
      );
      assert.equal(p["response"], response);
      assert.equal(p["algorithm"], algorithm);
    });
  }

  // The §3.9.2 example (SHA-512-256, userhash) has wrong values (RFC errata 4897), so it is
  // checked against the formula instead.
  it("SHA-512-256 with userhash: H(user:realm) as username, response from the plain user", () => {
    const sha = (x: string): string => createHash("sha512-256").update(x, "utf8").digest("hex");
    const challenge = selectChallenge(
      ['Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, nonce="5TsQ", opaque="HRPC", charset=UTF-8, userhash=true'],
      false,
    )!;
    const user = "J\u00e4s\u00f8n Doe";
    const p = params(
      buildAuthorization({ challenge, username: user, password: "Secret, or not?", method: "GET", uri: "/doe.json", cnonce: "NTg6", nc: 1 }),
    );
    assert.equal(p["username"], sha(`${user}:api@example.org`));
    const ha1 = sha(`${user}:api@example.org:Secret, or not?`);
    assert.equal(p["response"], sha(`${ha1}:5TsQ:00000001:NTg6:auth:${sha("GET:/doe.json")}`));
    assert.equal(p["userhash"], "true");
  });

  it("without qop (RFC 2069 style): H(HA1:nonce:HA2), no nc or cnonce", () => {
    const challenge = selectChallenge(['Digest realm="asterisk",nonce="1a2b"'], false)!;
    const header = buildAuthorization({ challenge, username: "1001", password: "pw", method: "SUBSCRIBE", uri: "sip:1001@127.0.0.1" });
    const p = params(header);
    const expected = md5(`${md5("1001:asterisk:pw")}:1a2b:${md5("SUBSCRIBE:sip:1001@127.0.0.1")}`);
    assert.equal(p["response"], expected);
    assert.equal(p["nc"], undefined);
    assert.equal(p["cnonce"], undefined);
    assert.equal(p["qop"], undefined);
  });

  it("MD5-sess and auth-int", () => {
    const sess = selectChallenge(['Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess'], false)!;
    const p = params(buildAuthorization({ challenge: sess, username: "u", password: "p", method: "M", uri: "sip:x", cnonce: "c", nc: 2 }));
    const ha1 = md5(`${md5("u:r:p")}:n:c`);
    assert.equal(p["response"], md5(`${ha1}:n:00000002:c:auth:${md5("M:sip:x")}`));

    const int = selectChallenge(['Digest realm="r", nonce="n", qop="auth-int"'], false)!;
    const body = new TextEncoder().encode("hello");
    const q = params(buildAuthorization({ challenge: int, username: "u", password: "p", method: "M", uri: "sip:x", cnonce: "c", nc: 1, body }));
    assert.equal(q["qop"], "auth-int");
    assert.equal(q["response"], md5(`${md5("u:r:p")}:n:00000001:c:auth-int:${md5(`M:sip:x:${md5("hello")}`)}`));
  });
});

describe("challenge parsing", () => {
  it("splits several challenges in one header and across headers", () => {
    const cs = parseChallenges([
      'Digest realm="a, b", nonce="x\\"y", algorithm=MD5, Digest realm="a, b", nonce="z", algorithm=SHA-256',
      "Basic realm=\"legacy\"",
      "Newauth realm=apps, type=1, title=\"Login to \\\"apps\\\"\"",
    ]);
    assert.deepEqual(
      cs.map((c) => [c.scheme, c.params.get("realm"), c.params.get("nonce") ?? c.params.get("title")]),
      [
        ["digest", "a, b", 'x"y'],
        ["digest", "a, b", "z"],
        ["basic", "legacy", undefined],
        ["newauth", "apps", 'Login to "apps"'],
      ],
    );
  });

  it("prefers SHA-256 over MD5 and ignores what it cannot answer", () => {
    const pick = (values: string[]): DigestChallenge | undefined => selectChallenge(values, true);
    assert.equal(pick(['Digest realm="r", nonce="1", algorithm=MD5', 'Digest realm="r", nonce="2", algorithm=SHA-256'])?.nonce, "2");
    assert.equal(pick(['Digest realm="r", nonce="1"', 'Digest realm="r", nonce="2", algorithm=SHA-1'])?.nonce, "1");
    assert.equal(pick(['Digest realm="r", nonce="1", qop="auth-conf"']), undefined);
    assert.equal(pick(['Digest realm="r"']), undefined);
    assert.equal(pick(["Basic realm=x"]), undefined);
    assert.equal(pick([""]), undefined);
    const stale = pick(['Digest realm="r", nonce="3", stale=TRUE, algorithm=md5'])!;
    assert.equal(stale.stale, true);
    assert.equal(stale.algorithm, "MD5");
    assert.equal(stale.proxy, true);
  });

  it("never throws on junk", () => {
    for (const v of ["", ",,,", "Digest", 'Digest realm="unterminated', "=,=", "Digest ,realm=,nonce"]) {
      assert.doesNotThrow(() => selectChallenge([v], false));
    }
  });
});

describe("DigestClient", () => {
  it("counts nonce uses with qop and never replays a no-qop answer", () => {
    const c = new DigestClient("1001", "pw");
    assert.deepEqual(c.headers("SUBSCRIBE", "sip:a"), []);
    c.accept(selectChallenge(['Digest realm="r", nonce="n1", qop="auth"'], false)!);
    const [[name1, v1]] = c.headers("SUBSCRIBE", "sip:a") as [[string, string]];
    const [[, v2]] = c.headers("SUBSCRIBE", "sip:a") as [[string, string]];
    assert.equal(name1, "Authorization");
    assert.equal(params(v1)["nc"], "00000001");
    assert.equal(params(v2)["nc"], "00000002");
    assert.notEqual(params(v1)["cnonce"], params(v2)["cnonce"]);

    c.accept(selectChallenge(['Digest realm="r", nonce="n2", qop="auth"'], false)!);
    assert.equal(params(c.headers("SUBSCRIBE", "sip:a")[0]![1])["nc"], "00000001");

    const legacy = new DigestClient("u", "p");
    legacy.accept(selectChallenge(['Digest realm="p", nonce="x"'], true)!);
    assert.equal(legacy.headers("SUBSCRIBE", "sip:a")[0]![0], "Proxy-Authorization");
    assert.deepEqual(legacy.headers("SUBSCRIBE", "sip:a"), []);
  });
});
