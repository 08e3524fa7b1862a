#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/seed-*.

The rest of each corpus is what libFuzzer found from these seeds, minimized with
`cargo fuzz cmin` (see scripts/fuzz, FUZZ_UPDATE_CORPUS=1). Re-running this script only
rewrites the seed-* files. The signed values are computed here with the formats documented
in src/cookie.rs and src/override_token.rs, so the seeds hold genuine cookies and tokens.
"""

import hashlib
import hmac
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

COOKIE_SECRET = b"canary-edge"  # the default salt, which signs the cookie without COHORT_SECRET
OVERRIDE_SECRET = b"s3cret"  # the override_token target's key


def cookie_value(cohort, cohorts=10, secret=COOKIE_SECRET):
    tag = hmac.new(secret, cohorts.to_bytes(2, "big") + cohort.to_bytes(2, "big"), hashlib.sha256)
    return f"{cohort}.{tag.hexdigest()[:16]}"


def override_token(bundle, channel, expires, secret=OVERRIDE_SECRET, issued=1000):
    # v2: issued before the harness's revocation (1000) is void; issued=None makes a v1.
    payload = f"v1.{bundle}.{channel}.{expires}" if issued is None else f"v2.{bundle}.{channel}.{issued}.{expires}"
    return f"{payload}.{hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()[:32]}"


def write(target, seeds, prefix="seed"):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob(f"{prefix}-*"):
        old.unlink()
    for i, seed in enumerate(seeds):
        name, seed = seed if isinstance(seed, tuple) else (f"{i:03}", seed)
        data = seed if isinstance(seed, bytes) else seed.encode()
        (d / f"{prefix}-{name}").write_bytes(data)


PATHS = [
    "/demo/sdk.js",
    "/demo@1.1.0/sdk.js",
    "/payments@1.5.0/sdk.js",
    "/payments/chunks/checkout.8f3a1c.js",
    "/demo@2.0.0-rc.1+build.7/chunks/a.js",
    "/demo/sdk.js.map",
    "/demo/my%20file.js",
    "/demo/%E2%9C%93.js",
    "/demo/dir/my%20file%3F.js",
    "/__canary/health",
    "/__canary",
    "/__canary/status/demo",
    "/__canary/api/demo/weight",
    "/__canary/report",
    "/__canaryx/a",
    "/",
    "/favicon.ico",
    "/demo",
    "/demo/",
    "/Demo/sdk.js",
    "demo/sdk.js",
    "/demo@/sdk.js",
    "/demo@1..0/sdk.js",
    "/demo@%2e%2e/sdk.js",
    "/demo@..%2f..%2fother/sdk.js",
    "/demo@1.1.0/../../other/1.0.0/sdk.js",
    "/demo/../secret",
    "/demo/./sdk.js",
    "/demo/%2e%2e/x",
    "/demo/%2E%2e/x",
    "/demo/.%2e/x",
    "/demo/%2e/x",
    "/demo/%252e%252e/x",
    "/demo/a//b",
    "/demo/a%2Fb",
    "/demo/..%2Fx",
    "/demo/..%2fx",
    "/demo/a%5Cb",
    "/demo/..%5C..%5Cx",
    "/demo/..\\..\\x",
    "/demo/a%00b",
    "/demo/a%0d%0aX-Injected:%201",
    "/demo/%ff.js",
    "/demo/%c0%ae%c0%ae/x",
    "/demo/%ef%bc%8e%ef%bc%8e/x",
    "/demo/%",
    "/demo/%4",
    "/demo/%zz",
    "//demo/sdk.js",
    "/demo/sdk.js?v=1",
    "/demo/sdk.js#frag",
    "/demo/sdk.js;jsessionid=1",
    "/demo@1.1.0%2fsdk.js",
    "/demo%40/1.1.0/sdk.js",
    "/demo@1.1.0@2/sdk.js",
    "/" + "a" * 64 + "/sdk.js",
    "/" + "a" * 65 + "/sdk.js",
    "/demo@" + "1" * 64 + "/sdk.js",
    "/demo/" + "a/" * 31 + "x",
    "/demo/" + "a/" * 32 + "x",
    "/demo/" + "%41" * 255,
    "/demo/" + "%41" * 256,
    "/demo/" + "a" * 1019,
]

COOKIE_HEADERS = [
    f"cohort={cookie_value(3)}",
    f"_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; cohort={cookie_value(3)}; __stripe_mid=4a1b-77c2",
    f"cohort=junk; cohort={cookie_value(2)}; cohort={cookie_value(7)}",
    f'cohort="{cookie_value(5)}"',
    f"cohort = {cookie_value(5)} ",
    f"cohort={cookie_value(5).upper()}",
    f"cohort=0{cookie_value(5)}",
    f"cohort={cookie_value(12, 10)}",
    f"cohort={cookie_value(4, 100)}",
    f"cohort={cookie_value(4, 10, b'another secret')}",
    f"Cohort={cookie_value(1)}",
    f"xcohort={cookie_value(1)}",
    "cohort=4",
    "cohort=-1.0000000000000000",
    "cohort=99999999999.0000000000000000",
    "cohort=65535.0000000000000000",
    "cohort=",
    "cohort",
    "",
    ";;;;",
    "cohort=3.zzzzzzzzzzzzzzzz",
    "cohort=%33.0123456789abcdef",
    "cohort=3.é123456789abcdef",
    f"a=1, cohort={cookie_value(6)}",
    f"cohort=junk, b=2; cohort={cookie_value(6)},c=3",
    "x=y; " * 200 + f"cohort={cookie_value(3)}",
]

CONFIGS = [
    '{ "stable": "1.4.2", "canary": "1.5.0", "weight": 30 }',
    '{"stable":"1.4.2","canary":null,"weight":0}',
    '{"stable":"1.4.2"}',
    '{"stable":"1.4.2","canary":"1.5.0","weight":100}',
    '{"stable":"1.4.2","canary":"1.5.0","weight":35,"cohort_offset":7}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":20,"note":"ticket 42","steps":[1,5]}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":5,"health":{"window_secs":60,"min_requests":200,'
    '"max_error_rate":0.02,"max_relative":2.0,"auto_rollback":true},"progression":{"steps":[1,5,25,50,100],"bake_secs":300}}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":5,"health":{"max_error_rate":0.1}}',
    '{"stable":"1.0.0","canary":"2.0.0-rc.1+build.7","weight":1,"progression":{"steps":[1,10]}}',
    '{"stable":"1.0.0","owner":{"team":"payments","pager":["a","b"]},"x":0.1,"y":-0,"z":1e300,"big":18446744073709551615,"neg":-9223372036854775808}',
    '{"stable":"1.0.0","f":5e-324,"g":2.2250738585072011e-308,"h":0.30000000000000004,"u":"\\u2028\\ud83d\\ude00"}',
    '{"stable":"\\u0031.0.0","canary":"1.0.1","weight":10}',
    '{"stable":"1.0.0","stable":"2.0.0"}',
    '{"canary":"1.5.0","weight":30}',
    '{"stable":1,"weight":30}',
    '{"stable":"../x","weight":30}',
    '{"stable":"1.0.0","canary":"a/b","weight":30}',
    '{"stable":"1.0.0","canary":"1.0.0","weight":30}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":101}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":-1}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":12.5}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":1e2}',
    '{"stable":"1.0.0","canary":"1.1.0","weight":"30"}',
    '{"stable":"1.0.0","cohort_offset":-3}',
    '{"stable":"1.0.0","cohort_offset":4294967296}',
    '{"stable":"1.0.0","health":{"max_error_rate":2}}',
    '{"stable":"1.0.0","health":{"window_secs":5}}',
    '{"stable":"1.0.0","health":{"unknown":1}}',
    '{"stable":"1.0.0","progression":{"steps":[50,10]}}',
    '{"stable":"1.0.0","progression":{"steps":[]}}',
    '{"stable":"1.0.0","progression":{"steps":[10],"bake_secs":0}}',
    "[1,2]",
    '{"stable":"1.0.0",',
    "null",
    '"1.0.0"',
    "[" * 200 + "]" * 200,
    '{"stable":"1.0.0","deep":' + "[" * 126 + "]" * 126 + "}",
]

IDENTITIES = [
    f"cookie: cohort={cookie_value(3)}\nx-user-key: alice\nja4: t13d1516h2_8daaf6152771_02713d6af862\nip: 203.0.113.7\ncanary: 1.5.0\nweights: 10 50",
    "x-user-key: merchant-4711\ncanary: yes\nweights: 30 30",
    "x-user-key:    \nja4: t13d1516h2_8daaf6152771_02713d6af862\nip: 2001:db8:1:2:aaaa:bbbb:cccc:dddd\ncanary: yes\nweights: 0 100",
    "ja3: e7d705a3286e19ea42f587b344ee6865\nip: 192.0.2.1\ncanary: yes\nweights: 50 55\noffset: 7",
    "ja4: t13d1715h2_5b57614c22b0_3d5424432f57\nip: not-an-ip\ncohorts: 100\ncanary: yes\nweights: 1 2",
    "random: 18446744073709551615\ncohorts: 1000\ncanary: yes\nweights: 99 100",
    "random: 0\ncohorts: 1\ncanary: yes\nweights: 0 99",
    "cookie: cohort=junk\nmint: 4\ncanary: yes\nweights: 40 60",
    "cookie: cohort=4\nx-user-key: a\x00b\nja4: \x7f\nsalt: s\nsecret: k\nrandom: 42",
    "salt: \ncohorts: 10",
    "cohorts: 0\nx-user-key: " + "k" * 256,
    "cohorts: 1001\nx-user-key: " + "k" * 257 + "\nja4:  t13d \n",
    "cohorts: 65535\nmint: 65535\nsalt: canary-edge\nsecret: \ncanary: 1\nweights: 100 100\noffset: 4294967295",
]

tok = override_token("demo", "canary", 1_900_000_000)
OVERRIDES = [
    f"bundle: demo\nnow: 1800000000\nx-canary-override: {tok}",
    f"bundle: demo\nnow: 1900000001\nx-canary-override: {tok}",
    f"bundle: payments\nnow: 0\nx-canary-override: {tok}",
    f"bundle: demo\nnow: 0\nx-canary-override:  {override_token('demo', 'stable', 5000)} ",
    f"bundle: demo\nnow: 0\nx-canary-override: {override_token('demo', 'canary', 5000, b'other')}",
    f"bundle: demo\nnow: 0\nx-canary-override: {override_token('demo', 'canary', 5000, issued=999)}",
    f"bundle: demo\nnow: 0\nx-canary-override: {override_token('demo', 'canary', 5000, issued=None)}",
    f"bundle: demo\nnow: 0\nx-canary-override: {tok.upper()}",
    "bundle: demo\nnow: 0\nx-canary-override: always",
    "bundle: demo\nnow: 0\nx-canary-override: v1.demo.canary.99999999999999999999.00000000000000000000000000000000",
    "bundle: demo\nnow: 0\nx-canary-override: " + "x" * 300,
    "bundle: demo\nnow: 4000\nissue: canary 5000\nedit: 0 14 57",
    "bundle: d\nnow: 0\nissue: stable 18446744073709551615\nedit: 1 3 46",
    "bundle: payments\nnow: 1\nissue: canary 0\nedit: 2 40 0",
    "bundle: demo\nnow: 0\nissue: canary 5000\nedit: 3 20 0",
]

BODIES = [
    'action: weight\nbody: {"weight": 30}\nauthorization: Bearer admin-token-0123456789abcdef012345\nif-none-match: "abc123"\n'
    'report: {"bundle":"demo","version":"1.5.0","kind":"script_error","message":"x is undefined"}',
    'action: weight\nbody: {"weight": 101}\nauthorization: Bearer  admin-token-0123456789abcdef012345 \nif-none-match: *',
    'action: weight\nbody: {"weight": 30, "extra": 1}\nauthorization: bearer admin-token-0123456789abcdef012345\nif-none-match: W/"abc123", "def"',
    'action: rollout\nbody: {"steps":[1,5,25,50,100],"bake_secs":300}\nreport: {"bundle":"Demo","version":"1.5.0","kind":"x"}',
    "action: rollout\nbody: \nreport: {}",
    'action: rollout\nbody: {"steps":[50,10]}\nreport: {"bundle":"demo","version":"..","kind":"x"}',
    'action: rollout\nbody: {"steps":[0,10],"bake_secs":604801}',
    'action: rollback\nbody: {"reason":"' + "é" * 300 + '"}\nreport: {"bundle":"demo","version":"1","kind":"' + "k" * 33 + '"}',
    "action: rollback\nbody: {}\nauthorization: Bearer ",
    "action: pause\nbody: junk",
    "action: resume",
    "action: promote",
    "action: delete\nbody: {}",
    b"action: weight\nbody: {\"weight\":1}\nreport: {\"bundle\":\"demo\",\"version\":\"1.0\",\"kind\":\"\xff\"}",
    'report: {"bundle":"demo","version":"1.0.0","kind":"a","message":' + '"' + "m" * 4100 + '"}',
    "if-none-match: " + '"x",' * 1100,
]

# Inputs that once failed a property, kept as regression tests.
REGRESSIONS = {
    # serde_json without `float_roundtrip` reads some 17-digit numbers 1 ulp off, so
    # parse(to_json(r)) != r: a threshold or an unknown field changes on a read-modify-write.
    "rollout_config": [
        ("float-roundtrip-health", '{"stable":"1.0.0","health":{"max_error_rate":0.091109319140219417}}'),
        ("float-roundtrip-extra", '{"stable":"1.0.0","note":2.2250738585072011e-186}'),
    ],
}

write("route_path", PATHS)
# Byte 0: 10 cohorts, name `cohort`; 0x20 / 0x40 put 64 KiB of other cookies before / after.
write(
    "cookie_header",
    [b"\x00\x03" + h.encode() for h in COOKIE_HEADERS]
    + [b"\x20\x03" + COOKIE_HEADERS[1].encode(), b"\x40\x03" + COOKIE_HEADERS[1].encode()]
    + [b"\x05\x2a" + f"cohort={cookie_value(42, 100)}".encode()],
)
write("rollout_config", CONFIGS)
write("client_identity", IDENTITIES)
write("override_token", OVERRIDES)
write("api_bodies", BODIES)
(ROOT / "route_model").mkdir(parents=True, exist_ok=True)
for target, inputs in REGRESSIONS.items():
    write(target, inputs, prefix="regression")
print("seeds written under", ROOT)
