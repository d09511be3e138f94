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

  test("stops looking at --: what follows is an argument, not a flag", () => {
    const withService = { ...args, service: { type: "positional", required: false } } as const;
    expect(() => checkFlags(["--", "--anything"], withService, "expose")).not.toThrow();
  });

  test("refuses words no flag takes: a stray argument is a typo (plan offline), never ignored", () => {
    expect(() => checkFlags(["offline"], args, "plan")).toThrow(
      new InputError("kubehyve plan takes no arguments, but got: offline"),
    );
    expect(() => checkFlags(["-c", "f.yaml", "--", "-y", "x"], args, "plan")).toThrow(
      new InputError("kubehyve plan takes no arguments, but got: -y x"),
    );
    const withService = { ...args, service: { type: "positional", required: false } } as const;
    expect(() => checkFlags(["web", "--only", "os"], withService, "expose")).not.toThrow();
    expect(() => checkFlags(["web", "db"], withService, "expose")).toThrow(
      new InputError("kubehyve expose takes 1 argument, but got 2: web db"),
    );
  });

  test("a flag that takes a value comes last in a group of short flags, as its value follows it", () => {
    expect(() => checkFlags(["-yc", "f.yaml"], args, "plan")).not.toThrow();
    try {
      checkFlags(["-cy", "f.yaml"], args, "plan");
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).message).toBe(
        "-cy: -c takes a value, so it must come last in a group of short flags",
      );
      expect((error as InputError).hint).toBe("write -yc VALUE, or -c VALUE on its own");
    }
  });

  test("refuses one flag given two different values; the same value twice, or a repeatable flag, is fine", () => {
    expect(() => checkFlags(["-c", "a.yaml", "--config=b.yaml"], args, "down")).toThrow(
      new InputError('--config was given twice, as "a.yaml" and "b.yaml"; nothing was done'),
    );
    expect(() =>
      checkFlags(["-c", "a.yaml", "--config", "a.yaml", "-y", "--yes"], args, "down"),
    ).not.toThrow();
    const doctor = { ignore: { type: "string", description: "Make it a warning (repeatable)" } } as const;
    expect(() => checkFlags(["--ignore", "a", "--ignore", "b"], doctor, "doctor")).not.toThrow();
  });

  test("a switch given a value is refused: citty would read --yes=no as yes", () => {
    for (const token of ["--yes=no", "--yes=false", "--offline=0", "--no-offline=true"])
      expect(() => checkFlags([token], args, "down")).toThrow(InputError);
    try {
      checkFlags(["--yes=no"], args, "down");
      throw new Error("accepted");
    } catch (error) {
      expect((error as InputError).message).toBe(
        "--yes=no: --yes is a switch and takes no value; nothing was done",
      );
      expect((error as InputError).hint).toBe(
        "write --yes to turn it on, or leave it out: see kubehyve down --help",
      );
    }
  });

  test("a switch turned both on and off is refused: citty lets --no-X win wherever it stands", () => {
    expect(() => checkFlags(["--no-offline", "--offline"], args, "plan")).toThrow(
      new InputError("--offline and --no-offline were both given; nothing was done"),
    );
    expect(() => checkFlags(["--offline", "--no-offline"], args, "plan")).toThrow(InputError);
    expect(() => checkFlags(["-y", "--no-yes"], args, "down")).toThrow(
      new InputError("--yes and --no-yes were both given; nothing was done"),
    );
    expect(() => checkFlags(["--offline", "--offline", "--no-yes", "--no-yes"], args, "plan")).not.toThrow();
  });

  test('a short flag with = is refused: citty keeps the = in the value (-c=lab.yaml names "=lab.yaml")', () => {
    for (const token of ["-c=lab.yaml", "-y=no", "-yc=lab.yaml"])
      expect(() => checkFlags([token], args, "plan")).toThrow(InputError);
    try {
      checkFlags(["-c=lab.yaml"], args, "plan");
      throw new Error("accepted");
    } catch (error) {
      expect((error as InputError).message).toBe(
        '-c=lab.yaml: a short flag takes its value after a space, not after "="; nothing was done',
      );
      expect((error as InputError).hint).toBe(
        'write -c VALUE, or the long flag with "=": see kubehyve plan --help',
      );
    }
    expect(() => checkFlags(["--config=lab.yaml"], args, "plan")).not.toThrow();
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
