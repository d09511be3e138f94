import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseStreamMetadata } from "../../../../plugins/os/coreos/stream.ts";
import { ORACLES } from "./lab.ts";

const STABLE = readFileSync(join(ORACLES, "releases/fcos/fedora-coreos-streams/streams/stable.json"), "utf8");
const GO_FIXTURE = readFileSync(
  join(ORACLES, "releases/fcos/stream-metadata-go/stream/fixtures/fcos-stream.json"),
  "utf8",
);

describe("parseStreamMetadata", () => {
  test("picks the x86_64 qemu qcow2.xz of the published stable stream", () => {
    expect(parseStreamMetadata(STABLE, "stable.json")).toEqual({
      stream: "stable",
      release: "44.20260707.3.1",
      lastModified: "2026-07-21T14:07:12Z",
      location:
        "https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/44.20260707.3.1/x86_64/fedora-coreos-44.20260707.3.1-qemu.x86_64.qcow2.xz",
      sha256: "35eb8e1f601b2b65545402df54b2dbb2a48e75f1d4483de5dc575d020ddefa1e",
      uncompressedSha256: "231a74024e12e5a9b2e7fa64ec948d51986b70f3735cdf68fadcaba095ceb18d",
      signature:
        "https://builds.coreos.fedoraproject.org/prod/streams/stable/builds/44.20260707.3.1/x86_64/fedora-coreos-44.20260707.3.1-qemu.x86_64.qcow2.xz.sig",
    });
  });

  test("reads the stream-metadata-go test fixture too", () => {
    const image = parseStreamMetadata(GO_FIXTURE, "fcos-stream.json");
    expect(image.stream).toBe("stable");
    expect(image.release).toBe("33.20201201.3.0");
    expect(image.location).toEndWith("-qemu.x86_64.qcow2.xz");
    expect(image.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test("names the missing path when the platform or format is absent", () => {
    expect(() => parseStreamMetadata(STABLE, "stable.json", { platform: "bhyve" })).toThrow(
      "stream metadata from stable.json: no architectures.x86_64.artifacts.bhyve",
    );
    expect(() => parseStreamMetadata(STABLE, "stable.json", { arch: "riscv64" })).toThrow(
      "no architectures.riscv64",
    );
  });

  test("rejects a document that is not JSON or has a malformed checksum", () => {
    expect(() => parseStreamMetadata("<html>", "u")).toThrow("stream metadata from u: not JSON");
    const doc = JSON.parse(STABLE);
    doc.architectures.x86_64.artifacts.qemu.formats["qcow2.xz"].disk.sha256 = "abc";
    expect(() => parseStreamMetadata(JSON.stringify(doc), "u")).toThrow("sha256 is not a sha256");
  });
});
