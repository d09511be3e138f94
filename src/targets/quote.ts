/**
 * The one quoting function for the places where a remote shell cannot be avoided (OpenSSH sends the
 * remote command as a single string that the login shell parses). Every word is wrapped in single
 * quotes, with embedded single quotes closed, escaped and reopened: the POSIX-shell rule, which holds
 * for sh, bash, zsh and FreeBSD's sh alike.
 */
export function shellQuote(word: string): string {
  if (word.includes("\0")) throw new Error("a command word cannot contain a NUL byte");
  // Left bare only when no shell reads anything into it: zsh turns a word starting with `=` into
  // the path of the program it names (zshexpn(1), "= expansion": the EQUALS option, on by default).
  if (/^[A-Za-z0-9_@%+:,./-][A-Za-z0-9_@%+=:,./-]*$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(" ");
}
