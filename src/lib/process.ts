/** Processes of this machine, as locks and leftover files name them by pid. */

/**
 * Whether a process of that pid runs here, another user's included. Only ESRCH says it is gone:
 * what cannot be told (EPERM, anything else) counts as running, so that nothing is taken over or
 * removed from a process that may still be there.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
