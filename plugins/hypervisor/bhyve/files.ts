/** Reading several small text files on a host with one command instead of one `cat` each. */
import type { Target } from "kubehyve";

/**
 * `grep -H '' FILE…` prints every line of every file as `FILE:line` (POSIX grep; -H is in FreeBSD
 * and GNU grep alike). A missing file is reported on stderr and left out; its entry is undefined.
 */
export async function readTextFiles(
  host: Target,
  paths: readonly string[],
): Promise<Map<string, string | undefined>> {
  const files = new Map<string, string | undefined>();
  if (!paths.length) return files;
  const result = await host.run(["grep", "-H", "", "--", ...paths]);
  // Longest first, so /vm/cp10/x.conf is never taken for /vm/cp1/… (a path is never a prefix of
  // another one followed by ":" unless it is that file).
  const byLength = [...paths].sort((a, b) => b.length - a.length);
  const lines = new Map<string, string[]>(paths.map((p) => [p, []]));
  for (const line of result.stdout.split("\n")) {
    const path = byLength.find((p) => line.startsWith(`${p}:`));
    if (path) lines.get(path)!.push(line.slice(path.length + 1));
  }
  for (const path of paths) {
    const missing = result.stderr
      .split("\n")
      .some((l) => l.includes(path) && /No such file|not found|cannot open/i.test(l));
    const content = lines.get(path)!;
    files.set(path, missing ? undefined : content.length ? `${content.join("\n")}\n` : "");
  }
  return files;
}
