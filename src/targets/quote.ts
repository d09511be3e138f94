/**
 * The one quoting function for the places where a remote shell cannot be avoided (OpenSSH sends the
 * remote command as a single string that the login shell parses). Every word is wrapped in single
 * quotes, with embedded single quotes closed, escaped and reopened: the POSIX-shell rule, which holds
 * for sh, bash, zsh and FreeBSD's sh alike.
 */
export function shellQuote(word: string): string {
  if (word.includes("\0")) throw new Error("a command word cannot contain a NUL byte");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
