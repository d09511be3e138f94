import { describe, expect, test } from "bun:test";
import { checkFlags, suggest } from "../../src/cli/index.ts";
import { InputError } from "../../src/lib/errors.ts";

const args = {
  config: { type: "string", alias: "c" },
  yes: { type: "boolean", alias: "y" },
  offline: { type: "boolean" },
  only: { type: "string" },
} as const;

describe("flags", () => {
  test("accepts known flags, aliases, negations and values", () => {
    expect(() =>
      checkFlags(["-c", "f.yaml", "--yes", "--no-offline", "--only=os,k8s", "-y"], args, "plan"),
    ).not.toThrow();
  });

  test("a value that looks like a flag is taken as the value of the flag before it", () => {
    expect(() => checkFlags(["--only", "--weird-slot-name"], args, "plan")).not.toThrow();
  });

  test("refuses an unknown flag with a suggestion", () => {
    try {
      checkFlags(["--ofline"], args, "plan");
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).message).toBe("unknown flag --ofline for kubehyve plan");
      expect((error as InputError).hint).toBe("did you mean --offline?");
    }
  });

  test("stops looking at --", () => {
    expect(() => checkFlags(["--", "--anything"], args, "plan")).not.toThrow();
  });

  test("suggests the nearest command, and nothing when none is near", () => {
    const commands = [
      "init",
      "plan",
      "up",
      "verify",
      "doctor",
      "down",
      "render",
      "plugins",
      "config",
      "version",
    ];
    expect(suggest("doctr", commands)).toBe("doctor");
    expect(suggest("plna", commands)).toBe("plan");
    expect(suggest("rend", commands)).toBe("render");
    expect(suggest("kubectl", commands)).toBeUndefined();
  });
});
