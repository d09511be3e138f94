/**
 * What makes a VM's files and disks on the host, each step whole or not at all: a step either
 * completes or leaves nothing but a temporary name that the next run recognises and removes. The
 * scripts are constant; every value travels as a positional argument. Each one cleans up after
 * itself when it fails or is stopped by a signal (Ctrl-C ends a running command with SIGTERM), so
 * nothing needs the host after an interruption; `up` then finishes what was left half-made.
 */
import { runOk, type Target } from "kubehyve";
import { runScript, SIGNAL_TRAPS, wholeOrNothing } from "./files.ts";
import { TEMP_SUFFIX } from "./marks.ts";

/**
 * Writes the template and runs `vm create -t` from it in one command that removes the template
 * whatever happens: when vm create is done, fails, or the command is stopped. A template is never
 * left in .templates for someone's `vm create -t` to pick up.
 */
export async function createFromTemplate(
  host: Target,
  templatePath: string,
  templateName: string,
  vm: string,
  content: string,
): Promise<void> {
  const script = [
    "set -eu",
    "umask 077",
    `t="$1"; new="$1${TEMP_SUFFIX}"`,
    `trap 'rm -f "$t" "$new"' EXIT`,
    SIGNAL_TRAPS,
    // As writeHostFile: never through a link or into a FIFO lying at the temporary name.
    'rm -f "$new"',
    'set -C; cat > "$new"; set +C',
    'n=$(wc -c < "$new")',
    '[ "$n" -eq "$4" ] || { echo "$t: only $n of $4 bytes arrived" >&2; exit 1; }',
    'mv -f "$new" "$t"',
    'vm create -t "$2" "$3"',
  ].join("\n");
  try {
    await runScript(
      host,
      ["vm", "create", "-t", templateName, vm],
      script,
      [templatePath, templateName, vm, String(Buffer.byteLength(content))],
      content,
    );
  } catch (error) {
    // A script killed outright (its command hung past its limit and the group got SIGKILL) never
    // ran its trap: remove the template from here too. A run stopped even harder leaves it to the
    // next `up`, which knows the name.
    await host.run(["rm", "-f", "--", templatePath, `${templatePath}${TEMP_SUFFIX}`]).catch(() => undefined);
    throw error;
  }
}

/**
 * A file image copied into a file disk: dd (sparse) to DISK + TEMP_SUFFIX, grown to the disk's size,
 * renamed to DISK once complete. umask 077: the disk holds the node's data, readable by root only,
 * as vm-bhyve makes its own disk files (lib/vm-core line 239, chmod 600).
 */
export async function copyImageToFile(
  host: Target,
  image: string,
  disk: string,
  size: number,
): Promise<void> {
  const script = wholeOrNothing({
    prelude: ["set -euf", "umask 077", 'img="$1"; disk="$2"; size="$3"'],
    made: "$disk",
    tmp: "file",
    steps: [
      'rm -f "$tmp"',
      '[ -f "$img" ] || { echo "boot image $img does not exist" >&2; exit 1; }',
      // ls -l's fifth column is the size, in FreeBSD's ls as in every POSIX one.
      'set -- $(ls -lnL -- "$img")',
      '[ "$5" -le "$size" ] || { echo "boot image $img ($5 bytes) is larger than the disk ($size bytes)" >&2; exit 1; }',
      // conv=sparse keeps the copy thin on FreeBSD and GNU dd alike; bs in bytes, as their suffixes differ.
      'out=$(dd if="$img" of="$tmp" bs=1048576 conv=sparse 2>&1) || { echo "$out" >&2; exit 1; }',
      'truncate -s "$size" "$tmp"',
      'mv -f "$tmp" "$disk"',
    ],
  });
  // A copy of gigabytes: the limit of a long step, and safe to stop (it writes the temporary name,
  // which its trap removes), so the first Ctrl-C need not wait for it.
  await runScript(host, ["dd", `if=${image}`, `of=${disk}`], script, [image, disk, String(size)], undefined, {
    kind: "long",
    cancellable: true,
  });
}

/**
 * A file image copied into a zvol: a fresh zvol under the temporary name (so no block of an earlier
 * attempt survives where `conv=sparse` skips zeros), dd onto its device once it appears, renamed to
 * the disk's name once complete. The device of a new zvol appears a moment after `zfs create`:
 * vm-bhyve waits for it up to 30 s too (core::write_img, lib/vm-core lines 445-456).
 */
export async function copyImageToZvol(
  host: Target,
  image: string,
  zvol: string,
  size: number,
  sparse: boolean,
): Promise<void> {
  const script = wholeOrNothing({
    prelude: ["set -eu", 'img="$1"; zvol="$2"; size="$3"; sparse="$4"'],
    made: "$zvol",
    tmp: "zvol",
    steps: [
      'zfs destroy "$tmp" >/dev/null 2>&1 || :',
      'if [ "$sparse" = 1 ]; then zfs create -s -V "$size" -o volmode=dev "$tmp"; else zfs create -V "$size" -o volmode=dev "$tmp"; fi',
      'dev="/dev/zvol/$tmp"; i=0',
      'until ls -- "$dev" >/dev/null 2>&1; do',
      '  i=$((i + 1)); [ "$i" -le 30 ] || { echo "$dev did not appear within 30 s" >&2; exit 1; }',
      "  sleep 1",
      "done",
      '[ -f "$img" ] || { echo "boot image $img does not exist" >&2; exit 1; }',
      'out=$(dd if="$img" of="$dev" bs=1048576 conv=sparse 2>&1) || { echo "$out" >&2; exit 1; }',
      'zfs rename "$tmp" "$zvol"',
    ],
  });
  await runScript(
    host,
    ["dd", `if=${image}`, `of=/dev/zvol/${zvol}`],
    script,
    [image, zvol, String(size), sparse ? "1" : "0"],
    undefined,
    { kind: "long", cancellable: true },
  );
}

/**
 * A ZFS snapshot cloned into a zvol: cloned under the temporary name, grown to the disk's size
 * rounded up to the clone's volblocksize (`zfs set volsize` refuses anything else, module/zfs/zvol.c
 * zvol_check_volsize), renamed once complete.
 */
export async function cloneImageToZvol(
  host: Target,
  snapshot: string,
  zvol: string,
  size: number,
): Promise<void> {
  const script = wholeOrNothing({
    prelude: ["set -eu", 'snap="$1"; zvol="$2"; size="$3"'],
    made: "$zvol",
    tmp: "zvol",
    steps: [
      'zfs destroy "$tmp" >/dev/null 2>&1 || :',
      'zfs clone -o volmode=dev "$snap" "$tmp"',
      'bs=$(zfs get -Hp -o value volblocksize "$tmp")',
      'have=$(zfs get -Hp -o value volsize "$tmp")',
      "size=$(( (size + bs - 1) / bs * bs ))",
      '[ "$have" -le "$size" ] || { echo "boot image $snap ($have bytes) is larger than the disk ($size bytes)" >&2; exit 1; }',
      '[ "$have" -eq "$size" ] || zfs set volsize="$size" "$tmp"',
      'zfs rename "$tmp" "$zvol"',
    ],
  });
  await runScript(host, ["zfs", "clone", snapshot, zvol], script, [snapshot, zvol, String(size)]);
}

/** An empty zvol, as vm-bhyve makes one (zfs::make_zvol, lib/vm-zfs lines 95-108). */
export async function createZvol(host: Target, zvol: string, size: number, sparse: boolean): Promise<void> {
  await runOk(host, [
    "zfs",
    "create",
    ...(sparse ? ["-s"] : []),
    "-V",
    String(size),
    "-o",
    "volmode=dev",
    zvol,
  ]);
}

/** An empty sparse file disk, 0600 from the start (a plain truncate would give the umask's 0644). */
export async function createFileDisk(host: Target, path: string, size: number): Promise<void> {
  const script = wholeOrNothing({
    prelude: ["set -eu", "umask 077"],
    made: "$1",
    tmp: "file",
    steps: ['rm -f "$tmp"', 'truncate -s "$2" "$tmp"', 'mv -f "$tmp" "$1"'],
  });
  await runScript(host, ["truncate", "-s", String(size), path], script, [path, String(size)]);
}
