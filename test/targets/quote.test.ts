/**
 * The quoting function against real shells: every word, however hostile, must reach the program as
 * the same bytes, through `sh -c`, `bash -c` and `zsh -c` here and through a real sshd (whose login shell parses
 * the remote command line).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalTarget } from "../../src/targets/local.ts";
import { shellJoin, shellQuote } from "../../src/targets/quote.ts";
import { SshTarget } from "../../src/targets/ssh.ts";
import { runOk } from "../../src/targets/target.ts";
import { have } from "../lab/prereq.ts";
import { loginOf, type Sshd, startSshd } from "../lab/sshd.ts";

const HOSTILE = [
  "",
  " ",
  "plain",
  "two words",
  "'",
  "''",
  "it's",
  "'\\''",
  '"',
  '"$HOME"',
  "\\",
  "\\\\",
  "back\\slash\\",
  "$",
  "$HOME",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion, as a literal word, is the input here
  "${HOME}",
  "$(id)",
  "$((1+1))",
  "`id`",
  "line1\nline2",
  "\n",
  "trailing newline\n",
  "\r\n",
  "tab\there",
  ";",
  "a; rm -rf /nonexistent-kubehyve",
  "&&",
  "||",
  "|",
  "&",
  "a & b",
  ">",
  "<",
  ">/tmp/kubehyve-quote-redirect",
  "2>&1",
  "(",
  ")",
  "{",
  "}",
  "{a,b}",
  "*",
  "?",
  "[a-z]*",
  "/*",
  "~",
  "~root",
  "#",
  "# not a comment",
  "!",
  "!!",
  "!$",
  "-",
  "--",
  "-n",
  "-e",
  "--help",
  "-rf",
  "=",
  // zsh expands a word starting with = into the path of the program it names (EQUALS).
  "=ls",
  "=sh=",
  "a=b",
  "PATH=/nonexistent",
  "%s",
  "%n",
  "\\n",
  "ünïcødé",
  "日本語",
  "emoji 🚀",
  "\u00a0non-breaking",
  "\u200bzero-width",
  "\u0001\u0002\u001b[31mcontrol",
  "\u007f",
  "'\"`$\\!*?[]{}();&|<>~# \t\n",
];

/** A seeded generator, so a failure is reproducible from the printed seed. */
function randomWords(seed: number, count: number): string[] {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  const alphabet = [
    ..."'\"`$\\!*?[]{}()<>|&;#~=%^ \t\n\r-_.,:/@+aZ09",
    "é",
    "ß",
    "日",
    "🚀",
    "\u0007",
    "\u001b",
  ];
  return Array.from({ length: count }, () => {
    const length = next() % 24;
    let word = "";
    for (let i = 0; i < length; i++) word += alphabet[next() % alphabet.length];
    return word;
  });
}

const SEED = Number(process.env.KUBEHYVE_QUOTE_SEED ?? Date.now() % 1_000_000);
const RANDOM = randomWords(SEED, 400);

/** Prints each argument followed by a NUL; no argument can contain a NUL, so the split is exact. */
const PRINT_WORDS = ["printf", "%s\\0"];

function splitWords(stdout: string): string[] {
  return stdout.split("\0").slice(0, -1);
}

function chunk<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) =>
    items.slice(i * size, (i + 1) * size),
  );
}

describe("shellQuote", () => {
  test("leaves plain words alone and quotes everything else", () => {
    expect(shellQuote("abc-1.2_3/x:y@z%+=,")).toBe("abc-1.2_3/x:y@z%+=,");
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellJoin(["echo", "a b", "$x"])).toBe("echo 'a b' '$x'");
  });

  test("refuses a NUL byte, which no argv word can carry", () => {
    expect(() => shellQuote("a\0b")).toThrow("NUL");
  });

  const local = new LocalTarget();
  // zsh: the login shell a FreeBSD user may have chosen for the account kubehyve logs in as.
  for (const shell of ["sh", "bash", ...(have("zsh", "zsh") ? ["zsh"] : [])]) {
    test(`${shell} -c gets back every hostile word byte for byte`, async () => {
      const result = await runOk(local, [shell, "-c", shellJoin([...PRINT_WORDS, ...HOSTILE])]);
      expect(splitWords(result.stdout)).toEqual(HOSTILE);
      expect(await Bun.file("/tmp/kubehyve-quote-redirect").exists()).toBe(false);
    });

    test(`${shell} -c gets back 400 random words built from shell metacharacters (seed ${SEED})`, async () => {
      for (const words of chunk(RANDOM, 100)) {
        const result = await runOk(local, [shell, "-c", shellJoin([...PRINT_WORDS, ...words])]);
        expect(splitWords(result.stdout)).toEqual(words);
      }
    });
  }

  test("a quoted word survives being quoted again for a shell inside a shell", async () => {
    const inner = shellJoin([...PRINT_WORDS, ...HOSTILE]);
    const result = await runOk(local, ["sh", "-c", shellJoin(["sh", "-c", inner])]);
    expect(splitWords(result.stdout)).toEqual(HOSTILE);
  });
});

describe.skipIf(!have("sshd", "openssh-server") || !have("ssh", "openssh-client"))(
  "shellQuote through a real sshd",
  () => {
    let sshd: Sshd;
    let stateDir: string;
    let target: SshTarget;

    beforeAll(async () => {
      sshd = await startSshd();
      stateDir = await mkdtemp(join(tmpdir(), "kubehyve-quote-state-"));
      target = new SshTarget({ ...loginOf(sshd), stateDir });
    });

    afterAll(async () => {
      await target?.close();
      await sshd?.stop();
      if (stateDir) await rm(stateDir, { recursive: true, force: true });
    });

    test("the remote login shell hands every hostile word to the program byte for byte", async () => {
      const result = await runOk(target, [...PRINT_WORDS, ...HOSTILE]);
      expect(splitWords(result.stdout)).toEqual(HOSTILE);
      expect(await Bun.file("/tmp/kubehyve-quote-redirect").exists()).toBe(false);
    });

    test(`the remote login shell hands back 400 random words unchanged (seed ${SEED})`, async () => {
      for (const words of chunk(RANDOM, 100)) {
        const result = await runOk(target, [...PRINT_WORDS, ...words]);
        expect(splitWords(result.stdout)).toEqual(words);
      }
    });

    test("hostile words also survive a remote sh -c script that quotes them once more", async () => {
      const result = await runOk(target, ["sh", "-c", shellJoin([...PRINT_WORDS, ...HOSTILE])]);
      expect(splitWords(result.stdout)).toEqual(HOSTILE);
    });

    test("hostile words survive as environment values and as the working directory", async () => {
      const dir = await mkdtemp(join(tmpdir(), "kubehyve-it's $(id) `x`\n"));
      try {
        const value = HOSTILE.join("|");
        const result = await runOk(
          target,
          ["sh", "-c", 'printf "%s\\0%s\\0" "$KUBEHYVE_VALUE" "$(pwd -P)"'],
          {
            env: { KUBEHYVE_VALUE: value },
            cwd: dir,
          },
        );
        expect(splitWords(result.stdout)).toEqual([value, dir]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  },
);
