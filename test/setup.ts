/**
 * Loaded before every test file (bunfig.toml). Tests start real sshd, dnsmasq and HTTP servers and
 * spawn the compiled binary: on a loaded 2-core machine Bun's 5 s default fails them at random.
 * Bun 1.4 applies a preload's default to the first file of a run only, unless files run isolated
 * (--parallel): the package scripts also pass --timeout, which reaches every file.
 */
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(60_000);
