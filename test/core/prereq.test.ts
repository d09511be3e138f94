import { describe, expect, test } from "bun:test";
import { have, listedPrerequisites } from "../lab/prereq.ts";

describe("the prerequisite list", () => {
  test("refuses a program a test needs that the list does not name, on any machine", () => {
    // `sh` exists here, but the pair is not on the list: a test asking for it would pass locally and
    // fail on a machine that lacks the program.
    // The package's name is a variable: a scan of the tests for have("…", "…") must not take this
    // made-up name for a package a test needs.
    const unlisted = "unlisted-package";
    expect(() => have("sh", unlisted)).toThrow(/add "sh unlisted-package" to scripts\/prerequisites.txt/);
  });

  test("names each command with a Debian package", () => {
    const list = listedPrerequisites();
    expect(list.length).toBeGreaterThan(10);
    for (const { command, debianPackage } of list) {
      // Program names may have capitals (NetworkManager); package names may not.
      expect(command).toMatch(/^(\/[a-z0-9._-]+)*\/?[A-Za-z0-9][A-Za-z0-9.+_-]*$/);
      expect(debianPackage).toMatch(/^[a-z0-9][a-z0-9.+-]+$/);
    }
    expect(list).toContainEqual({ command: "sudo", debianPackage: "sudo" });
  });
});
