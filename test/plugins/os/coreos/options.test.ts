/**
 * The os stage's free-form options against hostile values, through `config validate`'s own parser
 * (parseClusterText with the built-in plugins): each bad value is a problem at its cluster-file path,
 * exit 2, before anything runs.
 */
import { describe, expect, test } from "bun:test";
import { builtinPlugins } from "../../../../plugins/index.ts";
import { isZincatiTimeZone } from "../../../../plugins/os/coreos/allowlists.ts";
import { parseClusterText } from "../../../../src/core/config.ts";
import exampleText from "../../../../src/example/kubehyve.yaml" with { type: "text" };
import { InputError } from "../../../../src/lib/errors.ts";

const lookup = { find: (id: string) => builtinPlugins.find((p) => p.id === id), searchPath: [] };

/** The example lab with these options in its os stage, replacing the example's own of that name. */
function withOsOptions(lines: string): string {
  const start = exampleText.indexOf("  os:\n    plugin: coreos\n");
  const end = exampleText.indexOf("\n  k8s:", start);
  if (start < 0 || end < 0) throw new Error("the example lab has no os stage before its k8s stage");
  const key = /^(\w+):/.exec(lines)?.[1];
  const block = exampleText
    .slice(start, end)
    .split("\n")
    .filter((line: string) => !key || !line.startsWith(`    ${key}:`))
    .join("\n");
  return `${exampleText.slice(0, start)}${block}\n${lines.replace(/^/gm, "    ")}${exampleText.slice(end)}`;
}

function problemsOf(text: string): { path: string; message: string }[] {
  try {
    parseClusterText(text, "kubehyve.yaml", lookup);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).exitCode).toBe(2);
    return [...(error as InputError).problems].map(({ path, message }) => ({ path, message }));
  }
  return [];
}

const yamlString = (value: string) => JSON.stringify(value);

describe("hostDir", () => {
  test("takes a plain absolute path of the stage's own", () => {
    expect(problemsOf(withOsOptions("hostDir: /var/db/kubehyve/lab/os"))).toEqual([]);
    expect(problemsOf(withOsOptions("hostDir: /zroot/kubehyve/.lab-os_2+x"))).toEqual([]);
  });

  test.each([
    ["a relative path", "var/db/kubehyve", "must be an absolute path"],
    ["/ itself", "/", "must not be / itself"],
    ["a trailing slash", "/var/db/kubehyve/", "must not end with a slash"],
    ["..", "/var/db/kubehyve/../../etc", "must not contain . or .. parts"],
    ["a blank", "/var/db/my lab", 'has the part "my lab"'],
    ["a command substitution", "/var/db/$(reboot)", 'has the part "$(reboot)"'],
    ["a comment sign", "/var/db/x#y", 'has the part "x#y"'],
    ["a double quote", '/var/db/x"y', 'has the part "x\\"y"'],
    ["a backslash", "/var/db/x\\y", 'has the part "x\\\\y"'],
    ["a single quote", "/var/db/x'y", `has the part "x'y"`],
    ["a glob", "/var/db/lab*", 'has the part "lab*"'],
    ["a comma (bhyve's -f splits there)", "/var/db/a,b", 'has the part "a,b"'],
    ["a newline", "/var/db/a\nb", 'has the part "a\\nb"'],
    ["a NUL", "/var/db/a\0b", 'has the part "a\\u0000b"'],
    ["a system directory", "/etc", "must not be in the system directory /etc"],
    ["a system tree", "/usr/local/etc/kubehyve", "must not be in the system directory /usr/local/etc"],
    ["a shared directory", "/var/db", "must not be /var/db itself"],
    ["/tmp", "/tmp", "must not be /tmp itself"],
    ["an overlong path", `/${"a".repeat(250)}`, "must be at most 200 characters"],
  ])("refuses %s", (_what, value, message) => {
    const problems = problemsOf(withOsOptions(`hostDir: ${yamlString(value)}`));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe("stages.os.hostDir");
    expect(problems[0]!.message).toContain(message);
  });
});

describe("streamUrl", () => {
  test("takes an https URL", () => {
    expect(
      problemsOf(withOsOptions("streamUrl: https://builds.coreos.fedoraproject.org/streams/testing.json")),
    ).toEqual([]);
  });

  test.each([
    ["file:", "file:///etc/shadow", "must be an https URL (this one is file:)"],
    ["ftp:", "ftp://mirror.example/streams/stable.json", "must be an https URL (this one is ftp:)"],
    ["data:", "data:,{}", "must be an https URL (this one is data:)"],
    ["not a URL", "builds.coreos.fedoraproject.org/streams/stable.json", "must be a URL"],
    ["credentials", "https://user:secret@mirror.example/stable.json", "must not carry a user name"],
  ])("refuses %s", (_what, value, message) => {
    const problems = problemsOf(withOsOptions(`streamUrl: ${yamlString(value)}`));
    expect(problems).toEqual([{ path: "stages.os.streamUrl", message: expect.stringContaining(message) }]);
  });

  test("refuses plain http unless a mirror serves it", () => {
    const text = withOsOptions("streamUrl: http://127.0.0.1:8080/streams/stable.json");
    const saved = process.env.KUBEHYVE_MIRROR;
    try {
      delete process.env.KUBEHYVE_MIRROR;
      expect(problemsOf(text)).toEqual([
        {
          path: "stages.os.streamUrl",
          message: expect.stringContaining("plain http, which only a mirror may serve"),
        },
      ]);
      process.env.KUBEHYVE_MIRROR = "http://127.0.0.1:8080";
      expect(problemsOf(text)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.KUBEHYVE_MIRROR;
      else process.env.KUBEHYVE_MIRROR = saved;
    }
  });
});

describe("kernelArgs", () => {
  test("takes plain arguments", () => {
    expect(
      problemsOf(withOsOptions("kernelArgs: [mitigations=auto,nosmt, systemd.unified_cgroup_hierarchy=1]")),
    ).toEqual([]);
  });

  test.each([
    ["an empty one", "", "must not be empty"],
    ["a NUL", "quiet\0init=/bin/sh", "must not contain a NUL or a line break"],
    ["a newline", "quiet\ninit=/bin/sh", "must not contain a NUL or a line break"],
    ["a blank", "quiet splash", "must be one word"],
    ["a tab", "quiet\tsplash", "must be one word"],
    ["non-ASCII", "quiét", "must be printable ASCII"],
    ["a GRUB variable", "foo=$ignition_firstboot", "must not contain quotes, backslashes, $"],
    ["a double quote", 'foo="a"', "must not contain quotes"],
    ["a backslash", "foo=a\\b", "must not contain quotes"],
    ["root=", "root=/dev/vda4", "root is set by Fedora CoreOS's boot entry or by Ignition"],
    ["rw", "rw", "rw is set by Fedora CoreOS's boot entry"],
    ["ostree=", "ostree=/ostree/boot.1", "ostree is set by"],
    ["an ignition. argument", "ignition.platform.id=metal", "ignition.platform.id is set by"],
  ])("refuses %s", (_what, value, message) => {
    const problems = problemsOf(withOsOptions(`kernelArgs: [${yamlString(value)}]`));
    expect(problems).toEqual([
      { path: "stages.os.kernelArgs[0]", message: expect.stringContaining(message) },
    ]);
  });

  test("takes arguments of exactly 1024 characters together, and refuses one more", () => {
    // 31 arguments of 31 characters and one of 32, with the 31 spaces between them: 1024.
    const args = [
      ...Array.from({ length: 31 }, (_, i) => `a${String(i).padStart(2, "0")}=${"x".repeat(27)}`),
      `z=${"x".repeat(30)}`,
    ];
    expect(args.join(" ")).toHaveLength(1024);
    expect(problemsOf(withOsOptions(`kernelArgs: [${args.join(", ")}]`))).toEqual([]);
    const over = [...args.slice(0, -1), `z=${"x".repeat(31)}`];
    expect(problemsOf(withOsOptions(`kernelArgs: [${over.join(", ")}]`))).toEqual([
      { path: "stages.os.kernelArgs", message: expect.stringContaining("together at most 1024 characters") },
    ]);
  });

  test("refuses arguments longer together than the command line has room for", () => {
    const many = Array.from({ length: 40 }, (_, i) => `arg${i}=${"x".repeat(30)}`);
    const problems = problemsOf(withOsOptions(`kernelArgs: [${many.join(", ")}]`));
    expect(problems).toEqual([
      { path: "stages.os.kernelArgs", message: expect.stringContaining("together at most 1024 characters") },
    ]);
  });
});

describe("zincati.timeZone", () => {
  const zone = (tz: string) => withOsOptions(`zincati: { strategy: periodic, timeZone: ${yamlString(tz)} }`);

  test.each([
    "Europe/Berlin",
    "America/Argentina/Buenos_Aires",
    "US/Eastern",
    "Etc/GMT+5",
    "UTC",
    "localtime",
  ])("takes %s", (tz) => {
    expect(problemsOf(zone(tz))).toEqual([]);
  });

  test.each([
    ["an unknown zone", "Mars/Olympus"],
    ["another spelling (the node's zoneinfo is case-sensitive)", "europe/berlin"],
    ["a path out of the zoneinfo directory", "../../etc/shadow"],
    ["an absolute path", "/usr/share/zoneinfo/UTC"],
    ["a TOML injection", 'UTC"\nenabled = false'],
    ["an empty name", ""],
  ])("refuses %s", (_what, tz) => {
    expect(problemsOf(zone(tz))).toEqual([
      { path: "stages.os.zincati.timeZone", message: expect.stringContaining("IANA database") },
    ]);
  });

  test("knows the names the way the runtime's time zone database does", () => {
    // Every zone the runtime lists is one Zincati can be given, and none of them needs a quote.
    for (const tz of Intl.supportedValuesOf("timeZone")) expect(isZincatiTimeZone(tz)).toBe(true);
  });
});

describe("the other options", () => {
  test.each([
    ["dnsPort 0", "dnsPort: 0", "stages.os.dnsPort"],
    ["dnsPort 99999", "dnsPort: 99999", "stages.os.dnsPort"],
    ["an unknown stream", "stream: rawhide", "stages.os.stream"],
    ["a minMemory that is no size", "minMemory: lots", "stages.os.minMemory"],
    ["an unknown option", "hostdir: /var/db/x", "stages.os.hostdir"],
  ])("refuses %s", (_what, line, path) => {
    expect(problemsOf(withOsOptions(line)).map((p) => p.path)).toEqual([path]);
  });
});
