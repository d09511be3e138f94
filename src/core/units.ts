/** Sizes as people write them in a cluster file: `4GiB`, `512M`, `20G`, `1.5TiB`, or bare bytes. */
const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** The pattern the cluster file schema enforces for sizes. */
export const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$/i;

/** Bytes of a size string or number; undefined when it is not a size. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? Math.floor(input) : undefined;
  const m = SIZE_PATTERN.exec(input);
  if (!m) return undefined;
  const factor = UNITS[(m[2] ?? "").toLowerCase()];
  if (factor === undefined) return undefined;
  return Math.floor(Number(m[1]) * factor);
}

/** `4 GiB`, `512 MiB`, `1.5 TiB`: binary units, at most one decimal. */
export function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const shown = Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, "");
  return `${shown} ${units[unit]}`;
}

export const MiB = 1024 ** 2;
export const GiB = 1024 ** 3;
