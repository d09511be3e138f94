/**
 * Every release file a built-in stage downloads by sha256 is pinned by its size too, so that a mirror
 * that sends without end is stopped at that size. Each pin is held to the upstream file of the same
 * sha256 in the oracle data (its SHA256SUMS names the file): same bytes, same size.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { TRAEFIK_CRDS, TRAEFIK_RBAC } from "../../plugins/ingress/traefik/release.ts";
import { manifestRequest as metallbRequest } from "../../plugins/lb/metallb/manifests.ts";
import { optionsSchema as metallbOptions } from "../../plugins/lb/metallb/options.ts";
import { manifestRequest as calicoRequest } from "../../plugins/net/calico/manifests.ts";
import { optionsSchema as calicoOptions, MANIFESTS } from "../../plugins/net/calico/options.ts";
import { ROOK_FILES } from "../../plugins/storage/rook/release.ts";
import { oracle } from "../lab/oracles.ts";

/** sha256 → the oracle file with those bytes. */
const upstream = new Map(
  readFileSync(oracle("releases", "SHA256SUMS"), "utf8")
    .trim()
    .split("\n")
    .map((line) => line.split(/\s+/) as [string, string])
    .map(([sha256, file]) => [sha256, oracle("releases", file)]),
);

const pins = [
  ...MANIFESTS.map((name) => calicoRequest(v.parse(calicoOptions, {}), name)),
  metallbRequest(v.parse(metallbOptions, { pools: [{ name: "lab", addresses: ["192.168.1.240/29"] }] })),
  TRAEFIK_CRDS,
  TRAEFIK_RBAC,
  ...ROOK_FILES,
];

describe("the release files the built-in stages pin", () => {
  test.each(pins.map((p) => [p.url, p] as const))("%s has the size of the upstream file", (_url, pin) => {
    const file = upstream.get(pin.sha256);
    expect(file, `no oracle file has sha256 ${pin.sha256}`).toBeDefined();
    const bytes = readFileSync(file!);
    expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(pin.sha256);
    expect(pin.size).toBe(bytes.byteLength);
  });

  test("a release the user pins by sha256 alone has no size: its bytes are not known here", () => {
    const other = v.parse(calicoOptions, {
      version: "v3.99.0",
      sha256: { "operator-crds.yaml": "a".repeat(64), "tigera-operator.yaml": "b".repeat(64) },
    });
    expect(calicoRequest(other, "operator-crds.yaml").size).toBeUndefined();
  });
});
