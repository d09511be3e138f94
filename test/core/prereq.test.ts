import { describe, expect, test } from "bun:test";
import { have, listedPrerequisites } from "../lab/prereq.ts";

describe("the prerequisite list", () => {
  test("refuses a program a test needs that the list does not name, on any machine", () => {
    // `sh` exists here; the test would pass locally and fail on a machine without it.
    expect(() => have("sh", "dash")).toThrow(/add "sh dash" to scripts\/prerequisites.txt/);
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
