/**
 * Every environment variable kubehyve reads changes what it does, so each is one a user must be
 * able to find in the README: a variable read by the code and named nowhere there fails here.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Glob } from "bun";

const ROOT = join(import.meta.dir, "..");

test("every environment variable the code reads is named in the README", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const read = new Set<string>();
  for (const file of new Glob("{src,plugins}/**/*.ts").scanSync(ROOT))
    for (const [, name] of readFileSync(join(ROOT, file), "utf8").matchAll(/\benv\.([A-Z_][A-Z0-9_]*)/g))
      read.add(name!);
  // The extraction itself: without these it found nothing to hold the README to.
  expect([...read]).toEqual(expect.arrayContaining(["KUBEHYVE_MIRROR", "NO_COLOR", "XDG_STATE_HOME"]));
  expect([...read].filter((name) => !new RegExp(`\\$?\\b${name}\\b`).test(readme))).toEqual([]);
});
