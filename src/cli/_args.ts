/**
 * The flags several commands share. Kept apart from _shared.ts, which loads the config and plugin
 * machinery, so that the command-line parser can learn which global flags take a value (and so
 * tell `-c FILE` before a command from a command name) without loading any of it.
 */
import type { ArgsDef } from "citty";

export const globalArgs = {
  config: {
    type: "string",
    alias: "c",
    description: "Cluster file (default: ./kubehyve.yaml, then /usr/local/etc/kubehyve/kubehyve.yaml)",
    valueHint: "FILE",
  },
  "state-dir": {
    type: "string",
    description:
      "State directory of this cluster: keys, kubeconfig, journal, cache (default: /var/db/kubehyve/NAME on FreeBSD, $XDG_STATE_HOME/kubehyve/NAME elsewhere)",
    valueHint: "DIR",
  },
  json: { type: "boolean", description: "Write NDJSON events on stdout and nothing else" },
  verbose: { type: "boolean", description: "Show debug lines and details" },
  yes: { type: "boolean", alias: "y", description: "Answer yes to every question (restarts, teardown)" },
  "plugin-dir": {
    type: "string",
    description: "Look for drop-in plugins here first (colon-separated for several)",
    valueHint: "DIR",
  },
} as const satisfies ArgsDef;

export const exampleArg = {
  example: { type: "boolean", description: "Use the built-in example lab instead of a cluster file" },
} as const satisfies ArgsDef;

export const selectionArgs = {
  only: { type: "string", description: "Run only these stages (comma-separated slots)", valueHint: "SLOTS" },
  from: { type: "string", description: "Start at this stage", valueHint: "SLOT" },
  until: { type: "string", description: "Stop after this stage", valueHint: "SLOT" },
} as const satisfies ArgsDef;

/**
 * Arguments a command cannot run without but checks itself, with the others, so that every problem
 * is named at once (citty's own `required` stops at the first). `--help` shows them as required.
 */
export const shownRequired = new WeakSet<object>();

export function needed<T extends object>(def: T): T {
  shownRequired.add(def);
  return def;
}
