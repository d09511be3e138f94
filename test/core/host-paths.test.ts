import { describe, expect, test } from "bun:test";
import { ownDirProblem, plainPathProblem, systemTreeOf } from "../../src/core/host-paths.ts";

describe("the host paths every stage may name", () => {
  test.each([
    ["relative", "var/db/x", "must be an absolute path (starting with /)"],
    ["/ itself", "/", "must not be / itself"],
    ["a trailing slash", "/var/db/x/", "must not end with a slash"],
    ["//", "/var//db", "must not contain //"],
    ["..", "/var/db/../../etc", "must not contain . or .. parts"],
    ["a command substitution", "/var/db/$(reboot)", 'has the part "$(reboot)"'],
    ["a newline", "/var/db/x\ny", 'has the part "x\\ny"'],
    ["a comma bhyve's -f would split at", "/var/db/a,b", 'has the part "a,b"'],
  ])("refuse %s", (_what, path, problem) => {
    expect(plainPathProblem(path)).toStartWith(problem);
  });

  test("take a plain path, and refuse one over the length a caller allows", () => {
    expect(plainPathProblem("/var/db/kubehyve/lab-1/os")).toBeUndefined();
    expect(plainPathProblem(`/${"a".repeat(300)}`)).toBe("has a part longer than 255 characters (NAME_MAX)");
    expect(plainPathProblem("/var/db/kubehyve", 10)).toBe("must be at most 10 characters");
  });

  test("keep kubehyve's own directories out of the system's trees and off shared directories", () => {
    expect(ownDirProblem("/etc/kubehyve")).toBe(
      "must not be in the system directory /etc: use a directory of its own",
    );
    expect(ownDirProblem("/usr/local/etc")).toStartWith("must not be in the system directory /usr/local/etc");
    expect(ownDirProblem("/var/db", { example: "/var/db/kubehyve" })).toBe(
      "must not be /var/db itself: use a directory of its own below it, such as /var/db/kubehyve",
    );
    expect(ownDirProblem("/var/db/kubehyve")).toBeUndefined();
    expect(ownDirProblem("/zroot/vm")).toBeUndefined();
    expect(systemTreeOf("/boot/kernel")).toBe("/boot");
    expect(systemTreeOf("/bootleg")).toBeUndefined();
  });
});
