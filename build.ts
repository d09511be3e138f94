/**
 * Builds the standalone binaries into dist/: FreeBSD x64 (the target that matters), Linux x64 and,
 * where cheap, Linux arm64. `bun build.ts [--target linux-x64,...]`.
 *
 * The binaries ignore a bunfig.toml or .env in the user's working directory: kubehyve runs as root
 * in whatever directory the user is in, and must not pick up someone else's runtime settings.
 */
import { $ } from "bun";
import pkg from "./package.json" with { type: "json" };
import { STARTUP_JIT_POLICY } from "./src/cli/jit-policy.ts";

const ALL = ["freebsd-x64", "linux-x64", "linux-arm64"] as const;
type Target = (typeof ALL)[number];

/**
 * How a binary is built; the start-up benchmark builds its stand-ins with exactly these. Every
 * binary carries bytecode, the cross-compiled FreeBSD one too: Bun 1.4's bytecode cache does not
 * depend on the platform that made it (oven-sh/bun#40270), which halves start-up. (Checked here by
 * running the cross-compiled linux-arm64 binary under qemu-user: the same output as the native
 * binary's, and 1.5 times faster than without bytecode; BENCHMARKS.md has the commands.)
 */
export function buildConfig(opts: {
  target: Target;
  outfile: string;
  commit: string;
  bytecode?: boolean;
}): Bun.BuildConfig & { compile: object } {
  return {
    entrypoints: [`${import.meta.dir}/src/main.ts`],
    minify: true,
    // Each command in its own chunk: start-up parses only what the command run needs.
    splitting: true,
    bytecode: opts.bytecode ?? true,
    format: "esm",
    sourcemap: "none",
    define: {
      KUBEHYVE_COMMIT: JSON.stringify(opts.commit),
      // Fixed, not inherited: built from a test runner (NODE_ENV=test), consola would go quiet.
      "process.env.NODE_ENV": JSON.stringify("production"),
    },
    compile: {
      target: `bun-${opts.target}` as Bun.Build.CompileTarget,
      outfile: opts.outfile,
      autoloadBunfig: false,
      autoloadDotenv: false,
      // Start-up code stays interpreted; main.ts restores the normal policy once a command has run
      // for a while (src/cli/jit-policy.ts says why).
      jitPolicy: STARTUP_JIT_POLICY,
    },
  };
}

if (import.meta.main) {
  const flag = process.argv.indexOf("--target");
  const targetList = flag > 0 ? process.argv[flag + 1] : ALL.join(",");
  if (!targetList) {
    console.error(`--target needs a value: one or more of ${ALL.join(", ")}, comma-separated`);
    process.exit(2);
  }
  const targets = targetList.split(",");

  const commit =
    (await $`git rev-parse --short=12 HEAD`.nothrow().quiet()).stdout.toString().trim() || "unknown";
  const dirty = (await $`git status --porcelain --untracked-files=no`.nothrow().quiet()).stdout
    .toString()
    .trim()
    ? "-dirty"
    : "";

  for (const target of targets) {
    if (!ALL.includes(target as Target)) {
      console.error(`unknown target ${target}; known: ${ALL.join(", ")}`);
      process.exit(2);
    }
    const outfile = `dist/kubehyve-${target}`;
    const started = performance.now();
    const result = await Bun.build(
      buildConfig({ target: target as Target, outfile, commit: `${commit}${dirty}` }),
    );
    if (!result.success) {
      for (const log of result.logs) console.error(log);
      process.exit(1);
    }
    console.log(
      `${outfile} (${pkg.version}, ${commit}${dirty}) in ${Math.round(performance.now() - started)} ms`,
    );
  }
}
